"""
What our server keeps per idle connection: the same load as bench/run.py's
idle fan-in row (bench/fanin.py's idle dnode clients, which connect,
exchange C{methods} and answer the server's pings), on a smaller scale, in
a minute or less.

    python bench/connmem.py [--clients N] [--rounds R] [--reactor KIND] [--settle S]
    python bench/connmem.py --trace [--clients N] [--top K]

Without --trace: each round starts C{bench/ours.py server} (on the default
reactor, as bench/run.py starts it, or on the one --reactor names, as
bench/ours.py's UPNODE_BENCH_REACTOR does: asyncio, uvloop, aio,
aio-uvloop), opens N idle connections to it, waits as bench/run.py does,
and prints the server's RSS growth per connection; then the median.  RSS moves in pages and with the allocator's arenas, so
the figure is good to a few hundred bytes; compare medians of a few rounds.

With --trace: the same server runs in this process under C{tracemalloc},
and the table says what the N connections allocated, per connection: by
source line (where the memory was allocated; sizes as Python's allocator
counts them, without its arenas' slack or malloc's headers), then by
type, from a census of the objects the collector tracks (C{sys.getsizeof}
of each; strings, bytes and numbers are not tracked, the first table has
them).
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.run import Proc, freePort  # noqa: E402

PY = sys.executable
#: Seconds from the last connection's C{methods} to the measure: bench/run.py's
#: (--settle 12 lets the server's first ping round, at 10 s, go by).
SETTLE = 3.0


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def clientCommand(port: int, clients: int) -> List[str]:
    return [PY, str(HERE / "fanin.py"), "idle", str(port), str(clients), "600", "dnode"]


def environment(reactor: str = "default") -> Dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), UPNODE_BENCH_REACTOR=reactor)


def oneRound(clients: int, reactor: str, settle: float) -> Tuple[int, int]:
    """
    The server's RSS once listening, and with C{clients} idle connections.
    """
    port = freePort()
    env = environment()
    server = Proc([PY, str(HERE / "ours.py"), "server", str(port)], environment(reactor))
    try:
        server.until("listening")
        base = rss(server.p.pid)
        client = Proc(clientCommand(port, clients), env)
        try:
            client.until("connected")
            time.sleep(settle)
            return base, rss(server.p.pid)
        finally:
            client.stop()
    finally:
        server.stop()


def measure(clients: int, rounds: int, reactor: str, settle: float) -> None:
    print(f"{clients} idle dnode connections to bench/ours.py server ({reactor} reactor)")
    print(f"{'round':>5}  {'RSS listening':>14}  {'RSS connected':>14}  {'bytes/conn':>10}")
    perConnection = []
    for n in range(rounds):
        base, after = oneRound(clients, reactor, settle)
        perConnection.append((after - base) / clients)
        print(f"{n + 1:>5}  {base:>14,}  {after:>14,}  {perConnection[-1]:>10,.0f}", flush=True)
    print(f"{'median':>5}  {'':>14}  {'':>14}  {statistics.median(perConnection):>10,.0f}")


def census() -> Tuple[Counter[str], Counter[str]]:
    """
    Count and size (C{sys.getsizeof}) of every object the collector tracks,
    by type.
    """
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def trace(clients: int, top: int) -> None:
    import tracemalloc

    tracemalloc.start(1)
    from twisted.internet import reactor

    import upnode

    holder: Dict[str, Any] = {}

    def cons(remote: Any, conn: Any) -> Any:
        conn.sendCulls = True
        return {"echo": lambda value, cb: cb(value)}

    server = upnode.upnode(cons)
    port = freePort()

    def connected() -> int:
        return sum(1 for conn in server.connections if conn.remoteReady)

    def listening(_: Any) -> None:
        gc.collect()
        holder["counts"], holder["sizes"] = census()
        holder["before"] = tracemalloc.take_snapshot()
        holder["rss"] = rss(os.getpid())
        holder["client"] = subprocess.Popen(
            clientCommand(port, clients), env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        reactor.callLater(0.5, check)

    def check() -> None:
        if connected() < clients:
            reactor.callLater(0.5, check)
        else:
            reactor.callLater(SETTLE, done)

    def done() -> None:
        gc.collect()
        after = tracemalloc.take_snapshot()
        grown = rss(os.getpid()) - holder["rss"]
        counts, sizes = census()
        holder["client"].kill()
        holder["client"].wait()
        reactor.stop()
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = after.filter_traces(filters).compare_to(holder["before"].filter_traces(filters), "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"{clients} idle dnode connections, traced in process")
        print(f"RSS growth per connection (tracemalloc's own cost included): {grown / clients:,.0f}")
        print(f"traced growth per connection: {total / clients:,.0f} bytes\n")
        print(f"{'bytes/conn':>10}  {'blocks/conn':>11}  where")
        for s in stats[:top]:
            frame = s.traceback[0]
            where = f"{os.path.relpath(frame.filename, ROOT) if frame.filename.startswith(str(ROOT)) else frame.filename}:{frame.lineno}"
            line = linecache.getline(frame.filename, frame.lineno).strip()
            print(f"{s.size_diff / clients:>10,.0f}  {s.count_diff / clients:>11.2f}  {where:<40}  {line[:60]}")
        print(f"\n{'bytes/conn':>10}  {'objects/conn':>12}  type (collector-tracked objects)")
        rows = sorted(((sizes[k] - holder["sizes"][k], counts[k] - holder["counts"][k], k) for k in sizes), reverse=True)
        for size, count, name in rows[:top]:
            if size <= 0:
                break
            print(f"{size / clients:>10,.0f}  {count / clients:>12.2f}  {name}")

    server.listen(port, "127.0.0.1", {"ping": 10}).addCallback(listening)
    reactor.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--settle", type=float, default=SETTLE)
    parser.add_argument("--reactor", default="default", choices=("default", "asyncio", "uvloop", "aio", "aio-uvloop"))
    args = parser.parse_args()
    if args.trace:
        trace(args.clients, args.top)
    else:
        measure(args.clients, args.rounds, args.reactor, args.settle)


if __name__ == "__main__":
    main()
