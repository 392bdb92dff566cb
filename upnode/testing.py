"""
Helpers to test upnode code without sockets or sleeps: an in-memory link
between a server factory and a client, and a fake endpoint whose connection
attempts the test accepts or refuses.

    clock = Clock()
    endpoint = FakeEndpoint()
    up = upnode.upnode(reactor=clock).connect(endpoint)
    server = UpnodeServerFactory({"echo": echo}, clock=clock)
    link = endpoint.accept(server)      # the attempt succeeds, in memory
    link.flush()                        # deliver what both sides wrote
    remote = successResultOf(up())
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

__all__ = ["FakeEndpoint", "MemoryLink", "connectInMemory"]


class MemoryLink:
    """
    Two protocols joined in memory.  Nothing moves until C{flush()}.
    """

    def __init__(self, server: Protocol, client: Protocol, pump: iosim.IOPump) -> None:
        self.server = server
        self.client = client
        self.pump = pump

    def flush(self) -> None:
        """
        Deliver everything both sides wrote, and disconnections, until
        quiet; calls scheduled with a delay of 0 run too.
        """
        self.pump.flush()

    def cut(self) -> None:
        """
        The network goes: both sides see the connection lost.
        """
        self.client.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()


def connectInMemory(
    serverFactory: Factory, clientProtocol: Protocol, clock: Optional[Clock] = None
) -> MemoryLink:
    """
    Join C{clientProtocol} to a new protocol from C{serverFactory}.
    """
    server = serverFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7000))
    serverTransport = iosim.FakeTransport(server, isServer=True)
    clientTransport = iosim.FakeTransport(clientProtocol, isServer=False)
    pump = iosim.connect(server, serverTransport, clientProtocol, clientTransport, greet=False, clock=clock)
    return MemoryLink(server, clientProtocol, pump)  # type: ignore[arg-type]


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint whose C{connect()} calls wait for the test to
    C{accept()} or C{refuse()} them, oldest first.
    """

    def __init__(self, clock: Optional[Clock] = None) -> None:
        self.clock = clock
        self.attempts: List[Tuple[Factory, Deferred[Any]]] = []

    def connect(self, factory: Factory) -> Deferred[Any]:  # type: ignore[override]
        d: Deferred[Any] = Deferred()
        self.attempts.append((factory, d))
        return d

    def accept(self, serverFactory: Factory) -> MemoryLink:
        """
        The oldest waiting attempt connects to a protocol of
        C{serverFactory}; the greeting each side writes on connection is
        not delivered until C{flush()}.
        """
        factory, d = self.attempts.pop(0)
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7000))
        link = connectInMemory(serverFactory, client, self.clock)  # type: ignore[arg-type]
        d.callback(client)
        return link

    def refuse(self, reason: Optional[Exception] = None) -> None:
        """
        The oldest waiting attempt fails (connection refused by default).
        """
        _, d = self.attempts.pop(0)
        d.errback(Failure(reason or ConnectionRefusedError()))
