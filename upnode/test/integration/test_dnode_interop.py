"""
Our dnode against the real Node dnode 1.2.2, both ways, over loopback.
"""

from __future__ import annotations

import gc
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from upnode import dnode

from .nodepeer import NodePeer


def call(method: Any, *args: Any) -> Deferred[Any]:
    """
    Call a remote method with a final callback; fire with what it gets.
    """
    d: Deferred[Any] = Deferred()
    method(*args, lambda *values: d.callback(values[0] if len(values) == 1 else values))
    return d


class PythonClientNodeServer(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.peer = NodePeer.spawn("dnode-server", "0")
        self.addCleanup(self.peer.stop)
        port = (await self.peer.next("listening"))["port"]
        self.conn = await dnode.connect(port, "127.0.0.1")
        self.addCleanup(self.conn.end)
        self.remote = self.conn.remote

    async def test_data(self) -> None:
        """
        Nested data, unicode, floats and null come back unchanged; NaN goes
        out as null; data members arrive as plain attributes.
        """
        value = {"n": [1, 2.5, -0.125, None, True], "s": "héllo ✓ 𝄞", "e": {}, "a": []}
        self.assertEqual(await call(self.remote.echo, value), value)
        self.assertEqual(await call(self.remote.echo, [float("nan"), 1e300]), [None, 1e300])
        self.assertEqual(self.remote.boop, 6)

    async def test_callbackCalledRepeatedly(self) -> None:
        """
        Node calls our callback twice; we answer through the callbacks it
        passes us.
        """
        got: List[Any] = []
        done: Deferred[None] = Deferred()

        def cb(n: int, reply: Any) -> None:
            got.append(n)
            reply(n * 10)
            if len(got) == 2:
                done.callback(None)

        self.remote.twice(cb)
        await done
        self.assertEqual(got, [1, 2])
        replies = [await self.peer.next("reply"), await self.peer.next("reply")]
        self.assertEqual(sorted(r["value"] for r in replies), [10, 20])

    async def test_cyclesBothWays(self) -> None:
        o = await call(self.remote.cycle)
        self.assertIs(o["me"], o)
        self.assertEqual(o["n"], 7)
        mine: dict = {"n": 3}
        mine["me"] = mine
        back = await call(self.remote.mirror, mine)
        self.assertTrue((await self.peer.next("mirror"))["cyclic"])
        self.assertIs(back["me"], back)

    async def test_cullFromNode(self) -> None:
        """
        Node's weak references cull the callbacks we sent once it collects
        them, and our table shrinks back.
        """
        base = self.conn.callbackCount()["local"]
        for i in range(50):
            self.assertEqual(await call(self.remote.echo, i), i)
        self.assertEqual(self.conn.callbackCount()["local"], base + 50)
        await call(self.remote.collect)
        for _ in range(50):
            if self.conn.callbackCount()["local"] <= base + 1:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertLessEqual(self.conn.callbackCount()["local"], base + 1)

    async def test_cullToNode(self) -> None:
        """
        When our proxies for Node's callbacks are collected we cull them and
        Node's table shrinks.
        """
        before = (await call(self.remote.tables))["local"]
        got: List[Any] = []
        done: Deferred[None] = Deferred()
        self.remote.twice(lambda n, reply: (got.append(reply), len(got) == 2 and done.callback(None)))
        await done
        grown = (await call(self.remote.tables))["local"]
        self.assertEqual(grown, before + 2)  # the two reply callbacks Node sent us
        del got[:]
        gc.collect()
        # (Collected while a received chunk was handled, they are culled
        # once they have waited CULL_DELAY, with the next chunk's answers,
        # or on their own CULL_IDLE later.)
        for _ in range(30):
            await deferLater(reactor, 0.1, lambda: None)
            if (await call(self.remote.tables))["local"] == before:
                break
        self.assertEqual((await call(self.remote.tables))["local"], before)
        functions = [name for name in self.remote if callable(self.remote[name])]
        self.assertEqual(self.conn.callbackCount()["remote"], len(functions))


class NodeClientPythonServer(TestCase):
    timeout = 60

    async def test_scenario(self) -> None:
        """
        Node's dnode client runs its scenario against our server.
        """
        tables: List[Any] = []

        def cons(remote: Any, conn: Any) -> dict:
            def twice(cb: Any) -> None:
                cb(1, lambda v: None)
                cb(2, lambda v: None)

            def mirror(value: Any, cb: Any) -> None:
                cb(value)

            def cycle(cb: Any) -> None:
                o: dict = {"n": 7}
                o["me"] = o
                cb(o)

            def tablesNow(cb: Any) -> None:
                tables.append(conn.callbackCount())
                cb({"local": conn.callbackCount()["local"]})

            return {
                "echo": lambda value, cb: cb(value),
                "twice": twice,
                "mirror": mirror,
                "cycle": cycle,
                "tables": tablesNow,
                "boop": 6,
            }

        port = await dnode.listen(cons, 0, "127.0.0.1")
        self.addCleanup(port.stopListening)
        peer = NodePeer.spawn("dnode-client", str(port.getHost().port))
        self.addCleanup(peer.stop)
        results = (await peer.next("results"))["results"]
        self.assertEqual(
            results,
            {
                "data": {"n": [1, 2.5, -0.125, None, True], "s": "héllo ✓ 𝄞", "e": {}, "a": []},
                "count": [1, 2],
                "cycle": True,
                "mirror": True,
                "boop": 6,
                "tables": {"local": tables[0]["local"]},
            },
        )
