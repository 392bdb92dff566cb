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
