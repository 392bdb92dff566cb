# -*- test-case-name: upnode.test.test_server -*-
"""
The upnode server side: dnode connections that answer C{ping} and ping
their clients, dropping the ones that stop answering.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.internet.interfaces import IReactorTime

from ._expose import Cons, withPing
from ._guard import ServerGuard, ServerLimits
from ._heartbeat import Heartbeat, startHeartbeat
from ._limits import Limits, seconds
from ._protocol import DnodeProtocol
from ._reactor import resolve
from .dnode import DnodeFactory


class _Answers:
    """
    Where a connection's ping answers go: its C{ping} event.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: DnodeProtocol) -> None:
        self.conn = conn

    def __call__(self, roundTrip: float) -> None:
        self.conn.emit("ping", roundTrip)


class UpnodeServerFactory(DnodeFactory):
    """
    Serves C{cons} over dnode with upnode's heartbeat on both sides.

    Each connection emits C{ping} with the round trip of every answer.

    @param ping: seconds between our pings to each client that exposes
        C{ping}; 0 disables them.
    @param timeout: seconds a client may take to answer, once nothing else
        is heard from it either, before it is dropped (see
        L{upnode._heartbeat}).
    @param serverLimits: the bounds across all connections (connection
        cap, handshake timeout, output budget, line timeout).
    """

    #: Set by L{upnode.metrics.Metrics.watchServer}; None: no metrics, no work.
    metrics: Any = None

    def __init__(
        self,
        cons: Cons = None,
        *,
        ping: float = 10.0,
        timeout: float = 5.0,
        limits: Optional[Limits] = None,
        serverLimits: Optional[ServerLimits] = None,
        clock: Optional[IReactorTime] = None,
    ) -> None:
        DnodeFactory.__init__(self, cons, limits, clock, withPing, ServerGuard(serverLimits, clock))
        self.ping = seconds("ping", ping)
        self.timeout = seconds("timeout", timeout)
        # The heartbeat of each connection whose peer's methods have come
        # (None: its peer exposes no ping), stopped when it goes.
        self._heartbeats: Dict[DnodeProtocol, Optional[Heartbeat]] = {}

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = DnodeFactory.buildProtocol(self, addr)
        if self.metrics is not None:
            self.metrics.connection(conn)
        return conn

    def connectionRemote(self, conn: DnodeProtocol) -> None:
        DnodeFactory.connectionRemote(self, conn)
        # Its first methods only: a peer that sends them again keeps its
        # one heartbeat.
        if self.ping and conn.connected and conn not in self._heartbeats:
            self._heartbeats[conn] = self._startHeartbeat(conn)

    def connectionGone(self, conn: DnodeProtocol) -> None:
        DnodeFactory.connectionGone(self, conn)
        heartbeat = self._heartbeats.pop(conn, None)
        if heartbeat is not None:
            heartbeat.stop()

    def _startHeartbeat(self, conn: DnodeProtocol) -> Optional[Heartbeat]:
        if not callable(getattr(conn.remote, "ping", None)):
            return None
        return startHeartbeat(conn, conn.remote, self.ping, self.timeout, self._clock(), _Answers(conn))

    def _clock(self) -> IReactorTime:
        self.clock = resolve(self.clock)
        return self.clock  # type: ignore[return-value]
