"""
The socket settings both ends make, on real connections: reads of
C{readSize} bytes, and no Nagle delay on TCP (a UNIX socket has none to
turn off, and must not fail for it); and what the kernel says the peer has
taken, which drops a peer that reads nothing long before the kernel's own
buffers for it are full.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from typing import Any, Dict, List, Set, Tuple

from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import SkipTest, TestCase

import upnode
from upnode import _tuning
from upnode._aiostream import StreamTransport
from upnode._guard import START_READ
from upnode._progress import ackedBytesProbe

from .helpers import freePort

LINUX = sys.platform.startswith("linux")


def _socketTransport(conn: Any) -> Any:
    transport = conn.transport
    while not hasattr(transport, "socket"):
        transport = transport.transport
    return transport


def readSizeOf(conn: Any) -> int:
    """
    What a connection's transport reads at once: Twisted's socket
    transport's C{bufferSize}, or the C{readSize} of the loop's transport
    (which carries links named by a port on Twisted's asyncio reactor).
    """
    if isinstance(conn.transport, StreamTransport):
        return conn.transport.readSize
    return _socketTransport(conn).bufferSize


def firstReadSize(conn: Any) -> int:
    """
    What a connection reads at once before it is ever busy: a server's
    start small (see L{upnode._guard.START_READ}).
    """
    return conn.readSize if conn.guard is None else min(conn.readSize, START_READ)


class SocketSettings(TestCase):
    timeout = 30

    async def tcpPair(self, twisteds: bool = False) -> Any:
        """
        An echo server and a client linked to it over loopback TCP; with
        C{twisteds}, named by endpoint descriptions, so that they ride
        Twisted's transports on any reactor.
        """
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        if twisteds:
            port = (await server.listen("tcp:0:interface=127.0.0.1", {"ping": 0})).getHost().port
            up = upnode.connect(f"tcp:host=127.0.0.1:port={port}", {"ping": 0})
        else:
            port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
            up = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(up.close)
        await up()
        return server, up

    async def test_tcpBothEnds(self) -> None:
        server, up = await self.tcpPair()
        self.assertEqual(await up.call("echo", "hi", timeout=10), "hi")
        for conn in [up.conn, *server.connections]:
            self.assertEqual(readSizeOf(conn), firstReadSize(conn))
            self.assertEqual(conn.transport.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
            if LINUX:
                probe = ackedBytesProbe(conn.transport)
                self.assertIsNotNone(probe)
                self.assertGreater(probe(), 0)  # type: ignore[misc]
        self.assertEqual(len(server.connections), 1)

    async def test_unixSocket(self) -> None:
        directory = tempfile.mkdtemp(dir="/tmp")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s")
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        await server.listen(path, {"ping": 0})
        up = upnode.connect(path, {"ping": 0})
        self.addCleanup(up.close)
        await up()
        self.assertEqual(await up.call("echo", "hi", timeout=10), "hi")
        for conn in [up.conn, *server.connections]:
            self.assertEqual(readSizeOf(conn), firstReadSize(conn))
            # No TCP stack to ask: the transport's pause and resume tell.
            self.assertIsNone(ackedBytesProbe(conn.transport))

    async def test_readSizeFallback(self) -> None:
        """
        Where the read-size fast path's feature check fails, the transports
        keep Twisted's own read size, and many calls in flight, with the
        transport pausing us, still all arrive.
        """

        class NotAFileDescriptor:
            pass

        self.patch(_tuning, "FileDescriptor", NotAFileDescriptor)
        server, up = await self.tcpPair(twisteds=True)
        from twisted.internet.defer import gatherResults

        payload = "x" * 1000
        answers = await gatherResults([up.call("echo", payload, timeout=30) for _ in range(2000)])
        self.assertEqual(answers, [payload] * 2000)
        for conn in [up.conn, *server.connections]:
            transport = _socketTransport(conn)
            self.assertEqual(transport.bufferSize, 2**16)
            self.assertEqual(transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)


class KernelProgress(TestCase):
    timeout = 60

    async def test_nonReaderDroppedOnTime(self) -> None:
        """
        A raw peer floods calls and reads nothing: the server stops reading
        it once about READ_PAUSE bytes wait for it, and drops it within
        stallTimeout (and a second or two) of its last taking anything,
        while a client next to it is served throughout.
        """
        from twisted.internet import reactor
        from twisted.internet.threads import deferToThread

        if not LINUX:
            raise SkipTest("the kernel says what a peer has taken on Linux only")
        fails: List[Exception] = []

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            conn.on("fail", fails.append)
            return {"echo": lambda value, cb: cb(value)}

        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        up = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(up.close)
        await up()
        stall = up.conn.stallTimeout

        def flood() -> Tuple[float, int]:
            line = b'{"method":"echo","arguments":["' + b"f" * 100 + b'",1],"callbacks":{"1":["1"]},"links":[]}\n'
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b'{"method":"methods","arguments":[{}],"callbacks":{},"links":[]}\n')
                s.settimeout(0.5)
                start, sent = time.monotonic(), 0
                while time.monotonic() - start < stall + 20:
                    try:
                        sent += s.send(line * 100)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                return time.monotonic() - start, sent

        flooding = deferToThread(flood)
        served = 0
        while not flooding.called:
            self.assertEqual(await up.call("echo", served, timeout=5), served)
            served += 1
            await deferLater(reactor, 0.05)
        took, sent = await flooding
        self.assertLess(took, stall + 3, f"dropped after {took:.1f} s ({sent} bytes of calls sent)")
        self.assertGreater(served, 10)
        self.assertEqual(len(fails), 1, fails)
        self.assertIn(f"took none of our output for {stall:g} seconds", str(fails[0]))


class BusyReads(TestCase):
    timeout = 60

    async def test_busyConnectionsShareATurn(self) -> None:
        """
        Twelve peers each send calls faster than we serve them: their
        connections read their share of a turn at a time while all are
        busy (so that a turn of the reactor stays short), every call is
        answered, and a peer busy on its own afterwards reads all of
        readSize again.
        """
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        call = b'{"method":"echo","arguments":["' + b"e" * 100 + b'",1],"callbacks":{"1":["1"]},"links":[]}\n'
        batch = 3000

        class Caller(Protocol):
            def connectionMade(self) -> None:
                self.lines = 0
                self.wanted = 1 + batch  # methods, then the answers
                self.done: Deferred[None] = Deferred()
                self.transport.write(b'{"method":"methods","arguments":[{}],"callbacks":{},"links":[]}\n' + call * batch)

            def more(self) -> Deferred[None]:
                self.wanted += batch
                self.done = Deferred()
                self.transport.write(call * batch)
                return self.done

            def dataReceived(self, data: bytes) -> None:
                self.lines += data.count(b"\n")
                if self.lines >= self.wanted and not self.done.called:
                    self.done.callback(None)

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        callers = [await connectProtocol(endpoint, Caller()) for _ in range(12)]
        for caller in callers:
            self.addCleanup(caller.transport.loseConnection)
        seen: Set[int] = set()

        def look() -> None:
            seen.update(readSizeOf(conn) for conn in server.connections)

        watch = LoopingCall(look)
        watch.start(0.005)
        self.addCleanup(lambda: watch.running and watch.stop())
        for caller in callers:
            await caller.done
        watch.stop()
        readSize = server.connections[0].readSize
        # Each read its share, more than a new connection's and less than all.
        self.assertTrue(any(START_READ < size < readSize for size in seen), seen)
        await deferLater(reactor, 0.5)
        await callers[0].more()
        [alone] = [c for c in server.connections if c.transport.getPeer().port == callers[0].transport.getHost().port]
        self.assertEqual(readSizeOf(alone), readSize)


class BothWaysAtOnce(TestCase):
    timeout = 120

    async def test_queuedFlushBothWays(self) -> None:
        """
        A client that queued 20,000 calls of 1 KB while the server was not
        there flushes them at once on connecting, and the server answers
        each with 1 KB: tens of megabytes going both ways at once, more
        than either side leaves unread before it stops reading the other
        (READ_PAUSE).  Only the side answering a peer's calls stops
        reading; if both did, each would wait on the other for ever.
        """
        from twisted.internet.defer import gatherResults

        port = await freePort()
        up = upnode.connect(port, "127.0.0.1", {"ping": 0, "reconnect": 0.05, "jitter": 0})
        self.addCleanup(up.close)
        payload = "q" * 1000
        calls = [up.call("echo", payload) for _ in range(20_000)]
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        await server.listen(port, "127.0.0.1", {"ping": 0})
        answers = await gatherResults(calls)
        self.assertEqual(answers, [payload] * len(calls))


class QueueFlush(TestCase):
    timeout = 30

    async def flushOnConnecting(self, calls: int, twisteds: bool = True) -> List[Tuple[int, bool]]:
        """
        Queue C{calls} calls of about 250 bytes each before the server
        listens, and return, as the link comes up (once the flush that
        starts it is over), how many were still queued and whether a call
        made then took the direct path; once all are answered.
        """
        from twisted.internet.defer import gatherResults

        port = await freePort()
        options = {"ping": 0, "reconnect": 0.05, "jitter": 0}
        if twisteds:
            up = upnode.connect(f"tcp:host=127.0.0.1:port={port}", options)
        else:
            up = upnode.connect(port, "127.0.0.1", options)
        self.addCleanup(up.close)
        payload = "q" * 200
        results = [up.call("echo", payload) for _ in range(calls)]
        seen: List[Tuple[int, bool]] = []

        def linkUp(remote: Any) -> None:
            direct: List[bool] = []
            queued = up.queued
            up(lambda remote, conn: direct.append(True))
            seen.append((queued, bool(direct)))

        up.on("up", linkUp)
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        await server.listen(port, "127.0.0.1", {"ping": 0})
        answers = await gatherResults(results)
        self.assertEqual(answers, [payload] * calls)
        return seen

    async def test_inOneGo(self) -> None:
        """
        400 calls, about 100 KB: more than a Twisted transport holds
        before it pauses us (the 16 KiB read size we give it), less than
        a flush may push past such pauses (FLUSH_PUSH) and than the kernel
        takes on loopback.  By the time the link is up the whole queue
        has been written (rather than 16 KiB a reactor turn, and the queue
        then staying behind for as long as calls keep coming), and a call
        made then takes the direct path, not the queue.
        """
        self.assertEqual(await self.flushOnConnecting(400), [(0, True)])

    async def test_inOneGoOnTheLoopsTransports(self) -> None:
        """
        The same over the transports a link named by a port rides (the
        loop's, on the asyncio reactor).
        """
        self.assertEqual(await self.flushOnConnecting(400, twisteds=False), [(0, True)])

    async def test_longBacklogAPauseAtATime(self) -> None:
        """
        2,000 calls, about 500 KB: the flush pushes past the transport's
        pauses for FLUSH_PUSH bytes (far more than one pause's 16 KiB went
        at once), then goes a pause at a time, as writing all of it at
        once would outrun the answers; the rest still wait in the queue as
        the link comes up, and every call is answered.
        """
        ((queued, direct),) = await self.flushOnConnecting(2000)
        self.assertGreater(queued, 0)
        self.assertLess(queued, 1800)
        self.assertFalse(direct)
