"""
Benchmarks, side by side in one run on loopback: ours, Node's upnode 0.6.0
(the pinned reference peer) and the bare-Twisted ceiling (a LineReceiver
pair that only decodes and encodes the same JSON lines, with the same JSON
library and socket settings as ours; the same pair as Twisted comes is
shown too).  Beside them, in the same rounds, the peers a Python user
would pick instead, each echoing the same payload: a bare asyncio pair of
JSON lines (bench/floor.py, the floor for this framing in Python), Twisted's
Perspective Broker (bench/pbpeer.py), RPyC (bench/rpycpeer.py) and gRPC
with grpc.aio (bench/grpcpeer.py), lockstep and pipelined.  Their timed
runs stop after a few seconds (PB and gRPC are slow); a peer whose library
is not installed shows as n/a.

    python bench/run.py                 the full run (about fifteen minutes)
    python bench/run.py --smoke         tiny sizes, to check it works
    python bench/run.py --json out.json
    python bench/run.py --calls-only    the call rates only

The fan-in rows (bench/fanin.py drives them) put a thousand clients, each
calling now and then, on ours, Node's upnode server and the bare asyncio
floor server, and report the highest rate each answers with a p99 under
50 ms, the latency at the first rung, the server's CPU and its memory per
connection, active and idle.

Call rates are the median of --repeat rounds (5), each run timed after a
warm-up; each round runs every pair once, and the ratios are the medians of
each round's own ratios, so that the machine's drift over minutes does not
land on one side of a comparison.  Within a round, the rows whose ratios to
ours are the tightest targets run right after ours (ROUND_ORDER), and one
untimed run comes before the first round.
Prints a table with ratios and writes the raw numbers to a JSON file
(default bench/results.json); the other peers' figures are under "peers"
there (results, ratios, runs, not installed), so that "results" keeps the
rows it always had.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from upnode.test.integration.nodepeer import requireNode  # noqa: E402

PY = sys.executable
#: Pipelined again, 150,000 calls on one connection: Node's dnode client
#: slows down as a connection ages (its callback table only grows when the
#: server never culls, as Node's does not), ours does not.
LONG = "pipelined, long connection"
#: Lockstep again, with both processes of every pair on the same core.  On
#: a machine of few cores an idle core sleeps, and a lockstep call whose
#: two ends sit on different cores waits for one to wake, twice a call:
#: every peer's lockstep rate then says more about wake-ups than about
#: what a call costs, and every ratio is pressed towards 1.  On one core
#: a call costs what its two ends compute.  (Not where the system offers
#: no affinity: the rows are left out and the table says so.)
ONE_CORE = "lockstep, both ends on one core"
CALL_RATES = ("lockstep", "pipelined", LONG, ONE_CORE)
#: The rows of ours run on one core too: the default reactor, the asyncio
#: programs and Twisted's asyncio reactor over uvloop (each beside its
#: floor), Node's, and the ceiling.
ONE_CORE_ROWS = (
    "ours",
    "node",
    "ceiling",
    "ours on asyncio over uvloop",
    "ours in an asyncio program",
    "ours in an asyncio program on uvloop",
)
#: Our client calling through up.call, and with a callback that has no
#: __code__ (functools.partial, as print or a bound builtin), beside up(cb)
#: with a fresh lambda.  And up(cb) with a bare Twisted Deferred made,
#: given its callback and fired for each call: the least any up.call that
#: returns a Deferred can cost, which up.call is measured against too.
UP_CALL = "ours, through up.call"
C_CALLBACK = "ours, C callback (a fresh partial)"
BARE_DEFERRED = "ours, up(cb) and a bare Deferred"
#: Their clients' styles (see bench/ours.py).
STYLES = {"ours call": "call", "ours partial": "partial", "ours deferred": "deferred"}
#: Ours, client and server, on Twisted's asyncio reactor, and on it over
#: uvloop, as a Twisted program that installs that reactor; and as an
#: asyncio program through upnode.aio, on asyncio's loop and on uvloop's.
#: All four ride the loop's own transports (links named by a port).
REACTORS = {
    "ours on the asyncio reactor": "asyncio",
    "ours on asyncio over uvloop": "uvloop",
    "ours in an asyncio program": "aio",
    "ours in an asyncio program on uvloop": "aio-uvloop",
}
#: The floor each of those is set beside: the same loop, bare.
FLOOR_OF = {
    "ours on asyncio over uvloop": "uvloop floor",
    "ours in an asyncio program": "asyncio floor",
    "ours in an asyncio program on uvloop": "uvloop floor",
}
#: The other peers: row name, then program and the library it needs (the
#: module, and the package to install), None for what every install has.
PEERS = {
    "asyncio floor": ("floor.py", None),
    "uvloop floor": ("floor.py", ("uvloop", "uvloop")),
    "PB": ("pbpeer.py", None),
    "RPyC": ("rpycpeer.py", ("rpyc", "rpyc")),
    "gRPC": ("grpcpeer.py", ("grpc", "grpcio")),
}
#: The order of the rows within a round, where they are there; the rest
#: follow in the table's order.  This machine's speed drifts within
#: seconds, so a ratio is the truer the closer in time its two runs are:
#: ours first, then the rows whose ratios to ours are the tightest
#: targets (the asyncio floor and RPyC, one call at a time; up.call and
#: the bare Deferred it is set beside), and each floor just before the
#: rows set beside it.
ROUND_ORDER = (
    "ours",
    "asyncio floor",
    "RPyC",
    UP_CALL,
    BARE_DEFERRED,
    C_CALLBACK,
    "ceiling",
    "ours in an asyncio program",
    "uvloop floor",
    "ours on asyncio over uvloop",
    "ours in an asyncio program on uvloop",
)
#: The peers' modes, and the seconds a timed run may take at most.
PEER_RATES = ("lockstep", "pipelined", ONE_CORE)
PEER_SECONDS = 3.0
#: Fan-in: the clients, the offered rates' ladder (each client's interval
#: between calls, in seconds), the p99 a rung must keep, and the idle ones.
#: Rungs half a step apart at the low end (10,000, 15,000, 20,000, 30,000
#: calls/s with 1,000 clients), where a server that uses most of a core sits
#: near the p99 line and a doubling would report half its rate.
FANIN_CLIENTS = 1000
FANIN_LADDER = (0.1, 1 / 15, 0.05, 1 / 30, 0.025, 1 / 60, 0.0125, 0.01)
FANIN_P99_MS = 50
FANIN_IDLE = 10000
#: Our server as an asyncio program on uvloop, beside the others in fan-in.
FANIN_AIO = "ours in an asyncio program on uvloop"


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """
    A benchmark process whose stdout is JSON lines.
    """

    def __init__(self, argv: List[str], env: Dict[str, str], cpus: Optional[Set[int]] = None) -> None:
        """
        @param cpus: the cores the process (and every thread it starts)
            may run on, set before it starts; None for any.
        """
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        self.p = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, preexec_fn=pin
        )

    def next(self, timeout: float = 120) -> Dict[str, Any]:
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"{' '.join(map(str, self.p.args))}: no result within {timeout} s")
        line = self.p.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.p.args} ended without a result")
        return json.loads(line)

    def until(self, event: str) -> Dict[str, Any]:
        while True:
            report = self.next()
            if report.get("event") == event or report.get("mode") == event:
                return report
            if report.get("event") == "failed":
                raise RuntimeError(f"{' '.join(map(str, self.p.args))}: {report.get('error')}")

    def rss(self) -> int:
        with open(f"/proc/{self.p.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu(self) -> float:
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.kill()
        self.p.wait()


def command(impl: str, *args: Any) -> List[str]:
    """
    The command line of C{impl}'s process, with C{args} (a mode, a port...).
    """
    args_ = [str(a) for a in args]
    if impl == "ours":
        return [PY, str(HERE / "ours.py"), *args_]
    if impl in STYLES:  # a client style: "ours call" runs "call-lockstep"
        return [PY, str(HERE / "ours.py"), f"{STYLES[impl]}-{args_[0]}", *args_[1:]]
    if impl == "node":
        return ["node", "--expose-gc", str(HERE / "node.js"), *args_]
    if impl in REACTORS:
        return [PY, str(HERE / "ours.py"), *args_]
    if impl in PEERS:
        return [PY, str(HERE / PEERS[impl][0]), *args_]
    return [PY, str(HERE / "ceiling.py"), "tuned" if impl == "ceiling" else "stock", *args_]


class Bench:
    def __init__(self, smoke: bool, repeat: int) -> None:
        self.smoke = smoke
        self.repeat = repeat
        modules = requireNode()
        self.env = dict(os.environ, NODE_PATH=str(modules), PYTHONPATH=str(ROOT))
        self.results: Dict[str, Any] = {}
        #: Every run's call rate, beside the medians in results.
        self.runs: Dict[str, Dict[str, List[float]]] = {}
        #: Per call-rate figure, the medians of each round's ratios.
        self.ratios: Dict[str, Dict[str, float]] = {}
        #: The other peers' medians, ratios and runs, by call-rate figure,
        #: and the packages missing for the ones not installed.
        self.peers: Dict[str, Any] = {"results": {}, "ratios": {}, "runs": {}, "not installed": missingPeers()}
        #: Every fan-in rung's result, by server.
        self.fanins: Dict[str, Any] = {}

    def envOf(self, impl: str) -> Dict[str, str]:
        """
        The environment of C{impl}'s processes: ours on another reactor,
        the floor on uvloop.
        """
        if impl in REACTORS:
            return dict(self.env, UPNODE_BENCH_REACTOR=REACTORS[impl])
        if impl == "uvloop floor":
            return dict(self.env, UPNODE_BENCH_LOOP="uvloop")
        return self.env

    def server(self, impl: str, port: int, cpus: Optional[Set[int]] = None) -> Proc:
        if impl in ("ours without culls", "ours with metrics"):
            kind = "server-without-culls" if impl == "ours without culls" else "server-with-metrics"
            proc = Proc(command("ours", kind, port), self.env, cpus)
            proc.until("listening")
            return proc
        proc = Proc(command(impl, "server", port), self.envOf(impl), cpus)
        proc.until("listening")
        return proc

    def once(self, server: str, client: str, mode: str, calls: int, warmup: int, *more: Any, cpus: Optional[Set[int]] = None) -> float:
        """
        One timed run of C{client} against C{server}: its call rate, or NaN
        when it gave no result in time (or, for the other peers, failed).
        Both run on C{cpus} if given.
        """
        port = freePort()
        try:
            srv = self.server(server, port, cpus)
        except (RuntimeError, TimeoutError, ValueError) as e:
            if server not in PEERS:
                raise
            print(f"  {server}: {e}", file=sys.stderr)
            return float("nan")
        cli = Proc(command(client, mode, port, calls, warmup, *more), self.envOf(client), cpus)
        reported = f"{STYLES[client]}-{mode}" if client in STYLES else mode
        try:
            return float(cli.until(reported)["rate"])
        except TimeoutError as e:
            print(f"  {e}", file=sys.stderr)
            return float("nan")
        except (RuntimeError, ValueError) as e:
            if server not in PEERS:
                raise
            print(f"  {server}: {e}", file=sys.stderr)
            return float("nan")
        finally:
            cli.stop()
            srv.stop()

    def calls(self) -> None:
        """
        Every pair's call rates, in rounds: each round runs every pair once,
        so that a pair and the ones it is compared with run minutes apart at
        most (the machine's speed drifts over minutes).  The figure kept is
        the median of the rounds; the ratios are the medians of each
        round's own ratios.
        """
        sizes = {"lockstep": (200, 50), "pipelined": (2000, 500), LONG: (4000, 500), ONE_CORE: (200, 50)}
        if not self.smoke:
            sizes = {"lockstep": (5000, 500), "pipelined": (30000, 5000), LONG: (150000, 10000), ONE_CORE: (5000, 500)}
        # The other peers: calls, warm-up calls and the most seconds a
        # timed run may take (PB and gRPC do not get through the calls).
        peerSizes = {"lockstep": (200, 50, 1.0), "pipelined": (2000, 500, 1.0)}
        if not self.smoke:
            peerSizes = {"lockstep": (5000, 300, PEER_SECONDS), "pipelined": (30000, 2000, PEER_SECONDS)}
        peerSizes[ONE_CORE] = peerSizes["lockstep"]
        oneCore = oneCoreSet()
        if oneCore is None:
            print(f"  {ONE_CORE}: left out, this system sets no CPU affinity", file=sys.stderr)
            del sizes[ONE_CORE]
        peers = [p for p in PEERS if p not in self.peers["not installed"]]
        rows = {
            "ours": ("ours", "ours"),
            "node": ("node", "node"),
            "ceiling": ("ceiling", "ceiling"),
            "Twisted as it comes": ("stock", "stock"),
            "our client, Node server": ("node", "ours"),
            "Node client, our server": ("ours", "node"),
            "Node client, our server without culls": ("ours without culls", "node"),
            "ours, server metrics on": ("ours with metrics", "ours"),
            # The same server; the client calls through up.call, or passes
            # a fresh callback with no __code__ (a functools.partial made
            # for each call; print and list.append have none either).
            UP_CALL: ("ours", "ours call"),
            C_CALLBACK: ("ours", "ours partial"),
            BARE_DEFERRED: ("ours", "ours deferred"),
        }
        for name in REACTORS:
            if "uvloop" not in name or importlib.util.find_spec("uvloop") is not None:
                rows[name] = (name, name)
        # One untimed run first: on a virtual machine that hands freed
        # memory back to its host, the first processes after a pause run
        # a fifth or more slower, and the first timed row is always ours
        # (docs/benchmarks.md, "The first run after a pause").
        print("  warm-up: ours, lockstep (not timed)", file=sys.stderr, flush=True)
        self.once("ours", "ours", "lockstep", *sizes["lockstep"])
        for key, (calls, warmup) in sizes.items():
            mode = {LONG: "pipelined", ONE_CORE: "lockstep"}.get(key, key)
            cpus = oneCore if key == ONE_CORE else None
            if key == LONG:
                names = [n for n in rows if n in ("ours", "node", "ceiling")]
            elif key == ONE_CORE:
                names = [n for n in rows if n in ONE_CORE_ROWS]
            else:
                names = list(rows)
            others = peers if key in PEER_RATES else []
            rates: Dict[str, List[float]] = {name: [] for name in names + others}
            inRound = sorted(names + others, key=lambda n: ROUND_ORDER.index(n) if n in ROUND_ORDER else len(ROUND_ORDER))
            for run in range(self.repeat):
                for name in inRound:
                    print(f"  {key}: {name} ({run + 1}/{self.repeat})", file=sys.stderr, flush=True)
                    if name in PEERS:
                        rates[name].append(self.once(name, name, mode, *peerSizes[key], cpus=cpus))
                        continue
                    server, client = rows[name]
                    rates[name].append(self.once(server, client, mode, calls, warmup, cpus=cpus))
            self.runs[key] = {name: rates[name] for name in names}
            self.results[key] = {name: _median(rates[name]) for name in names}
            self.ratios[key] = {
                "ours/ceiling": _median([o / c for o, c in zip(rates["ours"], rates["ceiling"], strict=True)]),
                "ours/node": _median([o / n for o, n in zip(rates["ours"], rates["node"], strict=True)]),
            }
            for name, label in (
                (UP_CALL, "up.call/up(cb)"),
                (C_CALLBACK, "C callback/lambda"),
                (BARE_DEFERRED, "bare Deferred/up(cb)"),
            ):
                if name in rates:
                    self.ratios[key][label] = _median([c / o for c, o in zip(rates[name], rates["ours"], strict=True)])
            if UP_CALL in rates and BARE_DEFERRED in rates:
                self.ratios[key]["up.call/bare Deferred"] = _median(
                    [c / d for c, d in zip(rates[UP_CALL], rates[BARE_DEFERRED], strict=True)]
                )
            for name, floor in FLOOR_OF.items():
                if name in rates and floor in rates:
                    self.ratios[key][f"{name}/{floor}"] = _median([o / f for o, f in zip(rates[name], rates[floor], strict=True)])
            if "ours, server metrics on" in rates:
                self.ratios[key]["metrics on/off"] = _median(
                    [m / o for m, o in zip(rates["ours, server metrics on"], rates["ours"], strict=True)]
                )
            if key in PEER_RATES:
                # A peer not installed is null, in the results and the ratios.
                self.peers["runs"][key] = {name: rates[name] for name in others}
                self.peers["results"][key] = {p: _median(rates[p]) if p in rates else None for p in PEERS}
                self.peers["ratios"][key] = {
                    f"ours/{p}": _median([o / r for o, r in zip(rates["ours"], rates[p], strict=True)]) if p in rates else None
                    for p in PEERS
                }

    def flush(self) -> None:
        calls = 2000 if self.smoke else 100000
        for impl in ("ours", "node"):
            port = freePort()
            cli = Proc(command(impl, "flush", port, calls), self.env)
            cli.until("queued")
            srv = self.server(impl, port)
            try:
                self.results.setdefault("flush seconds", {})[impl] = cli.until("flush")["seconds"]
            finally:
                cli.stop()
                srv.stop()

    def queueMemory(self) -> None:
        calls = 2000 if self.smoke else 100000
        for impl in ("ours", "node"):
            cli = Proc(command(impl, "queue-memory", calls), self.env)
            result = cli.until("queue-memory")
            cli.stop()
            self.results.setdefault("bytes per queued transaction, one shared callback", {})[impl] = result["shared"]
            self.results.setdefault("bytes per queued transaction, a fresh closure each", {})[impl] = result["fresh"]

    def idle(self) -> None:
        clients = 100 if self.smoke else 10000
        ping = 1.0
        for impl in ("ours", "node"):
            port = freePort()
            srv = self.server(impl, port)
            base = srv.rss()
            cli = Proc(command(impl, "idle", port, clients, ping), self.env)
            try:
                cli.until("connected")
                time.sleep(2 * ping)
                grown = srv.rss() - base
                cpu0 = srv.cpu()
                rounds = 2 if self.smoke else 5
                time.sleep(rounds * ping)
                cpuPerRound = (srv.cpu() - cpu0) / rounds
                key = f"idle clients ({clients}, ping {ping:g} s)"
                self.results.setdefault(key + ": server RSS growth MB", {})[impl] = grown / 1e6
                self.results.setdefault(key + ": server bytes per connection", {})[impl] = grown / clients
                self.results.setdefault(key + ": server CPU s per ping round", {})[impl] = cpuPerRound
            finally:
                cli.stop()
                srv.stop()

    def fanin(self) -> None:
        """
        Many clients at once, each calling now and then (bench/fanin.py is
        the generator): for each server, in rounds, the offered rate climbs
        a ladder until the server no longer answers it with a p99 under
        FANIN_P99_MS; the highest rung it held is its sustained rate.  Each
        rung also gives the server's CPU (seconds a second), and the first
        the server's memory per connection.  Then FANIN_IDLE connections
        that call nothing: the server's memory per connection and CPU.
        """
        clients = 100 if self.smoke else FANIN_CLIENTS
        ladder = FANIN_LADDER[:2] if self.smoke else FANIN_LADDER
        seconds, warmup = (1.0, 0.5) if self.smoke else (4.0, 1.0)
        servers = {"ours": "dnode", "node": "dnode", "asyncio floor": "lines"}
        if importlib.util.find_spec("uvloop") is not None:
            servers[FANIN_AIO] = "dnode"
        key = f"fan-in ({clients} clients)"
        rows: Dict[str, Dict[str, Any]] = {name: {"sustained": [], "rungs": {}} for name in servers}
        for run in range(max(1, self.repeat // 2) if not self.smoke else 1):
            for name, wire in servers.items():
                print(f"  {key}: {name} ({run + 1})", file=sys.stderr, flush=True)
                port = freePort()
                srv = self.server(name, port)
                base = srv.rss()
                held = 0.0
                try:
                    for rung, interval in enumerate(ladder):
                        cli = Proc([PY, str(HERE / "fanin.py"), "load", *map(str, (port, clients, interval, seconds, warmup)), wire], self.env)
                        try:
                            cli.until("connected")
                            if rung == 0 and run == 0:
                                rows[name]["bytes per connection"] = (srv.rss() - base) / clients
                            cpu0, t0 = srv.cpu(), time.monotonic()
                            result = cli.until("load")
                            result["serverCpu"] = (srv.cpu() - cpu0) / (time.monotonic() - t0)
                        finally:
                            cli.stop()
                        rows[name]["rungs"].setdefault(f"{clients / interval:.0f}/s", []).append(result)
                        if result["p99"] is None or result["p99"] >= FANIN_P99_MS or result["answered"] < 0.95 * result["offered"]:
                            break
                        held = result["answered"]
                finally:
                    srv.stop()
                rows[name]["sustained"].append(held)
        idle = 200 if self.smoke else FANIN_IDLE
        for name, wire in servers.items():
            port = freePort()
            srv = self.server(name, port)
            base = srv.rss()
            cli = Proc([PY, str(HERE / "fanin.py"), "idle", *map(str, (port, idle, 600)), wire], self.env)
            try:
                cli.until("connected")
                time.sleep(1.0)
                cpu0 = srv.cpu()
                time.sleep(2.0)
                rows[name]["idle CPU s/s"] = (srv.cpu() - cpu0) / 2.0
                rows[name]["idle bytes per connection"] = (srv.rss() - base) / idle
            finally:
                cli.stop()
                srv.stop()
        results = self.results.setdefault(f"{key}: calls/s sustained at p99 < {FANIN_P99_MS} ms", {})
        for name, row in rows.items():
            results[name] = _median(row["sustained"])
        for label, field in (("p50 ms", "p50"), ("p99 ms", "p99"), ("server CPU s/s", "serverCpu")):
            first = f"{clients / ladder[0]:.0f}/s"
            self.results[f"{key} at {first}: {label}"] = {
                name: _median([r[field] for r in row["rungs"][first] if r[field] is not None]) for name, row in rows.items()
            }
        self.results[f"{key}: server bytes per connection"] = {name: row["bytes per connection"] for name, row in rows.items()}
        self.results[f"{idle} idle connections: server bytes per connection"] = {
            name: row["idle bytes per connection"] for name, row in rows.items()
        }
        self.results[f"{idle} idle connections: server CPU s/s"] = {name: row["idle CPU s/s"] for name, row in rows.items()}
        self.fanins = rows

    def detect(self) -> None:
        ping, timeout = 0.5, 0.5
        for impl in ("ours", "node"):
            for how, sig in (("kill -9", signal.SIGKILL), ("kill -STOP", signal.SIGSTOP)):
                port = freePort()
                srv = self.server(impl, port)
                cli = Proc(command(impl, "detect", port, ping, timeout), self.env)
                try:
                    cli.until("up")
                    time.sleep(0.2)
                    killed = time.time()
                    srv.p.send_signal(sig)
                    down = cli.until("down")["at"]
                    key = f"notice dead server after {how} (ping {ping:g} s + timeout {timeout:g} s), s"
                    self.results.setdefault(key, {})[impl] = down - killed
                finally:
                    cli.stop()
                    srv.stop()

    def run(self, callsOnly: bool = False) -> Dict[str, Any]:
        self.calls()
        if callsOnly:
            return self.results
        self.fanin()
        self.flush()
        self.queueMemory()
        self.detect()
        self.idle()
        return self.results


def oneCoreSet() -> Optional[Set[int]]:
    """
    The one core the one-core rows run on: the first this process may use;
    None where the system sets no affinity.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    return {min(os.sched_getaffinity(0))}


def missingPeers() -> Dict[str, str]:
    """
    The other peers whose library is not installed: the package each needs.
    """
    missing = {}
    for name, (_, needs) in PEERS.items():
        if needs is not None and importlib.util.find_spec(needs[0]) is None:
            missing[name] = needs[1]
    return missing


def _median(values: List[float]) -> float:
    """
    The median of the runs that gave a result (NaN when none did).
    """
    done = [v for v in values if v == v]
    return statistics.median(done) if done else float("nan")


def table(results: Dict[str, Any], ratios: Dict[str, Dict[str, float]], peers: Optional[Dict[str, Any]] = None) -> str:
    lines = []
    width = 2 + max(len(name) for row in results.values() for name in row)
    for mode in CALL_RATES:
        if mode not in results:
            lines.append(f"{mode}: left out (this system sets no CPU affinity)")
            continue
        r = results[mode]
        lines.append(f"{mode} calls/s through up():")
        for name, rate in r.items():
            extra = ""
            if name == "ours":
                ratio = ratios[mode]
                extra = f"   {ratio['ours/ceiling']:.2f} x ceiling, {ratio['ours/node']:.2f} x Node"
            elif name == "ours, server metrics on" and "metrics on/off" in ratios[mode]:
                extra = f"   {ratios[mode]['metrics on/off']:.2f} x ours with metrics off"
            elif name == UP_CALL and "up.call/up(cb)" in ratios[mode]:
                extra = f"   {ratios[mode]['up.call/up(cb)']:.2f} x ours through up(cb)"
                if "up.call/bare Deferred" in ratios[mode]:
                    extra += f", {ratios[mode]['up.call/bare Deferred']:.2f} x up(cb) and a bare Deferred"
            elif name == BARE_DEFERRED and "bare Deferred/up(cb)" in ratios[mode]:
                extra = f"   {ratios[mode]['bare Deferred/up(cb)']:.2f} x ours through up(cb)"
            elif name == C_CALLBACK and "C callback/lambda" in ratios[mode]:
                extra = f"   {ratios[mode]['C callback/lambda']:.2f} x ours with a lambda"
            elif f"{name}/{FLOOR_OF.get(name)}" in ratios[mode]:
                extra = f"   {ratios[mode][f'{name}/{FLOOR_OF[name]}']:.2f} x the {FLOOR_OF[name]}"
            lines.append(f"  {name:<{width}}{rate:>10,.0f}{extra}")
        if peers is not None and mode in peers["results"]:
            for name, rate in peers["results"][mode].items():
                if name in peers["not installed"]:
                    lines.append(f"  {name:<{width}}n/a (not installed: {peers['not installed'][name]})")
                    continue
                lines.append(f"  {name:<{width}}{rate:>10,.0f}   ours / {name} {peers['ratios'][mode][f'ours/{name}']:.2f}")
    for key, r in results.items():
        if key in CALL_RATES:
            continue
        ours, node = r.get("ours"), r.get("node")
        ratio = f"   ours/Node {ours / node:.2f}" if ours is not None and node else ""
        lines.append(f"{key}:")
        for name, value in r.items():
            lines.append(f"  {name:<{width}}{value:>10,.3f}")
        if ratio:
            lines.append(ratio)
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that it works")
    parser.add_argument("--json", default=str(HERE / "results.json"), help="where the raw numbers go")
    parser.add_argument("--repeat", type=int, default=5, help="runs per call-rate figure (the median is kept)")
    parser.add_argument("--calls-only", action="store_true", help="the call rates only")
    options = parser.parse_args(argv)
    bench = Bench(options.smoke, options.repeat)
    results = bench.run(options.calls_only)
    machine = {
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "smoke": options.smoke,
        "repeat": options.repeat,
        # What our peers run compiled (upnode/_speedups.py): none with UPNODE_PURE.
        "compiled": subprocess.run(
            [sys.executable, "-c", "import upnode, upnode._speedups as s; print(' '.join(s.running()))"],
            capture_output=True,
            text=True,
        ).stdout.split(),
    }
    Path(options.json).write_text(
        json.dumps(
            {
                "machine": machine,
                "results": results,
                "ratios": bench.ratios,
                "runs": bench.runs,
                "peers": bench.peers,
                "fanin": bench.fanins,
            },
            indent=2,
        )
    )
    print(f"machine: {machine}")
    print("(rates: medians of the rounds; ratios: medians of each round's ratio)")
    print(table(results, bench.ratios, bench.peers))
    print(f"raw numbers: {options.json}")


if __name__ == "__main__":
    main()
