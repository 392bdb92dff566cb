"""
A Twisted protocol over an asyncio transport: the bridge's events, the
transport's writes, flow control both ways and its close, driven through
a recording stand-in for the loop's transport (no loop, no sockets; the
real loops are in the integration tests' asyncio programs).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any, Callable, Dict, List, Optional

import orjson
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer, ISystemHandle, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from upnode import _tuning
from upnode._aiostream import (
    LoopClientEndpoint,
    LoopListeningPort,
    LoopServerEndpoint,
    StreamBridge,
    StreamTransport,
    _connectError,
    addressOf,
)
from upnode._args import Arguments, clientEndpoint, serverEndpoint
from upnode._readshare import START_READ
from upnode._server import UpnodeServerFactory


class FakeSocket:
    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self.options: Dict[Any, int] = {}

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options[level, name] = value

    def getsockopt(self, level: int, name: int, buflen: Optional[int] = None) -> int:
        if buflen is not None:  # TCP_INFO: not on this system
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return self.options.get((level, name), 0)


class FakeStream:
    """
    What the bridge uses of an asyncio transport, recorded.
    """

    def __init__(self, peer: Any = ("127.0.0.1", 4321), host: Any = ("127.0.0.1", 7000), family: int = socket.AF_INET) -> None:
        self.extra = {"peername": peer, "sockname": host, "socket": FakeSocket(family)}
        self.written: List[bytes] = []
        self.calls: List[str] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: Any) -> None:
        self.written.append(b"".join(data))

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("write_eof")


class FakeLoop:
    def __init__(self) -> None:
        self.soon: List[Callable[[], None]] = []

    def call_soon(self, f: Callable[[], None]) -> None:
        self.soon.append(f)

    def runSoon(self) -> None:
        soon, self.soon = self.soon, []
        for f in soon:
            f()


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.lost: List[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


class Producer:
    def __init__(self, transport: Optional[StreamTransport] = None) -> None:
        self.calls: List[str] = []
        self.transport = transport

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")
        if self.transport is not None:
            self.transport.write(b"more")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def feed(bridge: StreamBridge, data: bytes) -> None:
    """
    What the loop does with a read: into the bridge's buffer, then told.
    """
    buffer = bridge.get_buffer(-1)
    assert len(data) <= len(buffer)
    buffer[: len(data)] = data
    bridge.buffer_updated(len(data))


def connected(protocol: Any = None, stream: Optional[FakeStream] = None) -> Any:
    stream = stream or FakeStream()
    loop = FakeLoop()
    protocol = protocol if protocol is not None else Recorder()
    bridge = StreamBridge(Factory.forProtocol(lambda: protocol), loop)  # type: ignore[arg-type]
    bridge.connection_made(stream)
    return bridge, stream, loop, protocol


class BridgeTests(SynchronousTestCase):
    def test_connectionMade(self) -> None:
        """
        The factory builds the protocol for the peer's address, and it is
        connected to a transport that says both ends' addresses.
        """
        bridge, stream, _, protocol = connected()
        self.assertIs(bridge.protocol, protocol)
        self.assertIs(protocol.transport, bridge.transport)
        self.assertEqual(protocol.transport.getPeer(), IPv4Address("TCP", "127.0.0.1", 4321))
        self.assertEqual(protocol.transport.getHost(), IPv4Address("TCP", "127.0.0.1", 7000))
        for interface in (ITCPTransport, IConsumer, IPushProducer, ISystemHandle):
            self.assertTrue(verifyObject(interface, protocol.transport))

    def test_noProtocol(self) -> None:
        """
        A factory that builds no protocol refuses the connection: it is
        aborted, and its later events are ignored.
        """
        class Refusing(Factory):
            def buildProtocol(self, addr: Any) -> None:
                return None

        stream = FakeStream()
        bridge = StreamBridge(Refusing(), FakeLoop())  # type: ignore[arg-type]
        bridge.connection_made(stream)
        self.assertEqual(stream.calls, ["abort"])
        bridge.connection_lost(None)
        bridge.pause_writing()

    def test_bytesBothWays(self) -> None:
        """
        Received bytes go to the protocol; its writes go to the loop's
        transport as they are.
        """
        bridge, stream, _, protocol = connected()
        feed(bridge, b"abc")
        feed(bridge, b"def")
        self.assertEqual(protocol.received, [b"abc", b"def"])
        protocol.transport.write(b"one")
        protocol.transport.writeSequence([b"t", b"wo"])
        self.assertEqual(stream.written, [b"one", b"two"])

    def test_noWritesOnceClosing(self) -> None:
        """
        What is written after C{loseConnection}, or once the connection is
        lost, is dropped, not handed to a closed loop transport (uvloop's
        would raise).
        """
        bridge, stream, _, protocol = connected()
        protocol.transport.loseConnection()
        protocol.transport.write(b"late")
        protocol.transport.writeSequence([b"later"])
        bridge.connection_lost(None)
        protocol.transport.write(b"gone")
        self.assertEqual(stream.written, [])

    def test_close(self) -> None:
        """
        C{loseConnection} closes once (asyncio sends what is buffered
        first); C{abortConnection} aborts; C{loseWriteConnection} half-closes.
        """
        _, stream, _, protocol = connected()
        protocol.transport.loseWriteConnection()
        protocol.transport.loseConnection()
        protocol.transport.loseConnection()
        self.assertTrue(protocol.transport.disconnecting)
        protocol.transport.abortConnection()
        self.assertEqual(stream.calls, ["write_eof", "close", "abort"])

    def test_lost(self) -> None:
        """
        A clean close is C{ConnectionDone}; an error is C{ConnectionLost}
        saying what it was; the registered producer is stopped.
        """
        for exc, kind, text in [(None, ConnectionDone, ""), (ConnectionResetError(104, "reset by peer"), ConnectionLost, "reset by peer")]:
            bridge, _, _, protocol = connected()
            producer = Producer()
            protocol.transport.registerProducer(producer, True)
            bridge.connection_lost(exc)
            [reason] = protocol.lost
            self.assertIsInstance(reason.value, kind)
            self.assertIn(text, str(reason.value))
            self.assertEqual(producer.calls, ["stop"])
            self.assertFalse(protocol.transport.connected)

    def test_protocolErrorLoggedAndClosed(self) -> None:
        """
        An exception from the protocol is logged as a failure, and its
        connection is aborted, as Twisted's transports do.
        """

        class Broken(Recorder):
            def dataReceived(self, data: bytes) -> None:
                raise ZeroDivisionError("a bug in the protocol")

        bridge, stream, _, _ = connected(Broken())
        feed(bridge, b"x")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(stream.calls, ["abort"])

    def test_readingPausedAndResumed(self) -> None:
        """
        The transport as a producer pauses and resumes the loop's reading;
        stopping it closes the connection.
        """
        bridge, stream, _, protocol = connected()
        protocol.transport.pauseProducing()
        protocol.transport.resumeProducing()
        protocol.transport.stopProducing()
        self.assertEqual(stream.calls, ["pause_reading", "resume_reading", "close"])
        bridge.connection_lost(None)
        protocol.transport.pauseProducing()  # gone: nothing to pause
        self.assertEqual(stream.calls, ["pause_reading", "resume_reading", "close"])


class ReadSizeTests(SynchronousTestCase):
    def test_readSizeBoundsEachRead(self) -> None:
        """
        Each read takes at most the transport's C{readSize}, which
        L{upnode._tuning.setReadSize} sets, as C{bufferSize} on Twisted's.
        """
        bridge, _, _, protocol = connected()
        self.assertEqual(len(bridge.get_buffer(-1)), 64 * 1024)
        self.assertTrue(_tuning.setReadSize(protocol.transport, 4096))
        self.assertEqual(len(bridge.get_buffer(1 << 20)), 4096)
        feed(bridge, b"x" * 4096)
        self.assertEqual(protocol.received, [b"x" * 4096])

    def test_oneBufferForEveryConnection(self) -> None:
        """
        Connections read into one buffer, and what each read is copied out
        before the next: an idle connection holds no buffer of its own.
        """
        first, _, _, one = connected()
        second, _, _, two = connected()
        self.assertIs(first.get_buffer(-1).obj, second.get_buffer(-1).obj)
        feed(first, b"to the first")
        feed(second, b"to the second")
        self.assertEqual((one.received, two.received), ([b"to the first"], [b"to the second"]))

    def test_serverReadShare(self) -> None:
        """
        A server's connection over the loop's transport starts with the
        small read a new connection gets, as over Twisted's.
        """
        factory = UpnodeServerFactory({}, ping=0, clock=Clock())
        bridge = StreamBridge(factory, FakeLoop())  # type: ignore[arg-type]
        bridge.connection_made(FakeStream())
        self.assertEqual(len(bridge.get_buffer(-1)), START_READ)


class YieldTests(SynchronousTestCase):
    def test_fullReadYields(self) -> None:
        """
        After a read that filled the buffer, reading pauses until the
        loop's other ready callbacks have run (libuv would read the same
        socket again at once); a read that did not fill it does not.
        """
        bridge, stream, loop, protocol = connected()
        _tuning.setReadSize(protocol.transport, 8)
        feed(bridge, b"1234")
        self.assertEqual((stream.calls, loop.soon), ([], []))
        feed(bridge, b"12345678")
        self.assertEqual(stream.calls, ["pause_reading"])
        loop.runSoon()
        self.assertEqual(stream.calls, ["pause_reading", "resume_reading"])

    def test_protocolPauseHolds(self) -> None:
        """
        A protocol that paused reading while the read yielded stays paused;
        one that resumes meanwhile reads again once the yield is over.
        """
        bridge, stream, loop, protocol = connected()
        _tuning.setReadSize(protocol.transport, 4)
        feed(bridge, b"full")
        protocol.transport.pauseProducing()
        loop.runSoon()
        self.assertEqual(stream.calls, ["pause_reading", "pause_reading"])
        protocol.transport.resumeProducing()
        feed(bridge, b"full")
        protocol.transport.pauseProducing()
        protocol.transport.resumeProducing()
        self.assertEqual(stream.calls[3:], ["pause_reading", "pause_reading"])
        loop.runSoon()
        self.assertEqual(stream.calls[-1], "resume_reading")

    def test_noYieldOnceLost(self) -> None:
        bridge, stream, loop, protocol = connected()
        _tuning.setReadSize(protocol.transport, 4)
        feed(bridge, b"full")
        bridge.connection_lost(None)
        loop.runSoon()
        self.assertEqual(stream.calls, ["pause_reading"])


class FlowControlTests(SynchronousTestCase):
    def test_streamingProducer(self) -> None:
        """
        The loop's C{pause_writing}/C{resume_writing} pause and resume a
        streaming producer; one registered while writing is paused is
        paused at once; once unregistered it is left alone.
        """
        bridge, _, _, protocol = connected()
        producer = Producer()
        protocol.transport.registerProducer(producer, True)
        bridge.pause_writing()
        bridge.resume_writing()
        self.assertEqual(producer.calls, ["pause", "resume"])
        protocol.transport.unregisterProducer()
        bridge.pause_writing()
        late = Producer()
        protocol.transport.registerProducer(late, True)
        self.assertEqual(late.calls, ["pause"])
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_oneProducer(self) -> None:
        """
        A second producer is refused, as Twisted's transports refuse it.
        """
        _, _, _, protocol = connected()
        protocol.transport.registerProducer(Producer(), True)
        self.assertRaises(RuntimeError, protocol.transport.registerProducer, Producer(), True)

    def test_pullProducer(self) -> None:
        """
        A pull producer is asked for more while the loop's buffer has room,
        not while writing is paused, and again on C{resume_writing}.
        """
        bridge, stream, loop, protocol = connected()
        producer = Producer(protocol.transport)
        protocol.transport.registerProducer(producer, False)
        loop.runSoon()
        self.assertEqual(producer.calls, ["resume", "resume"])
        bridge.pause_writing()
        loop.runSoon()
        self.assertEqual(producer.calls, ["resume", "resume"])
        bridge.resume_writing()
        self.assertEqual(producer.calls, ["resume", "resume", "resume"])
        protocol.transport.unregisterProducer()
        loop.runSoon()
        self.assertEqual(stream.written, [b"more"] * 3)

    def test_registeredAfterTheEnd(self) -> None:
        """
        A producer registered on a lost connection is stopped at once.
        """
        bridge, _, _, protocol = connected()
        bridge.connection_lost(None)
        producer = Producer()
        protocol.transport.registerProducer(producer, True)
        self.assertEqual(producer.calls, ["stop"])


class OptionTests(SynchronousTestCase):
    def test_tcpOptions(self) -> None:
        """
        TCP options are set on the loop's socket.
        """
        _, stream, _, protocol = connected()
        protocol.transport.setTcpNoDelay(True)
        protocol.transport.setTcpKeepAlive(True)
        self.assertTrue(protocol.transport.getTcpNoDelay())
        self.assertTrue(protocol.transport.getTcpKeepAlive())
        protocol.transport.setTcpNoDelay(False)
        self.assertFalse(protocol.transport.getTcpNoDelay())
        self.assertIs(protocol.transport.getHandle(), stream.extra["socket"])

    def test_unixSocket(self) -> None:
        """
        Over a unix socket the addresses are unix ones and TCP options are
        not set.
        """
        stream = FakeStream(peer="", host="/tmp/upnode.sock", family=socket.AF_UNIX)
        _, _, _, protocol = connected(stream=stream)
        self.assertEqual(protocol.transport.getHost(), UNIXAddress("/tmp/upnode.sock"))
        self.assertEqual(protocol.transport.getPeer(), UNIXAddress(None))
        protocol.transport.setTcpNoDelay(True)
        self.assertEqual(stream.extra["socket"].options, {})

    def test_addresses(self) -> None:
        self.assertEqual(addressOf(("::1", 7000, 0, 0)), IPv6Address("TCP", "::1", 7000, 0, 0))
        self.assertEqual(addressOf(b"/run/x.sock", "UNIX"), UNIXAddress("/run/x.sock"))


class DnodeOverTheBridgeTests(SynchronousTestCase):
    def test_requestAndReply(self) -> None:
        """
        Our server's protocol over the bridge: the handshake goes out, a
        call comes in, its answer goes out through the loop's transport,
        with no TCP delay on the socket.
        """
        factory = UpnodeServerFactory({"echo": lambda v, cb: cb(v)}, ping=0, clock=Clock())
        stream = FakeStream()
        bridge = StreamBridge(factory, FakeLoop())  # type: ignore[arg-type]
        bridge.connection_made(stream)
        [methods] = [orjson.loads(line) for line in b"".join(stream.written).splitlines()]
        self.assertEqual(methods["method"], "methods")
        del stream.written[:]
        feed(bridge, b'{"method":"methods","arguments":[{}],"callbacks":{},"links":[]}\n')
        feed(bridge, b'{"method":"echo","arguments":["hi",null],"callbacks":{"7":["1"]},"links":[]}\n')
        lines = [orjson.loads(line) for line in b"".join(stream.written).splitlines()]
        self.assertEqual(lines[0], {"method": 7, "arguments": ["hi"], "callbacks": {}, "links": []})
        self.assertEqual(stream.extra["socket"].options[socket.IPPROTO_TCP, socket.TCP_NODELAY], 1)
        bridge.connection_lost(None)
        self.assertFalse(factory.connections)


class EndpointChoiceTests(SynchronousTestCase):
    def test_withALoop(self) -> None:
        """
        With an asyncio loop, a port or a unix path is carried by the
        loop's own transports; an endpoint description still by Twisted's.
        """
        loop = FakeLoop()
        self.assertIsInstance(clientEndpoint(Clock(), Arguments(port=7000), loop), LoopClientEndpoint)
        self.assertIsInstance(clientEndpoint(Clock(), Arguments(path="/tmp/x.sock"), loop), LoopClientEndpoint)
        self.assertIsInstance(serverEndpoint(Clock(), Arguments(port=7000), loop), LoopServerEndpoint)
        self.assertIsInstance(serverEndpoint(Clock(), Arguments(path="/tmp/x.sock"), loop), LoopServerEndpoint)
        described = clientEndpoint(Clock(), Arguments(endpoint="tcp:host=127.0.0.1:port=7000"), loop)
        self.assertNotIsInstance(described, LoopClientEndpoint)
        self.assertNotIsInstance(clientEndpoint(Clock(), Arguments(port=7000)), LoopClientEndpoint)

    def test_connectErrorsAreTwisteds(self) -> None:
        """
        A refused connection fails with Twisted's error, which the client's
        reconnecting treats as the expected kind.
        """
        failure = _connectError(Failure(ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
        self.assertIsInstance(failure.value, error.ConnectionRefusedError)
        other = Failure(ValueError("no"))
        self.assertIs(_connectError(other), other)



class ClientEndpointTests(SynchronousTestCase):
    """
    L{LoopClientEndpoint} on a real asyncio loop whose C{create_connection}
    is a stand-in: no sockets.
    """

    def connectThen(self, afterConnectionMade: Callable[[Any], None]) -> List[str]:
        """
        Connect through a loop whose connection, once made, does
        C{afterConnectionMade(protocol)} before the loop's connect
        finishes; the order in which the Deferred and the protocol heard
        of things.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        events: List[str] = []

        async def createConnection(protocolFactory: Callable[[], Any], host: Any, port: Any) -> Any:
            bridge = protocolFactory()
            stream = FakeStream()
            bridge.connection_made(stream)
            afterConnectionMade(bridge)
            return stream, bridge

        loop.create_connection = createConnection  # type: ignore[method-assign]

        class Noting(Recorder):
            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                events.append("lost")

        d = LoopClientEndpoint(loop, "127.0.0.1", 7000).connect(Factory.forProtocol(Noting))
        d.addCallbacks(lambda p: events.append("connected"), lambda f: events.append(f"failed: {f.type.__name__}"))
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
        return events

    def test_connectedBeforeLost(self) -> None:
        """
        A connection the peer resets at once: the Deferred fires with the
        protocol before the protocol hears of the loss, as with Twisted's
        endpoints (the client's connector waits for the one before it
        listens for the other).
        """
        events = self.connectThen(lambda bridge: bridge.connection_lost(ConnectionResetError()))
        self.assertEqual(events, ["connected", "lost"])

    def test_refused(self) -> None:
        """
        A refused connection fails the Deferred with Twisted's error.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)

        async def refuse(protocolFactory: Callable[[], Any], host: Any, port: Any) -> Any:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

        loop.create_connection = refuse  # type: ignore[method-assign]
        d = LoopClientEndpoint(loop, "127.0.0.1", 7000).connect(Factory.forProtocol(Recorder))
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(asyncio.sleep(0))
        self.failureResultOf(d, error.ConnectionRefusedError)

    def test_cancelled(self) -> None:
        """
        Cancelling the Deferred cancels the loop's connect.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        waiting = loop.create_future()

        async def hang(protocolFactory: Callable[[], Any], host: Any, port: Any) -> Any:
            await waiting

        loop.create_connection = hang  # type: ignore[method-assign]
        d = LoopClientEndpoint(loop, "127.0.0.1", 7000).connect(Factory.forProtocol(Recorder))
        loop.run_until_complete(asyncio.sleep(0))
        d.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(waiting.cancelled())


class ListeningPortTests(SynchronousTestCase):
    def test_unixSocketFileRemoved(self) -> None:
        """
        A unix port that stops listening removes its socket file, as
        Twisted's do (asyncio's servers leave it before Python 3.13).
        """
        path = os.path.join(self.mktemp() + "d", "s")
        os.makedirs(os.path.dirname(path))
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(path)

        class Server:
            def close(self) -> None:
                pass

        factory = Factory.forProtocol(Recorder)
        factory.doStart()
        port = LoopListeningPort(Server(), factory, path)  # type: ignore[arg-type]

        async def stop() -> None:
            await port.stopListening().asFuture(asyncio.get_running_loop())

        asyncio.run(stop())
        self.assertFalse(os.path.exists(path))
