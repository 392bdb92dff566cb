"""
The benchmark's other peers (asyncio floor, Perspective Broker, RPyC,
gRPC) at tiny sizes: their rows and ratios come out, and a peer whose
library is not installed shows as n/a instead of failing the run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from typing import Any
from unittest import mock

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from .helpers import onceOnTheDefaultReactor
from .nodepeer import requireNode
from .test_twistd_cli import ENV, ROOT

PEERS = {"asyncio floor": None, "uvloop floor": ("uvloop", "uvloop"), "PB": None, "RPyC": ("rpyc", "rpyc"), "gRPC": ("grpc", "grpcio")}


def loadRun() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run_for_tests", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BenchPeersSmoke(TestCase):
    timeout = 300

    def setUp(self) -> None:
        onceOnTheDefaultReactor("the benchmarks run as processes of their own")

    async def test_peers(self) -> None:
        requireNode()
        out = os.path.abspath(self.mktemp())
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable,
            [str(ROOT / "bench" / "run.py"), "--smoke", "--repeat", "1", "--calls-only", "--json", out],
            env=ENV,
            path=str(ROOT),
        )
        self.assertEqual(code, 0, stderr.decode()[-2000:])
        printed = stdout.decode()
        peers = json.load(open(out))["peers"]
        missing = {name: need[1] for name, need in PEERS.items() if need and importlib.util.find_spec(need[0]) is None}
        self.assertEqual(peers["not installed"], missing)
        for mode in ("lockstep", "pipelined", "lockstep, both ends on one core"):
            self.assertEqual(set(peers["results"][mode]), set(PEERS))
            self.assertEqual(set(peers["ratios"][mode]), {f"ours/{name}" for name in PEERS})
            self.assertEqual(set(peers["runs"][mode]), set(PEERS) - set(missing))
            for name in PEERS:
                rate, ratio = peers["results"][mode][name], peers["ratios"][mode][f"ours/{name}"]
                if name in missing:
                    self.assertIsNone(rate)
                    self.assertIsNone(ratio)
                    self.assertIn(f"  {name}", printed)
                    self.assertIn(f"n/a (not installed: {missing[name]})", printed)
                else:
                    self.assertTrue(rate > 0 and not math.isnan(rate), (mode, name, rate))
                    self.assertTrue(ratio > 0 and not math.isnan(ratio), (mode, name, ratio))
                    self.assertIn(f"ours / {name} ", printed)

    def test_notInstalled(self) -> None:
        """
        A peer whose library cannot be found is listed as not installed,
        and its row in the table says so.
        """
        run = loadRun()
        # Every other peer's library "found", whatever this environment has.
        with mock.patch.object(
            importlib.util, "find_spec", lambda name, *a: None if name == "rpyc" else mock.sentinel.spec
        ):
            missing = run.missingPeers()
        self.assertEqual(missing, {"RPyC": "rpyc"})
        results = {mode: {"ours": 10.0, "ceiling": 20.0, "node": 5.0} for mode in run.CALL_RATES}
        ratios = {mode: {"ours/ceiling": 0.5, "ours/node": 2.0} for mode in run.CALL_RATES}
        peers = {
            "results": {m: {"asyncio floor": 20.0, "PB": 2.0, "RPyC": None, "gRPC": 1.0} for m in run.PEER_RATES},
            "ratios": {
                m: {"ours/asyncio floor": 0.5, "ours/PB": 5.0, "ours/RPyC": None, "ours/gRPC": 10.0} for m in run.PEER_RATES
            },
            "runs": {},
            "not installed": missing,
        }
        printed = run.table(results, ratios, peers)
        self.assertEqual(printed.count("n/a (not installed: rpyc)"), len(run.PEER_RATES), printed)
        self.assertEqual(printed.count("ours / gRPC 10.00"), len(run.PEER_RATES), printed)
