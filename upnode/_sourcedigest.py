# -*- test-case-name: upnode.test.test_speedups -*-
"""
What a compiled module is checked against: the one rule, used by the build
(setup.py loads this file by its path: the build cannot import the
package, whose dependencies are not installed in it) when it records the
source beside each compiled module, and by L{upnode._speedups} at import.
Nothing here may import anything but the standard library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sourceDigest(directory: Path, name: str) -> str:
    """
    The SHA-256 of module C{name}'s source in C{directory}: its C{.py},
    then the C{.pxd} beside it where there is one (what Cython reads for
    the fields of the classes it compiles).
    """
    digest = hashlib.sha256((directory / (name + ".py")).read_bytes())
    declarations = directory / (name + ".pxd")
    if declarations.exists():
        digest.update(declarations.read_bytes())
    return digest.hexdigest()


__all__ = ["sourceDigest"]
