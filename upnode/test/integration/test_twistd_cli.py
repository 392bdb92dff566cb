"""
A real ``twistd upnode-server`` process, answering our client and Node's
and shutting down cleanly on signals; and the command-line client.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

import upnode
from upnode._speedups import COMPILED

from .helpers import call, freePort, spawnTwistd
from .nodepeer import NodePeer

ROOT = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


class Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[Any] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


class TwistdTests(TestCase):
    timeout = 60

    def start(self, *args: str) -> Twistd:
        return spawnTwistd(self, *args)  # type: ignore[no-any-return]

    async def test_servesAndStopsCleanly(self) -> None:
        """
        The demo service on tcp and unix ports answers our client and a Node
        upnode client; SIGTERM with clients connected exits with status 0.
        """
        port = await freePort()
        # A short path: unix socket paths are limited to about 100 bytes.
        folder = tempfile.mkdtemp(prefix="upnode-")
        self.addCleanup(shutil.rmtree, folder, True)
        sock = os.path.join(folder, "sock")
        process = self.start("--port", f"tcp:{port}:interface=127.0.0.1", "--port", f"unix:{sock}")
        up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.1, "jitter": 0})
        self.addCleanup(up.close)
        remote = await up()
        self.assertTrue(await call(remote.time))
        self.assertEqual(await call(remote.echo, "a", [1]), ("a", [1]))
        err, session = await call(remote.auth, "moo", "hax")
        self.assertTrue((await call(session["beep"])).startswith("boop at "))
        viaUnix = upnode.connect(sock, {"ping": 0})
        self.addCleanup(viaUnix.close)
        self.assertTrue(await call((await viaUnix()).time))
        peer = NodePeer.spawn("upnode-client", str(port), "50", "plain")
        self.addCleanup(peer.stop)
        await peer.next("result")
        process.transport.signalProcess("TERM")  # type: ignore[union-attr]
        self.assertIsInstance(await process.ended, ProcessDone, process.output.decode())
        self.assertIn(b"Server Shut Down", process.output)

    async def test_sigint(self) -> None:
        port = await freePort()
        process = self.start("--port", f"tcp:{port}:interface=127.0.0.1", "--ping", "1")
        up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.1, "jitter": 0})
        self.addCleanup(up.close)
        await up()
        process.transport.signalProcess("INT")  # type: ignore[union-attr]
        self.assertIsInstance(await process.ended, ProcessDone, process.output.decode())

    async def test_usageError(self) -> None:
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-c", "from twisted.scripts.twistd import run; run()", "-n", "upnode-server", "--ping", "never"],
            env=ENV,
            path=str(ROOT),
        )
        self.assertNotEqual(code, 0)
        self.assertIn(b"--ping", out + err)


class CommandLineTests(TestCase):
    timeout = 60

    async def cli(self, *args: str) -> Tuple[int, str, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "upnode", *args], env=ENV, path=str(ROOT)
        )
        return code, out.decode(), err.decode()

    async def serve(self) -> int:
        never: List[Any] = []
        server = upnode.upnode(
            {"time": lambda cb: cb("noon"), "twice": lambda cb: (cb(1), cb(2)), "never": never.append, "n": 6}
        )
        self.addCleanup(server.end)
        return int((await server.listen(0, "127.0.0.1")).getHost().port)

    async def test_list(self) -> None:
        port = await self.serve()
        code, out, err = await self.cli(f"127.0.0.1:{port}")
        self.assertEqual(code, 0, err)
        self.assertEqual(
            json.loads(out),
            {"n": 6, "never": "[Function]", "ping": "[Function]", "time": "[Function]", "twice": "[Function]"},
        )

    async def test_call(self) -> None:
        port = await self.serve()
        self.assertEqual(await self.cli(f"127.0.0.1:{port}", "time"), (0, '["noon"]\n', ""))
        code, out, _ = await self.cli(f"tcp:host=127.0.0.1:port={port}", "twice", "--calls", "2")
        self.assertEqual((code, out), (0, "[1]\n[2]\n"))

    async def test_errors(self) -> None:
        port = await self.serve()
        code, _, err = await self.cli(f"127.0.0.1:{port}", "nope")
        self.assertEqual(code, 4)
        self.assertIn("has no method 'nope'", err)
        code, _, err = await self.cli(f"127.0.0.1:{port}", "never", "--timeout", "0.5")
        self.assertEqual(code, 1)
        self.assertIn("no answer within 0.5 seconds", err)
        code, _, err = await self.cli(f"127.0.0.1:{await freePort()}", "time")
        self.assertEqual(code, 3)
        self.assertIn("cannot connect", err)
        code, _, err = await self.cli("no port here", "time")
        self.assertEqual(code, 2)


# twistd as its installed script runs it: sys.path[0] is the script's
# folder, not the current folder (which "python -c" would put there).
TWISTD_SCRIPT = "import sys; del sys.path[0]; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"

# No empty entry in PYTHONPATH: an empty entry is the current folder.
PLAIN_ENV = dict(
    os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)] if p)
)

LOGGING_SERVICE = """
from twisted.internet import reactor
from twisted.logger import Logger

Logger().debug("DEBUG-MARK")
Logger().info("INFO-MARK")
reactor.callLater(0.5, reactor.stop)
Service = {"x": 1}
"""


class TwistdMessageTests(TestCase):
    """
    What twistd upnode-server says to a user who runs it by hand.
    """

    timeout = 60

    async def twistd(self, folder: str, *args: str, env: Any = PLAIN_ENV) -> Tuple[int, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", TWISTD_SCRIPT, "-n", "--pidfile=", "upnode-server", *args], env=env, path=folder
        )
        return code, (out + err).decode()

    def folder(self, **files: str) -> str:
        folder = tempfile.mkdtemp(prefix="upnode-")
        self.addCleanup(shutil.rmtree, folder, True)
        for name, text in files.items():
            Path(folder, name + ".py").write_text(text)
        return folder

    async def test_serviceBesideUsIsNotOnThePath(self) -> None:
        """
        --service naming a module in the current folder says that folder is
        not on sys.path and how to put it there; with PYTHONPATH=. it runs.
        """
        folder = self.folder(myservice="class Service:\n    pass\n", logsvc=LOGGING_SERVICE)
        code, output = await self.twistd(folder, "--service", "myservice.Service")
        self.assertNotEqual(code, 0)
        self.assertIn("'myservice' cannot be imported", output)
        self.assertIn("not on sys.path", output)
        self.assertIn("PYTHONPATH=.", output)
        self.assertNotIn("does not name an object", output)
        env = dict(PLAIN_ENV, PYTHONPATH=os.pathsep.join([PLAIN_ENV["PYTHONPATH"], "."]))
        code, output = await self.twistd(folder, "--service", "logsvc.Service", "--port", "tcp:0:interface=127.0.0.1", env=env)
        self.assertEqual(code, 0, output)

    async def test_serviceImportErrorIsShown(self) -> None:
        folder = self.folder(broken="import nosuchmodule\n", fine="Service = {}\n")
        env = dict(PLAIN_ENV, PYTHONPATH=os.pathsep.join([PLAIN_ENV["PYTHONPATH"], folder]))
        code, output = await self.twistd(folder, "--service", "broken.Service", env=env)
        self.assertNotEqual(code, 0)
        self.assertIn("No module named 'nosuchmodule'", output)
        code, output = await self.twistd(folder, "--service", "fine.Servce", env=env)
        self.assertIn("the module 'fine' has no 'Servce'; it has: Service", output)

    async def test_debugIsNotLoggedByDefault(self) -> None:
        """
        Under twistd, debug events (the client's state changes among them)
        stay out of the log unless --log-level debug asks for them.
        """
        folder = self.folder(logsvc=LOGGING_SERVICE)
        env = dict(PLAIN_ENV, PYTHONPATH=os.pathsep.join([PLAIN_ENV["PYTHONPATH"], folder]))
        args = ("--service", "logsvc.Service", "--port", "tcp:0:interface=127.0.0.1")
        code, output = await self.twistd(folder, *args, env=env)
        self.assertEqual(code, 0, output)
        self.assertIn("INFO-MARK", output)
        self.assertNotIn("DEBUG-MARK", output)
        code, output = await self.twistd(folder, *args, "--log-level", "debug", env=env)
        self.assertIn("DEBUG-MARK", output)
        code, output = await self.twistd(folder, *args, "--log-level", "loud", env=env)
        self.assertNotEqual(code, 0)
        self.assertIn("--log-level must be one of", output)

    async def test_version(self) -> None:
        code, output = await self.twistd(self.folder(), "--version")
        self.assertEqual(code, 0, output)
        self.assertIn(f"upnode {upnode.__version__} (Twisted ", output)


class CommandLineHelpTests(TestCase):
    timeout = 60

    async def test_noArgumentsAsksForATarget(self) -> None:
        out, err, code = await getProcessOutputAndValue(sys.executable, ["-m", "upnode"], env=ENV, path=str(ROOT))
        self.assertEqual(code, 2)
        self.assertIn(b"a target is required", err)
        self.assertNotIn(b"args", err.splitlines()[-1])

    async def test_version(self) -> None:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "upnode", "--version"], env=ENV, path=str(ROOT)
        )
        # The version, and which modules run compiled (upnode._speedups).
        self.assertEqual(code, 0, err)
        version = out.decode().strip()
        expected = f"upnode {upnode.__version__} (compiled: {', '.join(COMPILED)})"
        if os.environ.get("UPNODE_EXPECT_COMPILED"):
            self.assertEqual(version, expected)
        elif os.environ.get("UPNODE_PURE"):
            self.assertEqual(version, f"upnode {upnode.__version__} (pure Python)")
        else:
            self.assertRegex(version, rf"^upnode {re.escape(upnode.__version__)} \((compiled: [_a-z, ]+|pure Python)\)$")
