"""
The hostile corpus sent to a live server over real sockets while a canary
client keeps calling it: each input gets its outcome, nothing private is
touched, and the canary never notices.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

import upnode

from ..test_protocol import HOSTILE, Target
from .helpers import until


class RawPeer(Protocol):
    """
    A raw TCP peer: what it receives, line by line.
    """

    def __init__(self) -> None:
        self.lines: DeferredQueue[bytes] = DeferredQueue()
        self.closed: Deferred[None] = Deferred()
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.lines.put(line)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    async def reply(self, callbackId: int) -> Any:
        while True:
            message = json.loads(await self.lines.get())
            if message.get("method") == callbackId:
                return message["arguments"]


class HostileTests(TestCase):
    timeout = 120

    async def test_corpusWithCanary(self) -> None:
        targets: List[Target] = []

        def cons(remote: Any, conn: Any) -> Target:
            targets.append(Target())
            return targets[-1]

        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port

        canary = upnode.connect(port, "127.0.0.1", {"ping": 0.2, "timeout": 1.0})
        self.addCleanup(canary.close)
        await canary()
        canaryCalls: List[Any] = []
        canaryErrors: List[Any] = []
        canary.on("error", canaryErrors.append)
        canary.on("down", lambda: canaryErrors.append("down"))
        counter = iter(range(10**9))

        def beat() -> None:
            n = next(counter)
            canary.call("echo", n, timeout=5).addCallbacks(canaryCalls.append, canaryErrors.append)

        loop = LoopingCall(beat)
        loop.start(0.01)
        self.addCleanup(lambda: loop.running and loop.stop())

        self.assertGreaterEqual(len(HOSTILE), 40)
        for name, data, outcome in HOSTILE:
            peer = RawPeer()
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
            await peer.lines.get()  # the server's methods
            target = targets[-1]
            peer.transport.write(data)  # type: ignore[union-attr]
            if outcome == "close":
                await peer.closed
            else:
                after = {"method": "echo", "arguments": ["after", "[Function]"], "callbacks": {"9": ["1"]}}
                peer.transport.write(json.dumps(after).encode() + b"\n")  # type: ignore[union-attr]
                self.assertEqual(await peer.reply(9), ["after"], name)
                peer.transport.loseConnection()  # type: ignore[union-attr]
                await peer.closed
            calls = [c for c in target.calls if c != ("echo", "after")]
            self.assertNotIn("_private", [c[0] for c in calls], name)
            if outcome != "ok":
                self.assertEqual(calls, [], name)
            # The canary is served right after every input.
            self.assertEqual(await canary.call("echo", name, timeout=5), name)
        loop.stop()
        await canary.call("echo", "last", timeout=5)
        self.assertEqual(canaryErrors, [])
        self.assertEqual(canaryCalls, sorted(canaryCalls))
        self.assertGreater(len(canaryCalls), 0)
        self.flushLoggedErrors()


class NeverReads(RawPeer):
    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        request = {"method": "flood", "arguments": ["[Function]"], "callbacks": {"0": ["0"]}}
        self.transport.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]


class BackPressureTests(TestCase):
    timeout = 60

    async def serveFloods(self, options: Dict[str, Any], stallTimeout: Optional[float] = None) -> int:
        """
        Serve C{flood(cb)}, which answers with 30 MB, and C{echo}; record
        each connection and its C{fail} events.  Return the port.
        """
        self.conns: List[Any] = []
        self.fails: List[Any] = []

        def cons(remote: Any, conn: Any) -> Any:
            if stallTimeout is not None:
                conn.stallTimeout = stallTimeout
            self.conns.append(conn)
            conn.on("fail", self.fails.append)

            def flood(cb: Any) -> None:
                for _ in range(300):
                    cb("x" * 100_000)

            return {"flood": flood, "echo": lambda v, cb: cb(v)}

        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        return (await server.listen(0, "127.0.0.1", dict(options, ping=0))).getHost().port

    async def test_peerThatNeverReads(self) -> None:
        """
        A peer that asks for a lot and never reads: the server keeps
        reading it, drops it after its stall timeout, and keeps serving
        others.
        """
        port = await self.serveFloods({}, stallTimeout=0.5)
        peer = NeverReads()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
        canary = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(canary.close)
        self.assertEqual(await canary.call("echo", "still here", timeout=5), "still here")
        # (The peer, not reading, would not even notice the close.)
        await until(lambda: not self.conns[0].connected, timeout=10)
        self.assertIn("took none of our output", str(self.fails[0]))
        peer.transport.abortConnection()  # type: ignore[union-attr]
        await peer.closed
        self.assertEqual(await canary.call("echo", "after", timeout=5), "after")

    async def test_unreadBytesBounded(self) -> None:
        """
        The same peer against a server whose stall timeout is far away: it
        is dropped as soon as it leaves more than maxBuffered bytes unread.
        """
        port = await self.serveFloods({"maxBuffered": 4 * 1024 * 1024}, stallTimeout=60)
        peer = NeverReads()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
        await until(lambda: bool(self.conns) and not self.conns[0].connected, timeout=10)
        self.assertIn("bytes unread", str(self.fails[0]))
        peer.transport.abortConnection()  # type: ignore[union-attr]
        await peer.closed
        canary = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(canary.close)
        self.assertEqual(await canary.call("echo", "after", timeout=5), "after")


class FloodTests(TestCase):
    timeout = 60

    async def test_pingFlood(self) -> None:
        """
        A peer that floods pings past maxRate is closed; the canary never
        notices.
        """
        server = upnode.upnode({"echo": lambda v, cb: cb(v)})
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0, "maxRate": 2000})).getHost().port
        canary = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(canary.close)
        await canary()
        flooder = RawPeer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), flooder)
        ping = json.dumps({"method": "ping", "arguments": ["[Function]"], "callbacks": {"0": ["0"]}}).encode() + b"\n"
        flooder.transport.write(ping * 20_000)  # type: ignore[union-attr]
        await flooder.closed
        self.assertEqual(await canary.call("echo", "fine", timeout=5), "fine")
        self.flushLoggedErrors()
