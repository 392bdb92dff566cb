"""
What a user installs: the wheel and the sdist built from this tree, the
wheel installed with its dependencies into a fresh virtualenv (not sharing
this one's packages), and what it ships run from there: the library, the
C{upnode} console script and C{twistd upnode-server}.

It needs C{python -m venv} (with ensurepip) and the package index: without
a venv it skips, unless C{CI} is set, where it fails.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from email import message_from_string
from pathlib import Path
from typing import Dict, List

from twisted.trial.unittest import SkipTest, TestCase

import upnode
from upnode._speedups import COMPILED

ROOT = Path(__file__).resolve().parents[3]

# Working files of a checkout that no build should see: a stale build/lib
# in particular ends up in the wheel whatever setup.py says.
IGNORED = shutil.ignore_patterns(
    ".git",
    ".tox",
    ".venv",
    ".cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "_trial_temp*",
    "build",
    "dist",
    "_build",
    "*.egg-info",
    "node_modules",
    "__pycache__",
    "*.pyc",
    "dropin.cache",
    # Modules compiled in place, the records of their sources, and Cython's
    # C for them: each build makes its own.
    "*.so",
    "*.sha256",
    "*.c",
)


def run(args: List[str], cwd: Path, env: Dict[str, str], timeout: float = 120) -> str:
    """
    Run a command to completion; its output (stdout and stderr), or a
    failure with that output if the exit status is not 0.
    """
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        text=True,
    )
    if done.returncode != 0:
        raise AssertionError(f"{args} exited with {done.returncode}:\n{done.stdout}")
    return done.stdout


def wheelFiles(path: Path) -> List[str]:
    with zipfile.ZipFile(path) as wheel:
        return sorted(wheel.namelist())


def sdistFiles(path: Path) -> List[str]:
    with tarfile.open(path) as sdist:
        # Without the leading "upnode-0.1.0/".
        return sorted(name.split("/", 1)[1] for name in sdist.getnames() if "/" in name)


class PackagingTests(TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="upnode-packaging-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # A clean environment: nothing of this checkout or this virtualenv on
        # the path, the new venv's scripts first.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        }
        # The commands run in an empty folder, so that the current folder on
        # sys.path finds nothing.
        self.work = self.tmp / "work"
        self.work.mkdir()

    def makeVenv(self) -> Path:
        venv = self.tmp / "venv"
        try:
            run([sys.executable, "-m", "venv", str(venv)], self.work, self.env, timeout=60)
        except (AssertionError, OSError, subprocess.TimeoutExpired) as e:
            message = f"cannot create a virtualenv with {sys.executable} -m venv: {e}"
            if os.environ.get("CI"):
                raise AssertionError(message + " (required where CI is set)") from e
            raise SkipTest(message) from e
        self.env["PATH"] = os.pathsep.join([str(venv / "bin"), self.env.get("PATH", "")])
        return venv

    def test_buildInstallAndRun(self) -> None:
        """
        The wheel ships the library and the twistd plugin but no tests and
        no C{twisted/__init__.py}, with the README as its long description;
        the sdist has the tests and the Node peer's files, and a wheel built
        from it has the same files.  Installed in a fresh venv, the library
        imports, C{upnode --help} works, C{twistd upnode-server} is listed
        and serves, and SIGTERM stops it with exit status 0.
        """
        venv = self.makeVenv()
        python = str(venv / "bin" / "python")
        source = self.tmp / "source"
        shutil.copytree(ROOT, source, ignore=IGNORED)

        # The wheel, as pip install . builds it (isolated build, from the tree).
        wheels = self.tmp / "wheels"
        run(
            [python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
            self.work,
            self.env,
        )
        [wheel] = wheels.glob("upnode-*.whl")
        files = wheelFiles(wheel)
        self.assertIn("twisted/plugins/upnode_plugin.py", files)
        self.assertIn("upnode/__init__.py", files)
        self.assertIn("upnode/py.typed", files)
        self.assertEqual([name for name in files if name.startswith("upnode/test/")], [])
        self.assertEqual(
            [name for name in files if name.startswith("twisted/") and name.endswith("__init__.py")], []
        )
        self.assertEqual([name for name in files if "__pycache__" in name or name.endswith(".pyc")], [])
        with zipfile.ZipFile(wheel) as archive:
            [metadataName] = [name for name in files if name.endswith(".dist-info/METADATA")]
            metadata = message_from_string(archive.read(metadataName).decode("utf-8"))
        self.assertEqual(metadata["Description-Content-Type"], "text/markdown")
        readme = (source / "README.md").read_text(encoding="utf-8")
        self.assertEqual(str(metadata.get_payload()).strip(), readme.strip())
        self.assertIn("Framework :: Twisted", metadata.get_all("Classifier"))

        # The sdist, as python -m build makes it, and the wheel built from it.
        run([python, "-m", "pip", "install", "-q", "setuptools>=61"], self.work, self.env)
        sdists = self.tmp / "sdist"
        sdists.mkdir()
        run(
            [
                python,
                "-c",
                "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
                str(sdists),
            ],
            source,
            self.env,
        )
        [sdist] = sdists.glob("upnode-*.tar.gz")
        files = sdistFiles(sdist)
        for name in [
            "README.md",
            "setup.py",
            "pyproject.toml",
            "tox.ini",
            "twisted/plugins/upnode_plugin.py",
            "upnode/test/__init__.py",
            "upnode/test/interop/package.json",
            "upnode/test/interop/peer.js",
            "upnode/test/integration/test_packaging.py",
        ]:
            self.assertIn(name, files)
        self.assertEqual([name for name in files if "__pycache__" in name or name.endswith(".pyc")], [])
        self.assertEqual([name for name in files if name.endswith((".so", ".c"))], [])
        self.assertEqual(
            [name for name in files if name.startswith("twisted/") and name.endswith("__init__.py")], []
        )
        # Built where no C compiler works (CC names one that fails), it is the
        # same wheel but for the compiled modules and their records.
        fromSdist = self.tmp / "from-sdist"
        run(
            [python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(fromSdist), str(sdist)],
            self.work,
            dict(self.env, CC="false"),
        )
        [other] = fromSdist.glob("upnode-*.whl")
        self.assertEqual(wheelFiles(other), [n for n in wheelFiles(wheel) if not n.endswith((".so", ".so.sha256"))])

        # Installed, with its dependencies, and what it ships run from there.
        run([python, "-m", "pip", "install", "-q", str(wheel)], self.work, self.env, timeout=300)
        out = run(
            [
                python,
                "-I",
                "-c",
                "import upnode, upnode.tls, upnode.tap, upnode.dnode; print(upnode.__file__)",
            ],
            self.work,
            self.env,
        )
        self.assertTrue(Path(out.strip()).is_relative_to(venv), out)
        # Built with Cython and a C compiler, the modules on every message's
        # path run compiled from the wheel (without a compiler, as Python).
        compiled = run(
            [python, "-I", "-c", "import upnode, upnode._speedups as s; print(' '.join(s.running()))"],
            self.work,
            self.env,
        ).split()
        expected = [] if self.env.get("UPNODE_PURE") or not shutil.which("cc") else list(COMPILED)
        self.assertEqual(compiled, expected)
        self.assertEqual(len([name for name in wheelFiles(wheel) if name.endswith(".so")]), len(expected))
        # The wheel built without a compiler installs and runs, as Python.
        run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(other)], self.work, self.env)
        self.assertEqual(
            run([str(venv / "bin" / "upnode"), "--version"], self.work, self.env).strip(),
            f"upnode {upnode.__version__} (pure Python)",
        )
        run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheel)], self.work, self.env)
        missing = subprocess.run(
            [python, "-I", "-c", "import upnode.test"],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
        )
        self.assertNotEqual(missing.returncode, 0, "upnode.test is installed")
        self.assertIn("usage: upnode", run([str(venv / "bin" / "upnode"), "--help"], self.work, self.env))
        twistd = str(venv / "bin" / "twistd")
        self.assertIn("upnode-server", run([twistd, "--help"], self.work, self.env))
        self.assertIn("--port", run([twistd, "upnode-server", "--help"], self.work, self.env))
        self.serveAndStop(twistd)

    def serveAndStop(self, twistd: str) -> None:
        process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "upnode-server", "--port", "tcp:0:interface=127.0.0.1"],
            cwd=self.work,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"starting on" not in output:
                left = deadline - time.monotonic()
                if left <= 0 or process.poll() is not None:
                    process.kill()
                    self.fail(f"twistd upnode-server did not start listening:\n{output.decode()}")
                if selector.select(left):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        continue
                    output += chunk
        # A client answered shows the reactor running, and so the service's
        # SIGTERM handler installed (a signal sent earlier kills twistd).
        match = re.search(rb"starting on (\d+)", output)
        assert match is not None
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=10) as client:
            greeting = b""
            while b"\n" not in greeting:
                chunk = client.recv(65536)
                if not chunk:
                    break
                greeting += chunk
        self.assertIn(b'"method":"methods"', greeting.replace(b" ", b""))
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output += rest
        self.assertEqual(process.returncode, 0, output.decode())
        self.assertIn(b"Server Shut Down", output)
