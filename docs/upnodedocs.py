"""
The pydoctor system for upnode's API reference: the library without its
test suite.  tox.ini's docs environment puts this folder on the path, and
docs/pydoctor.ini names L{UpnodeSystem} as the C{system-class}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydoctor import model


class UpnodeSystem(model.System):
    """
    pydoctor's default system (with its zope.interface, attrs and Twisted
    deprecation extensions), skipping C{upnode.test}: the tests are no part
    of the API, so their docstrings are neither rendered nor checked.
    """

    def addPackage(self, package_path: Path, parent: Any = None, *args: Any, **kwargs: Any) -> None:
        if parent is not None and parent.fullName() == "upnode" and package_path.name == "test":
            return
        super().addPackage(package_path, parent, *args, **kwargs)
