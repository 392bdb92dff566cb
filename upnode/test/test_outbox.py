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
from upnode import Closed, UpnodeServerFactory, UpTimeout, _callfile
from upnode._limits import Limits
from upnode._outbox import (
    REMOVAL_RETRY,
    Outbox,
    OutboxCallFailed,
    OutboxError,
    OutboxFull,
    OutboxReply,
)
from upnode._outboxwindow import WINDOW_BYTES, WINDOW_CALLS
from upnode.testing import FakeEndpoint, MemoryLink


class _OutboxCase(SynchronousTestCase):
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

    def alter(self, sql: str, *args: Any) -> None:
        # (The file is not held: a client would have it locked.)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(sql, args)
        finally:
            db.close()

    def rows(self) -> List[Any]:
        # The client holds the file's exclusive lock: only a closed one can be read.
        db = sqlite3.connect(self.path)
        try:
            return [tuple(row) for row in db.execute("SELECT method, args FROM calls ORDER BY id")]
        finally:
            db.close()


class OutboxTests(_OutboxCase):
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
        self.patch(_callfile, "_pause", lambda seconds: None)
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

    def test_corruptCall(self) -> None:
        """
        A call whose arguments in the file are not a JSON list is said as
        a corrupt outbox, which is not left held: once mended, it opens.
        """
        self.connect().close()
        self.alter("INSERT INTO calls (method, args) VALUES ('echo', '[1]')")
        for bad in (b"[1", b'{"a": 1}'):
            self.alter("UPDATE calls SET args = ?", bad)
            with self.assertRaises(OutboxError) as caught:
                self.connect()
            self.assertIn("corrupt", str(caught.exception))
            self.assertIn("call 1", str(caught.exception))
        self.alter("UPDATE calls SET args = '[1]'")
        self.assertEqual(self.connect().outbox.restored, 1)

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


class _FullDisk:
    """
    An outbox's database whose disk is full for the statements it names
    (sqlite3's connection cannot be patched: this wraps it).
    """

    def __init__(self, db: sqlite3.Connection, statement: str) -> None:
        self.db = db
        self.statement = statement
        self.full = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def _check(self, sql: str) -> None:
        if self.full and sql.startswith(self.statement):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self.db.executemany(sql, *args)


class BacklogTests(_OutboxCase):
    """
    A backlog goes under back-pressure; calls the link would refuse are
    refused at call(), or fail after a bounded number of tries; the disk's
    failures are retried and said.
    """

    def test_sendsUnderBackPressure(self) -> None:
        """
        A backlog is written while the transport takes it, at most
        WINDOW_CALLS unanswered at once, the rest on drain and as replies
        come: every call runs once, in order.
        """
        up = self.connect()
        n = 3 * WINDOW_CALLS
        ds = up.callMany([("store", i, None) for i in range(n)], durable=True)
        link = self.endpoint.accept(self.server)
        self.links.append(link)
        link.clientTransport.bufferSize = 16 * 1024
        link.pump()  # the handshake
        link.pump()
        # Nothing piles up behind the paused transport.
        self.assertTrue(up.conn.paused)
        self.assertLess(up.conn._flow.heldBytes, 1024)
        link.clientTransport.bufferSize = 10**9
        link.flush()
        self.assertEqual([self.successResultOf(d) for d in ds], [("ok", i) for i in range(n)])
        self.assertEqual(self.stored, [(i, None) for i in range(n)])

    def test_windowBoundsCallsInFlight(self) -> None:
        up = self.connect()
        link = self.accept()
        ds = up.callMany([("hold", i) for i in range(WINDOW_CALLS + 10)], durable=True)
        link.flush()
        self.assertEqual(self.stored, list(range(WINDOW_CALLS)))
        for cb in self.held[:5]:
            cb("ok")
        link.flush()
        self.assertEqual(self.stored, list(range(WINDOW_CALLS + 5)))
        self.assertEqual([self.successResultOf(d) for d in ds[:5]], ["ok"] * 5)
        up.close()
        for d in ds[5:]:
            self.failureResultOf(d, Closed)

    def test_windowBoundsBytesInFlight(self) -> None:
        """
        At most WINDOW_BYTES of calls are unanswered on a link, the next
        going as replies come; one call goes alone whatever its size, and
        holds the next until it is answered.
        """
        up = self.connect()
        link = self.accept()
        half = "x" * (WINDOW_BYTES // 2)
        ds = up.callMany([("hold", half) for _ in range(3)], durable=True)
        link.flush()
        self.assertEqual(len(self.stored), 2)
        self.held[0]("ok")
        link.flush()
        self.assertEqual(len(self.stored), 3)
        for cb in self.held[1:]:
            cb("ok")
        link.flush()
        self.assertEqual([self.successResultOf(d) for d in ds], ["ok"] * 3)
        whole, small = up.callMany([("hold", "y" * (WINDOW_BYTES + 1)), ("hold", "z")], durable=True)
        link.flush()
        self.assertEqual(len(self.stored), 4)
        self.held[3]("ok")
        link.flush()
        self.assertEqual(self.successResultOf(whole), "ok")
        self.assertEqual(self.stored[-1], "z")
        self.held[4]("ok")
        link.flush()
        self.assertEqual(self.successResultOf(small), "ok")
        # The server gives back the memory of its large lines a second
        # after the last of them is gone.
        up.close()
        link.flush()
        self.clock.advance(1)

    def test_tooLongRefusedAtCall(self) -> None:
        up = self.connect(maxLineLength=1000)
        with self.assertRaises(ValueError) as caught:
            up.call("store", "k", "x" * 1000, durable=True)
        self.assertIn("maxLineLength", str(caught.exception))
        self.assertIn("nothing was committed", str(caught.exception))
        self.assertRaises(ValueError, up.callMany, [("echo", 1), ("echo", "x" * 2000)], durable=True)
        d = up.call("store", "k", "x" * 800, durable=True)
        self.assertEqual(up.outbox.depth, 1)
        self.accept().flush()
        self.assertEqual(self.successResultOf(d), ("ok", "k"))

    def test_tooDeepRefusedAtCall(self) -> None:
        up = self.connect(maxDepth=10)
        deep: Any = 1
        for _ in range(9):
            deep = [deep]
        with self.assertRaises(ValueError) as caught:
            up.call("echo", deep, durable=True)
        self.assertIn("maxDepth", str(caught.exception))
        d = up.call("echo", deep[0], durable=True)
        self.accept().flush()
        self.assertEqual(self.successResultOf(d), deep[0])
        for _ in range(300):
            deep = [deep]
        self.assertRaises(ValueError, up.call, "echo", deep, durable=True)
        self.assertEqual(up.outbox.depth, 0)

    def test_refusedCallFailsAfterMaxTries(self) -> None:
        """
        A call the server closes the link on fails after maxTries links,
        with an outbox-failed event, and the calls behind it go.
        """
        self.server = UpnodeServerFactory(
            {"echo": lambda v, cb: cb(v)}, ping=0, clock=self.clock, limits=Limits(maxLineLength=500)
        )
        up = self.connect()
        up.on("error", lambda f: None)
        up.outbox.maxTries = 3
        failed: List[OutboxCallFailed] = []
        up.on("outbox-failed", failed.append)
        bad = up.call("echo", "x" * 1000, durable=True)
        good = up.call("echo", "small", durable=True)
        self.accept()
        for _ in range(5):
            if up.state != "up":
                self.clock.advance(up.status()["nextAttemptIn"] or 0)
                self.accept()
            if failed:
                break
            self.assertEqual([c.tries for c in up.outbox.stuck()], [len(self.links)])
        self.assertEqual(len(self.links), 3)
        self.assertEqual([(e.id, e.method) for e in failed], [(1, "echo")])
        self.assertIn("3 times in a row", str(failed[0]))
        self.failureResultOf(bad, OutboxCallFailed)
        self.clock.advance(up.status()["nextAttemptIn"])
        self.accept().flush()
        self.assertEqual(self.successResultOf(good), "small")
        self.clock.advance(0)
        self.assertEqual(up.outbox.depth, 0)
        self.clock.advance(60)  # the server's summary of what it dropped

    def test_dropByIdAndList(self) -> None:
        up = self.connect()
        ds = [up.call("hold", i, durable=True) for i in range(3)]
        self.assertEqual([(c.id, c.method, c.args, c.sent) for c in up.outbox.calls()], [(i + 1, "hold", (i,), False) for i in range(3)])
        dropped = up.outbox.drop(2)
        self.assertEqual((dropped.id, dropped.args), (2, (1,)))
        error = self.failureResultOf(ds[1], OutboxCallFailed).value
        self.assertEqual((error.id, error.method), (2, "hold"))
        self.assertRaises(KeyError, up.outbox.drop, 2)
        self.accept().flush()
        self.assertEqual(self.stored, [0, 2])
        self.assertEqual([c.sent for c in up.outbox.calls(1)], [True])
        up.close()
        self.failureResultOf(ds[0], Closed)
        self.failureResultOf(ds[2], Closed)
        self.assertEqual(self.rows(), [("hold", b"[0]"), ("hold", b"[2]")])

    def test_failedRemovalsAreRetried(self) -> None:
        """
        A removal the disk refuses stays counted in depth and is tried
        again; nothing answered is sent again once it is committed.
        """
        for refused in ("DELETE", "COMMIT"):  # (refused at the commit: rolled back)
            up = self.connect()
            full = up.outbox.file.db = _FullDisk(up.outbox.file.db, refused)
            ds = [up.call("echo", i, durable=True) for i in range(3)]
            self.accept().flush()
            self.assertEqual([self.successResultOf(d) for d in ds], [0, 1, 2])
            self.assertEqual(up.outbox.depth, 3)
            self.assertEqual(up.outbox.unanswered, 0)
            self.assertFalse(full.db.in_transaction)
            full.full = False
            self.clock.advance(REMOVAL_RETRY)
            self.assertEqual(up.outbox.depth, 0)
            up.outbox.file.db = full.db
            up.close()
            self.assertEqual(self.rows(), [])

    def test_fullDiskSaidByCallMany(self) -> None:
        up = self.connect()
        db = up.outbox.file.db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 1}")
        with self.assertRaises(OutboxError) as caught:
            up.callMany([("echo", "y" * 1000) for _ in range(200)], durable=True)
        self.assertIn("disk is full", str(caught.exception))
        self.assertNotIn("rollback", str(caught.exception))
        self.assertEqual(up.outbox.depth, 0)
        db.execute("PRAGMA max_page_count = 1073741823")
        d = up.call("echo", 1, durable=True)
        self.accept().flush()
        self.assertEqual(self.successResultOf(d), 1)

    def test_fullDiskSaidByCall(self) -> None:
        up = self.connect()
        up.outbox.file.db = _FullDisk(up.outbox.file.db, "INSERT")
        with self.assertRaises(OutboxError) as caught:
            up.call("echo", 1, durable=True)
        self.assertIn("the outbox file's disk is full", str(caught.exception))
        up.outbox.file.db = up.outbox.file.db.db

    def test_openingMeetsAShortLock(self) -> None:
        """
        Another process holding the new file's lock for a moment (as when
        two open it at once) does not refuse the opening: it tries again.
        """
        os.makedirs(os.path.dirname(self.path))
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        pauses: List[float] = []

        def pause(seconds: float) -> None:
            pauses.append(seconds)
            if other.in_transaction:
                other.execute("COMMIT")

        self.patch(_callfile, "_pause", pause)
        up = self.connect()
        self.assertEqual(len(pauses), 1)
        self.assertEqual(up.outbox.depth, 0)

    def test_openingPausesAreDrawn(self) -> None:
        """
        The pauses between tries at a locked file are drawn between half
        and one and a half times OPEN_PAUSE: two processes opening a new
        file at once, whose tries met, do not meet again at every try (and
        both give up); a lock still held through every try is refused.
        """
        os.makedirs(os.path.dirname(self.path))
        other = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        pauses: List[float] = []
        draws = iter([0.0, 1.0, 0.5] * _callfile.OPEN_TRIES)
        self.patch(_callfile, "_pause", pauses.append)
        self.patch(_callfile, "_jitter", lambda: next(draws))
        with self.assertRaises(OutboxError) as caught:
            self.connect()
        self.assertIn("locked by another process", str(caught.exception))
        self.assertEqual(len(pauses), _callfile.OPEN_TRIES - 1)
        half, whole, more = _callfile.OPEN_PAUSE * 0.5, _callfile.OPEN_PAUSE, _callfile.OPEN_PAUSE * 1.5
        self.assertEqual([round(p, 6) for p in pauses[:3]], [round(x, 6) for x in (half, more, whole)])
