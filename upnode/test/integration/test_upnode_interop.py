"""
Our upnode against the real Node upnode 0.6.0, both ways, with kills and
restarts in the middle.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from twisted.trial.unittest import TestCase

import upnode

from .helpers import call, first, freePort, until
from .nodepeer import NodePeer

FAST = {"reconnect": 0.05, "jitter": 0, "ping": 0.2, "timeout": 0.5}


class PythonClientNodeServer(TestCase):
    timeout = 90

    async def nodeServer(self, port: int) -> NodePeer:
        peer = NodePeer.spawn("upnode-server", str(port))
        self.addCleanup(peer.stop)
        await peer.next("listening")
        return peer

    async def test_keepsCallingAcrossKill(self) -> None:
        """
        Calls queued while the Node server is down (killed with SIGKILL)
        all fire once, in order, when it is back; pings are answered.
        """
        port = await freePort()
        peer = await self.nodeServer(port)
        up = upnode.connect(port, "127.0.0.1", FAST)
        self.addCleanup(up.close)
        remote = await up()
        self.assertEqual(remote.boop, 6)
        self.assertTrue(await call(remote.time))
        await first("ping", up)
        down = first("down", up)
        peer.signal("KILL")
        await down
        order: List[int] = []
        waiting = [up().addCallback(lambda r, i=i: order.append(i) or r) for i in range(20)]
        await self.nodeServer(port)
        for d in waiting:
            await d
        self.assertEqual(order, list(range(20)))
        self.assertTrue(await call((await up()).time))

    async def test_authAcrossRestarts(self) -> None:
        """
        The seed's auth walkthrough: the connect callback authenticates on
        every new link; beep works through the session each time.
        """
        port = await freePort()
        peer = await self.nodeServer(port)
        authed: List[int] = []

        def onRemote(remote: Any, conn: Any) -> None:
            def done(err: Any, session: Any) -> None:
                authed.append(1)
                conn.emit("up", session)

            remote.auth("moo", "hax", done)

        up = upnode.connect(port, "127.0.0.1", FAST, onRemote)
        self.addCleanup(up.close)
        for _restart in range(3):
            session = await up()
            self.assertTrue((await call(session["beep"])).startswith("boop at "))
            self.assertEqual((await peer.next("auth"))["sessions"], 1)
            down = first("down", up)
            await peer.stop()
            await down
            peer = await self.nodeServer(port)
        await up()
        self.assertEqual(len(authed), 4)


class NodeClientPythonServer(TestCase):
    timeout = 90

    def serve(self, cons: Any) -> upnode.Upnode:
        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        return server

    async def test_keepsCallingAcrossRestart(self) -> None:
        """
        A Node upnode client calling every 50 ms keeps getting answers
        after our server is ended and restarted; its pings are answered
        and our server's pings to it are answered too.
        """
        serverPings: List[float] = []

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            conn.on("ping", serverPings.append)
            return {"time": lambda cb: cb(time.ctime())}

        server = self.serve(cons)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0.2, "timeout": 0.5})).getHost().port
        peer = NodePeer.spawn("upnode-client", str(port), "50", "plain")
        self.addCleanup(peer.stop)
        await peer.next("up")
        await peer.next("ping")
        await until(lambda: serverPings)
        first_ = (await peer.next("result"))["i"]
        await server.end()
        await peer.next("down")
        server = self.serve(cons)
        await server.listen(port, "127.0.0.1", {"ping": 0.2, "timeout": 0.5})
        await peer.next("up")
        results = [(await peer.next("result"))["i"] for _ in range(10)]
        self.assertGreater(results[-1], first_)
        self.assertEqual(results, sorted(results))
        errors = [r for r in peer.all if r["event"] == "error"]
        self.assertEqual(errors, [])

    async def test_authAcrossRestarts(self) -> None:
        """
        The auth walkthrough with Node as the client: it re-authenticates
        against our server after each restart.
        """
        sessions: List[int] = []

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            def auth(user: str, password: str, cb: Any) -> None:
                if (user, password) == ("moo", "hax"):
                    sessions.append(1)
                    cb(None, {"beep": lambda fn: fn("boop at " + time.ctime())})
                else:
                    cb("ACCESS DENIED")

            return {"auth": auth}

        server = self.serve(cons)
        port = (await server.listen(0, "127.0.0.1")).getHost().port
        peer = NodePeer.spawn("upnode-client", str(port), "50", "auth")
        self.addCleanup(peer.stop)
        for _restart in range(2):
            await peer.next("up")
            self.assertTrue((await peer.next("result"))["value"].startswith("boop at "))
            await server.end()
            await peer.next("down")
            server = self.serve(cons)
            await server.listen(port, "127.0.0.1")
        await peer.next("up")
        await peer.next("result")
        self.assertEqual(len(sessions), 3)
