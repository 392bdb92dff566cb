"""
The Node reference peer (dnode 1.2.2, upnode 0.6.0) as a subprocess.

The pinned package.json beside peer.js is installed once into a git-ignored
cache folder (C{.cache/node-peer} at the top of the source tree, or
C{$UPNODE_NODE_CACHE}).  Where node or npm is missing the interop tests
skip, unless C{CI} or C{UPNODE_REQUIRE_INTEROP} is set: then they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest

HERE = Path(__file__).resolve().parent.parent / "interop"
ROOT = HERE.parents[2]


def cacheFolder() -> Path:
    return Path(os.environ.get("UPNODE_NODE_CACHE", ROOT / ".cache" / "node-peer"))


def requireNode() -> Path:
    """
    The node_modules folder holding the reference peer, installed if need be.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"the interop tests need {' and '.join(missing)} on PATH"
        if os.environ.get("UPNODE_REQUIRE_INTEROP") or os.environ.get("CI"):
            raise RuntimeError(message + " (required where CI or UPNODE_REQUIRE_INTEROP is set)")
        raise SkipTest(message)
    cache = cacheFolder()
    pinned = (HERE / "package.json").read_text()
    stamp = cache / "installed-package.json"
    if not (stamp.exists() and stamp.read_text() == pinned):
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "package.json").write_text(pinned)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.write_text(pinned)
    return cache / "node_modules"


class NodePeer(ProcessProtocol):
    """
    One running peer.js; its JSON report lines arrive on C{reports}.
    """

    def __init__(self) -> None:
        self.reports: DeferredQueue[Any] = DeferredQueue()
        self.all: List[Any] = []
        self.ended: Deferred[None] = Deferred()
        self.stderr = b""
        self._buffer = b""

    @classmethod
    def spawn(cls, *args: str) -> NodePeer:
        modules = requireNode()
        peer = cls()
        env = dict(os.environ, NODE_PATH=str(modules))
        reactor.spawnProcess(
            peer,
            shutil.which("node") or "node",
            ["node", "--expose-gc", str(HERE / "peer.js"), *args],
            env=env,
        )
        return peer

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            report = json.loads(line)
            self.all.append(report)
            self.reports.put(report)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)

    async def next(self, event: Optional[str] = None) -> Any:
        """
        The next report (of C{event}, skipping others).
        """
        while True:
            report = await self.reports.get()
            if event is None or report.get("event") == event:
                return report

    def signal(self, name: str) -> None:
        if self.transport is not None and self.transport.pid is not None:
            self.transport.signalProcess(name)

    def stop(self) -> Deferred[None]:
        # A Deferred, not a coroutine: trial awaits what a cleanup returns
        # only if it is a Deferred before Twisted 24.7.
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """
        Kill the peer and wait until it is gone.
        """
        if not self.ended.called:
            self.signal("KILL")
        await self.ended


__all__ = ["NodePeer", "requireNode"]
