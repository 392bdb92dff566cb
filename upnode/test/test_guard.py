"""
The server-wide guard, deterministically: in-memory links, task.Clock.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from upnode import DnodeProtocol, UpnodeServerFactory, _guard, _protocol
from upnode._guard import BUSY_WINDOW, LARGE_LINE, MIN_READ, TURN_READ, ServerGuard, ServerLimits
from upnode._protocol import WRITE_SLICE
from upnode.testing import MemoryLink, connectInMemory


class Silent(DnodeProtocol):
    """
    A peer that connects and never sends its methods.
    """

    def _start(self) -> None:
        pass


class GuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.logged: List[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def server(self, **limits: Any) -> UpnodeServerFactory:
        return UpnodeServerFactory(
            {"echo": lambda v, cb: cb(v), "note": lambda v: None}, ping=0, serverLimits=ServerLimits(**limits), clock=self.clock
        )

    def link(self, factory: UpnodeServerFactory, silent: bool = False) -> MemoryLink:
        client = (Silent if silent else DnodeProtocol)(clock=self.clock)
        link = connectInMemory(factory, client, self.clock)
        link.flush()
        return link

    def drops(self) -> List[str]:
        return [e["reason"] for e in self.logged if e.get("log_format", "").startswith("Dropping")]

    def test_handshakeTimeout(self) -> None:
        """
        A peer that never sends methods is dropped after handshakeTimeout;
        one that does is kept.
        """
        factory = self.server(handshakeTimeout=5.0, lineTimeout=0)
        idle, good = self.link(factory, silent=True), self.link(factory)
        self.clock.advance(4.9)
        idle.flush()
        self.assertTrue(idle.server.connected)
        self.clock.advance(0.1)
        idle.flush()
        good.flush()
        self.assertFalse(idle.server.connected)
        self.assertTrue(good.server.connected)
        self.assertEqual(factory.status()["dropped"]["handshake timeout"], 1)
        self.assertEqual(factory.status()["connections"], 1)

    def test_handshakeTimeoutEachFromItsOwnConnect(self) -> None:
        """
        Each connection gets handshakeTimeout seconds from its own connect,
        whichever came and went before it, and one timer serves them all.
        """
        factory = self.server(handshakeTimeout=5.0, lineTimeout=0)
        first = self.link(factory, silent=True)
        self.clock.advance(2.0)
        second = self.link(factory, silent=True)
        self.clock.advance(1.0)
        third = self.link(factory, silent=True)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        first.cut()  # the oldest goes before its deadline
        self.clock.advance(2.0)  # t = 5: first's deadline, no one's now
        self.clock.advance(1.9)
        self.assertTrue(second.server.connected and third.server.connected)
        self.clock.advance(0.1)  # t = 7
        second.flush()
        self.assertFalse(second.server.connected)
        self.assertTrue(third.server.connected)
        self.clock.advance(0.9)
        self.assertTrue(third.server.connected)
        self.clock.advance(0.1)  # t = 8
        third.flush()
        self.assertFalse(third.server.connected)
        self.assertEqual(factory.status()["dropped"]["handshake timeout"], 2)
        self.assertEqual(factory.status()["handshaking"], 0)
        self.clock.advance(factory.guard.logPeriod)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noHandshakeTimerLeftOnceAllHandshaken(self) -> None:
        factory = self.server(handshakeTimeout=5.0, lineTimeout=0)
        links = [self.link(factory) for _ in range(3)]
        self.assertEqual(factory.status()["handshaking"], 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10.0)
        self.assertTrue(all(each.server.connected for each in links))

    def test_capEvictsOldestUnfinishedHandshake(self) -> None:
        """
        At the cap, a newcomer evicts the oldest connection that has not
        sent its methods; when every connection has, the newcomer is refused.
        """
        factory = self.server(maxConnections=3, lineTimeout=0)
        good = self.link(factory)
        first, second = self.link(factory, silent=True), self.link(factory, silent=True)
        newcomer = self.link(factory)
        for each in (good, first, second, newcomer):
            each.flush()
        self.assertFalse(first.server.connected)
        self.assertTrue(second.server.connected)
        self.assertTrue(newcomer.client.remoteReady)
        self.assertEqual(factory.status()["dropped"]["connection cap"], 1)
        # Now fill the cap with finished handshakes: the next one is refused.
        second.cut()
        third = self.link(factory)
        refused = self.link(factory)
        self.assertTrue(third.client.remoteReady)
        self.assertFalse(refused.server.connected)
        self.assertFalse(refused.client.remoteReady)
        self.assertEqual(factory.status()["connections"], 3)
        self.assertEqual(factory.status()["dropped"]["connection cap"], 2)

    def test_budgetShedsTheWorst(self) -> None:
        """
        Past the server's output budget, the connection holding the most
        unread output goes, and a reading one beside it keeps working.
        """
        factory = self.server(maxBufferedTotal=3 * WRITE_SLICE, lineTimeout=0)
        small, big, reader = self.link(factory), self.link(factory), self.link(factory)
        for conn, size in ((small.server, WRITE_SLICE), (big.server, 2 * WRITE_SLICE)):
            conn.pauseProducing()
            conn.request("x", ["s" * size])
        self.assertTrue(small.server.connected and big.server.connected)
        small.server.request("x", ["s" * WRITE_SLICE])  # over the budget now
        small.flush()
        big.flush()
        self.assertFalse(big.server.connected)
        self.assertTrue(small.server.connected)
        self.assertEqual(factory.status()["dropped"]["server output budget"], 1)
        got: List[Any] = []
        reader.client.remote.echo("fine", got.append)
        reader.flush()
        self.assertEqual(got, ["fine"])

    def test_unfinishedLineDropped(self) -> None:
        """
        A line that never ends (one byte now and then) is dropped after
        lineTimeout; a peer that keeps finishing lines is not.
        """
        factory = self.server(lineTimeout=8.0, handshakeTimeout=0)
        slow, busy = self.link(factory), self.link(factory)
        busy.server.dataReceived(b'{"meth')
        for _ in range(8):
            slow.server.dataReceived(b"[")
            busy.server.dataReceived(b'od":"note","arguments":[1]}\n{"meth')
            self.clock.advance(2.0)
        slow.flush()
        busy.flush()
        self.assertFalse(slow.server.connected)
        self.assertTrue(busy.server.connected)
        self.assertEqual(factory.status()["dropped"]["unfinished line"], 1)

    def test_lineTimeoutWaitsWhileWeDoNotRead(self) -> None:
        """
        While we have stopped reading a peer (it has our output to take),
        its unfinished line cannot go on: that time does not count against
        lineTimeout.  Once we read again, it does.
        """
        factory = self.server(lineTimeout=8.0, handshakeTimeout=0)
        link = self.link(factory)
        link.server.dataReceived(b'{"method":"note","argu')
        link.server._flow.readingPaused = True
        for _ in range(20):
            self.clock.advance(2.0)
        link.flush()
        self.assertTrue(link.server.connected)
        link.server._flow.readingPaused = False
        for _ in range(8):
            self.clock.advance(2.0)
        link.flush()
        self.assertFalse(link.server.connected)
        self.assertEqual(factory.status()["dropped"]["unfinished line"], 1)

    def test_dropsLoggedOncePerReasonAndPeriod(self) -> None:
        """
        Twenty drops for one reason: one line at once, one summary line at
        the end of the period; none per event.
        """
        factory = self.server(handshakeTimeout=1.0, lineTimeout=0)
        links = [self.link(factory, silent=True) for _ in range(20)]
        self.clock.advance(1.0)
        for each in links:
            each.flush()
        self.assertEqual(self.drops(), ["handshake timeout"])
        self.clock.advance(factory.guard.logPeriod)
        summaries = [e for e in self.logged if "more connections" in e.get("log_format", "")]
        self.assertEqual([(e["count"], e["reason"]) for e in summaries], [(19, "handshake timeout")])
        self.assertEqual(factory.status()["dropped"]["handshake timeout"], 20)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_badOptions(self) -> None:
        for options in [{"maxConnections": 0}, {"handshakeTimeout": -1}, {"lineTimeout": "5"}]:
            self.assertRaises(ValueError, ServerLimits.fromOptions, options)

    def test_localCallbacksBounded(self) -> None:
        """
        A server whose peer never culls (as Node's dnode clients) keeps at
        most maxLocalCallbacks of our callables for it, then closes.
        """
        from upnode import Limits

        factory = UpnodeServerFactory(
            {"give": lambda cb: cb(lambda: None)},
            ping=0,
            limits=Limits(maxLocalCallbacks=10),
            serverLimits=ServerLimits(lineTimeout=0),
            clock=self.clock,
        )
        link = self.link(factory)
        link.client.sendCulls = False  # a peer that never culls
        kept: List[Any] = []
        for _ in range(12):
            if not link.client.connected:
                break
            link.client.remote.give(kept.append)
            link.flush()
        self.assertFalse(link.server.connected)
        self.assertEqual(len(kept), 8)  # its own two methods, give and ping, are the other two
        self.assertEqual(factory.status()["dropped"]["hostile input"], 1)

    def test_stopLeavesNoTimer(self) -> None:
        """
        A server that stops with a drop summary and a memory release still
        to come says and does them at once, and leaves no timer behind.
        """
        factory = self.server(handshakeTimeout=1.0, lineTimeout=0)
        factory.doStart()
        links = [self.link(factory, silent=True) for _ in range(3)]
        self.clock.advance(1.0)
        for each in links:
            each.flush()
        factory.guard._large.add(links[0].server)  # as if it had held a megabyte
        factory.guard._releaseSoon()
        factory.doStop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        summaries = [e for e in self.logged if "more connections" in e.get("log_format", "")]
        self.assertEqual([e["count"] for e in summaries], [2])


class LargeConnectionTests(SynchronousTestCase):
    def test_longLineHandsMemoryBack(self) -> None:
        """
        A connection that had a line of LARGE_LINE bytes or more under way makes
        the server hand freed memory back to the system once it has gone
        (once, a second later, however many go); one that never did, not.
        """
        released: List[None] = []
        self.patch(_guard, "releaseFreedMemory", lambda: released.append(None))
        clock = Clock()
        factory = UpnodeServerFactory({"note": lambda v: None}, ping=0, clock=clock)
        small, big, big2 = (connectInMemory(factory, DnodeProtocol(clock=clock), clock) for _ in range(3))
        for link in (small, big, big2):
            link.flush()
        small.server.dataReceived(b'{"method":"note","arguments":["' + b"s" * 1000)
        small.server.connectionLost(None)
        clock.advance(2)
        self.assertEqual(released, [])
        for link in (big, big2):
            for _ in range(LARGE_LINE // WRITE_SLICE):
                link.server.dataReceived(b"b" * WRITE_SLICE)
            link.server.connectionLost(None)
        self.assertEqual(released, [])
        clock.advance(1)
        self.assertEqual(released, [None])


class ReadShareTests(SynchronousTestCase):
    """
    Connections that each read all they can at once share a turn's reads.
    """

    def test_splitBetweenTheBusy(self) -> None:
        clock = Clock()
        guard = ServerGuard(clock=clock)
        full = 16 * 1024
        conns = [object() for _ in range(200)]
        few = TURN_READ // full
        self.assertEqual([guard.readShare(c, full) for c in conns[:few]], [full] * few)
        self.assertEqual(guard.readShare(conns[few], full), TURN_READ // (few + 1))
        for c in conns[: 2 * few]:
            guard.readShare(c, full)
        self.assertEqual(guard.readShare(conns[0], full), TURN_READ // (2 * few))
        # The next window still counts the last one's, until it has as many.
        clock.advance(BUSY_WINDOW)
        self.assertEqual(guard.readShare(conns[0], full), TURN_READ // (2 * few))
        for c in conns:
            guard.readShare(c, full)
        self.assertEqual(guard.readShare(conns[0], full), MIN_READ)
        # Once the others have gone quiet, one busy connection reads it all.
        clock.advance(2 * BUSY_WINDOW)
        self.assertEqual(guard.readShare(conns[0], full), full)

    def test_protocolReadsItsShare(self) -> None:
        """
        A connection whose read took all it could asks the guard for its
        share and sets its transport's read size to it; with its
        transport's read size its own (no fast path), it does not ask.
        """
        sizes: List[int] = []
        self.patch(_protocol, "tune", lambda transport, size: True)
        self.patch(_protocol, "setReadSize", lambda transport, size: sizes.append(size) or True)
        clock = Clock()
        factory = UpnodeServerFactory({"note": lambda v: None}, ping=0, clock=clock)
        link = connectInMemory(factory, DnodeProtocol(clock=clock), clock)
        link.flush()
        server = link.server
        others = [object() for _ in range(30)]
        for other in others[:9]:
            factory.guard.readShare(other, server.readSize)
        note = b'{"method":"note","arguments":[1],"callbacks":{},"links":[]}\n'
        chunk = note * (server.readSize // len(note) + 1)
        smaller = note * (TURN_READ // 10 // len(note) + 1)
        server.dataReceived(chunk)
        self.assertEqual(sizes, [TURN_READ // 10])
        server.dataReceived(smaller)  # a full read at the new size
        self.assertEqual(sizes, [TURN_READ // 10])  # (the same share: nothing to set)
        clock.advance(3 * BUSY_WINDOW)
        server.dataReceived(smaller)
        self.assertEqual(sizes, [TURN_READ // 10, server.readSize])
        self.patch(_protocol, "setReadSize", lambda transport, size: False)
        clock.advance(1.0)  # (a new second for the rate limit)
        for other in others:
            factory.guard.readShare(other, server.readSize)
        server.dataReceived(chunk)
        self.assertTrue(server.connected)
        self.assertFalse(server.transport.disconnecting)
        self.assertEqual(server._framer.fullRead, _protocol.NO_SHARE)


class ServerSecondsTests(SynchronousTestCase):
    def test_oneRuleForSeconds(self) -> None:
        """
        The server's seconds options follow the one rule every seconds
        option does: an integer of 1000 or more is refused as Node's
        milliseconds, a float is taken as meant.
        """
        from upnode._guard import ServerLimits

        for name in ("handshakeTimeout", "lineTimeout"):
            error = self.assertRaises(ValueError, ServerLimits.fromOptions, {name: 10000})
            self.assertIn("milliseconds", str(error))
            self.assertEqual(getattr(ServerLimits.fromOptions({name: 10000.0}), name), 10000.0)
            self.assertRaises(ValueError, ServerLimits.fromOptions, {name: -1})
