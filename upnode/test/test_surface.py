"""
The public surface: every name the README and the API reference promise
under C{upnode.} is there, and C{__all__} names only what exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import upnode

README = Path(__file__).resolve().parents[2] / "README.md"


class SurfaceTests(SynchronousTestCase):
    def test_allResolves(self) -> None:
        for name in upnode.__all__:
            self.assertTrue(hasattr(upnode, name), name)

    def test_readmeNamesExist(self) -> None:
        """
        Every C{upnode.Name} the README mentions (a class, an error, a
        function or a module) can be reached from C{import upnode}.
        """
        names = set(re.findall(r"\bupnode\.([A-Za-z_]\w*)\b", README.read_text(encoding="utf-8")))
        self.assertIn("OutboxFull", names)
        modules = {"aio", "dnode", "testing", "tls", "metrics", "test", "demo", "service", "sock"}
        missing = sorted(name for name in names - modules if not hasattr(upnode, name))
        self.assertEqual(missing, [])

    def test_outboxErrorsExported(self) -> None:
        self.assertTrue(issubclass(upnode.OutboxFull, upnode.QueueFull))
        self.assertTrue(issubclass(upnode.OutboxError, upnode.UpnodeError))
        self.assertTrue(issubclass(upnode.OutboxCallFailed, upnode.UpnodeError))

    def test_helpSaysEveryOption(self) -> None:
        """
        C{help()} on the module-level functions names what they take: every
        client option for C{connect}, the server's for C{listen}.
        """
        import pydoc

        connectHelp = pydoc.render_doc(upnode.connect)
        for option in ("ping", "timeout", "reconnect", "backoff", "maxDelay", "jitter", "handshakeTimeout", "maxQueue", "outbox"):
            self.assertIn(f"{option} (", connectHelp.replace("C{", "").replace("}", ""))
        listenHelp = pydoc.render_doc(upnode.listen)
        for option in ("ping", "timeout", "handshakeTimeout", "lineTimeout", "maxConnections"):
            self.assertIn(option, listenHelp)

    def test_listenFindsTheCons(self) -> None:
        """
        dnode's C{listen(cons, port)}: a class or a function of C{(remote,
        conn)} is the cons wherever it stands; the rest keep their order.
        """
        from upnode._upnode import splitCons

        class Clock:
            def __init__(self, remote: object, conn: object) -> None:
                pass

        def ready() -> None:
            pass

        self.assertEqual(splitCons([7000, Clock, ready]), (Clock, [7000, ready]))
        self.assertEqual(splitCons([ready, 7000]), ({}, [ready, 7000]))
