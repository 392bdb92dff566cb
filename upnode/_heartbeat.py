# -*- test-case-name: upnode.test.test_heartbeat -*-
"""
upnode's heartbeat, on both sides of a link: call the peer's C{ping(cb)}
every C{interval} seconds, and give up on the link once a ping's answer
is late and nothing at all was heard from the peer for C{timeout} seconds.

A ping and its answer are ordinary lines, queued behind whatever either
side has written before them: on a slow path a megabyte of replies ahead
of a ping holds its answer back for many seconds.  A peer whose bytes
keep arriving is alive and busy, not gone; so is one whose TCP stack keeps
acknowledging the bytes we wrote before the ping (the ping has not even
reached it).  A late answer only counts once the peer has also been
silent in both senses (see L{IPeerSigns}) for the whole C{timeout}.
Acknowledgements of the ping itself, or of what follows it, are no sign:
a stopped process's kernel, or a proxy's, acknowledges those.  A silent
peer is still found within C{interval + timeout} of its last word.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._reactor import cancel
from .errors import DropReason


class IPeerSigns(Protocol):
    """
    What a connection says of its peer's signs of life (L{DnodeProtocol}).
    """

    def written(self) -> int:
        """
        Bytes we have written to the peer so far (held ones included): a
        ping written now reaches the peer once it has taken these.
        """

    def heard(self, upTo: int) -> int:
        """
        A count that moves whenever the peer is heard from: something of
        its arrived, or its TCP stack acknowledged our bytes, those up to
        the offset C{upTo} only.  Only whether it moved matters.
        """


class _NoSigns:
    """
    A peer that gives no sign but its answers.
    """

    def written(self) -> int:
        return 0

    def heard(self, upTo: int) -> int:
        return 0


NO_SIGNS: IPeerSigns = _NoSigns()


def _noPing(cb: Callable[..., None]) -> None:
    pass


def _ignore(roundTrip: float) -> None:
    pass


def _nothing() -> None:
    pass


class Heartbeat:
    """
    One link's pings.  A single bound method takes every answer: answers
    come back in order, so the oldest outstanding ping is the one answered.

    Only the oldest outstanding ping has a timer: a younger one cannot be
    answered before it.
    """

    # A server has one for each of its links.
    __slots__ = (
        "_ping",
        "_interval",
        "_timeout",
        "_clock",
        "_answered",
        "_expired",
        "_signs",
        "_outstanding",
        "_timer",
        "_mark",
        "_beatCall",
        "_due",
    )

    def __init__(
        self,
        ping: Callable[[Callable[..., None]], Any],
        interval: float,
        timeout: float,
        clock: IReactorTime,
        answered: Callable[[float], object],
        expired: Callable[[], None],
        signs: IPeerSigns = NO_SIGNS,
    ) -> None:
        """
        @param signs: what says whether the peer was heard from (see
            L{IPeerSigns}); by default it never is, and a late answer is
            fatal.
        """
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._answered = answered
        self._expired = expired
        self._signs = signs
        # The time each outstanding ping went out and the stream offset
        # where it starts, oldest first: rarely more than one, so a list
        # (an empty deque is many times its size, on each of a server's links).
        self._outstanding: List[Tuple[float, int]] = []
        # The oldest one's timer, and what the peer had said when it was set.
        self._timer: Optional[IDelayedCall] = None
        self._mark = 0
        # The next ping's timer, and when it is due: every interval from
        # the start, the way LoopingCall keeps time, without its Deferred
        # and its state, which a server would pay for on every link.
        self._beatCall: Optional[IDelayedCall] = None
        self._due = 0.0

    def start(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._beatCall = self._clock.callLater(self._interval, self._tick)

    def stop(self) -> None:
        """
        Stop for good, and let go of the link (nothing of it is held by a
        timer until the collector's next pass).
        """
        cancel(self._beatCall)
        self._beatCall = None
        self._outstanding.clear()
        self._disarm()
        self._ping = _noPing
        self._answered = _ignore
        self._expired = _nothing
        self._signs = NO_SIGNS

    def _tick(self) -> None:
        self._beatCall = None
        self._beat()
        if self._ping is _noPing:
            return  # (stopped meanwhile: the link went as the ping was written)
        # The next one on the same grid; a beat later than a whole interval
        # (a reactor held up) skips the pings it missed, as LoopingCall does.
        now = self._clock.seconds()
        interval = self._interval
        due = self._due + interval
        if due <= now:
            due = self._due + ((now - self._due) // interval + 1) * interval
            if due <= now:  # (rounding)
                due += interval
        self._due = due
        self._beatCall = self._clock.callLater(due - now, self._tick)

    def _beat(self) -> None:
        # (Acknowledgements of what went before the ping are signs of life;
        # of the ping itself and after, they are not.)
        sent, before = self._clock.seconds(), self._signs.written()
        try:
            self._ping(self._pong)
        except Exception:
            # The link is already dead; its loss stops this heartbeat.
            return
        self._outstanding.append((sent, before))
        if self._timer is None:
            self._arm(self._timeout)

    def _arm(self, delay: float) -> None:
        if self._timeout:
            self._mark = self._signs.heard(self._outstanding[0][1])
            self._timer = self._clock.callLater(delay, self._late)

    def _disarm(self) -> None:
        cancel(self._timer)
        self._timer = None

    def _pong(self, *ignored: Any) -> None:
        if not self._outstanding:
            return  # an answer nobody asked for
        sent = self._outstanding.pop(0)[0]
        self._disarm()
        if self._outstanding:
            # The next one's own deadline (never earlier than now: it is
            # its turn only now).
            self._arm(max(0.0, self._outstanding[0][0] + self._timeout - self._clock.seconds()))
        self._answered(self._clock.seconds() - sent)

    def _late(self) -> None:
        """
        The oldest ping's answer is C{timeout} late (or another C{timeout}
        later still): wait on while the peer was heard from meanwhile.
        """
        self._timer = None
        if self._signs.heard(self._outstanding[0][1]) != self._mark:
            self._arm(self._timeout)
            return
        expired = self._expired
        self.stop()
        expired()


def startHeartbeat(
    conn: Any,
    remote: Any,
    interval: float,
    timeout: float,
    clock: IReactorTime,
    answered: Callable[[float], object],
    expired: Optional[Callable[[], None]] = None,
) -> Heartbeat:
    """
    Start pinging C{remote}, the peer of C{conn} (a L{DnodeProtocol}),
    every C{interval} seconds: what the server does for each client and a
    client for its link.  C{conn} says when its peer was heard from (it
    is an L{IPeerSigns}); by default a peer silent for too long is dropped
    as C{conn.drop} does it, under L{DropReason.PING}.
    """
    if expired is None:
        expired = _Dropper(conn, timeout)
    signs = conn if hasattr(conn, "heard") else NO_SIGNS
    heartbeat = Heartbeat(_PingOf(remote), interval, timeout, clock, answered, expired, signs)
    heartbeat.start()
    return heartbeat


# (Small objects rather than closures: a server makes them for every link.)


class _PingOf:
    """
    The peer's C{ping}, looked up on each beat: a later C{methods} message
    may replace it.
    """

    __slots__ = ("remote",)

    def __init__(self, remote: Any) -> None:
        self.remote = remote

    def __call__(self, cb: Callable[..., None]) -> Any:
        return self.remote.ping(cb)


class _Dropper:
    """
    Drop C{conn} as C{conn.drop} does it, for want of an answer.
    """

    __slots__ = ("conn", "timeout")

    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout

    def __call__(self) -> None:
        self.conn.drop(DropReason.PING, f"no ping answer, and nothing else heard, within {self.timeout} seconds")
