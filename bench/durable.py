"""
Durable calls against the same calls in memory: CALLS calls of
store(i, value) over loopback TCP, end to end (from the first call to the
last reply), client and server in one process and one reactor.

    python bench/durable.py [CALLS] [ROUNDS]

Modes: up.call in memory; up.call(durable=True), one commit per call
(synchronous=NORMAL, the default, and FULL, on fewer calls as each commit
is an fsync); up.callMany(durable=True), one commit for all.  Each round
runs every mode once, in turn; the table gives each mode's median and its
ratio to memory within the round, then the median ratio.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

from twisted.internet import defer, reactor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import upnode  # noqa: E402

VALUE = {"name": "a user", "tags": ["x", "y"], "n": 12345}


async def one(port: int, mode: str, calls: int, directory: str) -> Dict[str, float]:
    options: Dict[str, Any] = {"ping": 0}
    if mode != "memory":
        options["outbox"] = os.path.join(directory, f"{mode}.sqlite")
        if mode == "durable, FULL":
            options["outboxSync"] = "full"
    up = upnode.connect(port, "127.0.0.1", options)
    await up()
    start = time.perf_counter()
    if mode == "memory":
        ds = [up.call("store", i, VALUE) for i in range(calls)]
    elif mode == "durable, callMany":
        ds = up.callMany([("store", i, VALUE) for i in range(calls)], durable=True)
    else:
        ds = [up.call("store", i, VALUE, durable=True) for i in range(calls)]
    queued = time.perf_counter()
    await defer.gatherResults(ds)
    done = time.perf_counter()
    await up.close()
    return {"queue": queued - start, "total": done - start}


async def main(calls: int, rounds: int) -> None:
    server = upnode.upnode({"store": lambda i, value, cb: cb(i)})
    port = (await server.listen(0, "127.0.0.1")).getHost().port
    modes = {"memory": calls, "durable, NORMAL": calls, "durable, callMany": calls, "durable, FULL": max(1, calls // 10)}
    results: Dict[str, List[Dict[str, float]]] = {mode: [] for mode in modes}
    directory = tempfile.mkdtemp(prefix="upnode-durable-")
    try:
        for _ in range(rounds):
            for mode, n in modes.items():
                shutil.rmtree(directory)
                os.makedirs(directory)
                results[mode].append(await one(port, mode, n, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        await server.end()
    print(f"{calls:,} calls of store(i, value) end to end over loopback TCP, {rounds} rounds (medians):")
    print(f"  {'mode':<20} {'calls':>7} {'queue us/call':>14} {'total s':>9} {'us/call':>9} {'x memory':>9}")
    memory = results["memory"]
    for mode, n in modes.items():
        rows = results[mode]
        perCall = [r["total"] / n for r in rows]
        ratio = statistics.median(p / (m["total"] / calls) for p, m in zip(perCall, memory, strict=True))
        print(
            f"  {mode:<20} {n:>7,} {statistics.median(r['queue'] / n for r in rows) * 1e6:>14.1f}"
            f" {statistics.median(r['total'] for r in rows):>9.3f} {statistics.median(perCall) * 1e6:>9.1f}"
            f" {ratio:>9.2f}"
        )


if __name__ == "__main__":
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    d = defer.ensureDeferred(main(calls, rounds))
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
