"""
CPU per call of the protocol alone, both ends in one process over an
in-memory pipe: no sockets, no reactor, no other process to wait for.  It
is the figure to watch while changing the call path (a full bench/run.py
is too noisy for a few per cent).

    python bench/cpu.py [CALLS] [--metrics] [--lockstep] [--through=remote|up|call|deferred] [--call-time=SECONDS]

With --metrics, the server connection is watched by upnode.metrics (bytes,
calls and callbacks counted), as a server with metrics on is.

Prints a table: CPU per call for both ends together, then for the server
and the client apart.  The client calls remote.echo(PAYLOAD, cb) directly,
1000 in flight (one with --lockstep), and each end reads 16 KiB at a time,
as over TCP.  With --through=up, each call goes through a client's
C{up(lambda remote, conn: remote.echo(PAYLOAD, cb))}, as bench/ours.py
calls; with --through=call, through C{up.call("echo", PAYLOAD)}; with
--through=deferred, through C{up(cb)} with a bare Twisted C{Deferred} made,
given its callback and fired for each call (what any C{up.call} that
returns a Deferred costs at least, as bench/ours.py's deferred style).  The
clock moves --call-time seconds per call answered (50 us: a busy link; 0.1,
lockstep: a client calling every 100 ms, as in the fan-in rows).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD  # noqa: E402
from upnode._protocol import DnodeProtocol  # noqa: E402

IN_FLIGHT = 1000
CALL_TIME = 50e-6


def option(name: str, default: str) -> str:
    for argument in sys.argv[1:]:
        if argument.startswith(f"--{name}="):
            return argument.partition("=")[2]
    return default


class Pipe:
    """
    The transport a protocol writes to; what it wrote waits in C{out}.
    """

    connected = True
    disconnecting = False

    def __init__(self) -> None:
        self.out: List[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writeSequence(self, data: List[bytes]) -> None:
        self.out.extend(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 2)


def deliver(source: Pipe, to: DnodeProtocol, readSize: int) -> None:
    data = b"".join(source.out)
    source.out.clear()
    for start in range(0, len(data), readSize):
        to.dataReceived(data[start : start + readSize])


def main(calls: int) -> None:
    inFlight = 1 if "--lockstep" in sys.argv else IN_FLIGHT
    through = option("through", "remote")
    callTime = float(option("call-time", str(CALL_TIME)))
    clock = Clock()
    server = DnodeProtocol({"echo": lambda value, cb: cb(value)}, clock=clock)
    if "--metrics" in sys.argv:
        from upnode.metrics import Metrics, _ServerStats

        _ServerStats(None, "bench", Metrics()._ping).connection(server)
    up: Any = None
    if through == "remote":
        client = DnodeProtocol({}, clock=clock)
    else:
        import upnode
        from upnode.testing import FakeEndpoint

        endpoint = FakeEndpoint(clock)
        up = upnode.upnode(reactor=clock).connect(endpoint, {"ping": 0, "jitter": 0})
        factory, attempt = endpoint.attempts.pop(0)
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
    toServer, toClient = Pipe(), Pipe()
    server.makeConnection(toClient)
    client.makeConnection(toServer)
    if up is not None:
        attempt.callback(client)
    deliver(toServer, server, server.readSize)
    deliver(toClient, client, client.readSize)
    state = {"sent": 0, "done": 0}

    def sendRemote() -> None:
        state["sent"] += 1
        client.remote.echo(PAYLOAD, lambda value: replied())

    def sendUp() -> None:
        state["sent"] += 1
        up(lambda remote, conn: remote.echo(PAYLOAD, lambda value: replied()))

    def sendCall() -> None:
        state["sent"] += 1
        up.call("echo", PAYLOAD).addCallback(lambda value: replied())

    def sendDeferred() -> None:
        # The least an up.call returning Twisted's Deferred can cost: up(cb)
        # with a bare Deferred made, given its callback and fired.
        state["sent"] += 1
        d: Deferred[Any] = Deferred()
        d.addCallback(lambda value: replied())
        up(lambda remote, conn: remote.echo(PAYLOAD, d.callback))

    send = {"remote": sendRemote, "up": sendUp, "call": sendCall, "deferred": sendDeferred}[through]

    def replied() -> None:
        state["done"] += 1
        if state["sent"] < state["total"]:
            send()

    def run(total: int) -> List[float]:
        state.update(sent=0, done=0, total=total)
        serverTime = clientTime = 0.0
        for _ in range(min(inFlight, total)):
            send()
        while state["done"] < total:
            before = state["done"]
            a = time.process_time()
            deliver(toServer, server, server.readSize)
            b = time.process_time()
            deliver(toClient, client, client.readSize)
            c = time.process_time()
            serverTime += b - a
            clientTime += c - b
            # The clock moves as over TCP, where a call takes some 50 us
            # (timers, the batched culls', fire as often as they would).
            clock.advance(callTime * max(1, state["done"] - before))
        return [serverTime / total * 1e6, clientTime / total * 1e6]

    run(min(calls, 10000))  # warm-up
    # What start-up made is left out of the collector's full passes, which
    # would otherwise fall at different moments of runs of different
    # lengths (the per-call figure is the difference of two runs).
    gc.collect()
    gc.freeze()
    serverUs, clientUs = run(calls)
    print(
        f"CPU per call, in process, through {through} ({calls:,} calls, {inFlight} in flight,"
        f" {server.readSize // 1024} KiB reads):"
    )
    print(f"  both ends  {serverUs + clientUs:6.2f} us")
    print(f"  server     {serverUs:6.2f} us")
    print(f"  client     {clientUs:6.2f} us")


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(numbers[0]) if numbers else 100000)
