"""
Real paths, in CI: an upnode server and client as processes in two network
namespaces joined by the packet-level link emulator (L{netpath}), so that
both kernels' TCP stacks react as on a real network.  The scenarios are the
benchmark's own (C{bench/paths.py}), each bounded to well under a minute:

  - a slow long path (1 Mbit/s, 300 ms round trip) carrying megabytes of
    replies, with pings on: the ping answers wait behind the replies, and
    the link is kept;
  - the same with a large upload in the direction the server stopped
    reading: no defence of either side drops the client;
  - silent outages: one shorter than the ping timeout is ridden out (no
    drop, no failed call); a longer one rebuilds the link, and calls are
    answered again soon after the path clears; a larger C{timeout} rides
    out a longer one.

They need root, network namespaces and TUN devices: without them they
skip, except under CI (C{CI} set), where they fail.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict

from twisted.trial import unittest

from . import netpath

BENCH = Path(__file__).resolve().parents[3] / "bench" / "paths.py"


def _paths() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upnode_bench_paths", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RealPathTests(unittest.TestCase):
    timeout = 90

    def setUp(self) -> None:
        netpath.requirePaths()
        if not BENCH.exists():
            reason = f"the scenarios are not here ({BENCH.name} ships with the source tree only)"
            if os.environ.get("CI"):
                self.fail(f"real-path scenarios must run under CI: {reason}")
            raise unittest.SkipTest(reason)
        self.paths = _paths()

    def scenario(self, function: Callable[..., Dict[str, Any]], *args: Any, **kwargs: Any) -> Dict[str, Any]:
        with netpath.NetPath(lifetime=80, seed=1) as net:
            result = function(net, *args, **kwargs)
        drops = "\n".join(result.get("drops", []))
        self.assertTrue(result.get("ok"), f"{result['measured']}\n{drops}")
        return result

    def test_bigRepliesOnASlowPath(self) -> None:
        """
        Four 512 KiB replies over 1 Mbit/s and 300 ms, pings on (10 s,
        timeout 5): the answers to pings wait behind the replies for longer
        than the timeout, and the link is kept, as the peer is heard from
        all along.
        """
        self.scenario(self.paths.scenarioBig, upload=False)

    def test_uploadWhileTheServerStopsReading(self) -> None:
        """
        The same replies and a 640 KiB upload, pings off: the server stops
        reading the client (it holds a megabyte for it), the client's own
        output waits, and neither the client's stall timeout nor the
        server's drops it: each hears the other all along.
        """
        self.scenario(self.paths.scenarioBig, upload=True)

    def test_outageShorterThanTheTimeoutRiddenOut(self) -> None:
        """
        A 4 s silent outage on a 300 ms path, just as a ping goes out: the
        ping's answer comes after the timeout of 5 s, but the peer's held
        back calls arrive before it, and the link stays; no call fails.
        """
        self.scenario(self.paths.scenarioPartition, 4.0, delay=0.15)

    def test_longerOutageRebuilt(self) -> None:
        """
        A 7 s outage on the same path, longer than the ping timeout: the
        link is rebuilt, and calls are answered again within seconds of the
        path clearing.
        """
        result = self.scenario(self.paths.scenarioPartition, 7.0, delay=0.15, ridden=False)
        self.assertIn("link dropped", result["measured"])

    def test_longerOutageRiddenWithLongerTimeout(self) -> None:
        """
        The same 7 s outage with C{timeout} 15 on both sides: ridden out
        (TCP's doubling resends bring the traffic back before then).
        """
        self.scenario(self.paths.scenarioPartition, 7.0, delay=0.15, options={"timeout": 15})
