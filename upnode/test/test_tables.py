"""
The callback tables (L{upnode._tables}), on their own and through a
connection.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from upnode import DnodeProtocol, Limits, ProtocolError, RejectedMessage
from upnode._arity import ANY
from upnode._remote import Sender
from upnode._tables import CULL_BATCH, CULL_DELAY, CULL_IDLE, LocalCallbacks, RemoteProxies, TooManyCallbacks
from upnode.dnode import DnodeFactory
from upnode.testing import connectInMemory

from .test_protocol import Harness, line


class CountingSignature:
    """
    inspect.signature, counting its calls.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.real = inspect.signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


class ArityTests(SynchronousTestCase):
    def test_builtinCallbackArityOnce(self) -> None:
        """
        A builtin callback (no C{__code__}: C{list.append}, C{print}) has
        its arity worked out once, when it is handed out, not on every
        message that calls it.
        """
        counting = CountingSignature()
        self.patch(inspect, "signature", counting)
        h = Harness()
        h.sent()
        got: List[Any] = []
        h.proto.request("x", [got.append])
        [call] = h.sent()
        cbId = int(next(iter(call["callbacks"])))
        before = counting.calls
        h.proto.dataReceived(b"".join(line({"method": cbId, "arguments": [i, "extra"]}) for i in range(100)))
        self.assertEqual(got, list(range(100)))
        self.assertEqual(counting.calls, before)
        self.assertEqual(h.proto._session.local.entries[cbId][1], 1)

    def test_exposedBuiltinArityOnce(self) -> None:
        """
        So has an exposed method, when the members are sent.
        """
        counting = CountingSignature()
        self.patch(inspect, "signature", counting)
        got: List[Any] = []
        proto = DnodeProtocol({"push": got.append}, clock=Clock())
        proto.makeConnection(StringTransport())
        before = counting.calls
        proto.dataReceived(b"".join(line({"method": "push", "arguments": [i, "extra"]}) for i in range(50)))
        self.assertEqual(got, list(range(50)))
        self.assertEqual(counting.calls, before)


class LocalCallbacksTests(SynchronousTestCase):
    def test_idsKeptAndResent(self) -> None:
        local = LocalCallbacks(None)

        def f(a: Any, b: Any) -> None:
            pass

        self.assertEqual(local.idOf(f), 0)
        self.assertEqual(local.idOf(f), 0)
        self.assertEqual(set(local.resent), {0})
        self.assertEqual(local.entries[0], (f, 2, 2))
        self.assertEqual(local.idOf(print), 1)
        self.assertEqual(local.entries[1][1], ANY)

    def test_takeBack(self) -> None:
        local = LocalCallbacks(None)
        local.idOf(print)
        local.idOf(len)
        local.takeBack(1)
        self.assertEqual((len(local), local.nextId, list(local.ids)), (1, 1, [print]))

    def test_limit(self) -> None:
        local = LocalCallbacks(2)
        local.idOf(print)
        local.idOf(len)
        self.assertRaises(TooManyCallbacks, local.idOf, repr)
        self.assertEqual(local.idOf(len), 1)  # one it has is fine

    def test_cull(self) -> None:
        local = LocalCallbacks(None)
        local.idOf(print)
        local.idOf(len)
        local.idOf(len)
        self.assertRaises(RejectedMessage, local.cull, [0, 1, "x"])
        self.assertEqual(list(local.entries), [1])  # 1 was sent twice: kept


class RemoteProxiesTests(SynchronousTestCase):
    def make(self, limit: int = 100) -> Any:
        clock = Clock()
        due: List[None] = []
        proxies = RemoteProxies(limit, Sender(lambda m, a: None), clock.callLater, lambda: due.append(None), clock.seconds)
        return proxies, clock, due

    def test_timedAndBatched(self) -> None:
        proxies, clock, due = self.make()
        p = proxies.proxyFor(3)
        self.assertIs(proxies.proxyFor(3), p)
        del p
        self.assertEqual((list(proxies.pending), due), ([3], []))
        clock.advance(CULL_DELAY)
        self.assertEqual(due, [None])
        self.assertEqual(proxies.takeCulls(), b'{"method":"cull","arguments":[3]}\n')
        held = [proxies.proxyFor(i) for i in range(CULL_BATCH)]
        del held
        self.assertEqual(len(due), 2)  # a full batch is due at once

    def test_receivingWaits(self) -> None:
        proxies, clock, due = self.make()
        proxies.receiving = True
        proxies.proxyFor(1)
        self.assertEqual((list(proxies.pending), due, clock.getDelayedCalls()), ([1], [], []))

    def answered(self, proxies: Any, callbackId: int) -> bytes:
        """
        A received chunk whose answer let go of the proxy of
        C{callbackId}: what its end writes of the culls.
        """
        proxies.receiving = True
        proxies.proxyFor(callbackId)
        proxies.receiving = False
        return proxies.culls()  # type: ignore[no-any-return]

    def test_busyConnectionBatches(self) -> None:
        """
        On a busy connection (chunks that leave culls less than CULL_DELAY
        apart: calls made one at a time, back to back) the culls wait for a
        batch or the delay, not one message a call.
        """
        proxies, clock, due = self.make()
        self.assertEqual(self.answered(proxies, 1), b"")  # a connection's first waits
        clock.advance(0.001)
        self.assertEqual(self.answered(proxies, 2), b"")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(CULL_DELAY)
        self.assertEqual(self.answered(proxies, 3), b'{"method":"cull","arguments":[1,2,3]}\n')

    def test_idleConnectionCullsWithTheAnswers(self) -> None:
        """
        On a connection answered now and then (a ping a second, a client
        calling every 100 ms), a chunk's culls leave with its answers: no
        timer, no write of their own.
        """
        proxies, clock, due = self.make()
        self.answered(proxies, 1)
        clock.advance(CULL_DELAY)
        clock.advance(CULL_IDLE)  # (the first's culls are handed to due)
        self.assertEqual(due, [None])
        proxies.takeCulls()
        clock.advance(0.1)
        self.assertEqual(self.answered(proxies, 2), b'{"method":"cull","arguments":[2]}\n')
        clock.advance(CULL_DELAY)
        self.assertEqual(self.answered(proxies, 3), b'{"method":"cull","arguments":[3]}\n')
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_limit(self) -> None:
        proxies, clock, due = self.make(limit=1)
        kept = proxies.proxyFor(1)
        self.assertRaises(ProtocolError, proxies.proxyFor, 2)
        del kept

    def test_stop(self) -> None:
        proxies, clock, due = self.make()
        kept = proxies.proxyFor(1)
        proxies.proxyFor(2)
        proxies.stop()
        del kept
        self.assertEqual((proxies.pending, clock.getDelayedCalls(), due), ({}, [], []))


class ServerRoleTests(SynchronousTestCase):
    def test_plainDnodeServerBoundsLocalCallbacks(self) -> None:
        """
        A plain dnode server (C{DnodeFactory}, no guard) is a server: a peer
        that never culls cannot make it keep more than maxLocalCallbacks of
        its callables.
        """
        clock = Clock()
        factory = DnodeFactory({"give": lambda cb: cb(lambda: None)}, Limits(maxLocalCallbacks=10), clock)
        client = DnodeProtocol(clock=clock)
        client.isClient = True
        client.sendCulls = False  # a peer that never culls
        link = connectInMemory(factory, client, clock)
        link.flush()
        fails: List[Any] = []
        link.server.on("fail", fails.append)
        kept: List[Any] = []
        for _ in range(50):
            if not link.client.connected:
                break
            link.client.remote.give(kept.append)
            link.flush()
        self.assertFalse(link.server.connected)
        self.assertIn("more than 10 of our callbacks", str(fails[0]))
        self.flushLoggedErrors()

    def test_clientKeepsItsCallbacks(self) -> None:
        """
        A client keeps what its server hands it: the bound is a server's.
        """
        h = Harness(Limits(maxLocalCallbacks=2), client=True)
        for _ in range(5):
            h.proto.request("x", [lambda: None])
        self.assertTrue(h.proto.connected)
        self.assertEqual(json.loads(h.transport.value().splitlines()[-1])["method"], "x")
