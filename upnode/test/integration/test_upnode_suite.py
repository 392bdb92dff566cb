"""
Node upnode 0.6.0's own test suite (auth, buffered, cons, immediate,
listen, simple, timeout), ported to trial over real loopback sockets.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

import upnode
from upnode import UpTimeout
from upnode.dnode import DnodeFactory

from .helpers import call, first, freePort, sleep, until

FAST = {"reconnect": 0.05, "jitter": 0, "ping": 0.5, "timeout": 1.0}


class Suite(TestCase):
    timeout = 60

    def client(self, *args: Any) -> Any:
        up = upnode.connect(*args) if not isinstance(args[0], upnode.Upnode) else args[0].connect(*args[1:])
        self.addCleanup(up.close)
        return up

    def server(self, cons: Any = None) -> upnode.Upnode:
        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        return server

    async def test_auth(self) -> None:
        """
        auth.js: the connect callback re-authenticates after the server is
        ended and brought back; beep keeps working through the session.
        """
        port = await freePort()
        sessions: List[Any] = []

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            def auth(user: str, password: str, cb: Any) -> None:
                if (user, password) == ("moo", "hax"):
                    sessions.append(conn)
                    cb(None, {"beep": lambda fn: fn(time.ctime())})
                else:
                    cb("ACCESS DENIED")

            return {"auth": auth}

        def onRemote(remote: Any, conn: Any) -> None:
            def authed(err: Any, session: Any) -> None:
                self.assertIsNone(err)
                conn.emit("up", session)

            remote.auth("moo", "hax", authed)

        server = self.server(cons)
        await server.listen(port, "127.0.0.1")
        up = self.client(port, "127.0.0.1", FAST, onRemote)
        beeps = 0
        for i in range(10):
            session = await up()
            self.assertTrue(await call(session["beep"]))
            beeps += 1
            if i == 4:
                down = first("down", up)
                await server.end()
                await down
                server = self.server(cons)
                await server.listen(port, "127.0.0.1")
        self.assertEqual(beeps, 10)
        self.assertEqual(len(sessions), 2)

    async def test_buffered(self) -> None:
        """
        buffered.js: a server that ends every stream after 0.3 s; five
        transactions made later all get through.
        """
        port = await freePort()
        timers: List[Any] = []
        self.addCleanup(lambda: [t.cancel() for t in timers if t.active()])

        class Dropping(DnodeFactory):
            def buildProtocol(self, addr: Any) -> Any:
                conn = DnodeFactory.buildProtocol(self, addr)
                timers.append(reactor.callLater(0.3, conn.end))
                return conn

        listening = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(
            Dropping({"time": lambda cb: cb(time.time()), "ping": lambda cb: cb()})
        )
        self.addCleanup(listening.stopListening)
        up = self.client(port, "127.0.0.1", FAST)
        await sleep(0.5)
        times = []
        for _ in range(5):
            remote = await up()
            times.append(await call(remote.time))
        self.assertEqual(len(times), 5)

    async def test_cons(self) -> None:
        """
        cons.js: each side's constructor runs; the server sees the client's
        beep once the remote is ready, the client sees boop.
        """
        port = await freePort()
        seen: List[Any] = []

        def serverCons(remote: Any, conn: Any) -> Dict[str, Any]:
            conn.on("ready", lambda: seen.append(remote.beep))
            return {"boop": 6}

        await self.server(serverCons).listen(port, "127.0.0.1")
        up = self.client(upnode.upnode(lambda remote, conn: {"beep": 5}), port, "127.0.0.1", FAST)
        remote = await up()
        self.assertEqual(remote.boop, 6)
        await until(lambda: seen)
        self.assertEqual(seen, [5])

    async def test_immediate(self) -> None:
        """
        immediate.js: connect once the server is listening; the first
        transaction goes straight through.
        """
        listened: List[int] = []
        server = self.server({"beep": lambda cb: cb("boop")})
        port = await server.listen(0, "127.0.0.1", lambda: listened.append(1))
        self.assertEqual(listened, [1])
        up = self.client(port.getHost().port, "127.0.0.1")
        remote = await up()
        self.assertEqual(await call(remote.beep), "boop")

    async def simple(self, serve: Any) -> None:
        """
        listen.js and simple.js: up/down/reconnect counts and buffered calls
        across a server that starts late, stops and starts again.
        """
        port = await freePort()
        up = self.client(port, "127.0.0.1", FAST)
        counts = {"up": 0, "down": 0, "reconnect": 0}
        for name in counts:
            up.on(name, lambda *args, name=name: counts.__setitem__(name, counts[name] + 1))
        messages: List[float] = []
        pending = [up().addCallback(lambda remote: call(remote.time)).addCallback(messages.append) for _ in range(3)]
        await first("reconnect", up)
        stop = await serve(port)
        for d in pending:
            await d
        self.assertLess(max(messages) - min(messages), 0.05)  # the buffered ones came through at once
        await stop()
        await until(lambda: counts["down"] == 1)
        stop = await serve(port)
        await until(lambda: counts["up"] == 2)
        messages.append(await call((await up()).time))
        self.assertEqual(messages, sorted(messages))
        self.assertEqual((counts["up"], counts["down"]), (2, 1))
        self.assertGreaterEqual(counts["reconnect"], 2)
        await stop()
        await up.close()
        self.assertEqual(up.listeners("close"), [])

    async def test_listen(self) -> None:
        async def serve(port: int) -> Any:
            server = self.server(lambda remote, conn: {"time": lambda cb: cb(time.time())})
            await server.listen(port, "127.0.0.1")
            return server.end

        await self.simple(serve)

    async def test_simple(self) -> None:
        """
        simple.js serves with plain dnode (it must expose ping itself).
        """

        async def serve(port: int) -> Any:
            factory = DnodeFactory({"time": lambda cb: cb(time.time()), "ping": lambda cb: cb()})
            listening = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory)
            self.addCleanup(lambda: listening.connected and listening.stopListening())

            async def stop() -> None:
                await listening.stopListening()
                for conn in list(factory.connections):
                    conn.end()

            return stop

        await self.simple(serve)

    async def test_callbacksInConnectionHandler(self) -> None:
        """
        simple.js: a transaction made in a remote handler fires with the
        remote and conn the handler saw.
        """
        server = self.server()
        port = (await server.listen(0, "127.0.0.1")).getHost().port
        up = self.client(upnode.upnode({"beep": 5}), port, "127.0.0.1", FAST)
        seen: List[Any] = []

        def onRemote(remote: Any, conn: Any) -> None:
            up(lambda remote_, conn_: seen.append((remote_ is remote, conn_ is conn)))
            conn.emit("up", remote)

        up.onRemote = onRemote
        await until(lambda: seen)
        self.assertEqual(seen, [(True, True)])

    async def test_timeout(self) -> None:
        """
        timeout.js: a short timeout ends without a remote; a long one gets
        it once a server appears.
        """
        port = await freePort()
        up = self.client(port, "127.0.0.1", FAST)
        with self.assertRaises(UpTimeout):
            await up(timeout=0.01)
        got: List[Any] = []
        up(0.01, lambda *args: got.append(args))
        await until(lambda: got)
        self.assertEqual(got, [()])
        waiting = up(timeout=4.0)
        await self.server({}).listen(port, "127.0.0.1")
        self.assertIn("ping", await waiting)
