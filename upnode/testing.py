# -*- test-case-name: upnode.test.test_client -*-
"""
Helpers to test upnode code without sockets or sleeps: an in-memory link
between a server factory and a client, and a fake endpoint whose connection
attempts the test accepts or refuses::

    clock = Clock()
    endpoint = FakeEndpoint(clock)
    up = upnode.upnode(reactor=clock).connect(endpoint)
    server = UpnodeServerFactory({"echo": echo}, clock=clock)
    link = endpoint.accept(server)      # the attempt succeeds, in memory
    link.flush()                        # deliver what both sides wrote
    remote = successResultOf(up())

Built on public Twisted interfaces only, so that it behaves the same on
every Twisted release upnode supports.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer, IStreamClientEndpoint, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["FakeEndpoint", "MemoryLink", "MemoryTransport", "connectInMemory"]


@implementer(ITransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One side of an in-memory connection: what its protocol writes waits
    here until the link's C{pump()} delivers it.

    Like a socket transport, it pauses a registered streaming producer
    while more than C{bufferSize} bytes wait, and resumes it once they
    have all been delivered.
    """

    bufferSize = 64 * 1024

    def __init__(self, protocol: Protocol, host: Any, peer: Any) -> None:
        self.protocol = protocol
        self.host = host
        self.peer = peer
        self.outgoing: List[bytes] = []
        self.buffered = 0
        self.disconnecting = False
        self.aborted = False
        self.disconnected = False
        self.producer: Optional[Any] = None
        self.streaming = False
        self.producerPaused = False
        #: Whether its protocol asked it to stop reading (IPushProducer).
        self.readingPaused = False

    # ITransport

    def write(self, data: bytes) -> None:
        if self.disconnecting or not data:
            return
        self.outgoing.append(data)
        self.buffered += len(data)
        if self.producer is not None and self.streaming and self.buffered > self.bufferSize:
            self.producerPaused = True
            self.producer.pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        for each in data:
            self.write(each)

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        """
        Drop the connection at the next pump, discarding unsent bytes.
        """
        self.disconnecting = self.aborted = True
        self.outgoing, self.buffered = [], 0

    def getPeer(self) -> Any:
        return self.peer

    def getHost(self) -> Any:
        return self.host

    # IPushProducer: what the protocol reads

    def pauseProducing(self) -> None:
        self.readingPaused = True

    def resumeProducing(self) -> None:
        self.readingPaused = False

    def stopProducing(self) -> None:
        self.loseConnection()

    # IConsumer

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    # For the link

    def take(self) -> bytes:
        """
        Everything written since the last take, which the peer now reads;
        a paused producer resumes, as after a socket's buffer drained.
        """
        data = b"".join(self.outgoing)
        self.outgoing, self.buffered = [], 0
        if self.producerPaused and self.producer is not None:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data


class MemoryLink:
    """
    Two protocols joined in memory.  Nothing moves until C{pump()} or
    C{flush()}.
    """

    def __init__(self, server: Protocol, client: Protocol, clock: Optional[Clock] = None) -> None:
        self.server = server
        self.client = client
        self.clock = clock if clock is not None else Clock()
        self.serverTransport = MemoryTransport(
            server, IPv4Address("TCP", "127.0.0.1", 7000), IPv4Address("TCP", "127.0.0.1", 50000)
        )
        self.clientTransport = MemoryTransport(
            client, IPv4Address("TCP", "127.0.0.1", 50000), IPv4Address("TCP", "127.0.0.1", 7000)
        )

    def connect(self) -> None:
        """
        Both sides see the connection made (the server first, as with
        sockets); what they write on it waits for the first pump.
        """
        self.server.makeConnection(self.serverTransport)
        self.client.makeConnection(self.clientTransport)

    def pump(self) -> bool:
        """
        Run calls due now (C{callLater(0, f)}), then deliver one round of
        bytes each way, or else a pending disconnection.  Returns whether
        anything moved.
        """
        self.clock.advance(0)
        moved = False
        for source, destination in (
            (self.clientTransport, self.serverTransport),
            (self.serverTransport, self.clientTransport),
        ):
            if destination.readingPaused:
                continue  # what source wrote waits, as in a socket's buffers
            data = source.take()
            if data and not destination.disconnected:
                destination.protocol.dataReceived(data)
                moved = True
        if moved:
            return True
        for source, destination in (
            (self.serverTransport, self.clientTransport),
            (self.clientTransport, self.serverTransport),
        ):
            if source.disconnecting and not source.disconnected:
                self._disconnect(source, destination)
                return True
        return False

    def _disconnect(self, closer: MemoryTransport, other: MemoryTransport) -> None:
        closer.disconnected = other.disconnected = True
        other.disconnecting = True
        reason = ConnectionAborted() if closer.aborted else ConnectionDone()
        closer.protocol.connectionLost(Failure(reason))
        other.protocol.connectionLost(Failure(ConnectionLost() if closer.aborted else ConnectionDone()))

    def flush(self) -> None:
        """
        Pump until quiet: everything both sides wrote, and disconnections,
        are delivered.
        """
        for _ in range(10_000):
            if not self.pump():
                return
        raise AssertionError("the two sides never went quiet (10,000 rounds)")

    def cut(self) -> None:
        """
        The network goes: both sides see the connection lost.
        """
        self.clientTransport.loseConnection()
        self.flush()


def connectInMemory(
    serverFactory: Factory, clientProtocol: Protocol, clock: Optional[Clock] = None
) -> MemoryLink:
    """
    Join C{clientProtocol} to a new protocol from C{serverFactory}.
    """
    server = serverFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    link = MemoryLink(server, clientProtocol, clock)  # type: ignore[arg-type]
    link.connect()
    return link


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    A client endpoint whose C{connect()} calls wait for the test to
    C{accept()} or C{refuse()} them, oldest first; one the test does
    neither to hangs, as an attempt on a dead host does.  An attempt the
    client cancels leaves C{attempts} (its Deferred fails with
    C{CancelledError}), so it is never connected, and counts in
    C{cancelled}.
    """

    def __init__(self, clock: Optional[Clock] = None) -> None:
        self.clock = clock
        self.attempts: List[Tuple[Factory, Deferred[Any]]] = []
        #: How many attempts the client cancelled.
        self.cancelled = 0

    def connect(self, factory: Factory) -> Deferred[Any]:  # type: ignore[override]
        def cancelled(d: Deferred[Any]) -> None:
            self.cancelled += 1
            self.attempts[:] = [each for each in self.attempts if each[1] is not d]

        d: Deferred[Any] = Deferred(cancelled)
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
