"""
upnode's heartbeat: call the peer's C{ping(cb)} every C{interval} seconds and
give up on the link when an answer takes longer than C{timeout}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ._guard import PING
from ._reactor import cancel

_log = Logger()


def dropSilentPeer(conn: Any, timeout: float) -> Callable[[], None]:
    """
    What both sides do when a ping goes unanswered: say so, and abort the
    connection (a silent peer may never read a polite close).
    """

    def expired() -> None:
        guard = getattr(conn, "guard", None)
        if guard is not None:  # a server's: counted with its other drops
            guard.drop(conn, PING, f"no ping answer within {timeout} seconds")
            return
        _log.warn(
            "No ping answer from {peer} within {timeout} seconds; dropping the link",
            peer=conn._peerName(),
            timeout=timeout,
        )
        conn.abort()

    return expired


class Heartbeat:
    """
    One link's pings.  A single bound method takes every answer: answers
    come back in order, so the oldest outstanding ping is the one answered.
    """

    def __init__(
        self,
        ping: Callable[[Callable[..., None]], Any],
        interval: float,
        timeout: float,
        clock: IReactorTime,
        answered: Callable[[float], object],
        expired: Callable[[], None],
    ) -> None:
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._answered = answered
        self._expired = expired
        self._outstanding: Deque[Tuple[float, Optional[IDelayedCall]]] = deque()
        self._loop = LoopingCall(self._beat)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        while self._outstanding:
            cancel(self._outstanding.popleft()[1])

    def _beat(self) -> None:
        timer = None
        if self._timeout:
            timer = self._clock.callLater(self._timeout, self._timedOut)
        self._outstanding.append((self._clock.seconds(), timer))
        try:
            self._ping(self._pong)
        except Exception:
            # The link is already dead; its loss stops this heartbeat.
            pass

    def _pong(self, *ignored: Any) -> None:
        if not self._outstanding:
            return  # an answer nobody asked for
        sent, timer = self._outstanding.popleft()
        cancel(timer)
        self._answered(self._clock.seconds() - sent)

    def _timedOut(self) -> None:
        self.stop()
        self._expired()
