"""
The README's examples, run: every Python block in it is marked with what it
is (a server, a client of one, or a script) and what it prints, and runs
here as its own process, on a free port instead of 7000.

    <!-- example: NAME server -->              listens; started first
    <!-- example: NAME client expect="..." --> runs against NAME's server, or
                                               the demo twistd server if the
                                               README has no NAME server
    <!-- example: NAME script expect="..." --> runs alone and exits
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from .helpers import freePort, sleep, spawnTwistd, until
from .test_twistd_cli import ENV, ROOT

BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MARKED = re.compile(r'<!-- example: (\w+) (server|client|script)(?: expect="([^"]*)")? -->\n```python\n(.*?)```', re.S)


class Example(NamedTuple):
    name: str
    role: str
    expect: Optional[str]
    code: str


def examples() -> List[Example]:
    text = (ROOT / "README.md").read_text()
    return [Example(*match.groups()) for match in MARKED.finditer(text)]


class Running(ProcessProtocol):
    def __init__(self) -> None:
        self.output = ""
        self.ended: Deferred[Any] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode(errors="replace")

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class ReadmeExamples(TestCase):
    timeout = 180

    def start(self, code: str, port: int) -> Running:
        process = Running()
        # Unbuffered, as in a terminal: print() without flush= shows at once.
        env = dict(ENV, PYTHONUNBUFFERED="1")
        reactor.spawnProcess(
            process, sys.executable, [sys.executable, "-c", code.replace("7000", str(port))], env=env, path=str(ROOT)
        )

        def stop() -> Any:
            if not process.ended.called:
                process.transport.signalProcess("KILL")  # type: ignore[union-attr]
            return process.ended

        self.addCleanup(stop)
        return process

    def test_everyPythonBlockIsAnExample(self) -> None:
        text = (ROOT / "README.md").read_text()
        self.assertEqual(len(BLOCK.findall(text)), len(examples()))
        self.assertGreaterEqual(len(examples()), 5)

    async def test_examplesRun(self) -> None:
        found = examples()
        servers: Dict[str, Example] = {e.name: e for e in found if e.role == "server"}
        for example in found:
            if example.role == "server":
                continue
            port = await freePort()
            if example.role == "client":
                server = servers.get(example.name)
                if server is None:
                    spawnTwistd(self, "--port", f"tcp:{port}:interface=127.0.0.1", "--ping", "1")
                else:
                    self.start(server.code, port)
                await until(lambda port=port: listening(port), timeout=30)
            run = self.start(example.code, port)
            expect = example.expect or ""
            try:
                await until(lambda run=run, expect=expect: expect in run.output, timeout=30)
            except AssertionError:
                self.fail(f"README example {example.name} {example.role} never printed {example.expect!r}:\n{run.output}")
            await sleep(0)


class ReadmeTypes(TestCase):
    """
    mypy on the README's Python examples, as a user's checker sees them:
    what the README teaches must type-check (C{await up()},
    C{await up(timeout=5.0)}, the asyncio recipe).
    """

    timeout = 300

    async def test_examplesTypeCheck(self) -> None:
        from twisted.internet.utils import getProcessOutputAndValue

        try:
            import mypy  # noqa: F401
        except ImportError:
            # (tox's tests and type environments install it.)
            raise SkipTest("mypy is not installed") from None
        folder = Path(self.mktemp()).resolve()
        folder.mkdir(parents=True)
        blocks = BLOCK.findall((ROOT / "README.md").read_text())
        self.assertTrue(blocks)
        names = []
        for number, code in enumerate(blocks):
            name = folder / f"readme_example_{number}.py"
            name.write_text(code)
            names.append(str(name))
        config = folder / "mypy.ini"
        config.write_text(
            "[mypy]\nignore_missing_imports = True\ncheck_untyped_defs = True\n"
            "follow_imports = silent\nwarn_unused_ignores = False\n"
            # Twisted's interfaces (reactor.run, Clock as IReactorTime), as
            # a user's checker with Twisted would read them.
            "plugins = mypy_zope:plugin\n"
        )
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "mypy", "--config-file", str(config), "--cache-dir", str(folder / "cache"), *names],
            env=dict(ENV, MYPYPATH=str(ROOT)),
            path=str(ROOT),
        )
        self.assertEqual(code, 0, (out + err).decode())
