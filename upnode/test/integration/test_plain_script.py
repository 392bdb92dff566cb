"""
What a plain script shows with no log observer started, as the README's
examples are written: every unexpected failure is on stderr while the
program runs, not buffered, nor left for exit.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from .test_twistd_cli import ENV

PREAMBLE = """
import sys
from twisted.internet import reactor
import upnode

def mark():
    sys.stderr.write("STILL RUNNING\\n")
    sys.stderr.flush()
    reactor.stop()

reactor.callLater(2.0, mark)
"""


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.done: Deferred[Tuple[int, str, str]] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = reason.value.exitCode  # type: ignore[attr-defined]
        self.done.callback((code, self.out.decode(), self.err.decode()))


class PlainScriptTests(TestCase):
    timeout = 60

    async def script(self, body: str) -> str:
        process = Collect()
        script = PREAMBLE + textwrap.dedent(body)
        reactor.spawnProcess(process, sys.executable, [sys.executable, "-c", script], env=ENV)
        code, out, err = await process.done
        self.assertEqual(code, 0, err)
        self.assertIn("STILL RUNNING", err)
        return err

    def assertBeforeMark(self, err: str, *texts: str) -> None:
        mark = err.index("STILL RUNNING")
        for text in texts:
            self.assertIn(text, err[:mark], err)

    async def test_queuedTransactionThatRaises(self) -> None:
        err = await self.script(
            """
            server = upnode.upnode({"x": 1})

            def go(port):
                up = upnode.connect(port.getHost().port, "127.0.0.1", {"ping": 0})
                up(lambda remote: 1 / 0)

            server.listen(0, "127.0.0.1", {"ping": 0}).addCallback(go)
            reactor.run()
            """
        )
        self.assertBeforeMark(err, "ZeroDivisionError", "Unhandled upnode error")

    async def test_connectCallbackThatNeverEmitsUp(self) -> None:
        err = await self.script(
            """
            server = upnode.upnode({"x": 1})

            def go(port):
                upnode.connect(
                    port.getHost().port, "127.0.0.1", {"ping": 0, "handshakeTimeout": 0.5},
                    lambda remote, conn: None,
                )

            server.listen(0, "127.0.0.1", {"ping": 0}).addCallback(go)
            reactor.run()
            """
        )
        self.assertBeforeMark(err, "UpTimeout", "did not emit 'up' within 0.5 seconds")

    async def test_listenOnAPortInUse(self) -> None:
        err = await self.script(
            """
            first = upnode.upnode({"x": 1})

            def again(port):
                upnode.upnode({"x": 2}).listen(port.getHost().port, "127.0.0.1")

            first.listen(0, "127.0.0.1").addCallback(again)
            reactor.run()
            """
        )
        self.assertBeforeMark(err, "upnode could not listen (port", "Address already in use")
