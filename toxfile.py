"""
tox finds Python interpreters on PATH.  pyenv installs several CPythons
without putting them there (only its shims, for the one selected), so the
unit tests on other Pythons would not find them: this adds each pyenv
version's bin folder at the end of PATH, after everything already on it.
Nothing changes where pyenv is not used.
"""

from __future__ import annotations

import os
from pathlib import Path

from tox.config.cli.parser import ToxParser
from tox.plugin import impl


@impl
def tox_add_option(parser: ToxParser) -> None:
    # The first hook tox calls: before its options are read, and before
    # any interpreter is looked for.  Under CI a missing Python fails the
    # run (tox.ini skips it elsewhere, with tox's notice).
    if os.environ.get("CI"):
        os.environ.setdefault("TOX_SKIP_MISSING_INTERPRETERS", "false")
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    folders = [str(bin) for bin in sorted(root.glob("*/bin")) if bin.is_dir()]
    path = os.environ.get("PATH", "")
    extra = [folder for folder in folders if folder not in path.split(os.pathsep)]
    if extra:
        os.environ["PATH"] = os.pathsep.join([path, *extra]) if path else os.pathsep.join(extra)
