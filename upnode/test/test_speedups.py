"""
Tests for L{upnode._speedups}: which modules run compiled, and that a
stale or unwanted compiled module gives way to its source.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import upnode
from upnode._speedups import BUILT, COMPILED, NOT_BUILT, PURE, STALE, choose, install, loadSource, running
from upnode.errors import UpnodeWarning

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


class FakePackage:
    """
    A package on disk, importable, whose modules say which file ran.
    """

    def __init__(self, test: SynchronousTestCase) -> None:
        root = Path(test.mktemp())
        self.name = f"fakeupnode{id(self)}"
        self.directory = root / self.name
        self.directory.mkdir(parents=True)
        (self.directory / "__init__.py").write_text("")
        for name in COMPILED:
            (self.directory / f"{name}.py").write_text("RAN = 'source'\n")
        sys.path.insert(0, str(root))
        test.addCleanup(sys.path.remove, str(root))
        test.addCleanup(self.forget)
        self.package = __import__(self.name)

    def compiled(self, name: str, fromSource: Optional[bytes]) -> None:
        """
        Put a (fake) compiled module beside C{name}'s source, recorded as
        compiled from C{fromSource} (None: no record).
        """
        path = self.directory / (name + SUFFIX)
        path.write_bytes(b"not really a compiled module")
        if fromSource is not None:
            (self.directory / (path.name + ".sha256")).write_text(hashlib.sha256(fromSource).hexdigest() + "\n")

    def source(self, name: str) -> bytes:
        return (self.directory / (name + ".py")).read_bytes()

    def forget(self) -> None:
        for key in [k for k in sys.modules if k == self.name or k.startswith(self.name + ".")]:
            del sys.modules[key]


class ChooseTests(SynchronousTestCase):
    def test_whatEachModuleRuns(self) -> None:
        """
        A module without a compiled one runs its source; one compiled from
        the source on disk runs; one compiled from another source, or with
        no record of it, is stale; with C{UPNODE_PURE} set, none runs.
        """
        fake = FakePackage(self)
        fake.compiled("_scrub", fake.source("_scrub"))
        fake.compiled("_session", fake.source("_session") + b"# since edited\n")
        fake.compiled("_arity", None)
        choices = choose(fake.directory, {})
        self.assertEqual((choices["_scrub"], choices["_session"], choices["_arity"]), (BUILT, STALE, STALE))
        self.assertEqual({choices[n] for n in COMPILED if n not in ("_scrub", "_session", "_arity")}, {NOT_BUILT})
        pure = choose(fake.directory, {"UPNODE_PURE": "1"})
        self.assertEqual((pure["_scrub"], pure["_session"], pure["_tables"]), (PURE, PURE, NOT_BUILT))
        # An empty value is unset, as tox's setenv writes it.
        self.assertEqual(choose(fake.directory, {"UPNODE_PURE": ""})["_scrub"], BUILT)


class InstallTests(SynchronousTestCase):
    def test_staleGivesWayToSourceAndIsSaid(self) -> None:
        """
        A stale compiled module is not imported: its source is, once, and a
        warning names it and says how to rebuild.  A fresh one is left for
        the import system, and named as running compiled.
        """
        fake = FakePackage(self)
        fake.compiled("_scrub", fake.source("_scrub"))
        fake.compiled("_session", b"RAN = 'an older source'\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runningCompiled = install(fake.package, {})
        self.assertEqual(runningCompiled, ("_scrub",))
        [warning] = caught
        self.assertIs(warning.category, UpnodeWarning)
        self.assertIn("_session.py not what was compiled", str(warning.message))
        self.assertIn("pip install -e .", str(warning.message))
        module = sys.modules[f"{fake.name}._session"]
        self.assertEqual((module.RAN, Path(module.__file__).name), ("source", "_session.py"))
        self.assertIs(fake.package._session, module)
        self.assertNotIn(f"{fake.name}._scrub", sys.modules)

    def test_pureLoadsEverySourceQuietly(self) -> None:
        """
        With C{UPNODE_PURE} set, every module that has a compiled one is
        loaded from its source, and nothing is said.
        """
        fake = FakePackage(self)
        fake.compiled("_scrub", fake.source("_scrub"))
        fake.compiled("_arity", fake.source("_arity"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.assertEqual(install(fake.package, {"UPNODE_PURE": "1"}), ())
        self.assertEqual(caught, [])
        for name in ("_scrub", "_arity"):
            self.assertTrue(sys.modules[f"{fake.name}.{name}"].__file__.endswith(f"{name}.py"))

    def test_sourceThatFailsIsNotLeftHalfLoaded(self) -> None:
        """
        A source that raises while it loads is not left in C{sys.modules},
        and the error is not swallowed.
        """
        fake = FakePackage(self)
        (fake.directory / "_tables.py").write_text("raise ValueError('broken')\n")
        self.assertRaises(ValueError, loadSource, fake.package, "_tables")
        self.assertNotIn(f"{fake.name}._tables", sys.modules)


class ThisProcessTests(SynchronousTestCase):
    def test_runningIsWhatWasChosen(self) -> None:
        """
        The modules that run compiled here are the ones built and chosen; in
        the environment that is meant to run them compiled (tox's tests,
        C{UPNODE_EXPECT_COMPILED}), that is every one of them, and with
        C{UPNODE_PURE} none.
        """
        directory = Path(upnode.__file__).parent
        chosen = tuple(n for n, c in choose(directory, os.environ).items() if c == BUILT)
        self.assertEqual(running(), chosen)
        if os.environ.get("UPNODE_EXPECT_COMPILED"):
            self.assertEqual(running(), COMPILED)
        if os.environ.get("UPNODE_PURE"):
            self.assertEqual(running(), ())
        for name in COMPILED:
            module = sys.modules[f"upnode.{name}"]
            self.assertIsInstance(module, types.ModuleType)
            self.assertEqual(module.__file__.endswith(".py"), name not in running())

    def test_oneVersionOfEachModule(self) -> None:
        """
        What each of the modules imports from another of them is that
        module's own object: none runs with a version the process replaced
        (which loading a module from source before one it imports would
        make).  So each comes after those it imports.
        """
        directory = Path(upnode.__file__).parent
        checked = 0
        for index, name in enumerate(COMPILED):
            tree = ast.parse((directory / f"{name}.py").read_text())
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in COMPILED:
                    self.assertIn(node.module, COMPILED[:index], f"{name} imports {node.module}")
                    for alias in node.names:
                        imported = getattr(sys.modules[f"upnode.{name}"], alias.asname or alias.name)
                        self.assertIs(imported, getattr(sys.modules[f"upnode.{node.module}"], alias.name))
                        checked += 1
        self.assertGreater(checked, 5)

    def test_compiledAndSourceAgree(self) -> None:
        """
        Where the encoder runs compiled, its source, loaded beside it, writes
        the same bytes: for a callback beside plain data, a tuple and -0.0
        (scrubbed), and a reply nested three deep.
        """
        if "_scrub" not in running():
            raise SkipTest("_scrub runs as Python here: tox's tests environment runs it compiled")
        source = types.ModuleType("upnode._scrub_source")
        source.__package__ = "upnode"
        path = Path(upnode.__file__).parent / "_scrub.py"
        exec(compile(path.read_text(), str(path), "exec"), source.__dict__)
        compiled = sys.modules["upnode._scrub"]
        cb = lambda value: None  # noqa: E731
        message = ({"id": 1, "tags": ["a", "b"], "ratio": 0.5, "zero": -0.0, "t": (1, 2)}, cb)
        self.assertEqual(
            compiled.encodeRequest("echo", message, lambda f: 7, 64),
            source.encodeRequest("echo", message, lambda f: 7, 64),
        )
        self.assertEqual(
            compiled.encodeRequest(3, [[1, [2, [3]]]], lambda f: 7, 64),
            source.encodeRequest(3, [[1, [2, [3]]]], lambda f: 7, 64),
        )

