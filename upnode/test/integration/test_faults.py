"""
Faults, with real loopback sockets and real processes: a fault-injecting
proxy, kill -9, kill -STOP/-CONT.  Nothing queued is lost or duplicated, and
nothing hangs.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

import upnode
from upnode import ConnectionLostError, UpTimeout

from .faultproxy import FaultProxy
from .helpers import call, first, freePort, sleep, spawnTwistd, until

FAST = {"reconnect": 0.05, "jitter": 0, "ping": 0.3, "timeout": 0.3}


class ProxyFaults(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.calls: List[Any] = []
        self.held: List[Any] = []

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            def hold(cb: Any) -> None:
                self.held.append(cb)

            return {"echo": lambda v, cb: (self.calls.append(v), cb(v)), "hold": hold}

        self.server = upnode.upnode(cons)
        self.addCleanup(self.server.end)
        port = (await self.server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        self.proxy = FaultProxy(port)
        self.proxyPort = await self.proxy.start()
        self.addCleanup(self.proxy.stop)

    def client(self, **options: Any) -> Any:
        opts = dict(FAST, **options)
        up = upnode.connect(self.proxyPort, "127.0.0.1", opts)
        self.addCleanup(up.close)
        return up

    async def test_blackHoleDetectedThenRecovers(self) -> None:
        """
        A silent server (no FIN, nothing answered) is noticed within
        ping + timeout; when the path clears, the client is back.
        """
        up = self.client()
        await up()
        self.proxy.set("blackhole")
        start = time.monotonic()
        await first("down", up)
        noticed = time.monotonic() - start
        self.assertLess(noticed, 0.3 + 0.3 + 0.3)  # ping + timeout, and a margin
        self.proxy.set("pass")
        remote = await up(timeout=5)
        self.assertEqual(await call(remote.echo, "back"), "back")

    async def test_oneByteChunks(self) -> None:
        """
        Every byte in its own write, both ways: the same results.
        """
        up = self.client(ping=0)
        self.proxy.set("chunk1")
        remote = await up()
        values = [{"n": i, "s": "é" * i} for i in range(20)]
        results = await DeferredList([up.call("echo", v) for v in values], fireOnOneErrback=True)
        self.assertEqual([r for _, r in results], values)
        self.assertEqual(self.calls, values)
        self.assertIsNotNone(remote)

    async def test_cutMidLine(self) -> None:
        """
        The server's reply is cut in the middle of its line: the partial line
        is never dispatched, the call fails as lost, the client comes back.
        """
        up = self.client(ping=0)
        await up()
        self.proxy.set("cut", cutAfter=10)
        with self.assertRaises(ConnectionLostError):
            await up.call("echo", "x" * 100)
        self.proxy.set("pass")
        self.assertEqual(await up.call("echo", "whole", timeout=5), "whole")

    async def test_latencyBeyondTimeout(self) -> None:
        """
        A reply slower than the call's timeout: the timeout fires once and
        the late reply is dropped.
        """
        up = self.client(ping=0)
        await up()
        self.proxy.set("latency", delay=0.4)
        with self.assertRaises(UpTimeout):
            await up.call("echo", 1, timeout=0.1)
        await sleep(1.0)  # the late reply arrives and must do nothing
        self.proxy.set("pass")
        self.assertEqual(await up.call("echo", 2, timeout=5), 2)

    async def test_resetEveryConnection(self) -> None:
        up = self.client(ping=0)
        await up()
        self.proxy.set("reset")
        await first("down", up)
        waiting = up(timeout=10)
        await sleep(0.3)
        self.assertEqual(up.queued, 1)
        self.proxy.set("pass")
        await waiting

    async def test_silentClientReleased(self) -> None:
        """
        A client whose answers never reach the server (its direction
        stalled) is dropped by the server within ping + timeout, and the
        server's connection and descriptors go back to where they were.
        """
        server = upnode.upnode({"echo": lambda v, cb: cb(v)})
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0.2, "timeout": 0.2})).getHost().port
        proxy = FaultProxy(port)
        self.addCleanup(proxy.stop)
        up = upnode.connect(await proxy.start(), "127.0.0.1", {"ping": 0, "reconnect": 60})
        self.addCleanup(up.close)
        await up()
        await until(lambda: len(server.connections) == 1)
        fds = len(os.listdir("/proc/self/fd"))
        proxy.set("stall-up")
        await until(lambda: not server.connections, timeout=2.0)
        await until(lambda: len(os.listdir("/proc/self/fd")) <= fds - 1, timeout=2.0)


class ProxyOrder(TestCase):
    """
    The proxy itself: a fault may lose bytes, but never reorders them (TCP
    does not), or the tests would blame the link for the proxy.
    """

    timeout = 30

    async def test_latencyEndingKeepsOrder(self) -> None:
        """
        Bytes sent once a latency has ended wait behind those it still
        holds.
        """
        received: List[bytes] = []

        class Sink(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Sink))
        self.addCleanup(port.stopListening)
        proxy = FaultProxy(port.getHost().port)
        self.addCleanup(proxy.stop)
        client = await TCP4ClientEndpoint(reactor, "127.0.0.1", await proxy.start()).connect(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(client.transport.loseConnection)
        client.transport.write(b"first ")
        await until(lambda: len(proxy.sides) == 2)
        proxy.set("latency", delay=0.3)
        client.transport.write(b"delayed ")
        await sleep(0.1)
        proxy.set("pass")
        client.transport.write(b"after")
        await until(lambda: b"".join(received) == b"first delayed after", timeout=5)


class ProcessFaults(TestCase):
    """
    A real twistd upnode-server process, killed and restarted.
    """

    timeout = 90

    def start(self, port: int) -> Any:
        return spawnTwistd(self, "--port", f"tcp:{port}:interface=127.0.0.1", "--ping", "0")

    async def test_killedAndRestarted(self) -> None:
        """
        Three kill -9s: down promptly each time, back within the backoff,
        the connect callback (authentication) once per link; transactions
        queued while down fire once each, in order, after re-authentication;
        calls in flight at the kill fail instead of hanging.
        """
        port = await freePort()
        process = self.start(port)
        links: List[Any] = []

        def onRemote(remote: Any, conn: Any) -> None:
            links.append(conn)
            remote.auth("moo", "hax", lambda err, session: conn.emit("up", session))

        up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.1, "jitter": 0, "backoff": 1, "ping": 0.5}, onRemote)
        self.addCleanup(up.close)
        fired: List[int] = []
        for round_ in range(3):
            session = await up(timeout=30)
            self.assertTrue((await call(session["beep"])).startswith("boop"))
            inFlight = up.call("beep")  # answered at once, or lost with the process
            down = first("down", up)
            process.transport.signalProcess("KILL")  # type: ignore[union-attr]
            killed = time.monotonic()
            await down
            self.assertLess(time.monotonic() - killed, 1.0)
            try:
                await inFlight
            except ConnectionLostError:
                pass
            waiting = [up(timeout=30).addCallback(lambda s, i=i: fired.append(i)) for i in range(round_ * 10, round_ * 10 + 10)]
            await process.ended
            process = self.start(port)
            await DeferredList(waiting, fireOnOneErrback=True)
        self.assertEqual(fired, list(range(30)))
        await up()
        self.assertEqual(len(links), 4)
        self.assertEqual(len(set(map(id, links))), 4)

    async def test_stoppedServer(self) -> None:
        """
        kill -STOP: noticed within ping + timeout; kill -CONT: back.
        """
        port = await freePort()
        process = self.start(port)
        up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.1, "jitter": 0, "backoff": 1, "ping": 0.3, "timeout": 0.3})
        self.addCleanup(up.close)
        await up(timeout=30)
        down = first("down", up)
        process.transport.signalProcess(signal.SIGSTOP)  # type: ignore[union-attr]
        stopped = time.monotonic()
        await down
        self.assertLess(time.monotonic() - stopped, 0.3 + 0.3 + 0.4)
        process.transport.signalProcess(signal.SIGCONT)  # type: ignore[union-attr]
        session = await up(timeout=30)
        self.assertTrue(await call(session.time))


class ThousandClients(TestCase):
    timeout = 90

    async def test_comeBackSpreadOut(self) -> None:
        """
        A thousand clients with the default reconnect, backoff and jitter all
        come back after a server restart, their attempts planned over more
        than half a second, never a third of them within 100 ms.  (The
        plan, not when the server got to each: clients and server share
        one process here, and a server that is behind takes a burst of
        waiting connections at once.)
        """
        from twisted.internet import reactor

        count = 1000
        server = upnode.upnode({})
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        ups = [upnode.connect(port, "127.0.0.1", {"ping": 0}) for _ in range(count)]
        for up in ups:
            self.addCleanup(up.close)
        await until(lambda: all(u.remote is not None for u in ups), timeout=30)
        down = reactor.seconds()
        await server.end()
        await until(lambda: all(u.remote is None and u.nextAttemptAt is not None for u in ups), timeout=30)
        planned = sorted(u.nextAttemptAt - down for u in ups)
        server = upnode.upnode({})
        self.addCleanup(server.end)
        await server.listen(port, "127.0.0.1", {"ping": 0})
        self.assertGreater(planned[0], reactor.seconds() - down, "an attempt was due before the server was back")
        await until(lambda: all(u.remote is not None for u in ups), timeout=30)
        self.assertEqual([u.attempts for u in ups], [2] * count)  # each came back at the planned attempt
        spread = planned[-1] - planned[0]
        busiest = max(sum(1 for t in planned if s <= t < s + 0.1) for s in planned)
        self.assertGreater(spread, 0.5)
        # Never a third of them in one 100 ms.
        self.assertLess(busiest, count / 3, f"{busiest} of {count} within 100 ms; all within {spread:.2f} s")
