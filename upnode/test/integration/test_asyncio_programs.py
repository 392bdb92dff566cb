"""
asyncio programs, run as a user runs them: a plain script with
C{asyncio.run(main())} (and C{uvloop.run(main())}), no C{reactor.run()},
in a subprocess, serving and calling over real sockets, and exiting when
main() returns.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

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


RUNNERS = {
    "asyncio": "asyncio.run",
    "uvloop": "__import__('uvloop').run",
}


class AsyncioProgramTests(TestCase):
    timeout = 60

    async def runScript(self, script: str, runner: str) -> str:
        if runner == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                raise SkipTest("uvloop is not installed") from None
        process = Collect()
        body = textwrap.dedent(script).replace("RUN(", RUNNERS[runner] + "(")
        reactor.spawnProcess(process, sys.executable, [sys.executable, "-c", body], env=ENV)
        timer: Any = reactor.callLater(30, process.transport.signalProcess, "KILL")  # type: ignore[union-attr]
        code, out, err = await process.done
        if timer.active():
            timer.cancel()
        self.assertEqual(code, 0, out + err)
        self.assertIn("exited", out)
        self.assertNotIn("Traceback", err)
        self.assertNotIn("never awaited", err)
        return out

    async def serverAndClient(self, runner: str) -> None:
        out = await self.runScript(SERVER_AND_CLIENT, runner)
        for line in ("slow: 42", "double: 8", "callback: 2", "up events: 1", "missing: the remote has no method 'missing'"):
            self.assertIn(line, out)

    async def clientFirst(self, runner: str) -> None:
        out = await self.runScript(CLIENT_FIRST, runner)
        self.assertIn("echoed: queued", out)
        self.assertIn("timed out as TimeoutError", out)

    async def test_serverAndClient(self) -> None:
        await self.serverAndClient("asyncio")

    async def test_serverAndClientOnUvloop(self) -> None:
        await self.serverAndClient("uvloop")

    async def test_clientBeforeServer(self) -> None:
        await self.clientFirst("asyncio")

    async def test_clientBeforeServerOnUvloop(self) -> None:
        await self.clientFirst("uvloop")
