"""
Our side of the benchmark, as a process.

    python bench/ours.py server PORT
    python bench/ours.py server-without-culls PORT
    python bench/ours.py lockstep|pipelined PORT CALLS WARMUP
    python bench/ours.py call-lockstep|call-pipelined PORT CALLS WARMUP      (through up.call)
    python bench/ours.py partial-lockstep|partial-pipelined PORT CALLS WARMUP
                                   (a fresh callback with no __code__ per call: functools.partial)
    python bench/ours.py deferred-lockstep|deferred-pipelined PORT CALLS WARMUP
                                   (up(cb) and a bare Deferred made and fired for
                                   each call: the least an up.call can cost)
    python bench/ours.py flush PORT CALLS          (queue while down, then time the flush)
    python bench/ours.py queue-memory CALLS
    python bench/ours.py idle PORT CLIENTS PING

Prints one JSON line with its result.  With UPNODE_BENCH_REACTOR=asyncio it
runs on Twisted's asyncio reactor, and with UPNODE_BENCH_REACTOR=uvloop on
that reactor over uvloop's event loop, as a Twisted program that installs
that reactor would.  With UPNODE_BENCH_REACTOR=aio or aio-uvloop, the
server and the lockstep and pipelined clients run as an asyncio program
through upnode.aio, under asyncio.run or uvloop.run.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from functools import partial
from typing import Any, Dict

from twisted.internet.defer import Deferred


def installReactor(kind: str) -> None:
    if kind in ("default", "aio", "aio-uvloop"):
        return
    import asyncio

    from twisted.internet import asyncioreactor

    if kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    elif kind == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        raise SystemExit(f"UPNODE_BENCH_REACTOR: default, asyncio or uvloop, not {kind!r}")
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)


REACTOR = os.environ.get("UPNODE_BENCH_REACTOR", "default")
installReactor(REACTOR)
if REACTOR in ("aio", "aio-uvloop"):
    reactor: Any = None  # upnode.aio installs it on the program's loop
else:
    from twisted.internet import reactor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import upnode  # noqa: E402
import upnode.aio  # noqa: E402
from bench.payload import PAYLOAD  # noqa: E402

PIPELINE = 1000


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def serve(port: int, cull: bool = True, metrics: bool = False) -> None:
    def cons(remote: Any, conn: Any) -> Any:
        conn.sendCulls = cull
        return {"echo": lambda value, cb: cb(value)}

    def failed(failure: Any) -> None:
        # Said, not only logged: the driver then stops waiting for us.
        report(event="failed", error=str(failure.value))
        reactor.callWhenRunning(reactor.stop)

    server = upnode.upnode(cons)
    options: Dict[str, Any] = {"ping": 10}
    if metrics:  # what an operator's server pays for /metrics
        from upnode.metrics import Metrics

        options["metrics"] = Metrics()
    listening = server.listen(port, "127.0.0.1", options)
    listening.addCallbacks(lambda _: report(event="listening", port=port, rss=rss()), failed)
    reactor.run()


def caller(up: Any, mode: str, total: int, warmup: int, style: str, finished: Any) -> Any:
    """
    What makes C{warmup} calls, then times C{total} more and reports:
    through C{up(cb)} with a fresh lambda per call (style C{up}), through
    C{up.call} (C{call}), through C{up(cb)} with a fresh callback that has
    no C{__code__}, as C{print} or a bound builtin has (C{partial}), or
    through C{up(cb)} with a bare Twisted C{Deferred} for each call
    (C{deferred}).  Returns
    the function that starts, once the link is up; C{finished()} is called
    after the report.
    """
    inFlight = 1 if mode == "lockstep" else PIPELINE
    state = {"sent": 0, "done": 0, "start": 0.0}

    def send() -> None:
        # A fresh callback per call, as the Node client does.
        state["sent"] += 1
        up(lambda remote, conn: remote.echo(PAYLOAD, lambda value: replied(value)))

    def sendCall() -> None:
        state["sent"] += 1
        up.call("echo", PAYLOAD).addCallback(replied)

    def sendDeferred() -> None:
        # What any up.call returning Twisted's Deferred costs at least:
        # up(cb) with a bare Deferred made, given its callback and fired.
        state["sent"] += 1
        d: Deferred[Any] = Deferred()
        d.addCallback(replied)
        up(lambda remote, conn: remote.echo(PAYLOAD, d.callback))

    def sendPartial() -> None:
        # A fresh callback per call as well: functools.partial, the
        # Python way to bind a call's own context, with no __code__.
        state["sent"] += 1
        up(lambda remote, conn: remote.echo(PAYLOAD, partial(replied)))

    def replied(value: Any) -> None:
        state["done"] += 1
        if state["done"] == warmup:
            state["start"] = time.perf_counter()
        if state["sent"] < warmup + total:
            send()
        elif state["done"] == warmup + total:
            seconds = time.perf_counter() - state["start"]
            report(mode=mode if style == "up" else f"{style}-{mode}", calls=total, seconds=seconds, rate=total / seconds)
            finished()

    if style == "call":
        send = sendCall
    elif style == "partial":
        send = sendPartial
    elif style == "deferred":
        send = sendDeferred

    def start() -> None:
        state["start"] = time.perf_counter()
        for _ in range(min(inFlight, warmup + total)):
            send()

    return start


def calls(mode: str, port: int, total: int, warmup: int, style: str = "up") -> None:
    """
    L{caller}'s calls, on the reactor.
    """
    up = upnode.connect(port, "127.0.0.1", {"ping": 0, "reconnect": 0.05, "jitter": 0})
    start = caller(up, mode, total, warmup, style, reactor.stop)
    up().addCallback(lambda remote: start())
    reactor.run()


def flush(port: int, total: int) -> None:
    """
    Queue C{total} transactions while nothing listens on C{port}, then
    report when the server (started by the driver on our signal) has
    answered them all.
    """
    up = upnode.connect(port, "127.0.0.1", {"ping": 0, "reconnect": 0.01, "backoff": 1, "jitter": 0})
    state = {"done": 0, "start": 0.0}

    def replied(value: Any) -> None:
        state["done"] += 1
        if state["done"] == total:
            report(mode="flush", calls=total, seconds=time.perf_counter() - state["start"])
            reactor.stop()

    for _ in range(total):
        up(lambda remote, conn: remote.echo(PAYLOAD, lambda value: replied(value)))
    # The clock starts when the link is there, before the queue is flushed.
    up.on("remote", lambda remote, conn: state.__setitem__("start", time.perf_counter()))
    reactor.callWhenRunning(lambda: report(event="queued", queued=up.queued))
    reactor.run()


def detect(port: int, ping: float, timeout: float) -> None:
    """
    Report when the link to the server goes down (the driver kills or
    stops the server after "up").
    """
    up = upnode.connect(port, "127.0.0.1", {"ping": ping, "timeout": timeout, "reconnect": 3600.0})
    up.on("up", lambda remote: report(event="up"))

    def down() -> None:
        report(event="down", at=time.time())
        reactor.stop()

    up.on("down", down)
    reactor.run()


def queueMemory(total: int) -> None:
    """
    RSS growth per queued transaction: Node-style callbacks, one shared
    callback (the queue's own cost) and a fresh closure each (what code
    written like Node's examples costs).
    """
    up = upnode.connect(1, "127.0.0.1", {"ping": 0, "reconnect": 3600.0})

    def shared(remote: Any, conn: Any) -> None:
        remote.echo(PAYLOAD, lambda value: None)

    before = rss()
    for _ in range(total):
        up(shared)
    middle = rss()
    for _ in range(total):
        up(lambda remote, conn: remote.echo(PAYLOAD, lambda value: None))
    after = rss()
    report(mode="queue-memory", calls=total, shared=(middle - before) / total, fresh=(after - middle) / total)


def idle(port: int, clients: int, ping: float) -> None:
    ups = []
    for _ in range(clients):
        ups.append(upnode.connect(port, "127.0.0.1", {"ping": ping, "timeout": 5, "reconnect": 1}))

    def check() -> None:
        up = sum(1 for u in ups if u.remote is not None)
        if up == clients:
            report(event="connected", clients=clients)
        else:
            reactor.callLater(0.2, check)

    reactor.callWhenRunning(check)
    reactor.run()


def runAsyncio(main: Any) -> None:
    if REACTOR == "aio-uvloop":
        import uvloop

        uvloop.run(main)
    else:
        import asyncio

        asyncio.run(main)


async def aioServe(port: int) -> None:
    """
    L{serve} as an asyncio program.
    """
    import asyncio

    def cons(remote: Any, conn: Any) -> Any:
        return {"echo": lambda value, cb: cb(value)}

    await upnode.aio.listen(cons, port, "127.0.0.1", ping=10)
    report(event="listening", port=port, rss=rss())
    await asyncio.get_running_loop().create_future()


async def aioCalls(mode: str, port: int, total: int, warmup: int) -> None:
    """
    L{caller}'s calls through C{up(cb)}, as an asyncio program.
    """
    import asyncio

    up = await upnode.aio.connect(port, "127.0.0.1", ping=0, reconnect=0.05, jitter=0)
    finished = asyncio.get_running_loop().create_future()
    start = caller(up, mode, total, warmup, "up", lambda: finished.set_result(None))
    await up(timeout=30.0)
    start()
    await finished
    await up.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if REACTOR in ("aio", "aio-uvloop") and mode == "server":
        runAsyncio(aioServe(int(sys.argv[2])))
    elif REACTOR in ("aio", "aio-uvloop") and mode in ("lockstep", "pipelined"):
        runAsyncio(aioCalls(mode, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    elif mode == "server":
        serve(int(sys.argv[2]))
    elif mode == "server-without-culls":
        serve(int(sys.argv[2]), cull=False)
    elif mode == "server-with-metrics":
        serve(int(sys.argv[2]), metrics=True)
    elif mode in ("lockstep", "pipelined"):
        calls(mode, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif mode.partition("-")[2] in ("lockstep", "pipelined") and mode.partition("-")[0] in ("call", "partial", "deferred"):
        style, _, how = mode.partition("-")
        calls(how, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), style)
    elif mode == "flush":
        flush(int(sys.argv[2]), int(sys.argv[3]))
    elif mode == "queue-memory":
        queueMemory(int(sys.argv[2]))
    elif mode == "detect":
        detect(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif mode == "idle":
        idle(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
