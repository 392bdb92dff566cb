"""
The durable outbox: up.call(..., durable=True) with task.Clock and an
in-memory link; the SQLite file is real (in the test's temporary directory).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, UpnodeServerFactory, UpTimeout
from upnode._outbox import Outbox, OutboxError, OutboxFull, OutboxReply
from upnode.testing import FakeEndpoint, MemoryLink


class OutboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.stored: List[Any] = []
        self.held: List[Any] = []
        self.path = os.path.join(self.mktemp(), "state", "outbox.sqlite")

        def store(key: Any, value: Any, cb: Any) -> None:
            self.stored.append((key, value))
            cb("ok", key)

        def hold(value: Any, cb: Any) -> None:
            self.stored.append(value)
            self.held.append(cb)

        self.server = UpnodeServerFactory(
            {"store": store, "hold": hold, "echo": lambda v, cb: cb(v)}, ping=0, clock=self.clock
        )
        self.links: List[MemoryLink] = []
        self.ups: List[Any] = []

    def tearDown(self) -> None:
        for up in self.ups:
            up.close()
        for link in self.links:
            link.flush()
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def connect(self, **options: Any) -> Any:
        self.endpoint = FakeEndpoint(self.clock)
        up = upnode.upnode(reactor=self.clock).connect(
            self.endpoint, {"ping": 0, "jitter": 0, "outbox": self.path, **options}
        )
        self.ups.append(up)
        return up

    def accept(self) -> MemoryLink:
        link = self.endpoint.accept(self.server)
        link.flush()
        self.links.append(link)
        return link

    def rows(self) -> List[Any]:
        # The client holds the file's exclusive lock: only a closed one can be read.
        db = sqlite3.connect(self.path)
        try:
            return [tuple(row) for row in db.execute("SELECT method, args FROM calls ORDER BY id")]
        finally:
            db.close()

    def test_committedBeforeReturnAndSentInOrder(self) -> None:
        up = self.connect()
        ds = [up.call("store", i, {"v": i}, durable=True) for i in range(5)]
        self.assertEqual(up.outbox.depth, 5)
        up.close()
        self.assertEqual(self.rows(), [("store", f'[{i},{{"v":{i}}}]'.encode()) for i in range(5)])
        for d in ds:
            self.failureResultOf(d, Closed)

    def test_replyRemovesTheRow(self) -> None:
        up = self.connect()
        d = up.call("store", "k", [1, 2], durable=True)
        self.accept().flush()
        self.assertEqual(self.successResultOf(d), ("ok", "k"))
        self.assertEqual(self.stored, [("k", [1, 2])])
        self.assertEqual(up.outbox.depth, 0)
        self.clock.advance(0)  # the removal's commit, once per turn
        up.close()
        self.assertEqual(self.rows(), [])

    def test_restartSendsPendingCallsInOrderToTheReplyEvent(self) -> None:
        up = self.connect()
        ds = [up.call("store", i, "x", durable=True) for i in range(3)]
        up.close()
        for d in ds:
            self.failureResultOf(d, Closed)
        up2 = self.connect()
        self.assertEqual(up2.outbox.restored, 3)
        replies: List[OutboxReply] = []
        up2.on("reply", replies.append)
        d = up2.call("store", 3, "y", durable=True)
        self.accept().flush()
        self.assertEqual(self.stored, [(0, "x"), (1, "x"), (2, "x"), (3, "y")])
        self.assertEqual([(r.method, r.args, r.values) for r in replies], [("store", (i, "x"), ("ok", i)) for i in range(3)])
        self.assertEqual([r.id for r in replies], sorted(r.id for r in replies))
        self.assertEqual(self.successResultOf(d), ("ok", 3))

    def test_resentAfterLinkLoss(self) -> None:
        """
        A call whose link dropped before the reply is sent again on the
        next link, ahead of later calls: at-least-once.
        """
        up = self.connect()
        d1 = up.call("hold", 1, durable=True)
        self.accept().cut()
        d2 = up.call("hold", 2, durable=True)
        self.clock.advance(up.status()["nextAttemptIn"])
        link = self.accept()
        self.assertEqual(self.stored, [1, 1, 2])
        self.held[1]("one")
        self.held[2]("two")
        link.flush()
        self.assertEqual(self.successResultOf(d1), "one")
        self.assertEqual(self.successResultOf(d2), "two")

    def test_callablesRefused(self) -> None:
        up = self.connect()
        with self.assertRaises(TypeError) as caught:
            up.call("store", "k", {"cb": lambda: None}, durable=True)
        self.assertIn("callable", str(caught.exception))
        self.assertIn("outlive the process", str(caught.exception))
        with self.assertRaises(TypeError):
            up.call("store", "k", object(), durable=True)
        self.assertEqual(up.outbox.depth, 0)

    def test_bounded(self) -> None:
        up = self.connect(outboxMax=2)
        ds = [up.call("echo", 1, durable=True), up.call("echo", 2, durable=True)]
        self.assertRaises(OutboxFull, up.call, "echo", 3, durable=True)
        self.assertRaises(OutboxFull, up.callMany, [("echo", 3)], durable=True)
        self.accept().flush()
        self.assertEqual([self.successResultOf(d) for d in ds], [1, 2])

    def test_callManyCommitsTogether(self) -> None:
        up = self.connect()
        ds = up.callMany([("echo", i) for i in range(100)], durable=True)
        self.accept().flush()
        self.assertEqual([self.successResultOf(d) for d in ds], list(range(100)))

    def test_noOutbox(self) -> None:
        up = upnode.upnode(reactor=self.clock).connect(FakeEndpoint(self.clock), {"ping": 0})
        self.ups.append(up)
        self.assertRaises(TypeError, up.call, "echo", 1, durable=True)

    def test_oneFilePerClient(self) -> None:
        self.connect()
        self.assertRaises(OutboxError, self.connect)

    def test_lockedByAnotherConnection(self) -> None:
        os.makedirs(os.path.dirname(self.path))
        other = sqlite3.connect(self.path, isolation_level=None)
        other.execute("CREATE TABLE t (x)")
        other.execute("BEGIN EXCLUSIVE")
        self.addCleanup(other.close)
        with self.assertRaises(OutboxError) as caught:
            self.connect()
        self.assertIn("locked", str(caught.exception))

    def test_corrupt(self) -> None:
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(b"not a database" * 500)
        with self.assertRaises(OutboxError) as caught:
            self.connect()
        self.assertIn("corrupt", str(caught.exception))

    def test_notAnOutbox(self) -> None:
        os.makedirs(os.path.dirname(self.path))
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE calls (a, b)")
        db.commit()
        db.close()
        self.assertRaises(OutboxError, self.connect)

    def test_timeoutLeavesTheCallInTheOutbox(self) -> None:
        up = self.connect()
        replies: List[OutboxReply] = []
        up.on("reply", replies.append)
        d = up.call("echo", 5, durable=True, timeout=2)
        self.clock.advance(2)
        self.failureResultOf(d, UpTimeout)
        self.accept().flush()
        self.assertEqual([r.values for r in replies], [(5,)])

    def test_missingMethodFails(self) -> None:
        up = self.connect()
        d = up.call("nope", 1, durable=True)
        self.accept()
        self.failureResultOf(d, AttributeError)
        self.assertEqual(up.outbox.depth, 0)

    def test_badOptions(self) -> None:
        self.assertRaises(ValueError, Outbox, self.path, 0)
        self.assertRaises(ValueError, Outbox, self.path, None, "sometimes")
