"""
asyncio programs, run as a user runs them: a plain script with
C{asyncio.run(main())} (and C{uvloop.run(main())}), no C{reactor.run()},
in a subprocess, serving and calling over real sockets, and exiting when
main() returns.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from typing import Any, Sequence

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from .helpers import Collect
from .test_twistd_cli import ENV

SERVER_AND_CLIENT = """
import asyncio, sys
import upnode
import upnode.aio

class Service:
    def __init__(self, remote, conn):
        pass

    async def slow(self, value, cb):          # asyncio code in a server method
        await asyncio.sleep(0.1)
        cb(value * 2)

    @upnode.replies
    async def double(self, value):
        await asyncio.sleep(0.05)
        return value * 2

async def main():
    server = await upnode.aio.listen(Service, 0, "127.0.0.1", ping=0)
    port = server.port.getHost().port
    up = await upnode.aio.connect(port, ping=0)   # "localhost": Twisted's resolver thread
    ups = []

    async def onUp(remote):                     # an async def event handler
        await asyncio.sleep(0)
        ups.append(remote)

    up.on("up", onUp)
    print("slow:", await up.call("slow", 21, timeout=5))
    print("double:", await up.call("double", 4, errorFirst=True, timeout=5))
    remote = await up(timeout=5.0)
    answer = asyncio.get_running_loop().create_future()
    remote.slow(1, answer.set_result)
    print("callback:", await answer)
    print("up events:", len(ups))
    try:
        await up.call("missing", timeout=5)
    except AttributeError as e:
        print("missing:", e)
    await up.close()
    await server.end()

RUN(main())
print("exited", flush=True)
"""

CLIENT_FIRST = """
import asyncio
import upnode.aio

async def main():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    up = await upnode.aio.connect(port, "127.0.0.1", ping=0, reconnect=0.1, jitter=0)
    waiting = up.call("echo", "queued", timeout=10)   # the server is not there yet
    await asyncio.sleep(0.3)
    await upnode.aio.upnode({"echo": lambda v, cb: cb(v)}).listen(port, "127.0.0.1", ping=0)
    print("echoed:", await waiting)
    try:
        await up.call("echo", "x", timeout=0.000001)
    except TimeoutError:
        print("timed out as TimeoutError")
    # main() returns with the link up and the server listening: the
    # reactor's shutdown closes them, and the process exits.

RUN(main())
print("exited", flush=True)
"""

LOOP_TRANSPORTS = """
import asyncio, os, tempfile
import upnode.aio

BIG = "x" * (512 << 10)  # under the 1 MiB line bound; eight of them far over the loop's buffer

async def main():
    cons = {"big": lambda n, cb: cb(BIG[:n]), "length": lambda v, cb: cb(len(v)), "echo": lambda v, cb: cb(v)}
    server = await upnode.aio.upnode(cons).listen(0, "127.0.0.1", ping=0)
    port = server.port.getHost().port
    up = await upnode.aio.connect(port, "127.0.0.1", ping=0, reconnect=0.05, jitter=0)
    await up(timeout=5.0)
    print("carried by:", type(server.connections[0].transport).__name__, type(up.conn.transport).__name__)
    # More than the loop's write buffer holds, both ways: the writers pause
    # and resume on the loop's flow control.
    sizes = await asyncio.gather(*[up.call("big", 512 << 10, timeout=30) for _ in range(8)])
    print("big replies:", [len(s) for s in sizes])
    print("big upload:", await up.call("length", BIG, timeout=30))
    # What the peer's kernel acknowledged, for liveness on slow paths.
    from upnode._progress import ackedBytesProbe
    probe = ackedBytesProbe(server.connections[0].transport)
    print("kernel progress:", probe is not None and probe() > 4 << 20)
    # The link dropped under it: the client links again by itself.
    for conn in server.connections:
        conn.transport.abortConnection()
    print("after a drop:", await up.call("echo", "again", timeout=10, retry=True))
    # A unix socket, and an endpoint description (Twisted's own transports).
    path = os.path.join(tempfile.mkdtemp(), "upnode.sock")
    unixServer = await upnode.aio.upnode(cons).listen(path, ping=0)
    unix = await upnode.aio.connect(path, ping=0)
    print("unix:", await unix.call("echo", "over unix", timeout=5), type(unix.conn.transport).__name__)
    described = await upnode.aio.connect(f"tcp:host=127.0.0.1:port={port}", ping=0)
    print("described:", await described.call("echo", "over tcp", timeout=5), type(described.conn.transport).__name__)
    for client in (up, unix, described):
        await client.close()
    await unixServer.end()
    await server.end()

RUN(main())
print("exited", flush=True)
"""

HUNG_ATTEMPT = """
import asyncio, socket, time
import upnode.aio

async def main():
    # A listener whose accept queue is full: the kernel drops further SYNs,
    # so an attempt hangs until it is given up.
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket(); f.setblocking(False); f.connect_ex(("127.0.0.1", port)); fillers.append(f)
    await asyncio.sleep(0.2)
    errors = []
    start = time.monotonic()
    up = await upnode.aio.connect(port, "127.0.0.1", ping=0, handshakeTimeout=0.5, reconnect=0.1, jitter=0)
    up.on("error", lambda e: errors.append((type(getattr(e, "value", e)).__name__, time.monotonic() - start)))
    await asyncio.sleep(1.8)
    print("given up:", [name for name, _ in errors])
    print("first bounded:", 0.45 <= errors[0][1] < 1.5)
    await up.close()

RUN(main())
print("exited", flush=True)
"""


TWISTED_ON_ASYNCIO = """
import asyncio, sys
loop = __import__("uvloop").new_event_loop() if sys.argv[1] == "uvloop" else asyncio.new_event_loop()
asyncio.set_event_loop(loop)
from twisted.internet import asyncioreactor
asyncioreactor.install(loop)
from twisted.internet import task
import upnode

async def main(reactor):
    # Listening and connecting in task.react's main, which runs before the
    # reactor starts its loop: the links are made on its first turn.
    server = upnode.upnode({"echo": lambda v, cb: cb(v)})
    port = await server.listen(0, "127.0.0.1", ping=0)
    up = upnode.connect(port.getHost().port, "127.0.0.1", ping=0, reconnect=0.05, jitter=0)
    print("echo:", await up.call("echo", "on the loop", timeout=5))
    print("carried by:", type(server.connections[0].transport).__name__, type(up.conn.transport).__name__)
    for conn in server.connections:
        conn.transport.abortConnection()
    print("after a drop:", await up.call("echo", "again", timeout=10, retry=True))
    described = upnode.connect(f"tcp:host=127.0.0.1:port={port.getHost().port}", ping=0)
    print("described:", await described.call("echo", "over tcp", timeout=5), type(described.conn.transport).__name__)
    for client in (up, described):
        await client.close()
    await server.end()
    print("exited", flush=True)

task.react(main)
"""


RUNNERS = {
    "asyncio": "asyncio.run",
    "uvloop": "__import__('uvloop').run",
}
HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


class AsyncioProgramTests(TestCase):
    timeout = 60

    async def runScript(self, script: str, runner: str, *args: str) -> str:
        if runner == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise SkipTest("uvloop is not installed") from None
        process = Collect()
        body = textwrap.dedent(script).replace("RUN(", RUNNERS[runner] + "(")
        reactor.spawnProcess(process, sys.executable, [sys.executable, "-c", body, *args], env=ENV)
        timer: Any = reactor.callLater(30, process.transport.signalProcess, "KILL")  # type: ignore[union-attr]
        code, out, err = await process.done
        if timer.active():
            timer.cancel()
        self.assertEqual(code, 0, out + err)
        self.assertIn("exited", out)
        self.assertNotIn("Traceback", err)
        self.assertNotIn("never awaited", err)
        return out

    def assertPrinted(self, out: str, lines: Sequence[str]) -> None:
        for line in lines:
            self.assertIn(line, out)

    async def serverAndClient(self, runner: str) -> None:
        out = await self.runScript(SERVER_AND_CLIENT, runner)
        self.assertPrinted(
            out, ("slow: 42", "double: 8", "callback: 2", "up events: 1", "missing: the remote has no method 'missing'")
        )

    async def clientFirst(self, runner: str) -> None:
        out = await self.runScript(CLIENT_FIRST, runner)
        self.assertIn("echoed: queued", out)
        self.assertIn("timed out as TimeoutError", out)

    async def loopTransports(self, runner: str) -> None:
        out = await self.runScript(LOOP_TRANSPORTS, runner)
        self.assertPrinted(
            out,
            (
                "carried by: StreamTransport StreamTransport",
                f"big replies: {[512 << 10] * 8}",
                f"big upload: {512 << 10}",
                "kernel progress: True",
                "after a drop: again",
                "unix: over unix StreamTransport",
                "described: over tcp Client",
            ),
        )

    async def test_loopTransports(self) -> None:
        """
        A port or a unix path is carried by the loop's own transports, with
        back-pressure both ways and reconnection; an endpoint description
        by Twisted's.
        """
        await self.loopTransports("asyncio")

    async def test_loopTransportsOnUvloop(self) -> None:
        await self.loopTransports("uvloop")

    async def hungAttempt(self, runner: str) -> None:
        out = await self.runScript(HUNG_ATTEMPT, runner)
        self.assertIn("given up: ['UpTimeout', 'UpTimeout'", out)
        self.assertIn("first bounded: True", out)

    async def test_hungAttempt(self) -> None:
        """
        C{handshakeTimeout} bounds an attempt over the loop's transports
        too: one whose SYN goes unanswered is cancelled and tried again.
        """
        await self.hungAttempt("asyncio")

    async def test_hungAttemptOnUvloop(self) -> None:
        await self.hungAttempt("uvloop")

    async def twistedOnAsyncio(self, loop: str) -> None:
        out = await self.runScript(TWISTED_ON_ASYNCIO, loop, loop)
        self.assertPrinted(
            out,
            (
                "echo: on the loop",
                "carried by: StreamTransport StreamTransport",
                "after a drop: again",
                "described: over tcp Client",
            ),
        )

    async def test_twistedProgramOnTheAsyncioReactor(self) -> None:
        """
        A Twisted program that installs the asyncio reactor: its links
        named by a port ride the loop's own transports too, even those
        asked for before the loop runs; a description rides Twisted's.
        """
        await self.twistedOnAsyncio("asyncio")

    async def test_twistedProgramOnTheAsyncioReactorOverUvloop(self) -> None:
        await self.twistedOnAsyncio("uvloop")

    async def test_serverAndClient(self) -> None:
        await self.serverAndClient("asyncio")

    async def test_serverAndClientOnUvloop(self) -> None:
        await self.serverAndClient("uvloop")

    async def test_clientBeforeServer(self) -> None:
        await self.clientFirst("asyncio")

    async def test_clientBeforeServerOnUvloop(self) -> None:
        await self.clientFirst("uvloop")


AIO_SERVER = """
import asyncio, json, time
import upnode.aio

async def main():
    def cons(remote, conn):
        return {"time": lambda cb: cb(time.ctime())}
    server = await upnode.aio.upnode(cons).listen(0, "127.0.0.1", ping=0.2, timeout=0.5)
    print(json.dumps({"event": "listening", "port": server.port.getHost().port}), flush=True)
    while not server.connections:
        await asyncio.sleep(0.05)
    print(json.dumps({"event": "carried", "by": type(server.connections[0].transport).__name__}), flush=True)
    await asyncio.sleep(60)

RUN(main())
"""

AIO_CLIENT = """
import asyncio, sys
import upnode.aio

async def main():
    up = await upnode.aio.connect(int(sys.argv[1]), "127.0.0.1", ping=0.2, timeout=0.5)
    print("echoes:", [await up.call("echo", {"n": n}, timeout=5) for n in range(5)])
    print("carried by:", type(up.conn.transport).__name__)
    await asyncio.sleep(0.6)  # pings both ways meanwhile
    print("still up:", up.conn is not None and up.remote is not None)
    await up.close()

RUN(main())
print("exited", flush=True)
"""


class AsyncioProgramInteropTests(TestCase):
    """
    Node's upnode against an asyncio program's links, which ride the loop's
    own transports: the same wire, both ways.
    """

    timeout = 90

    async def test_nodeClientAsyncioServer(self) -> None:
        from .nodepeer import NodePeer, requireNode

        requireNode()
        for runner in RUNNERS:
            if runner == "uvloop" and not HAS_UVLOOP:
                continue
            program = NodePeer()  # (it reads any process's JSON report lines)
            body = textwrap.dedent(AIO_SERVER).replace("RUN(", RUNNERS[runner] + "(")
            reactor.spawnProcess(program, sys.executable, [sys.executable, "-c", body], env=ENV)
            self.addCleanup(program.stop)
            port = (await program.next("listening"))["port"]
            peer = NodePeer.spawn("upnode-client", str(port), "50", "plain")
            self.addCleanup(peer.stop)
            await peer.next("up")
            self.assertEqual((await program.next("carried"))["by"], "StreamTransport")
            await peer.next("ping")
            results = [(await peer.next("result"))["i"] for _ in range(5)]
            self.assertEqual(results, sorted(results))
            self.assertEqual([r for r in peer.all if r["event"] in ("error", "down")], [])

    async def test_asyncioClientNodeServer(self) -> None:
        from .helpers import freePort
        from .nodepeer import NodePeer

        port = await freePort()
        peer = NodePeer.spawn("upnode-server", str(port))
        self.addCleanup(peer.stop)
        await peer.next("listening")
        for runner in RUNNERS:
            if runner == "uvloop" and not HAS_UVLOOP:
                continue
            process = Collect()
            body = textwrap.dedent(AIO_CLIENT).replace("RUN(", RUNNERS[runner] + "(")
            reactor.spawnProcess(process, sys.executable, [sys.executable, "-c", body, str(port)], env=ENV)
            code, out, err = await process.done
            self.assertEqual(code, 0, out + err)
            self.assertIn("echoes: [{'n': 0}, {'n': 1}, {'n': 2}, {'n': 3}, {'n': 4}]", out)
            self.assertIn("carried by: StreamTransport", out)
            self.assertIn("still up: True", out)
            self.assertNotIn("Traceback", err)
