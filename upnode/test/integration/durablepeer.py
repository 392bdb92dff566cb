"""
The two processes of the durable-outbox crash test.

    python -m upnode.test.integration.durablepeer client PORT OUTBOX N
    python -m upnode.test.integration.durablepeer server PORT LOG [REPLY_EVERY]

The client restores its outbox (printing C{restored R}), queues C{N}
durable C{store(i)} calls (printing C{committed N} once all are on disk),
prints C{replies K} every 100 replies (Deferreds and C{reply} events
together) and C{drained} once the outbox is empty.  The server appends
every C{store(i)} it gets to LOG, one line each (and C{link} for each new
connection), and answers the i-th call it gets REPLY_EVERY seconds after
the one before, so that replies trickle.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor, task


def client(port: int, outbox: str, n: int) -> None:
    import upnode

    up = upnode.connect(port, "127.0.0.1", {"outbox": outbox, "reconnect": 0.1, "maxDelay": 0.5, "jitter": 0})
    assert up.outbox is not None
    print(f"restored {up.outbox.restored}", flush=True)
    count = {"replies": 0, "drained": False}

    def replied(*_: Any) -> None:
        count["replies"] += 1
        if count["replies"] % 100 == 0:
            print(f"replies {count['replies']}", flush=True)

    up.on("reply", replied)
    for i in range(n):
        up.call("store", i, durable=True).addCallbacks(replied, lambda f: None)
    print(f"committed {n}", flush=True)

    def check() -> None:
        if not count["drained"] and up.outbox is not None and up.outbox.depth == 0:
            count["drained"] = True
            up.outbox.commitRemovals()
            print(f"drained {count['replies']}", flush=True)

    task.LoopingCall(check).start(0.05)
    reactor.run()  # type: ignore[attr-defined]


def server(port: int, log: str, every: float) -> None:
    import upnode

    out = open(log, "a", buffering=1)
    state = {"next": 0.0}

    def cons(remote: Any, conn: Any) -> Any:
        out.write("link\n")

        def store(i: int, *rest: Any) -> None:
            cb = rest[-1]  # after a value, if any
            out.write(f"{i}\n")
            now = reactor.seconds()  # type: ignore[attr-defined]
            state["next"] = max(state["next"], now) + every
            reactor.callLater(state["next"] - now, cb, i)  # type: ignore[attr-defined]

        return {"store": store}

    upnode.upnode(cons).listen(port, "127.0.0.1").addCallback(lambda _: print("listening", flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        server(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
