"""
The benchmark at tiny sizes, so that it keeps working.  It times nothing:
it checks that every figure came out.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import sys
from unittest import SkipTest

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from .helpers import onceOnTheDefaultReactor
from .nodepeer import requireNode
from .test_twistd_cli import ENV, ROOT


class BenchSmoke(TestCase):
    timeout = 300

    def setUp(self) -> None:
        onceOnTheDefaultReactor("the benchmarks run as processes of their own")

    async def test_smoke(self) -> None:
        requireNode()
        out = os.path.abspath(self.mktemp())
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable, [str(ROOT / "bench" / "run.py"), "--smoke", "--repeat", "2", "--json", out], env=ENV, path=str(ROOT)
        )
        self.assertEqual(code, 0, stderr.decode()[-2000:])
        self.assertIn(b"x ceiling", stdout)
        # Within a round, the rows closest in time to ours are those its
        # tightest ratios are taken against, after one untimed run.
        progress = [line.strip() for line in stderr.decode().splitlines() if line.startswith("  lockstep: ")]
        first = ["ours", "asyncio floor", *(["RPyC"] if importlib.util.find_spec("rpyc") else [])]
        first += ["ours, through up.call", "ours, up(cb) and a bare Deferred", "ours, C callback (a fresh partial)"]
        self.assertEqual(progress[: len(first)], [f"lockstep: {name} (1/2)" for name in first])
        self.assertIn(b"warm-up: ours, lockstep (not timed)", stderr)
        raw = json.load(open(out))
        results = raw["results"]
        # Ours over uvloop, and its ratio to the uvloop floor, where uvloop is installed.
        hasUvloop = importlib.util.find_spec("uvloop") is not None
        uvloopRow = {"ours on asyncio over uvloop", "ours in an asyncio program on uvloop"} if hasUvloop else set()
        uvloopRatio = (
            {"ours on asyncio over uvloop/uvloop floor", "ours in an asyncio program on uvloop/uvloop floor"} if hasUvloop else set()
        )
        for mode in ("lockstep", "pipelined", "pipelined, long connection"):
            # Two rounds, each with every pair; a ratio for each comparison.
            self.assertTrue(all(len(rates) == 2 for rates in raw["runs"][mode].values()), raw["runs"][mode])
            ratios = raw["ratios"][mode]
            self.assertEqual(
                set(ratios),
                {"ours/ceiling", "ours/node"}
                | (
                    {
                        "metrics on/off",
                        "up.call/up(cb)",
                        "C callback/lambda",
                        "bare Deferred/up(cb)",
                        "up.call/bare Deferred",
                        "ours in an asyncio program/asyncio floor",
                    }
                    | uvloopRatio
                    if mode != "pipelined, long connection"
                    else set()
                ),
            )
            self.assertTrue(all(v > 0 and not math.isnan(v) for v in ratios.values()), ratios)
        for mode in ("lockstep", "pipelined"):
            self.assertEqual(
                set(results[mode]),
                {
                    "ours",
                    "node",
                    "ceiling",
                    "Twisted as it comes",
                    "our client, Node server",
                    "Node client, our server",
                    "Node client, our server without culls",
                    "ours, server metrics on",
                    "ours, through up.call",
                    "ours, C callback (a fresh partial)",
                    "ours, up(cb) and a bare Deferred",
                    "ours on the asyncio reactor",
                    "ours in an asyncio program",
                }
                | uvloopRow,
            )
            self.assertTrue(all(v > 0 and not math.isnan(v) for v in results[mode].values()), results[mode])
        # Lockstep again on one core: ours, Node's, the ceiling and the
        # asyncio rows, each beside its floor.
        oneCore = "lockstep, both ends on one core"
        self.assertTrue(all(len(rates) == 2 for rates in raw["runs"][oneCore].values()), raw["runs"][oneCore])
        self.assertEqual(
            set(raw["ratios"][oneCore]), {"ours/ceiling", "ours/node", "ours in an asyncio program/asyncio floor"} | uvloopRatio
        )
        self.assertEqual(
            set(results[oneCore]), {"ours", "node", "ceiling", "ours in an asyncio program"} | uvloopRow
        )
        self.assertTrue(all(v > 0 and not math.isnan(v) for v in results[oneCore].values()), results[oneCore])
        self.assertIn(b"lockstep, both ends on one core calls/s", stdout)
        long = results["pipelined, long connection"]
        self.assertEqual(set(long), {"ours", "node", "ceiling"})
        self.assertTrue(all(v > 0 and not math.isnan(v) for v in long.values()), long)
        fanin = [key for key in results if "fan-in" in key or "idle connections" in key]
        self.assertEqual(len(fanin), 7, fanin)
        for key, row in results.items():
            if key in fanin:
                # The fan-in rows put the bare asyncio floor server beside,
                # and ours as an asyncio program on uvloop.
                aio = {"ours in an asyncio program on uvloop"} if hasUvloop else set()
                self.assertEqual(set(row), {"ours", "node", "asyncio floor"} | aio, key)
                self.assertTrue(all(v >= 0 and not math.isnan(v) for v in row.values()), (key, row))
            elif key not in ("lockstep", "pipelined", "pipelined, long connection", oneCore):
                self.assertEqual(set(row), {"ours", "node"}, key)
        sustained = next(key for key in fanin if "sustained" in key)
        self.assertTrue(all(v > 0 for v in results[sustained].values()), results[sustained])

    async def test_cpuSmoke(self) -> None:
        """
        The in-process CPU figure comes out, a positive number for each row,
        through each way of calling.
        """
        for through in ("remote", "up", "call", "deferred"):
            stdout, stderr, code = await getProcessOutputAndValue(
                sys.executable, [str(ROOT / "bench" / "cpu.py"), "3000", f"--through={through}"], env=ENV, path=str(ROOT)
            )
            self.assertEqual(code, 0, stderr.decode()[-2000:])
            lines = stdout.decode().splitlines()
            self.assertIn(f"through {through} ", lines[0])
            rows = {}
            for line in lines[1:]:
                name, value, unit = line.strip().rsplit(None, 2)
                rows[name] = value
            self.assertEqual(set(rows), {"both ends", "server", "client"}, through)
            self.assertTrue(all(float(value) > 0 for value in rows.values()), (through, rows))

    async def test_instructionsSmoke(self) -> None:
        """
        The counted instructions a call come out for the server end, ours
        and the ceiling's, each driven over loopback by the ceiling's
        client (which skips our server's methods and culls).
        """
        if shutil.which("valgrind") is None:
            message = "bench/instructions.py counts with valgrind, which is not on PATH"
            if os.environ.get("CI"):
                raise RuntimeError(message + " (required where CI is set)")
            raise SkipTest(message)
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable,
            [str(ROOT / "bench" / "instructions.py"), "--calls=200,600", "--ends=server"],
            env=ENV,
            path=str(ROOT),
        )
        self.assertEqual(code, 0, stderr.decode()[-2000:])
        lines = stdout.decode().splitlines()
        self.assertIn("600 less 200 calls", lines[0])
        self.assertEqual(lines[1].split(), ["end", "ours", "ceiling", "ours/ceiling"])
        self.assertEqual(len(lines), 3, lines)
        end, ours, ceiling, ratio = lines[2].split()
        self.assertEqual(end, "server")
        ours_, ceiling_ = (int(value.replace(",", "")) for value in (ours, ceiling))
        # A call is tens of thousands of instructions at either server:
        # the reactor's turn alone is that much.
        self.assertGreater(ours_, 10_000)
        self.assertGreater(ceiling_, 10_000)
        self.assertLessEqual(abs(float(ratio) - ours_ / ceiling_), 0.01, lines)

    async def test_setupCostSmoke(self) -> None:
        """
        The cost of a connect/close cycle comes out, every cycle served.
        """
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable, [str(ROOT / "bench" / "setup_cost.py"), "100", "--concurrency=10"], env=ENV, path=str(ROOT)
        )
        self.assertEqual(code, 0, stderr.decode()[-2000:])
        first = stdout.decode().splitlines()[0]
        self.assertIn("100 cycles, 10 at a time, 0 failed", first)
        self.assertGreater(float(first.split(": ")[1].split()[0]), 0)
