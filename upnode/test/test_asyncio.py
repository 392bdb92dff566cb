"""
upnode.aio's objects in memory: asyncio futures from the client's
transactions and calls, on an event loop of the test's own, with
task.Clock as the reactor.  (Whole programs run by asyncio.run, with and
without uvloop: test_asyncio_programs.)
"""

from __future__ import annotations

import asyncio
from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, UpnodeServerFactory, UpTimeout, aio
from upnode.testing import FakeEndpoint


class ClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.factory = upnode.upnode(reactor=self.clock).connect(self.endpoint, ping=0, jitter=0)
        self.up = aio.Client(self.factory, self.loop)
        self.server = UpnodeServerFactory({"echo": lambda v, cb: cb(v)}, ping=0, clock=self.clock)

    def settle(self) -> None:
        # Let the loop run what the futures scheduled.
        self.loop.run_until_complete(asyncio.sleep(0))

    def test_futures(self) -> None:
        transaction = self.up(timeout=5.0)
        call = self.up.call("echo", "hi", timeout=5)
        many = self.up.callMany([("echo", 1), ("echo", 2)])
        self.assertIsInstance(transaction, asyncio.Future)
        link = self.endpoint.accept(self.server)
        link.flush()
        link.flush()
        self.settle()
        self.assertIs(transaction.result(), self.factory.remote)
        self.assertEqual(call.result(), "hi")
        self.assertEqual([f.result() for f in many], [1, 2])
        closed = self.up.close()
        link.flush()
        self.settle()
        self.assertTrue(closed.done())

    def test_failures(self) -> None:
        late = self.up(timeout=1.0)
        waiting = self.up.call("echo", "x")
        self.clock.advance(1.0)
        self.up.close()
        self.settle()
        self.assertIsInstance(late.exception(), UpTimeout)
        self.assertIsInstance(late.exception(), TimeoutError)
        self.assertIsInstance(waiting.exception(), Closed)

    def test_nodeFormsAndTheRest(self) -> None:
        """
        up(cb) is Node's form still, and every other attribute is the
        client's own.
        """
        seen: List[Any] = []
        self.assertIsNone(self.up(lambda remote: seen.append(remote)))
        self.up.on("up", lambda: seen.append("up"))
        self.assertEqual(self.up.status()["state"], "connecting")
        self.endpoint.accept(self.server).flush()
        self.assertEqual(seen, [self.factory.remote, "up"])
        self.up.close()


class StartTests(SynchronousTestCase):
    def test_needsARunningLoop(self) -> None:
        self.assertRaises(RuntimeError, aio.start)
