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
from twisted.trial.unittest import TestCase

from .helpers import Collect
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
        self.assertBeforeMark(err, "UpTimeout", "was not up within handshakeTimeout (0.5 seconds)")

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


class NodeHabitScriptTests(TestCase):
    """
    Node code ported literally, run as a plain script: what it prints.
    """

    timeout = 60

    async def runScript(self, body: str) -> Tuple[str, str]:
        process = Collect()
        script = PREAMBLE + textwrap.dedent(body)
        env = dict(ENV, PYTHONUNBUFFERED="1")
        reactor.spawnProcess(process, sys.executable, [sys.executable, "-c", script], env=env)
        code, out, err = await process.done
        self.assertEqual(code, 0, out + err)
        self.assertIn("STILL RUNNING", err)
        return out, err

    async def test_seedHabits(self) -> None:
        """
        The seed's C{up(timeout, cb)} with C{def cb(remote): if not remote:},
        its auth client's C{def authed(err, res)} refused with
        C{cb("ACCESS DENIED")}, event handlers that take fewer arguments
        than the event carries, C{async def} callbacks and dnode's
        C{listen(cons, port)}.
        """
        out, err = await self.runScript(
            """
            import socket
            s = socket.socket(); s.bind(("127.0.0.1", 0)); nobody = s.getsockname()[1]; s.close()

            def cb(remote):
                if not remote:
                    print("resource timed out")

            down = upnode.connect(nobody, "127.0.0.1", ping=0)
            down(1.0, cb)

            class Server:
                def __init__(self, client, conn):
                    conn.on("local", lambda ref: print("local"))
                    conn.on("remote", lambda remote: print("conn remote"))

                def auth(self, user, password, cb):
                    if user == "moo" and password == "hax":
                        cb(None, {"beep": lambda cb: cb("boop")})
                    else:
                        cb("ACCESS DENIED")

            def go(port):
                def onRemote(remote, conn):
                    def authed(err, res):
                        print("authed:", err, res)
                        if err is None:
                            conn.emit("up", res)
                    remote.auth("moo", "nope", authed)
                    remote.auth("moo", "hax", authed)

                up = upnode.connect(port.getHost().port, "127.0.0.1", onRemote, ping=0)
                up.on("up", lambda: print("up"))
                up.on("remote", lambda remote: print("remote"))
                up.once("up", lambda session: print("once up"))

                async def transaction(session):
                    session.beep(lambda sound: print("beep:", sound))

                up(transaction)

            upnode.listen(Server, 0, "127.0.0.1", ping=0).addCallback(go)
            reactor.run()
            """
        )
        for line in (
            "resource timed out",
            "authed: ACCESS DENIED None",
            "local",
            "conn remote",
            "remote",
            "up",
            "once up",
            "beep: boop",
        ):
            self.assertIn(line + "\n", out)
        self.assertNotIn("Traceback", err)
        self.assertNotIn("never awaited", err)

    async def test_mistakesAreSaid(self) -> None:
        """
        Node's milliseconds in an integer, and a server method that returns
        its answer without @upnode.replies: warnings on stderr, at the
        user's lines.
        """
        out, err = await self.runScript(
            """
            class Server:
                def __init__(self, client, conn):
                    pass

                def add(self, a, b, cb):
                    return a + b

            def go(port):
                up = upnode.connect(port.getHost().port, "127.0.0.1", {"ping": 0, "reconnect": 100})
                up.call("add", 1, 2).addErrback(lambda f: None)

            upnode.listen(Server, 0, "127.0.0.1", ping=0).addCallback(go)
            reactor.run()
            """
        )
        self.assertIn("UpnodeWarning: reconnect=100 is taken as 100 seconds", err)
        self.assertIn("UpnodeWarning: Server.add() returned 3", err)
        self.assertIn("@upnode.replies", err)
