import ast
import importlib.util
import os
import re
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, PlatformError

HERE = Path(__file__).resolve().parent
# One place for the version: upnode/_version.py (upnode.__version__).
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "upnode" / "_version.py").read_text()).group(1)

# The modules every message goes through, compiled by Cython from their own
# source (docs/benchmarks.md has what it gains).  The source is the
# reference: what does not compile runs as Python.  One list, the one
# upnode/_speedups.py checks at import, read from there as the version is
# (the build cannot import upnode: Twisted is not installed in it).
COMPILED = ast.literal_eval(
    re.search(r"^COMPILED = (\(.*\))$", (HERE / "upnode" / "_speedups.py").read_text(), re.M).group(1)
)


def _loadSourceDigest():
    # The rule for what each compiled module is recorded against, from the
    # file upnode/_speedups.py checks with at import (standard library only,
    # so it loads by its path where the package cannot be imported).
    spec = importlib.util.spec_from_file_location("upnode_sourcedigest", HERE / "upnode" / "_sourcedigest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sourceDigest


SOURCE_DIGEST = _loadSourceDigest()


def compiledModules():
    """
    Cython's extensions for COMPILED; none with UPNODE_PURE set or without
    Cython, and the package is then pure Python.
    """
    if os.environ.get("UPNODE_PURE"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    try:
        return cythonize(
            [Extension(f"upnode.{name}", [f"upnode/{name}.py"]) for name in COMPILED],
            # Types are not taken from the annotations: Cython would then refuse
            # a dict subclass where the source says Dict.
            compiler_directives={"language_level": 3, "binding": True, "annotation_typing": False},
            quiet=True,
        )
    except Exception as e:  # a Cython that cannot translate them: the source runs
        print(f"upnode: not compiled ({e}); the package runs as Python", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """
    Without a C compiler, or where one module does not compile, the package
    is installed all the same, that module as Python: said, not fatal.
    """

    def run(self):
        try:
            super().run()
        except (CCompilerError, CompileError, ExecError, PlatformError, OSError) as e:
            self.warn(f"upnode: nothing compiled ({e}); the package runs as Python")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, ExecError, PlatformError, OSError) as e:
            self.warn(f"upnode: {ext.name} not compiled ({e}); it runs as Python")
            return
        self.recordSource(ext, Path(self.get_ext_fullpath(ext.name)))

    def copy_extensions_to_source(self):
        # An in-place build (pip install -e .) compiles into the build folder,
        # then copies the compiled modules beside their source: the record too.
        super().copy_extensions_to_source()
        for ext in self.extensions:
            compiled = HERE / ext.name.replace(".", "/")
            self.recordSource(ext, compiled.with_name(Path(self.get_ext_filename(ext.name)).name))

    def recordSource(self, ext, compiled):
        """
        Write, beside a compiled module, the SHA-256 of the source it was
        compiled from (upnode/_sourcedigest.py says what that is):
        upnode/_speedups.py runs the source instead of a compiled module
        that does not match it.
        """
        if compiled.exists():
            source = HERE / ext.name.replace(".", "/")
            digest = SOURCE_DIGEST(source.parent, source.name)
            compiled.with_name(compiled.name + ".sha256").write_text(digest + "\n")

setup(
    name="upnode",
    version=VERSION,
    description=(
        "Keep a dnode connection alive, re-establish state between reconnects "
        "and queue calls while the link is down: Node's upnode on Twisted."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: Twisted",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Software Development :: Libraries :: Python Modules",
        "Topic :: System :: Distributed Computing",
        "Topic :: System :: Networking",
        "Typing :: Typed",
    ],
    python_requires=">=3.10",
    # The wheel ships the library, not its tests: they need the Node
    # reference peer (npm), the benchmarks and the tox setup, which live in
    # the source tree.  The sdist keeps them (MANIFEST.in).
    #
    # twisted/plugins/upnode_plugin.py is how twistd finds "upnode-server":
    # Twisted looks for plugins in a twisted/plugins folder under every
    # sys.path entry (twisted.plugin.pluginPackagePaths), so the file has to
    # be installed there, beside Twisted's own, and that is why the wheel's
    # top_level.txt lists "twisted" next to "upnode".  Neither twisted/ nor
    # twisted/plugins/ has an __init__.py here, and none is shipped: one
    # would replace Twisted's package with ours.  "twisted.plugins" is
    # named as a package by hand because find_packages() only finds folders
    # with an __init__.py.
    packages=find_packages(include=["upnode", "upnode.*"], exclude=["upnode.test", "upnode.test.*"])
    + ["twisted.plugins"],
    # The project root is the root of every package.  Said explicitly, it
    # makes setuptools' editable install (pip install -e .) a plain .pth
    # entry for this folder instead of an import hook for "upnode" and
    # "twisted.plugins" alone: Twisted's plugin search walks sys.path
    # folders, and only a folder on sys.path lets twistd find
    # twisted/plugins/upnode_plugin.py from a checkout.
    package_dir={"": "."},
    # The .pxd files (the compiled classes' fields) ship beside their
    # source: the check at import hashes both.
    package_data={"upnode": ["py.typed", "*.pxd"]},
    install_requires=[
        "twisted>=23.8",
        "pyOpenSSL>=22.1",
        "service-identity>=23.1",
        "attrs>=21.3",
        "zope.interface>=5",
        "pyee>=12",
        "orjson>=3.9",
    ],
    extras_require={"test": ["hypothesis>=6", "cryptography>=38"], "metrics": ["prometheus_client>=0.17"]},
    entry_points={"console_scripts": ["upnode=upnode._cli:main"]},
    ext_modules=compiledModules(),
    cmdclass={"build_ext": OptionalBuildExt},
)
