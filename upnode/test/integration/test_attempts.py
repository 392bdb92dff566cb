"""
What bounds a connection attempt on a real path, and where the next one
goes: an upnode server in one network namespace, a client in another,
joined by the packet-level link emulator (L{netpath}), whose silent
blackholes send no FIN, RST or ICMP, so that a SYN simply goes unanswered
as it does towards a dead host.

  - A dead host: the path is blackholed before the client connects and
    cleared 16.5 s into the client's first attempt (past its SYN
    retransmission at 15 s, so that an attempt left to the kernel's and
    Twisted's own timeouts waits until 30 s); the client is up within C{handshakeTimeout} plus its reconnect
    delay of the path clearing.
  - Failover: two endpoints, the one in use blackholed (its port only);
    the client is up on the other within C{ping + timeout} (the drop) plus
    its reconnect delay plus C{handshakeTimeout}.

The peers are those of C{bench/paths.py} (its scenarios measure the same
paths at length). These tests need root, network namespaces and TUN
devices. Without them they skip, except under CI (C{CI} set), where they
fail: CI must run them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from twisted.trial import unittest

from . import netpath

if str(netpath.ROOT) not in sys.path:
    sys.path.insert(0, str(netpath.ROOT))

from bench import paths  # noqa: E402

#: The client's options in both: attempts bounded at 3 s, reconnect delays
#: of 1 s growing to at most 2 s (each drawn within +-50 %).
HANDSHAKE = 3.0
MAX_DELAY = 2.0
#: How long the host is unreachable from the client's first attempt: past
#: its SYN retransmission 15 s into it (the next would be at 31 s, past
#: Twisted's 30 s connect timeout).
DEAD = 16.5
SLACK = 1.0  # round trips, a SYN retransmitted within the attempt, a shared machine


class AttemptTests(unittest.TestCase):
    def setUp(self) -> None:
        netpath.requirePaths()
        self.net = netpath.NetPath(lifetime=90, seed=1).start()
        self.addCleanup(self.net.close)
        self.net.set(delay=0.025)
        self.classicSynSchedule()
        self.run_ = paths.Run(self.net)

    def classicSynSchedule(self) -> None:
        """
        The client's namespace retransmits a SYN after 1, 3, 7, 15 and 31
        s, as Linux did before 6.5 (newer kernels start with a few linear
        retries, C{tcp_syn_linear_timeouts}): the same dead host
        everywhere.
        """
        namespace = self.net.names["a"]
        for setting in ("net.ipv4.tcp_syn_retries=6", "net.ipv4.tcp_syn_linear_timeouts=0"):
            name = setting.split("=")[0]
            if not Path("/proc/sys", *name.split(".")).exists():
                continue  # an older kernel: its schedule is the classic one
            subprocess.run(["ip", "netns", "exec", namespace, "sysctl", "-qw", setting], check=True)

    def explain(self, since: float) -> str:
        events: List[Dict[str, Any]] = self.run_.events + self.run_.serverEvents()
        lines = [
            f"{e.get('side')} {e['t'] - since:.1f}s {e.get('ev')} {e.get('msg', '')[:120]}"
            for e in events
            if e.get("ev") not in ("tick", "ping")
        ]
        return "\n".join(lines[-30:])

    def links(self) -> List[int]:
        """
        The server ports of the links the server saw since the last call
        (its report may come a little after the client's).
        """
        end = time.monotonic() + 3.0
        links: List[int] = []
        while not links and time.monotonic() < end:
            links = [e["port"] for e in self.run_.serverEvents() if e.get("ev") == "link"]
        return links

    def test_deadHost(self) -> None:
        """
        The host is unreachable (SYNs vanish) for 16.5 s from the client's
        first attempt: its attempts end at C{handshakeTimeout} and are made again,
        so it is up within C{handshakeTimeout} plus one reconnect delay of
        the path clearing, not when the kernel's SYN retransmissions or
        Twisted's 30 s connect timeout allow.
        """
        run = self.run_
        run.startServer({"lifetime": 60})
        self.net.set(blackhole=True)
        options = {"handshakeTimeout": HANDSHAKE, "maxDelay": MAX_DELAY}
        spawned = run.startClient({"options": options, "lifetime": 60})
        if not run.watch(20.0, lambda e: e.get("ev") == "started"):
            self.fail(f"the client did not start:\n{self.explain(spawned)}")
        start = run.of("started")[0]["t"]
        self.assertFalse(
            run.watch(start + DEAD - time.monotonic(), lambda e: e.get("ev") == "up"),
            "up through a blackhole",
        )
        self.net.set(blackhole=False)
        cleared = time.monotonic()
        bound = HANDSHAKE + MAX_DELAY * 1.5 + SLACK
        up = run.watch(bound + 2.0, lambda e: e.get("ev") == "up")
        if not up:
            self.fail(f"not up {bound + 2.0:.0f}s after the path cleared:\n{self.explain(start)}")
        after = run.of("up")[0]["t"] - cleared
        if after > bound:
            self.fail(f"up {after:.1f}s after the path cleared:\n{self.explain(start)}")
        # Each attempt before ended at the bound, and said so.
        timeouts = [e for e in run.of("error") if "handshakeTimeout" in e.get("msg", "")]
        if len(timeouts) < 3:
            self.fail(f"{len(timeouts)} attempts timed out:\n{self.explain(start)}")

    def test_failover(self) -> None:
        """
        Two endpoints; the port of the one in use is blackholed: the link
        is dropped for a ping gone unanswered, and the next attempt is on
        the other endpoint, up within C{ping + timeout} plus a reconnect
        delay plus C{handshakeTimeout}.
        """
        run = self.run_
        port = paths.PORT
        run.startServer({"ports": [port, port + 1], "lifetime": 60})
        options = {"ping": 2, "timeout": 1, "handshakeTimeout": HANDSHAKE, "maxDelay": MAX_DELAY}
        endpoints = [{"host": netpath.ADDRESS_B, "port": each} for each in (port, port + 1)]
        started = run.startClient({"options": options, "endpoints": endpoints, "ticks": 5, "lifetime": 60})
        if not run.watch(20, lambda e: e.get("ev") == "up"):
            self.fail(f"never up:\n{self.explain(started)}")
        self.assertEqual(self.links(), [port])
        run.watch(1.0)
        blocked = time.monotonic()
        self.net.set(block=[port])
        bound = 2 + 1 + 1.5 + HANDSHAKE + SLACK
        again = run.watch(bound + 3.0, lambda e: e.get("ev") == "up")
        if not again:
            self.fail(f"not up again {bound + 3.0:.0f}s after the block:\n{self.explain(blocked)}")
        after = run.of("up")[-1]["t"] - blocked
        if after > bound:
            self.fail(f"up again {after:.1f}s after the block:\n{self.explain(blocked)}")
        self.assertEqual(self.links(), [port + 1])
        # Calls flow again, on the new link.
        resumed = run.watch(5.0, lambda e: e.get("ev") == "tick" and e["t"] > run.of("up")[-1]["t"])
        if not resumed:
            self.fail(f"no call answered on the new link:\n{self.explain(blocked)}")
