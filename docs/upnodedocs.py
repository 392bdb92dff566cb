"""
The pydoctor system for upnode's API reference: the library without its
test suite, with the public surface (C{upnode.__all__}) on the package
page.  tox.ini's docs environment puts this folder on the path, and
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

    def postProcess(self) -> None:
        # pydoctor moves a re-exported object into the package only when
        # the module that defines it does not list it in its own __all__
        # (upnode._upnode, upnode._calls), and moves it again into the last
        # public module that re-exports it (upnode.dnode): every name of
        # upnode.__all__ belongs on the package page, where users import it.
        package = self.allobjects.get("upnode")
        if isinstance(package, model.Module):
            for name in package.all or ():
                if name in package.contents:
                    continue
                found = self.objForFullName(package.expandName(name))
                if found is None:
                    for other in list(self.allobjects.values()):
                        if isinstance(other, model.Module) and other.contents.get(name) is not None:
                            if other.fullName().startswith("upnode."):
                                found = other.contents[name]
                                break
                if found is not None and found.parent is not package:
                    found.reparent(package, name)
        super().postProcess()

    def addPackage(self, package_path: Path, parent: Any = None, *args: Any, **kwargs: Any) -> None:
        if parent is not None and parent.fullName() == "upnode" and package_path.name == "test":
            return
        super().addPackage(package_path, parent, *args, **kwargs)
