# -*- test-case-name: upnode.test.test_server -*-
"""
The upnode server side: dnode connections that answer C{ping} and ping
their clients, dropping the ones that stop answering.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime

from ._expose import Cons, withPing
from ._guard import ServerGuard, ServerLimits
from ._heartbeat import startHeartbeat
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

    def answered(self, roundTrip: float) -> None:
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

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = DnodeFactory.buildProtocol(self, addr)
        if self.metrics is not None:
            self.metrics.connection(conn)
        if self.ping:
            conn.on("remote", self._firstRemote)
        return conn

    def _firstRemote(self, remote: Any, conn: DnodeProtocol) -> None:
        # Once a connection, as pyee's once(), whose wrapper would refer
        # back to the connection: a cycle that outlives it until the
        # collector's next pass, for every peer that never sends methods.
        if self._firstRemote not in conn.listeners("remote"):
            return
        conn.remove_listener("remote", self._firstRemote)
        self._startHeartbeat(conn)

    def _startHeartbeat(self, conn: DnodeProtocol) -> None:
        if not callable(getattr(conn.remote, "ping", None)) or not conn.connected:
            return
        heartbeat = startHeartbeat(conn, conn.remote, self.ping, self.timeout, self._clock(), _Answers(conn).answered)

        def lost(reason: Any) -> None:
            heartbeat.stop()

        conn.notifyOnLoss(lost)

    def _clock(self) -> IReactorTime:
        self.clock = resolve(self.clock)
        return self.clock  # type: ignore[return-value]
