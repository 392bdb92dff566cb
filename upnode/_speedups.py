# -*- test-case-name: upnode.test.test_speedups -*-
"""
Which of our modules run compiled.

The modules every message goes through (L{COMPILED}) may be compiled by
Cython from their own source when the package is built (see setup.py),
with the C{.pxd} beside a module declaring the fields of its classes; a
compiled module sits beside its source, and Python imports it first.
Before anything imports them, L{install} checks each: with
C{UPNODE_PURE} set, or when the source on disk is not the one it was
compiled from (a checkout edited since; the build writes the SHA-256 of
that source and its C{.pxd} beside each compiled module), the source is
loaded instead, and a stale compiled module is said, once, as a warning.
So what runs is always what the source on disk says.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Dict, Mapping, Optional, Tuple

from ._sourcedigest import sourceDigest
from .errors import UpnodeWarning

#: The modules on every message's path, which setup.py compiles; each after
#: the ones among them it imports, so that one loaded from source imports
#: the others as they will stay.
COMPILED = ("_arity", "_framing", "_remote", "_scrub", "_tables", "_session")

#: What L{choose} says of a module.
NOT_BUILT, BUILT, PURE, STALE = "not built", "compiled", "pure by request", "stale"


def compiledPath(directory: Path, name: str) -> Optional[Path]:
    """
    The compiled module C{name} in C{directory} that this interpreter
    would import, if there is one.
    """
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = directory / (name + suffix)
        if path.exists():
            return path
    return None


def compiledFrom(compiled: Path) -> Optional[str]:
    """
    The SHA-256 of the source C{compiled} was compiled from, as the build
    recorded it beside it; None if it did not.
    """
    try:
        return (compiled.parent / (compiled.name + ".sha256")).read_text().strip()
    except OSError:
        return None


def choose(directory: Path, environ: Mapping[str, str]) -> Dict[str, str]:
    """
    For each of L{COMPILED}: L{BUILT} (run the compiled module), L{NOT_BUILT}
    (there is none: the source runs), L{PURE} (C{UPNODE_PURE} is set) or
    L{STALE} (compiled from another source, or from one not recorded).
    """
    pure = bool(environ.get("UPNODE_PURE"))
    choices = {}
    for name in COMPILED:
        compiled = compiledPath(directory, name)
        if compiled is None:
            choices[name] = NOT_BUILT
        elif pure:
            choices[name] = PURE
        elif compiledFrom(compiled) != sourceDigest(directory, name):
            choices[name] = STALE
        else:
            choices[name] = BUILT
    return choices


def loadSource(package: ModuleType, name: str) -> ModuleType:
    """
    Import C{package}'s module C{name} from its source file, whatever
    else sits beside it.
    """
    fullName = f"{package.__name__}.{name}"
    spec = importlib.util.spec_from_file_location(fullName, Path(package.__path__[0]) / (name + ".py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullName] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[fullName]
        raise
    setattr(package, name, module)
    return module


def install(package: ModuleType, environ: Mapping[str, str]) -> Tuple[str, ...]:
    """
    Load from source each of L{COMPILED} that must not run compiled (see
    L{choose}); return the names that will run compiled.
    """
    choices = choose(Path(package.__path__[0]), environ)
    stale = [name for name, choice in choices.items() if choice == STALE]
    if stale:
        warnings.warn(
            f"upnode: {', '.join(n + '.py' for n in stale)} not what was compiled: running the source"
            " (compile it again with `pip install -e .`, or delete the compiled files)",
            UpnodeWarning,
            stacklevel=3,
        )
    for name, choice in choices.items():
        if choice in (PURE, STALE):
            loadSource(package, name)
    return tuple(name for name, choice in choices.items() if choice == BUILT)


def running() -> Tuple[str, ...]:
    """
    Which of L{COMPILED} run compiled in this process.
    """
    files = {name: getattr(sys.modules.get(f"upnode.{name}"), "__file__", None) for name in COMPILED}
    return tuple(name for name, file in files.items() if file is not None and not file.endswith(".py"))
