"""
up.call(), @replies, failover: deterministic, with task.Clock.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, ConnectionLostError, RemoteError, UpnodeServerFactory, UpTimeout, replies
from upnode._calls import Call
from upnode.testing import FakeEndpoint, MemoryLink


class CallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.held: List[Any] = []
        self.seen: List[Any] = []

        def hold(value: Any, cb: Any) -> None:
            self.seen.append(value)
            self.held.append(cb)

        @replies
        def double(n: int) -> int:
            return n * 2

        @replies
        def later(n: int) -> Deferred:
            return succeed(n + 1)

        @replies
        async def coro(n: int) -> int:
            return n + 100

        @replies
        def broken(n: int) -> int:
            raise ValueError(f"bad {n}")

        self.server = UpnodeServerFactory(
            {
                "echo": lambda v, cb: cb(v),
                "pair": lambda cb: cb(1, 2),
                "hold": hold,
                "double": double,
                "later": later,
                "coro": coro,
                "broken": broken,
            },
            ping=0,
            clock=self.clock,
        )
        self.up = upnode.upnode(reactor=self.clock).connect(self.endpoint, {"ping": 0, "jitter": 0})
        self.links: List[MemoryLink] = []

    def tearDown(self) -> None:
        self.up.close()
        for link in self.links:
            link.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def accept(self) -> MemoryLink:
        link = self.endpoint.accept(self.server)
        link.flush()
        self.links.append(link)
        return link

    def test_reply(self) -> None:
        d1 = self.up.call("echo", {"a": 1})
        d2 = self.up.call("pair")
        link = self.accept()
        link.flush()
        self.assertEqual(self.successResultOf(d1), {"a": 1})
        self.assertEqual(self.successResultOf(d2), (1, 2))

    def test_callKeepsItsStateInSlots(self) -> None:
        """
        A call carries no instance dict (one is made for every up.call):
        its state is in slots, its base's included.
        """
        call = Call(self.up, "echo", (1,), None, False, False)
        self.assertFalse(hasattr(call, "__dict__"))
        self.assertRaises(AttributeError, setattr, call, "unexpected", 1)

    def test_timeoutCountsFromTheCall(self) -> None:
        """
        The timeout runs from the call, through the time the link was down,
        and a reply after it is dropped.
        """
        d = self.up.call("hold", 1, timeout=5.0)
        self.clock.advance(4.0)
        link = self.accept()
        self.assertEqual(self.seen, [1])
        self.clock.advance(1.0)
        self.failureResultOf(d, UpTimeout)
        self.held[0]("late")
        link.flush()  # nothing more happens: the Deferred fired once

    def test_linkLostBeforeReply(self) -> None:
        d = self.up.call("hold", 1)
        link = self.accept()
        link.cut()
        self.failureResultOf(d, ConnectionLostError)

    def test_cancel(self) -> None:
        """
        A call cancelled while it waits for a link leaves the queue and is
        never sent; one cancelled once sent is over: its late reply and the
        loss of its link leave it as it is.
        """
        waiting = self.up.call("hold", 1, retry=True)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.up.queued, 0)
        link = self.accept()
        sent = self.up.call("hold", 2, retry=True)
        link.flush()
        self.assertEqual(self.seen, [2])
        sent.cancel()
        self.failureResultOf(sent, CancelledError)
        self.held[0]("late")
        link.flush()
        link.cut()
        self.clock.advance(self.up.status()["nextAttemptIn"])
        self.accept()
        self.assertEqual(self.seen, [2])  # not sent again

    def test_retry(self) -> None:
        """
        With retry, a call whose link dropped is sent again on the next
        link: the server sees it twice (at-least-once).
        """
        d = self.up.call("hold", 7, retry=True, timeout=30)
        self.accept().cut()
        self.assertNoResult(d)
        self.clock.advance(self.up.status()["nextAttemptIn"])
        link = self.accept()
        self.assertEqual(self.seen, [7, 7])
        self.held[-1]("done")
        link.flush()
        self.assertEqual(self.successResultOf(d), "done")

    def test_closeFailsCalls(self) -> None:
        waiting = self.up.call("echo", 1)
        self.up.close()
        self.failureResultOf(waiting, Closed)

    def test_closeFailsCallInFlight(self) -> None:
        self.accept()
        d = self.up.call("hold", 1)
        self.links[0].flush()
        self.up.close()
        self.links[0].flush()
        self.failureResultOf(d, Closed)

    def test_noSuchMethod(self) -> None:
        d = self.up.call("nope")
        self.accept()
        self.failureResultOf(d, AttributeError)

    def test_repliesErrorFirst(self) -> None:
        """
        @replies answers plain, Deferred and async methods error-first;
        errorFirst=True turns that into the value or a RemoteError.
        """
        calls = [
            self.up.call("double", 21, errorFirst=True),
            self.up.call("later", 1, errorFirst=True),
            self.up.call("coro", 1, errorFirst=True),
            self.up.call("broken", 3, errorFirst=True),
            self.up.call("double", 2),
        ]
        link = self.accept()
        link.flush()
        self.assertEqual([self.successResultOf(d) for d in calls[:3]], [42, 2, 101])
        failure = self.failureResultOf(calls[3], RemoteError)
        self.assertEqual(failure.value.args[0], {"error": "ValueError", "message": "bad 3"})
        self.assertEqual(self.successResultOf(calls[4]), (None, 4))


class FailoverTests(SynchronousTestCase):
    def test_movesToTheNextEndpoint(self) -> None:
        """
        Several endpoints: a failed attempt moves to the next one, and the
        connect callback re-establishes state on whichever is reached.
        """
        clock = Clock()
        first, second = FakeEndpoint(clock), FakeEndpoint(clock)
        callbacks: List[Any] = []

        def onRemote(remote: Any, conn: Any) -> None:
            callbacks.append(remote.name)
            conn.emit("up", remote)

        up = upnode.upnode(reactor=clock).connect(
            {"endpoints": [first, second], "ping": 0, "jitter": 0}, onRemote
        )
        d = up()
        first.refuse()
        clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual((len(first.attempts), len(second.attempts)), (0, 1))
        link = second.accept(UpnodeServerFactory({"name": "second"}, ping=0, clock=clock))
        link.flush()
        self.assertEqual(self.successResultOf(d).name, "second")
        link.cut()
        clock.advance(up.status()["nextAttemptIn"])
        # A link that was up is lost: the next attempt is on the next
        # endpoint (the one that served may be the host that went).
        self.assertEqual((len(first.attempts), len(second.attempts)), (1, 0))
        first.refuse()
        clock.advance(up.status()["nextAttemptIn"])
        link = second.accept(UpnodeServerFactory({"name": "second again"}, ping=0, clock=clock))
        link.flush()
        self.assertEqual(callbacks, ["second", "second again"])
        up.close()
        link.flush()
        self.assertEqual(clock.getDelayedCalls(), [])
