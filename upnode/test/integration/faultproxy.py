"""
A fault-injecting TCP proxy for the integration tests, on loopback.

Each mode applies to every connection through the proxy from the moment it
is set: C{pass} (forward), C{blackhole} (swallow both directions, never
close), C{stall-down} / C{stall-up} (swallow one direction: server to
client, or client to server), C{chunk1} (forward one byte per write),
C{latency} (delay every chunk by C{delay} seconds), C{cut} (close after
C{cutAfter} more bytes from the server), C{reset} (abort every connection
now and each new one at once).

Whatever the mode, bytes that get through arrive in the order they were
sent, as over TCP: when a latency ends, what comes after it waits behind
the chunks still delayed instead of overtaking them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Set, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol


class _Side(Protocol):
    def __init__(self, proxy: FaultProxy, direction: str) -> None:
        self.proxy = proxy
        self.direction = direction  # "up": client to server; "down": server to client
        self.peer: Optional[_Side] = None
        self.pending: List[bytes] = []
        # Chunks delayed by a latency, with when each is due, in the order
        # sent: a chunk never leaves before one handed to us earlier.
        self.held: Deque[Tuple[float, bytes]] = deque()
        self.timer: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.proxy._forward(self, data)

    def connectionLost(self, reason: Any = None) -> None:
        self.proxy.sides.discard(self)
        if self.peer is not None and self.peer.transport is not None:
            if self.proxy.mode == "blackhole":
                # No FIN crosses a black hole; the other side is closed when
                # the path clears.
                self.proxy.orphans.append(self.peer)
            else:
                self.peer.transport.loseConnection()

    def send(self, data: bytes, delay: float = 0.0) -> None:
        """
        Write C{data} to our connection after C{delay} seconds, and not
        before what we were handed earlier.
        """
        if delay <= 0 and not self.held:
            if self.transport is not None:
                self.transport.write(data)
            return
        self.held.append((reactor.seconds() + delay, data))
        if self.timer is None:
            self._release()

    def _release(self) -> None:
        self.timer = None
        held, now = self.held, reactor.seconds()
        while held and held[0][0] <= now:
            data = held.popleft()[1]
            if self.transport is not None:
                self.transport.write(data)
        if held:
            self.timer = reactor.callLater(held[0][0] - now, self._release)
            self.proxy._timers.append(self.timer)


class _ClientSide(_Side):
    """
    The connection the client made to the proxy.
    """

    def connectionMade(self) -> None:
        self.proxy.sides.add(self)
        if self.proxy.mode == "reset":
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.transport.pauseProducing()  # type: ignore[union-attr]
        server = _Side(self.proxy, "down")
        server.peer, self.peer = self, server
        d = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.target).connect(Factory.forProtocol(lambda: server))

        def connected(p: Any) -> None:
            self.proxy.sides.add(server)
            self.transport.resumeProducing()  # type: ignore[union-attr]
            for chunk in self.pending:
                server.send(chunk)
            self.pending = []

        d.addCallbacks(connected, lambda f: self.transport.loseConnection())  # type: ignore[union-attr]


class FaultProxy:
    def __init__(self, target: int) -> None:
        self.target = target
        self.mode = "pass"
        self.delay = 0.0
        self.cutAfter = 0
        self.sides: Set[_Side] = set()
        self.orphans: List[_Side] = []
        self.port: Any = None
        self._timers: List[Any] = []

    async def start(self) -> int:
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: _ClientSide(self, "up"))
        )
        return int(self.port.getHost().port)

    def set(self, mode: str, delay: float = 0.0, cutAfter: int = 0) -> None:
        self.mode, self.delay, self.cutAfter = mode, delay, cutAfter
        if mode != "blackhole":
            orphans, self.orphans = self.orphans, []
            for side in orphans:
                if side.transport is not None:
                    side.transport.loseConnection()
        if mode == "reset":
            for side in list(self.sides):
                if side.transport is not None:
                    side.transport.abortConnection()  # type: ignore[attr-defined]

    def _forward(self, side: _Side, data: bytes) -> None:
        target = side.peer
        if target is None or (target.transport is None and side.direction == "down"):
            return
        if target.transport is None:  # the server side is not connected yet
            side.pending.append(data)
            return
        mode = self.mode
        if mode == "blackhole" or (mode == "stall-down" and side.direction == "down") or (
            mode == "stall-up" and side.direction == "up"
        ):
            return
        if mode == "chunk1":
            for i in range(len(data)):
                target.send(data[i : i + 1])
        elif mode == "latency":
            self._timers = [t for t in self._timers if t.active()]
            target.send(data, self.delay)
        elif mode == "cut" and side.direction == "down":
            keep = data[: self.cutAfter]
            self.cutAfter -= len(keep)
            target.send(keep)
            if self.cutAfter <= 0:
                for s in (side, target):
                    if s.transport is not None:
                        s.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            target.send(data)

    def stop(self) -> Deferred[None]:
        # A Deferred, not a coroutine: trial awaits what a cleanup returns
        # only if it is a Deferred before Twisted 24.7.
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        for side in list(self.sides):
            if side.transport is not None:
                side.transport.abortConnection()  # type: ignore[attr-defined]
        if self.port is not None:
            await self.port.stopListening()
