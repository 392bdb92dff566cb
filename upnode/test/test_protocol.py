"""
The dnode protocol over StringTransport and in-memory pairs.
"""

from __future__ import annotations

import gc
import json
from typing import Any, List, Optional, Tuple

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from upnode import DeadRemoteError, DnodeProtocol, Limits, ProtocolError, RejectedMessage, _protocol
from upnode._guard import ServerGuard
from upnode._protocol import (
    CULL_BATCH,
    CULL_DELAY,
    CULL_IDLE,
    READ_PAUSE,
    SAMPLE_EVERY,
    STALL_CHECK_EVERY,
    WATCH_EVERY,
    WRITE_SLICE,
)
from upnode._tables import entryFor
from upnode.dnode import DnodeFactory
from upnode.testing import connectInMemory


class Target:
    """
    An exposed object that records what reached it.
    """

    def __init__(self) -> None:
        self._calls: List[Tuple[str, Any]] = []
        self.answer = 42

    @property
    def calls(self) -> List[Tuple[str, Any]]:
        # A property is never exposed (nor run) by the protocol.
        return self._calls
        self._secret = "never"

    def echo(self, value: Any, cb: Any) -> None:
        self.calls.append(("echo", value))
        cb(value)

    def record(self, *args: Any) -> None:
        self.calls.append(("record", args))

    def boom(self) -> None:
        raise ZeroDivisionError("boom")

    def _private(self) -> None:
        self.calls.append(("_private", None))


def line(message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


class Harness:
    """
    A protocol on a StringTransport, with its events recorded.
    """

    def __init__(
        self,
        limits: Optional[Limits] = None,
        server: bool = False,
        transport: Optional[StringTransport] = None,
        client: bool = False,
    ) -> None:
        self.target = Target()
        self.clock = Clock()
        self.proto = DnodeProtocol(self.target, limits, self.clock)
        self.proto.isClient = client
        if server:
            self.proto.guard = ServerGuard(clock=self.clock)
        self.transport = transport if transport is not None else StringTransport()
        self.fails: List[Exception] = []
        self.errors: List[Any] = []
        self.proto.on("fail", self.fails.append)
        self.proto.on("error", self.errors.append)
        self.proto.makeConnection(self.transport)

    def sent(self) -> List[Any]:
        messages = [json.loads(x) for x in self.transport.value().splitlines()]
        self.transport.clear()
        return messages


class SessionTests(SynchronousTestCase):
    def test_methodsOnConnect(self) -> None:
        """
        The first line is the methods message, shaped as Node's, with only
        public methods and public data.
        """
        h = Harness()
        [methods] = h.sent()
        self.assertEqual(methods["method"], "methods")
        self.assertEqual(
            methods["arguments"],
            [{"answer": 42, "boom": "[Function]", "echo": "[Function]", "record": "[Function]"}],
        )
        self.assertEqual(
            sorted(methods["callbacks"].values()),
            [["0", "boom"], ["0", "echo"], ["0", "record"]],
        )
        self.assertEqual(methods["links"], [])

    def test_remoteProxy(self) -> None:
        """
        The peer's methods become a Remote: attribute, item, in, dir; data
        stays data; calls go by callback id as Node's do.
        """
        h = Harness()
        h.sent()
        remotes: List[Any] = []
        h.proto.on("remote", lambda remote, conn: remotes.append((remote, conn)))
        h.proto.dataReceived(
            line(
                {
                    "method": "methods",
                    "arguments": [{"time": "[Function]", "boop": 6, "nested": {"f": "[Function]"}}],
                    "callbacks": {"3": ["0", "time"], "4": ["0", "nested", "f"]},
                }
            )
        )
        [(remote, conn)] = remotes
        self.assertIs(conn, h.proto)
        self.assertEqual(remote.boop, 6)
        self.assertIn("time", remote)
        self.assertIs(remote["time"], remote.time)
        self.assertEqual(dir(remote), ["boop", "nested", "time"])
        got: List[Any] = []
        remote.time(got.append, [1, "x"])
        [call] = h.sent()
        self.assertEqual(call["method"], 3)
        self.assertEqual(call["arguments"], ["[Function]", [1, "x"]])
        cbId = int(next(iter(call["callbacks"])))
        h.proto.dataReceived(line({"method": cbId, "arguments": ["now"]}))
        h.proto.dataReceived(line({"method": cbId, "arguments": ["again"]}))
        self.assertEqual(got, ["now", "again"])

    def test_laterMethodsReplace(self) -> None:
        h = Harness()
        h.proto.dataReceived(line({"method": "methods", "arguments": [{"a": 1}]}))
        remote = h.proto.remote
        h.proto.dataReceived(line({"method": "methods", "arguments": [{"b": 2}]}))
        self.assertIs(h.proto.remote, remote)
        self.assertEqual(dir(remote), ["b"])

    def test_callByNameAndId(self) -> None:
        h = Harness()
        [methods] = h.sent()
        echoId = next(int(k) for k, v in methods["callbacks"].items() if v == ["0", "echo"])
        h.proto.dataReceived(
            line({"method": "echo", "arguments": [1, "[Function]"], "callbacks": {"7": ["1"]}})
            + line({"method": echoId, "arguments": [2, "[Function]"], "callbacks": {"7": ["1"]}})
        )
        self.assertEqual(h.target.calls, [("echo", 1), ("echo", 2)])
        replies = [m for m in h.sent() if m["method"] == 7]
        self.assertEqual([m["arguments"] for m in replies], [[1], [2]])

    def test_localErrorIsAnEvent(self) -> None:
        """
        A method that raises emits error and the connection stays open.
        """
        h = Harness()
        h.proto.dataReceived(line({"method": "boom"}) + line({"method": "record", "arguments": [1]}))
        self.assertEqual(len(h.errors), 1)
        self.assertTrue(h.errors[0].check(ZeroDivisionError))
        self.assertEqual(h.target.calls, [("record", (1,))])
        self.assertFalse(h.transport.disconnecting)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_noJsonFormRaisesAtCallSite(self) -> None:
        """
        A value with no JSON form raises TypeError and nothing is sent; the
        ids handed out for the failed call are taken back.
        """
        h = Harness()
        h.sent()
        before = h.proto.callbackCount()
        self.assertRaises(TypeError, h.proto.request, 0, [lambda: None, b"bytes"])
        self.assertEqual(h.transport.value(), b"")
        self.assertEqual(h.proto.callbackCount(), before)

    def test_deadRemote(self) -> None:
        """
        Calling a remote method after the link is gone raises.
        """
        h = Harness()
        h.proto.dataReceived(
            line({"method": "methods", "arguments": [{"f": "[Function]"}], "callbacks": {"0": ["0", "f"]}})
        )
        h.proto.connectionLost(None)
        self.assertRaises(DeadRemoteError, h.proto.remote.f)

    def test_cullReceived(self) -> None:
        """
        A cull from the peer forgets our callbacks; calling one then fails.
        """
        h = Harness()
        h.sent()
        h.proto.request("x", [lambda: None])
        [call] = h.sent()
        cbId = int(next(iter(call["callbacks"])))
        self.assertEqual(h.proto.callbackCount()["local"], 4)
        h.proto.dataReceived(line({"method": "cull", "arguments": [cbId]}))
        self.assertEqual(h.proto.callbackCount()["local"], 3)
        h.proto.dataReceived(line({"method": cbId}))
        self.assertIsInstance(h.fails[-1], RejectedMessage)

    def test_unhashableCallback(self) -> None:
        """
        A callable that can't be hashed keeps one id when sent twice, is
        called back, and is forgotten by a cull like any other.
        """

        class Unhashable:
            __hash__ = None  # type: ignore[assignment]

            def __init__(self) -> None:
                self.calls: List[Any] = []

            def __call__(self, *args: Any) -> None:
                self.calls.append(args)

        h = Harness()
        h.sent()
        before = h.proto.callbackCount()["local"]
        twice, once = Unhashable(), Unhashable()
        h.proto.request("x", [twice])
        h.proto.request("y", [twice, once])
        first, second = h.sent()
        twiceId = int(next(iter(first["callbacks"])))
        self.assertEqual(second["callbacks"], {str(twiceId): ["0"], str(twiceId + 1): ["1"]})
        h.proto.dataReceived(line({"method": twiceId, "arguments": [7]}))
        h.proto.dataReceived(line({"method": twiceId + 1, "arguments": [8]}))
        self.assertEqual((twice.calls, once.calls), ([(7,)], [(8,)]))
        h.proto.dataReceived(line({"method": "cull", "arguments": [twiceId, twiceId + 1]}))
        # The id sent twice is kept (a cull may cross its second message);
        # the other is gone from both tables.
        self.assertEqual(h.proto.callbackCount()["local"], before + 1)
        self.assertEqual(h.proto._session.local.ids[("unhashable", id(twice))], twiceId)
        self.assertNotIn(("unhashable", id(once)), h.proto._session.local.ids)

    def test_cullSentWhenProxyCollected(self) -> None:
        """
        When our last reference to a peer callback goes while a received
        chunk is handled, its id leaves our table at once, and is culled
        once it has waited the delay, in the write of the next chunk's
        answers, after them, in one message with the others: not in the
        write of the replies that freed it (which would cost the peer a
        message per chunk), and in no write of its own.
        """
        h = Harness()
        h.sent()
        h.proto.dataReceived(
            line({"method": "echo", "arguments": [1, "[Function]"], "callbacks": {"11": ["1"]}})
            + line({"method": "echo", "arguments": [2, "[Function]"], "callbacks": {"12": ["1"]}})
        )
        self.assertEqual(
            h.sent(),
            [
                {"method": 11, "arguments": [1], "callbacks": {}, "links": []},
                {"method": 12, "arguments": [2], "callbacks": {}, "links": []},
            ],
        )
        self.assertEqual(h.proto.callbackCount()["remote"], 0)
        h.proto.dataReceived(line({"method": "echo", "arguments": [3, "[Function]"], "callbacks": {"13": ["1"]}}))
        self.assertEqual([m["method"] for m in h.sent()], [13])
        h.clock.advance(CULL_DELAY)
        self.assertEqual(h.sent(), [])
        h.proto.dataReceived(line({"method": "echo", "arguments": [4, "[Function]"], "callbacks": {"14": ["1"]}}))
        self.assertEqual(
            h.sent(),
            [{"method": 14, "arguments": [4], "callbacks": {}, "links": []}, {"method": "cull", "arguments": [11, 12, 13, 14]}],
        )
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_cullAloneWhenNothingElseIsWritten(self) -> None:
        """
        Culls that have waited the delay and find no chunk to leave with
        leave on their own, L{CULL_IDLE} seconds later.
        """
        h = Harness()
        h.sent()
        h.proto.dataReceived(line({"method": "echo", "arguments": [1, "[Function]"], "callbacks": {"11": ["1"]}}))
        h.sent()
        h.clock.advance(CULL_DELAY)
        h.clock.advance(CULL_IDLE / 2)
        self.assertEqual(h.sent(), [])
        h.clock.advance(CULL_IDLE / 2)
        self.assertEqual(h.sent(), [{"method": "cull", "arguments": [11]}])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_proxyDroppedByOurCodeCulledWithinTheDelay(self) -> None:
        """
        A proxy our code drops outside a chunk is culled within
        L{CULL_DELAY}, even while answered calls' culls wait for a chunk to
        leave with: it takes them along.
        """
        h = Harness()
        h.sent()
        h.proto.dataReceived(line({"method": "echo", "arguments": [1, "[Function]"], "callbacks": {"11": ["1"]}}))
        kept = h.proto._session.proxies.proxyFor(12)
        h.sent()
        del kept
        h.clock.advance(CULL_DELAY)
        self.assertEqual(h.sent(), [{"method": "cull", "arguments": [11, 12]}])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_fullBatchLeavesWithTheReplies(self) -> None:
        """
        A received chunk whose replies make the culls pending a full batch
        culls them in the same write as the replies, after them, and
        cancels the delay's timer.
        """
        h = Harness()
        h.sent()
        h.proto.dataReceived(line({"method": "echo", "arguments": [0, "[Function]"], "callbacks": {"100": ["1"]}}))
        self.assertEqual(len(h.clock.getDelayedCalls()), 1)
        h.transport.clear()
        h.proto.dataReceived(
            b"".join(
                line({"method": "echo", "arguments": [i, "[Function]"], "callbacks": {str(100 + i): ["1"]}})
                for i in range(1, CULL_BATCH)
            )
        )
        written = h.transport.value().splitlines()
        self.assertEqual(len(written), CULL_BATCH)
        self.assertEqual(json.loads(written[-1]), {"method": "cull", "arguments": list(range(100, 100 + CULL_BATCH))})
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_cullsTurnedOff(self) -> None:
        """
        With sendCulls off, answered callbacks leave our table but no cull
        is sent, now or later.
        """
        h = Harness()
        h.proto.sendCulls = False
        h.sent()
        h.proto.dataReceived(line({"method": "echo", "arguments": [1, "[Function]"], "callbacks": {"11": ["1"]}}))
        h.clock.advance(CULL_DELAY)
        self.assertEqual([m["method"] for m in h.sent()], [11])
        self.assertEqual(h.proto.callbackCount()["remote"], 0)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_olderProxyDyingKeepsNewer(self) -> None:
        """
        When an older proxy for an id dies after a newer one took its place
        in the table (the collector may get to a cyclic proxy late), its
        death neither drops nor culls the id.
        """
        h = Harness()
        h.sent()
        older = h.proto._session.proxies.proxyFor(11)
        cycle: List[Any] = [older]
        cycle.append(cycle)
        del older
        gc.disable()
        try:
            del cycle
            # As if a message had brought id 11 again while the older proxy
            # waited for the collector.
            del h.proto._session.proxies.refs[11]
            newer = h.proto._session.proxies.proxyFor(11)
            gc.collect()
        finally:
            gc.enable()
        h.clock.advance(CULL_DELAY)
        self.assertEqual([m for m in h.sent() if m["method"] == "cull"], [])
        self.assertIs(h.proto._session.proxies.proxyFor(11), newer)
        del newer
        h.clock.advance(CULL_DELAY)
        self.assertEqual([m["arguments"] for m in h.sent() if m["method"] == "cull"], [[11]])

    def test_cullsBatched(self) -> None:
        """
        A full batch of culls goes out at once, without waiting.
        """
        h = Harness()
        h.sent()
        h.proto.dataReceived(
            b"".join(
                line({"method": "echo", "arguments": [i, "[Function]"], "callbacks": {str(100 + i): ["1"]}})
                for i in range(CULL_BATCH)
            )
        )
        gc.collect()
        culls = [m for m in h.sent() if m["method"] == "cull"]
        self.assertEqual(culls, [{"method": "cull", "arguments": list(range(100, 100 + CULL_BATCH))}])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_cullOutsideReceiveIsScheduled(self) -> None:
        h = Harness()
        h.sent()
        h.proto.dataReceived(
            line({"method": "methods", "arguments": [{"f": "[Function]"}], "callbacks": {"5": ["0", "f"]}})
        )
        h.proto.dataReceived(line({"method": "methods", "arguments": [{}]}))
        gc.collect()
        h.clock.advance(CULL_DELAY)
        h.clock.advance(CULL_IDLE)
        self.assertEqual(
            [m for m in h.sent() if m["method"] == "cull"], [{"method": "cull", "arguments": [5]}]
        )
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ConnectionIdTests(SynchronousTestCase):
    def test_idRandomAndStable(self) -> None:
        """
        Each connection has its own random id, as dnode gives each one: the
        same every time it is read, and one a program may set.
        """
        one, two = Harness().proto, Harness().proto
        self.assertRegex(one.id, "^[0-9a-f]{32}$")
        self.assertEqual(one.id, one.id)
        self.assertNotEqual(one.id, two.id)
        two.id = "mine"
        self.assertEqual(two.id, "mine")


class BackPressureTests(SynchronousTestCase):
    def test_peerThatDoesNotRead(self) -> None:
        """
        When the transport's buffer is full we keep reading; a peer that
        takes some of our output (the transport resumes us) within
        stallTimeout stays, one that takes none for a whole stallTimeout
        is dropped.
        """
        h = Harness()
        self.assertIs(h.transport.producer, h.proto._flow)
        h.proto.pauseProducing()
        h.clock.advance(h.proto.stallTimeout - 1)
        h.proto.resumeProducing()  # it took some
        h.clock.advance(10)
        self.assertFalse(h.transport.disconnecting)
        h.proto.pauseProducing()
        h.proto.request("x", [1])
        h.clock.advance(h.proto.stallTimeout - 1)
        h.proto.pauseProducing()  # the transport says so on every write while full
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(1)
        self.assertTrue(h.transport.disconnecting)
        self.assertIsInstance(h.fails[-1], ProtocolError)
        self.assertIn(f"took none of our output for {h.proto.stallTimeout:g} seconds", str(h.fails[-1]))
        h.proto.connectionLost(None)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_heldWhilePausedThenSentInOrder(self) -> None:
        """
        While the transport has us paused, what we write waits with us, and
        goes, in order, when it resumes us; then drain.
        """
        h = Harness()
        h.sent()
        drains: List[None] = []
        h.proto.on("drain", lambda: drains.append(None))
        h.proto.pauseProducing()
        h.proto.request("x", [1])
        h.proto.request("x", [2])
        self.assertEqual(h.transport.value(), b"")
        h.proto.resumeProducing()
        self.assertEqual([m["arguments"] for m in h.sent()], [[1], [2]])
        self.assertEqual(drains, [None])

    def test_slowButSteadyReaderStays(self) -> None:
        """
        A peer that takes one slice now and then, never letting the buffer
        stay empty, is not stalled: each slice it takes is progress.  Then
        a peer that stops taking anything is.
        """
        transport = PausingTransport()
        h = Harness(transport=transport)
        h.sent()
        transport.writes.clear()
        h.proto.resumeProducing()  # (the methods message was taken)
        h.proto.request("x", ["z" * (WRITE_SLICE * 20)])
        self.assertEqual(len(transport.writes), 1)  # one slice, and paused
        for _ in range(10):
            h.clock.advance(h.proto.stallTimeout - 1)
            h.proto.resumeProducing()
        self.assertEqual(len(transport.writes), 11)
        self.assertEqual(h.fails, [])
        h.clock.advance(h.proto.stallTimeout)
        self.assertIn("took none of our output", str(h.fails[-1]))

    def test_stopReadingAPeerThatReadsNothing(self) -> None:
        """
        Past READ_PAUSE bytes held, we stop reading the peer (its calls get
        no more of our time) until it has taken enough: half of it, so
        that a peer just over the line is not paused and resumed on every
        slice.
        """
        transport = PausingTransport()
        h = Harness(transport=transport)
        h.sent()
        transport.writes.clear()
        h.proto.resumeProducing()  # (the methods message was taken)
        h.proto.request("x", ["r" * (READ_PAUSE + 2 * WRITE_SLICE)])
        self.assertEqual(transport.producerState, "paused")
        for _ in range(3):
            h.proto.resumeProducing()  # it takes a slice each time
        self.assertEqual(transport.producerState, "paused")
        slices = (READ_PAUSE // 2) // WRITE_SLICE
        for _ in range(slices - 1):
            h.proto.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(h.fails, [])

    def test_endSendsWhatIsHeldFirst(self) -> None:
        """
        end() while output is held closes only once it has all been taken.
        """
        h = Harness()
        h.sent()
        h.proto.pauseProducing()
        h.proto.request("x", ["last words"])
        h.proto.end()
        self.assertFalse(h.transport.disconnecting)
        h.proto.resumeProducing()
        self.assertEqual([m["arguments"] for m in h.sent()], [["last words"]])
        self.assertTrue(h.transport.disconnecting)

    def test_unreadBytesBounded(self) -> None:
        """
        Past maxBuffered bytes held for a peer that does not read, it is
        dropped at once, whatever the stall timeout; what it took (a resume
        released it) no longer counts.
        """
        h = Harness(Limits(maxBuffered=1000))
        h.sent()
        h.proto.pauseProducing()
        h.proto.request("x", ["a" * 900])
        self.assertFalse(h.transport.disconnecting)
        h.proto.resumeProducing()
        h.proto.pauseProducing()
        h.proto.request("x", ["a" * 900])
        self.assertFalse(h.transport.disconnecting)
        h.proto.request("x", ["a" * 200])
        self.assertTrue(h.transport.disconnecting)
        self.assertIn("more than 1000 bytes unread", str(h.fails[-1]))

    def test_unreadBytesCountedInEveryWritePath(self) -> None:
        """
        Lines batched while a received chunk is handled count too.
        """
        h = Harness(Limits(maxBuffered=1000))
        h.sent()
        h.proto._session._targets["big"] = entryFor(lambda cb: cb("b" * 1200))
        h.proto.pauseProducing()
        h.proto.dataReceived(line({"method": "big", "arguments": ["[Function]"], "callbacks": {"0": ["0"]}}))
        self.assertTrue(h.transport.disconnecting)
        self.assertIn("more than 1000 bytes unread", str(h.fails[-1]))

    def test_pausedAndDrain(self) -> None:
        """
        C{paused} follows the transport; resuming emits C{drain}.
        """
        h = Harness()
        drains: List[None] = []
        h.proto.on("drain", lambda: drains.append(None))
        h.proto.pauseProducing()
        self.assertTrue(h.proto.paused)
        h.proto.resumeProducing()
        self.assertFalse(h.proto.paused)
        self.assertEqual(drains, [None])

    def test_repliesLeaveDuringALongChunk(self) -> None:
        """
        Replies written while one received chunk is handled go out together
        at its end, or as soon as they pass one read's worth of bytes.
        """
        h = Harness()
        h.sent()
        seen: List[int] = []
        h.proto._session._targets["many"] = entryFor(lambda cb: [cb("y" * 100) or seen.append(len(h.transport.value())) for _ in range(5)])
        h.proto._session.flushPast = 250
        h.proto.dataReceived(line({"method": "many", "arguments": ["[Function]"], "callbacks": {"1": ["0"]}}))
        self.assertEqual(seen[0], 0)  # held back...
        self.assertGreater(seen[1], 250)  # ...until past readSize
        self.assertEqual([m["method"] for m in h.sent()], [1] * 5)
        h.clock.advance(CULL_DELAY)
        h.clock.advance(CULL_IDLE)
        self.assertEqual(h.sent(), [{"method": "cull", "arguments": [1]}])


class KernelHarness(Harness):
    """
    A Harness whose transport's kernel says what the peer acknowledged:
    C{acked}, set by the test.
    """

    def __init__(self, case: SynchronousTestCase, server: bool = True) -> None:
        self.acked = 0
        case.patch(_protocol, "ackedBytesProbe", lambda transport: lambda: self.acked)
        Harness.__init__(self, server=server, client=not server)
        self.sent()

    def handed(self) -> int:
        return self.proto._flow.handed


class KernelProgressTests(SynchronousTestCase):
    """
    Where the kernel says what the peer's TCP stack has acknowledged, that
    is the peer's progress: it is stalled once none of what waits for it
    has been acknowledged for stallTimeout, whatever the transport's own
    buffer says.
    """

    def test_peerThatStopsAcknowledgingIsDropped(self) -> None:
        h = KernelHarness(self)
        h.proto.request("x", ["a" * SAMPLE_EVERY])
        h.acked = 1000  # its receive buffer took a little, then nothing
        # (It is looked at every STALL_CHECK_EVERY seconds, not more often.)
        self.assertEqual([c.getTime() for c in h.clock.getDelayedCalls() if c.func == h.proto._flow.progress._watchPeer], [STALL_CHECK_EVERY])
        h.clock.pump([STALL_CHECK_EVERY] * int(h.proto.stallTimeout / STALL_CHECK_EVERY))
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(STALL_CHECK_EVERY)
        self.assertTrue(h.transport.disconnecting)
        self.assertIn(f"took none of our output for {h.proto.stallTimeout:g} seconds", str(h.fails[-1]))
        self.assertIn(f"({h.handed() - 1000} bytes waiting)", str(h.fails[-1]))
        h.proto.connectionLost(None)
        h.proto.guard.stop()  # type: ignore[union-attr]
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_slowAcknowledgingPeerStays(self) -> None:
        h = KernelHarness(self)
        h.proto.request("x", ["a" * (4 * SAMPLE_EVERY)])
        for _ in range(int(4 * h.proto.stallTimeout)):
            h.acked += 100  # a trickle, but never nothing for stallTimeout
            h.clock.pump([WATCH_EVERY] * int(0.9 * h.proto.stallTimeout / WATCH_EVERY))
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(h.fails, [])

    def test_unreadInTheKernelPausesReading(self) -> None:
        """
        Past READ_PAUSE bytes handed over and not acknowledged, we stop
        reading the peer, though the transport never said it was full;
        once it has half as much or less left, we read again, and stop
        watching once it has taken everything.
        """
        h = KernelHarness(self)
        h.proto.request("x", ["r" * (READ_PAUSE + SAMPLE_EVERY)])
        self.assertEqual(h.transport.producerState, "paused")
        h.acked = h.handed() - READ_PAUSE // 2 - 1
        h.clock.advance(WATCH_EVERY)
        self.assertEqual(h.transport.producerState, "paused")
        h.acked += 1
        h.clock.advance(WATCH_EVERY)
        self.assertEqual(h.transport.producerState, "producing")
        self.assertNotEqual(h.clock.getDelayedCalls(), [])
        h.acked = h.handed()
        h.clock.advance(STALL_CHECK_EVERY)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        self.assertEqual(h.fails, [])

    def test_clientKeepsReading(self) -> None:
        """
        A client stops reading only for what it holds itself: what its
        queue flush has handed the transport is for the server to take,
        and stopping reading its answers meanwhile could leave each side
        waiting on the other.  A server that takes nothing is still
        dropped.
        """
        h = KernelHarness(self, server=False)
        h.proto.request("x", ["r" * (READ_PAUSE + SAMPLE_EVERY)])
        h.clock.advance(WATCH_EVERY)
        self.assertEqual(h.transport.producerState, "producing")
        h.clock.pump([WATCH_EVERY] * int(h.proto.stallTimeout / WATCH_EVERY + 2))
        self.assertTrue(h.transport.disconnecting)

    def test_smallWritesSampleRarely(self) -> None:
        """
        The kernel is asked once per SAMPLE_EVERY bytes handed over, not
        once a write; and a peer that has taken everything costs no timer.
        """
        h = KernelHarness(self)
        asked: List[int] = []
        self.patch(h.proto._flow.progress, "probe", lambda: asked.append(1) or h.handed())
        for _ in range(1000):
            h.proto.request("x", ["b" * 200])
        self.assertEqual(len(asked), h.handed() // SAMPLE_EVERY)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_pausedByTheTransportIsWatched(self) -> None:
        """
        The transport's pause starts the watch (no timer of its own): a
        peer that acknowledges nothing is dropped after stallTimeout.
        """
        h = KernelHarness(self)
        h.proto.pauseProducing()
        h.proto.request("x", ["held"])
        h.clock.pump([WATCH_EVERY] * int(h.proto.stallTimeout / WATCH_EVERY + 2))
        self.assertTrue(h.transport.disconnecting)


class PausingTransport(StringTransport):
    """
    A transport whose buffer is full after every write, until resumed.
    """

    def __init__(self) -> None:
        StringTransport.__init__(self)
        self.writes: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        StringTransport.write(self, data)
        self.producer.pauseProducing()


class RateLimitTests(SynchronousTestCase):
    def test_edge(self) -> None:
        """
        maxRate messages within a second are served; one more closes.
        """
        h = Harness(Limits(maxRate=10))
        h.clock.advance(100)
        ping = line({"method": "record", "arguments": [1]})
        h.proto.dataReceived(ping * 10)
        h.clock.advance(1.0)
        h.proto.dataReceived(ping * 10)  # a new window
        self.assertFalse(h.transport.disconnecting)
        self.assertEqual(len(h.target.calls), 20)
        h.clock.advance(0.5)
        h.proto.dataReceived(ping)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(len(h.target.calls), 20)
        self.assertIn("messages a second", str(h.fails[-1]))

    def test_countedAChunkAtATime(self) -> None:
        """
        A chunk is counted whole before any of its lines is handled: one
        that takes the peer past maxRate is not handled at all, even in a
        fresh window; a partial line counts when it is complete.
        """
        h = Harness(Limits(maxRate=10))
        h.clock.advance(100)
        ping = line({"method": "record", "arguments": [1]})
        h.proto.dataReceived(ping * 9 + ping[:5])
        self.assertEqual(len(h.target.calls), 9)
        h.proto.dataReceived(ping[5:])  # the tenth: still within the limit
        self.assertEqual(len(h.target.calls), 10)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(5)
        h.proto.dataReceived(ping * 11)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(len(h.target.calls), 10)
        self.assertIn("more than 10 messages a second", str(h.fails[-1]))


class FramingTests(SynchronousTestCase):
    def stream(self) -> bytes:
        messages = [
            {"method": "record", "arguments": [i, "é" * i, {"k": [None, True, 1.5]}]} for i in range(6)
        ]
        return b"".join(line(m) for m in messages) + b'{"method":"record","argum'

    def test_everyChunkSize(self) -> None:
        """
        The same stream gives the same calls however it is cut, and a
        partial last line is never dispatched.
        """
        data = self.stream()
        expected = None
        for size in range(1, len(data) + 1):
            h = Harness()
            for start in range(0, len(data), size):
                h.proto.dataReceived(data[start : start + size])
            if expected is None:
                expected = h.target.calls
                self.assertEqual(len(expected), 6)
            self.assertEqual(h.target.calls, expected, f"chunk size {size}")
            self.assertFalse(h.transport.disconnecting)

    def test_crlfAccepted(self) -> None:
        h = Harness()
        h.proto.dataReceived(b'{"method":"record","arguments":[1]}\r\n')
        self.assertEqual(h.target.calls, [("record", (1,))])

    def test_lineCapEdge(self) -> None:
        """
        A line of exactly maxLineLength bytes is read; one byte more closes.
        """
        limits = Limits(maxLineLength=100)
        base = b'{"method":"record","arguments":["'
        fill = 100 - len(base) - 3
        exact = base + b"x" * fill + b'"]}'
        self.assertEqual(len(exact), 100)
        h = Harness(limits)
        h.proto.dataReceived(exact + b"\n")
        self.assertEqual(len(h.target.calls), 1)
        self.assertFalse(h.transport.disconnecting)
        over = base + b"x" * (fill + 1) + b'"]}'
        for data in [over + b"\n", over]:
            h = Harness(limits)
            h.proto.dataReceived(data)
            self.assertEqual(h.target.calls, [])
            self.assertTrue(h.transport.disconnecting)
            self.assertIsInstance(h.fails[0], ProtocolError)

    def test_oversizedInOneBytePieces(self) -> None:
        """
        A line that never ends is cut off at the cap even a byte at a time.
        """
        h = Harness(Limits(maxLineLength=50))
        for _ in range(51):
            h.proto.dataReceived(b"x")
        self.assertTrue(h.transport.disconnecting)

    def test_oneBytePiecesAreLinear(self) -> None:
        """
        A 300 kB line delivered a byte at a time: each piece is kept, not
        re-joined, so this is 300,000 appends rather than 45 billion byte
        copies (which would not finish).
        """
        h = Harness()
        data = b'{"method":"record","arguments":["' + b"z" * 300_000 + b'"]}\n'
        for i in range(len(data)):
            h.proto.dataReceived(data[i : i + 1])
        self.assertEqual(len(h.target.calls), 1)

    def test_defaultCapIsOneMebibyte(self) -> None:
        h = Harness()
        self.assertEqual(h.proto.MAX_LENGTH, 1024 * 1024)
        payload = b'{"method":"record","arguments":["' + b"y" * 500_000 + b'"]}\n'
        h.proto.dataReceived(payload)
        self.assertEqual(len(h.target.calls), 1)

    def test_nothingAfterClose(self) -> None:
        """
        Lines after one that closes the connection are not dispatched.
        """
        h = Harness()
        h.proto.dataReceived(b"not json\n" + line({"method": "record", "arguments": [1]}))
        self.assertEqual(h.target.calls, [])
        self.assertTrue(h.transport.disconnecting)


# (name, bytes, outcome): what each hostile or broken input gets.
HOSTILE = [
    ("not JSON", b"hello\n", "close"),
    ("truncated JSON", b'{"method":"record",\n', "close"),
    ("empty line", b"\n", "close"),
    ("NaN literal", b'{"method":"record","arguments":[NaN]}\n', "close"),
    ("Infinity literal", b'{"method":"record","arguments":[-Infinity]}\n', "close"),
    ("invalid UTF-8", b'{"method":"record","arguments":["\xff\xfe"]}\n', "close"),
    ("too deep", b'{"method":"record","arguments":' + b"[" * 100 + b"]" * 100 + b"}\n", "close"),
    ("recursion bomb", b"[" * 200_000 + b"\n", "close"),
    ("huge integer digits", b'{"method":"record","arguments":[' + b"9" * 5000 + b"]}\n", "close"),
    ("top level array", b"[1,2]\n", "reject"),
    ("top level string", b'"methods"\n', "reject"),
    ("top level null", b"null\n", "reject"),
    ("private method", line({"method": "_private"}), "reject"),
    ("dunder method", line({"method": "__init__"}), "reject"),
    ("dunder class", line({"method": "__class__"}), "reject"),
    ("non-callable member", line({"method": "answer"}), "reject"),
    ("unknown method", line({"method": "nope"}), "reject"),
    ("unknown callback id", line({"method": 999}), "reject"),
    ("true is not callback 1", line({"method": True}), "reject"),
    ("float method", line({"method": 1.0}), "reject"),
    ("null method", line({"method": None}), "reject"),
    ("list method", line({"method": ["record"]}), "reject"),
    ("missing method", line({"arguments": [1]}), "reject"),
    ("arguments not a list", line({"method": "record", "arguments": {"0": 1}}), "reject"),
    ("arguments a string", line({"method": "record", "arguments": "abc"}), "reject"),
    (
        "callback id not decimal",
        line({"method": "record", "arguments": [0], "callbacks": {"a": ["0"]}}),
        "reject",
    ),
    (
        "callback id negative",
        line({"method": "record", "arguments": [0], "callbacks": {"-1": ["0"]}}),
        "reject",
    ),
    ("callback path empty", line({"method": "record", "arguments": [0], "callbacks": {"1": []}}), "reject"),
    (
        "callback path out of range",
        line({"method": "record", "arguments": [0], "callbacks": {"1": ["3"]}}),
        "reject",
    ),
    (
        "callback path through scalar",
        line({"method": "record", "arguments": [0], "callbacks": {"1": ["0", "x"]}}),
        "reject",
    ),
    (
        "callback path not a list",
        line({"method": "record", "arguments": [0], "callbacks": {"1": "0"}}),
        "reject",
    ),
    ("callbacks not an object", line({"method": "record", "arguments": [0], "callbacks": [1]}), "reject"),
    # Empty but of the wrong type: not mistaken for "no callbacks".
    ("callbacks an empty list", line({"method": "record", "arguments": [0], "callbacks": []}), "reject"),
    ("callbacks false", line({"method": "record", "arguments": [0], "callbacks": False}), "reject"),
    ("callbacks zero", line({"method": "record", "arguments": [0], "callbacks": 0}), "reject"),
    ("links an empty object", line({"method": "record", "arguments": [0], "links": {}}), "reject"),
    ("links false", line({"method": "record", "arguments": [0], "links": False}), "reject"),
    (
        "callback id with a leading zero",
        line({"method": "record", "arguments": [0], "callbacks": {"01": ["0"]}}),
        "reject",
    ),
    (
        "callback id in other digits",
        line({"method": "record", "arguments": [0], "callbacks": {"\u0661": ["0"]}}),
        "reject",
    ),
    (
        "callback id with a sign",
        line({"method": "record", "arguments": [0], "callbacks": {"+1": ["0"]}}),
        "reject",
    ),
    (
        "callback id with spaces",
        line({"method": "record", "arguments": [0], "callbacks": {" 1": ["0"]}}),
        "reject",
    ),
    (
        "callback id with an underscore",
        line({"method": "record", "arguments": [0], "callbacks": {"1_0": ["0"]}}),
        "reject",
    ),
    (
        "callback id beyond a double",
        line({"method": "record", "arguments": [0], "callbacks": {str(2**53): ["0"]}}),
        "reject",
    ),
    ("link malformed", line({"method": "record", "arguments": [0], "links": [{"from": ["0"]}]}), "reject"),
    (
        "link points nowhere",
        line({"method": "record", "arguments": [0], "links": [{"from": ["4"], "to": ["0"]}]}),
        "reject",
    ),
    ("links not a list", line({"method": "record", "arguments": [0], "links": {"from": 1}}), "reject"),
    ("cull not a list", line({"method": "cull", "arguments": 5}), "reject"),
    ("cull of a null id", line({"method": "cull", "arguments": [None]}), "reject"),
    ("cull of a string id among integers", line({"method": "cull", "arguments": [1, "2", 3]}), "reject"),
    ("cull of strings", line({"method": "cull", "arguments": ["0"]}), "reject"),
    ("methods not an object", line({"method": "methods", "arguments": [5]}), "ok"),
    ("huge integer argument", line({"method": "record", "arguments": [10**300]}), "ok"),
    ("large float", b'{"method":"record","arguments":[1e400]}\n', "ok"),
    ("lone surrogate", b'{"method":"record","arguments":["\\ud800"]}\n', "ok"),
]


class HostileInputTests(SynchronousTestCase):
    """
    Each input gets its outcome; nothing private is ever reached, and a
    well-formed call right after a rejected one still works.
    """

    def test_corpus(self) -> None:
        for name, data, outcome in HOSTILE:
            h = Harness()
            h.sent()
            h.proto.dataReceived(data)
            private = [c for c in h.target.calls if c[0] == "_private"]
            self.assertEqual(private, [], name)
            if outcome == "close":
                self.assertTrue(h.transport.disconnecting, name)
                self.assertIsInstance(h.fails[0], ProtocolError, name)
                self.assertEqual(h.target.calls, [], name)
            elif outcome == "reject":
                self.assertFalse(h.transport.disconnecting, name)
                self.assertEqual(len(h.fails), 1, name)
                self.assertIsInstance(h.fails[0], RejectedMessage, name)
                self.assertEqual(h.target.calls, [], name)
            else:
                self.assertFalse(h.transport.disconnecting, name)
                self.assertEqual(h.fails, [], name)
            if outcome != "close":
                h.proto.dataReceived(line({"method": "record", "arguments": ["after"]}))
                self.assertEqual(h.target.calls[-1], ("record", ("after",)), name)


class InMemoryPairTests(SynchronousTestCase):
    def pair(self, serverCons: Any, clientCons: Any = None) -> Any:
        clock = Clock()
        client = DnodeProtocol(clientCons, clock=clock)
        link = connectInMemory(DnodeFactory(serverCons, clock=clock), client, clock)
        link.flush()
        return link

    def test_callbacksBothWays(self) -> None:
        """
        Callbacks inside callbacks, called repeatedly, in both directions.
        """

        def twice(cb: Any) -> None:
            def reply(value: Any) -> None:
                got.append(("server got", value))

            cb(1, reply)
            cb(2, reply)

        got: List[Any] = []
        link = self.pair({"twice": twice})
        link.client.remote.twice(lambda n, reply: (got.append(n), reply(n * 10)))
        link.flush()
        self.assertEqual(got, [1, 2, ("server got", 10), ("server got", 20)])

    def test_cyclesBothWays(self) -> None:
        seen: List[Any] = []

        def mirror(value: Any, cb: Any) -> None:
            seen.append(value)
            cb(value)

        link = self.pair({"mirror": mirror})
        data: dict = {"n": 1}
        data["me"] = data
        link.client.remote.mirror(data, seen.append)
        link.flush()
        self.assertIs(seen[0]["me"], seen[0])
        self.assertIs(seen[1]["me"], seen[1])
        self.assertEqual(seen[1]["n"], 1)

    def test_tablesStayBounded(self) -> None:
        """
        A thousand calls each with a fresh callback leave both tables where
        they started: the culls keep them bounded.
        """
        link = self.pair({"echo": lambda v, cb: cb(v)})
        start = (link.client.callbackCount(), link.server.callbackCount())
        got: List[int] = []
        held = []
        for i in range(1000):
            link.client.remote.echo(i, lambda v: got.append(v))
            link.flush()
            held.append(link.client.callbackCount()["local"] - start[0]["local"])
        # Made one at a time, with no time passing: culled by the batch.
        self.assertLessEqual(max(held), CULL_BATCH)
        gc.collect()
        link.clock.advance(CULL_DELAY)
        link.clock.advance(CULL_IDLE)
        link.flush()
        self.assertEqual(len(got), 1000)
        self.assertEqual((link.client.callbackCount(), link.server.callbackCount()), start)

    def test_cullCrossingAResend(self) -> None:
        """
        The peer culls our callback after one call while we send the same
        callback again: the cull crosses our second message on the wire,
        and the peer's call through its new proxy must still reach us.
        """
        link = self.pair({"echo": lambda v, cb: cb(v)})
        got: List[int] = []
        fails: List[Any] = []
        link.client.on("fail", fails.append)
        link.client.remote.echo(1, got.append)
        link.pump()  # the server answers
        link.clock.advance(CULL_DELAY)  # and culls; we have not read it yet
        link.clock.advance(CULL_IDLE)
        self.assertIn(b'"cull"', b"".join(link.serverTransport.outgoing))
        link.client.remote.echo(2, got.append)
        link.flush()
        self.assertEqual((got, fails), ([1, 2], []))
        link.client.remote.echo(3, got.append)
        link.flush()
        self.assertEqual(got, [1, 2, 3])

    def test_privateNeverReachable(self) -> None:
        target = Target()
        link = self.pair(target)
        self.assertEqual(sorted(link.client.remote), ["answer", "boom", "echo", "record"])
        link.client.request("_private", [])
        link.client.request("__dict__", [])
        link.flush()
        self.assertEqual(target.calls, [])


class HonestLineReceiverTests(SynchronousTestCase):
    """
    The API DnodeProtocol inherits from LineReceiver tells the truth.
    """

    def test_sendLineWaitsBehindHeldOutput(self) -> None:
        """
        C{sendLine} on a paused connection goes behind what is held, not
        ahead of it.
        """
        h = Harness()
        h.sent()
        h.proto.pauseProducing()
        h.proto.request("x", [1])
        h.proto.sendLine(b'{"method":"x","arguments":[2]}')
        self.assertEqual(h.transport.value(), b"")
        h.proto.resumeProducing()
        self.assertEqual([m["arguments"] for m in h.sent()], [[1], [2]])

    def test_sendLineCountsAgainstMaxBuffered(self) -> None:
        h = Harness(Limits(maxBuffered=1000))
        h.sent()
        h.proto.pauseProducing()
        h.proto.sendLine(b"a" * 1200)
        self.assertTrue(h.transport.disconnecting)
        self.assertIn("more than 1000 bytes unread", str(h.fails[-1]))

    def test_clearLineBufferReturnsThePartialLine(self) -> None:
        h = Harness()
        h.proto.dataReceived(b'{"method":"rec')
        self.assertEqual(h.proto.clearLineBuffer(), b'{"method":"rec')
        self.assertFalse(h.proto.hasPartialLine())
        h.proto.dataReceived(line({"method": "record", "arguments": [1]}))
        self.assertEqual(h.target.calls, [("record", (1,))])


class ErrorOwnerTests(SynchronousTestCase):
    """
    An exception in one of our methods has one owner: the C{error} event.
    """

    def test_loggedOnceWhenNobodyListens(self) -> None:
        h = Harness()
        h.proto.remove_all_listeners("error")
        logged: List[Any] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        h.proto.dataReceived(line({"method": "boom"}))
        failures = [e for e in logged if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_aListenerOwnsIt(self) -> None:
        h = Harness()
        h.proto.dataReceived(line({"method": "boom"}))
        self.assertEqual(len(h.errors), 1)
        self.assertEqual(self.flushLoggedErrors(ZeroDivisionError), [])


class RejectedMessageTests(SynchronousTestCase):
    def test_rejectedForItsLinksKeepsNothing(self) -> None:
        """
        A message rejected for its links makes no callback proxy, and the
        error kept (by a fail handler, by the log) holds none: an honest
        peer's rejected messages never add up to maxRemoteCallbacks.
        """
        h = Harness(Limits(maxRemoteCallbacks=10))
        h.sent()
        bad = line(
            {
                "method": "record",
                "arguments": ["[Function]", {}],
                "callbacks": {"5": ["0"]},
                "links": [{"from": ["9"], "to": ["1", "x"]}],
            }
        )
        for i in range(11):
            h.proto.dataReceived(bad)
            self.assertEqual(h.proto.callbackCount()["remote"], 0, i)
        self.assertEqual(len(h.fails), 11)
        self.assertTrue(all(isinstance(f, RejectedMessage) for f in h.fails))
        self.assertIsNone(h.fails[0].__traceback__)
        self.assertFalse(h.transport.disconnecting)
        h.proto.dataReceived(line({"method": "record", "arguments": ["after"]}))
        self.assertEqual(h.target.calls, [("record", ("after",))])
