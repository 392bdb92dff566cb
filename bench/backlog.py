"""
How a durable backlog drains: CALLS durable calls of store(i, value) are
committed (one callMany) before the link is up, then the client connects
to a server on loopback (a process of its own) and sends them.
The report: seconds from the link's first attempt to the last reply (or
"never" within the cap), calls a second, the server's executions and the
duplicates among them, and the links it took.

    python bench/backlog.py [CALLS] [VALUE_BYTES] [CAP_SECONDS]

(C{python bench/backlog.py server} is the server: it prints its port.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

from twisted.internet import defer, reactor, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import upnode  # noqa: E402


def serve() -> None:
    executions: Dict[int, int] = {}
    links: List[Any] = []

    def cons(remote: Any, conn: Any) -> Any:
        links.append(conn)

        def store(i: int, value: Any, cb: Any) -> None:
            executions[i] = executions.get(i, 0) + 1
            cb(i)

        return {"store": store}

    def counts() -> None:
        print(f"{len(executions)} {sum(executions.values())} {len(links)}", flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", counts)  # type: ignore[attr-defined]
    server = upnode.upnode(cons)
    server.listen(0, "127.0.0.1").addCallback(lambda p: print(p.getHost().port, flush=True))
    reactor.run()  # type: ignore[attr-defined]


async def main(calls: int, size: int, cap: float) -> None:
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "server"], stdout=subprocess.PIPE)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    directory = tempfile.mkdtemp(prefix="upnode-backlog-")
    value = "x" * size
    try:
        up = upnode.connect(
            port, "127.0.0.1", {"ping": 0, "reconnect": 0.1, "jitter": 0, "outbox": os.path.join(directory, "o.sqlite")}
        )
        up.on("error", lambda f: None)
        start = time.perf_counter()
        ds = up.callMany([("store", i, value) for i in range(calls)], durable=True)
        committed = time.perf_counter() - start
        start = time.perf_counter()
        done = defer.gatherResults(ds)
        finished: Dict[str, float] = {}
        done.addCallback(lambda _: finished.setdefault("at", time.perf_counter()))
        while "at" not in finished and time.perf_counter() - start < cap:
            await task.deferLater(reactor, 0.05, lambda: None)
        elapsed = finished["at"] - start if "at" in finished else None
        process.terminate()
        distinct, total, links = map(int, process.stdout.readline().split())
        counts = f"executed {distinct:,} distinct, {total:,} in all, {total - distinct:,} duplicates; {links} links"
        print(
            f"{calls:,} durable calls x {size} B, committed in {committed:.2f} s: "
            + (f"drained in {elapsed:.2f} s ({calls / elapsed:,.0f} calls/s)" if elapsed else f"not drained in {cap:g} s")
            + f"; {counts}; outbox depth {up.outbox.depth if up.outbox is not None else None}",
            flush=True,
        )
        done.addErrback(lambda f: None)
        await up.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        process.terminate()
        process.wait()


if __name__ == "__main__" and sys.argv[1:] == ["server"]:
    serve()
elif __name__ == "__main__":
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    cap = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    d = defer.ensureDeferred(main(calls, size, cap))
    d.addErrback(lambda f: f.printTraceback())
    d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
