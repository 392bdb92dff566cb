"""
The durable outbox across kill -9: real client and server processes, a real
SQLite file.  Nothing committed is lost, everything arrives in order, and
the duplicates (at-least-once) are counted and reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from .helpers import freePort, until
from .test_twistd_cli import ENV, ROOT, Twistd

CALLS = 1000
BACKLOG = 100_000
RACES = 12


def spawnPeer(testCase: TestCase, *args: str) -> Twistd:
    process = Twistd()
    reactor.spawnProcess(  # type: ignore[attr-defined]
        process,
        sys.executable,
        [sys.executable, "-m", "upnode.test.integration.durablepeer", *args],
        env=ENV,
        path=str(ROOT),
    )

    def cleanup() -> Any:
        if not process.ended.called:
            process.transport.signalProcess("KILL")
        return process.ended

    testCase.addCleanup(cleanup)
    return process


def analyse(lines: List[str], calls: int) -> Dict[str, Any]:
    """
    What the server received: per link, in order; all calls, duplicates.
    """
    links: List[List[int]] = []
    for line in lines:
        if line == "link":
            links.append([])
        elif line:
            links[-1].append(int(line))
    received = [i for link in links for i in link]
    firsts: List[int] = []
    seen = set()
    for i in received:
        if i not in seen:
            seen.add(i)
            firsts.append(i)
    return {
        "received": len(received),
        "distinct": len(seen),
        "duplicates": len(received) - len(seen),
        "inOrder": firsts == list(range(calls)) and all(link == sorted(link) for link in links),
        "links": len(links),
        "missing": sorted(set(range(calls)) - seen)[:10],
    }


class KillAndRestart(TestCase):
    timeout = 120

    async def test_killedWhileQueuedAndWhileReplying(self) -> None:
        """
        1. The client queues 1,000 durable calls, server down; kill -9.
        2. It starts again (same file): 1,000 restored.  The server comes
           up, its replies trickle; kill -9 the client again part-way.
        3. It starts again and drains the rest.
        The server got all 1,000, in order on every link; the duplicates
        are the calls resent because their reply, or its removal, was lost.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        outbox = os.path.join(directory, "outbox.sqlite")
        log = os.path.join(directory, "received.log")
        port = str(await freePort())

        started = time.monotonic()
        first = spawnPeer(self, "client", port, outbox, str(CALLS))
        await until(lambda: f"committed {CALLS}".encode() in first.output, timeout=60)
        committed = time.monotonic() - started
        first.transport.signalProcess("KILL")
        await first.ended

        second = spawnPeer(self, "client", port, outbox, "0")
        await until(lambda: b"restored " in second.output, timeout=30)
        self.assertIn(f"restored {CALLS}".encode(), second.output)
        server = spawnPeer(self, "server", port, log, "0.002")
        await until(lambda: b"replies 300" in second.output, timeout=60)
        second.transport.signalProcess("KILL")
        await second.ended

        third = spawnPeer(self, "client", port, outbox, "0")
        await until(lambda: b"drained" in third.output, timeout=60)
        restored3 = int(third.output.split(b"restored ")[1].split()[0])
        third.transport.signalProcess("TERM")
        server.transport.signalProcess("TERM")
        await third.ended
        await server.ended

        with open(log) as f:
            result = analyse(f.read().splitlines(), CALLS)
        result.update(restoredAfterSecondKill=restored3, secondsToCommit=round(committed, 2))
        sys.stderr.write(f"\nkill -9 and restart, {CALLS} durable calls: {result}\n")
        self.assertEqual(result["missing"], [])
        self.assertEqual(result["distinct"], CALLS)
        self.assertTrue(result["inOrder"], result)
        # Everything not answered at the second kill was resent, nothing else lost.
        self.assertGreaterEqual(result["duplicates"], 0)
        self.assertEqual(result["received"], CALLS + result["duplicates"])

    async def test_backlogDrainsWithoutDuplicates(self) -> None:
        """
        A backlog of BACKLOG durable calls (outboxMax), committed while the link is
        down, drains under back-pressure at a steady rate on loopback: each
        call runs once, in order, on one link.
        """
        import upnode

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        log = os.path.join(directory, "received.log")
        port = await freePort()
        up = upnode.connect(
            port,
            "127.0.0.1",
            {"outbox": os.path.join(directory, "outbox.sqlite"), "reconnect": 0.1, "maxDelay": 0.5, "jitter": 0},
        )
        self.addCleanup(up.close)
        value = "v" * 10
        ds = up.callMany([("store", i, value) for i in range(BACKLOG)], durable=True)
        server = spawnPeer(self, "server", str(port), log, "0")
        started = time.monotonic()
        await defer.gatherResults(ds).addTimeout(45, reactor)
        seconds = time.monotonic() - started
        server.transport.signalProcess("TERM")
        await server.ended
        with open(log) as f:
            result = analyse(f.read().splitlines(), BACKLOG)
        sys.stderr.write(f"\nbacklog of {BACKLOG} durable calls drained in {seconds:.2f} s (with the server's start): {result}\n")
        self.assertEqual(result["duplicates"], 0, result)
        self.assertEqual(result["distinct"], BACKLOG)
        self.assertTrue(result["inOrder"], result)
        self.assertEqual(result["links"], 1, result)

    def test_twoProcessesOpenANewOutboxAtOnce(self) -> None:
        """
        Two processes open the same new outbox at the same instant, RACES
        times: one gets it, the other a clear "locked by another process";
        never both refused.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        program = (
            "import sys, time\n"
            "from upnode._outbox import Outbox, OutboxError\n"
            "path, at = sys.argv[1], float(sys.argv[2])\n"
            "time.sleep(max(0, at - time.time()))\n"
            "try:\n"
            "    o = Outbox(path)\n"
            "except OutboxError as e:\n"
            "    print('refused', e, flush=True)\n"
            "else:\n"
            "    print('opened', flush=True)\n"
            "    time.sleep(1.0)\n"
            "    o.close()\n"
        )
        outcomes = []
        for race in range(RACES):
            path = os.path.join(directory, f"race{race}", "outbox.sqlite")
            at = str(time.time() + 0.3)
            both = [
                subprocess.Popen([sys.executable, "-c", program, path, at], stdout=subprocess.PIPE, env=ENV, cwd=str(ROOT))
                for _ in range(2)
            ]
            lines = sorted(p.communicate(timeout=30)[0].decode().strip() for p in both)
            outcomes.append(lines)
        for lines in outcomes:
            self.assertEqual(lines[0], "opened", outcomes)
            self.assertTrue(lines[1] == "opened" or "locked by another process" in lines[1], outcomes)

    def test_signalNames(self) -> None:
        self.assertEqual(signal.SIGKILL.name, "SIGKILL")
