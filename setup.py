import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# One place for the version: upnode/_version.py (upnode.__version__).
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "upnode" / "_version.py").read_text()).group(1)

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
    package_data={"upnode": ["py.typed"]},
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
)
