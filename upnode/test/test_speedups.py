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
import weakref
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

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

    def test_declarationsArePartOfTheSource(self) -> None:
        """
        A module's C{.pxd} (its classes' fields, for Cython) is part of the
        source a compiled module is checked against: one compiled from the
        C{.py} and the C{.pxd} on disk runs; one compiled before either was
        edited is stale.
        """
        fake = FakePackage(self)
        declarations = b"cdef class C:\n    cdef public object a\n"
        for name in ("_scrub", "_session", "_tables"):
            (fake.directory / f"{name}.pxd").write_bytes(declarations)
        fake.compiled("_scrub", fake.source("_scrub") + declarations)
        fake.compiled("_session", fake.source("_session"))
        fake.compiled("_tables", fake.source("_tables") + declarations)
        (fake.directory / "_tables.pxd").write_bytes(declarations + b"    cdef public object b\n")
        choices = choose(fake.directory, {})
        self.assertEqual((choices["_scrub"], choices["_session"], choices["_tables"]), (BUILT, STALE, STALE))


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


def declaredClasses(directory: Path) -> Dict[Tuple[str, str], Set[str]]:
    """
    The fields each C{.pxd} in C{directory} declares public, by module and
    class.
    """
    declared: Dict[Tuple[str, str], Set[str]] = {}
    for path in sorted(directory.glob("*.pxd")):
        fields: Set[str] = set()
        for line in path.read_text().splitlines():
            if line.startswith("cdef class "):
                fields = declared.setdefault((path.stem, line[len("cdef class ") :].rstrip(":")), set())
            elif line.strip().startswith("cdef public object "):
                fields.update(n.strip() for n in line.strip()[len("cdef public object ") :].split(","))
    return declared


def slotsOf(cls: ast.ClassDef) -> Optional[Set[str]]:
    """
    The C{__slots__} of C{cls}; None where it has none.
    """
    for node in cls.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__slots__"]:
            return set(ast.literal_eval(node.value))
    return None


def fieldsSet(cls: ast.ClassDef) -> Set[str]:
    """
    What the methods of C{cls} assign to C{self.NAME}, or its
    C{__slots__} where it has them, less its own methods.
    """
    slots = slotsOf(cls)
    if slots is not None:
        return slots - {"__weakref__"}
    methods = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    names = set()
    for node in ast.walk(cls):
        targets: List[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for leaf in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                    names.add(leaf.attr)
    return names - methods


class DeclaredClassesTests(SynchronousTestCase):
    """
    The classes whose fields a C{.pxd} declares for the compiled build
    (C{upnode/_framing.pxd} says why).
    """

    def setUp(self) -> None:
        self.directory = Path(upnode.__file__).parent
        self.declared = declaredClasses(self.directory)

    def test_declarationsMatchTheSource(self) -> None:
        """
        Each C{.pxd} belongs to a compiled module and declares, for each of
        its classes, the fields the source sets: none it no longer has, and
        none missing (which would be found by name on every use, as if
        nothing were declared).
        """
        self.assertEqual(
            sorted(self.declared),
            [
                ("_framing", "LineFramer"),
                ("_remote", "RemoteCallback"),
                ("_remote", "Sender"),
                ("_session", "DnodeSession"),
                ("_tables", "LocalCallbacks"),
                ("_tables", "RemoteProxies"),
            ],
        )
        for (module, name), fields in self.declared.items():
            self.assertIn(module, COMPILED)
            self.assertEqual(
                fields,
                fieldsSet(self.source(module, name)),
                f"upnode/{module}.pxd: declare there the fields {name}'s source sets, and only those"
                " (compiled, one not declared is found by name on every use)",
            )

    def source(self, module: str, name: str) -> ast.ClassDef:
        tree = ast.parse((self.directory / f"{module}.py").read_text())
        [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
        return cls

    def test_classesKeepPythonsWays(self) -> None:
        """
        Compiled or not, an instance of a declared class takes weak
        references and attributes it does not declare where the Python
        class does (it has no C{__slots__}, or they name C{__weakref__}),
        and its declared fields hold what is put in them.
        """
        for (module, name), fields in self.declared.items():
            cls = getattr(sys.modules[f"upnode.{module}"], name)
            slots = slotsOf(self.source(module, name))
            instance = cls.__new__(cls)
            if slots is None or "__weakref__" in slots:
                self.assertIs(weakref.ref(instance)(), instance)
            else:
                self.assertRaises(TypeError, weakref.ref, instance)
            if slots is None:
                instance.notDeclared = 1
                self.assertEqual(instance.notDeclared, 1)
            else:
                self.assertRaises(AttributeError, setattr, instance, "notDeclared", 1)
            for field in fields:
                setattr(instance, field, name)
                self.assertEqual(getattr(instance, field), name)
