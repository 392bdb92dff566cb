"""
The socket settings, and the read-size fast path's feature check: each
setting applies where the transport has it and is skipped, correctly,
where it does not.
"""

from __future__ import annotations

import socket
from typing import Any, List

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer, implementer_only

from upnode import _tuning
from upnode._protocol import DnodeProtocol


@implementer(ITCPTransport)
class FakeTCP(FileDescriptor):
    def __init__(self, fail: bool = False) -> None:
        FileDescriptor.__init__(self, reactor=object())
        self.noDelay: List[bool] = []
        self.fail = fail

    def setTcpNoDelay(self, enabled: bool) -> None:
        if self.fail:
            raise OSError("gone")
        self.noDelay.append(enabled)


class Wrapper:
    """
    A protocol wrapper (as TLS is) over another transport.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport


class TuningTests(SynchronousTestCase):
    def test_readSizeOnASocketTransport(self) -> None:
        tcp = FakeTCP()
        self.assertTrue(_tuning.setReadSize(Wrapper(tcp), 4096))
        self.assertEqual(tcp.bufferSize, 4096)

    def test_readSizeFallback(self) -> None:
        """
        Where the attribute is not an int, or the transport is no file
        descriptor, nothing is touched and the transport reads as it does.
        """
        tcp = FakeTCP()
        tcp.bufferSize = None  # type: ignore[assignment]
        self.assertFalse(_tuning.setReadSize(tcp, 4096))
        self.assertIsNone(tcp.bufferSize)
        self.assertFalse(_tuning.setReadSize(StringTransport(), 4096))
        self.assertFalse(_tuning.setReadSize(None, 4096))

    def test_noDelayThroughAWrapper(self) -> None:
        tcp = FakeTCP()
        self.assertTrue(_tuning.setNoDelay(Wrapper(tcp)))
        self.assertEqual(tcp.noDelay, [True])

    def test_noDelayWhereThereIsNoTCP(self) -> None:
        self.assertFalse(_tuning.setNoDelay(StringTransport()))
        self.assertFalse(_tuning.setNoDelay(FakeTCP(fail=True)))

    def test_protocolOnATransportWithNeither(self) -> None:
        """
        A protocol on a transport with neither setting starts and talks.
        """
        proto = DnodeProtocol({"x": 1}, clock=Clock())
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIn(b'"method":"methods"', transport.value())


class SocketLike(FileDescriptor):
    """
    A descriptor whose socket takes everything: what C{doWrite} sends is
    in C{sent}, what waits for the reactor is in the transport's buffer.
    """

    def __init__(self) -> None:
        FileDescriptor.__init__(self, reactor=object())
        self.connected = 1
        self.sent: List[bytes] = []
        self.doWrites = 0
        #: Whether the socket takes anything (False: the kernel's buffer is full).
        self.takes = True

    def startWriting(self) -> None:
        pass  # (the reactor's registration: the test is the reactor)

    def stopWriting(self) -> None:
        pass

    def writeSomeData(self, data: bytes) -> int:
        if not self.takes:
            return 0
        self.sent.append(bytes(data))
        return len(data)

    def doWrite(self) -> Any:
        self.doWrites += 1
        return FileDescriptor.doWrite(self)


def echoProtocol() -> DnodeProtocol:
    """
    A protocol serving C{echo}, on a clock of its own: its timers (a
    stall's, the proxies' culls) stay off the reactor.
    """
    return DnodeProtocol({"echo": lambda value, cb: cb(value)}, clock=Clock())


@implementer_only(IPushProducer)
class NotAWriteDescriptor(FileDescriptor):
    pass


class SendNowTests(SynchronousTestCase):
    def test_sendsTheTransportsOwnBuffer(self) -> None:
        """
        The fast path sends what the transport's write() buffered, through
        a wrapper (as TLS is) too, and only that.
        """
        socket = SocketLike()
        sendNow = _tuning.sendNowFor(Wrapper(socket))
        assert sendNow is not None
        socket.write(b"one\n")
        socket.write(b"two\n")
        self.assertEqual(socket.sent, [])
        sendNow()
        self.assertEqual(b"".join(socket.sent), b"one\ntwo\n")

    def test_notWhileDisconnecting(self) -> None:
        """
        A transport asked to close finishes that on the reactor's turn: the
        fast path leaves it alone.
        """
        socket = SocketLike()
        sendNow = _tuning.sendNowFor(socket)
        assert sendNow is not None
        socket.write(b"one\n")
        socket.disconnecting = True
        sendNow()
        self.assertEqual((socket.sent, socket.doWrites), ([], 0))

    def test_notOnceAborted(self) -> None:
        """
        Nothing leaves a TCP transport once it is aborted, not even what
        was written to it afterwards (a reply made in the same received
        chunk), as without the fast path.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        theirs.setblocking(False)
        transport = tcp.Connection(ours, Protocol(), MemoryReactorClock())
        transport.connected = True
        sendNow = _tuning.sendNowFor(transport)
        assert sendNow is not None
        transport.write(b"before\n")
        transport.abortConnection()
        transport.write(b"after\n")
        sendNow()
        self.assertRaises(BlockingIOError, theirs.recv, 100)

    def test_fallback(self) -> None:
        """
        Where the transport is no write descriptor, there is no fast path:
        it sends on the reactor's turn, as it always does.
        """
        self.assertIsNone(_tuning.sendNowFor(StringTransport()))
        self.assertIsNone(_tuning.sendNowFor(None))
        self.assertIsNone(_tuning.sendNowFor(NotAWriteDescriptor(reactor=object())))

    def test_chunkAnswersLeaveAtOnce(self) -> None:
        """
        A server's answers to a received chunk leave in one write, sent at
        once, not on the reactor's next turn; a write outside a chunk waits
        for the reactor, as before.
        """
        socket = SocketLike()
        proto = echoProtocol()
        proto.makeConnection(socket)
        socket.sent.clear()
        socket.doWrites = 0
        proto.request("echo", [0])  # outside a chunk: waits for the reactor
        self.assertEqual(socket.doWrites, 0)
        proto.dataReceived(
            b"".join(
                b'{"method":"echo","arguments":[%d,"[Function]"],"callbacks":{"%d":["1"]},"links":[]}\n' % (i, i)
                for i in range(3)
            )
        )
        self.assertEqual(socket.doWrites, 1)
        self.assertEqual(len(socket.sent), 1)
        sent = socket.sent[0]
        self.assertTrue(sent.startswith(b'{"method":"echo","arguments":[0]'), sent)
        for i in range(3):
            self.assertIn(b'{"method":%d,"arguments":[%d]' % (i, i), sent)

    def test_methodsLeaveAtOnce(self) -> None:
        """
        The methods message, which the peer waits for, is sent as the
        connection is made (or once its TLS handshake is done), not on the
        reactor's next turn.
        """
        socket = SocketLike()
        proto = echoProtocol()
        proto.makeConnection(socket)
        self.assertEqual(socket.doWrites, 1)
        self.assertEqual(len(socket.sent), 1)
        self.assertTrue(socket.sent[0].startswith(b'{"method":"methods"'), socket.sent[0])
        self.assertEqual(socket.dataBuffer, b"")

    def test_methodsNotSentOnceDropped(self) -> None:
        """
        A C{local} handler that drops the connection: the fast path does
        not send what is left (the transport's abort drops it).
        """
        socket = SocketLike()
        socket.abortConnection = lambda: None  # type: ignore[method-assign]
        proto = echoProtocol()
        proto.on("local", lambda local, conn: conn.abort())
        proto.makeConnection(socket)
        self.assertEqual((socket.sent, socket.doWrites), ([], 0))

    def test_notWhilePaused(self) -> None:
        """
        While the transport has us paused, answers are held, and the fast
        path does not run (the transport's own turn resumes us).
        """
        socket = SocketLike()
        proto = echoProtocol()
        proto.makeConnection(socket)
        socket.doWrites = 0  # (the methods message's)
        socket.producer.pauseProducing()  # the flow, registered as the transport's producer
        proto.dataReceived(b'{"method":"echo","arguments":[1,"[Function]"],"callbacks":{"5":["1"]},"links":[]}\n')
        self.assertEqual(socket.doWrites, 0)

    def pausedByItsOwnBuffer(self) -> Any:
        """
        A connection on a socket transport whose buffer has just passed
        its threshold (the read size we set): the transport has paused us,
        and we hold nothing.
        """
        socket = SocketLike()
        proto = echoProtocol()
        proto.makeConnection(socket)
        self.assertEqual(socket.bufferSize, proto.readSize)
        drains: List[None] = []
        proto.on("drain", lambda: drains.append(None))
        socket.sent.clear()
        proto.request("echo", ["q" * proto.readSize])
        self.assertTrue(proto.paused)
        return socket, proto, drains

    def test_pausedByItsOwnBuffer(self) -> None:
        """
        A writer that can wait asks whether to write on: what paused us
        is sent at once, the transport resumes us, C{drain} is emitted,
        and it writes on.
        """
        socket, proto, drains = self.pausedByItsOwnBuffer()
        self.assertTrue(proto.takesMore())
        self.assertFalse(proto.paused)
        self.assertEqual(drains, [None])
        self.assertIn(b"q" * proto.readSize, b"".join(socket.sent))

    def test_pausedByAFullKernel(self) -> None:
        """
        Where the kernel takes nothing (the peer is behind), we stay
        paused and the writer waits for C{drain}; nothing is lost, and it
        all leaves on the reactor's turn once the kernel takes it.
        """
        socket, proto, drains = self.pausedByItsOwnBuffer()
        socket.takes = False
        self.assertFalse(proto.takesMore())
        self.assertTrue(proto.paused)
        self.assertEqual((drains, socket.sent), ([], []))
        socket.takes = True
        socket.doWrite()  # the reactor's turn
        self.assertEqual(drains, [None])
        self.assertIn(b"q" * proto.readSize, b"".join(socket.sent))
