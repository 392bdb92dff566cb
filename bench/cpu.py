"""
CPU per call of the protocol alone, both ends in one process over an
in-memory pipe: no sockets, no reactor, no other process to wait for.  It
is the figure to watch while changing the call path (a full bench/run.py
is too noisy for a few per cent).

    python bench/cpu.py [CALLS] [--metrics]

With --metrics, the server connection is watched by upnode.metrics (bytes,
calls and callbacks counted), as a server with metrics on is.

Prints a table: CPU per call for both ends together, then for the server
and the client apart.  The client calls remote.echo(PAYLOAD, cb) directly,
1000 in flight, and each end reads 16 KiB at a time, as over TCP.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD  # noqa: E402
from upnode._protocol import DnodeProtocol  # noqa: E402

IN_FLIGHT = 1000


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
    clock = Clock()
    server = DnodeProtocol({"echo": lambda value, cb: cb(value)}, clock=clock)
    if "--metrics" in sys.argv:
        from upnode.metrics import Metrics, _ServerStats

        _ServerStats(None, "bench", Metrics()._ping).connection(server)
    client = DnodeProtocol({}, clock=clock)
    toServer, toClient = Pipe(), Pipe()
    server.makeConnection(toClient)
    client.makeConnection(toServer)
    deliver(toServer, server, server.readSize)
    deliver(toClient, client, client.readSize)
    state = {"sent": 0, "done": 0}

    def send() -> None:
        state["sent"] += 1
        client.remote.echo(PAYLOAD, lambda value: replied())

    def replied() -> None:
        state["done"] += 1
        if state["sent"] < state["total"]:
            send()

    def run(total: int) -> List[float]:
        state.update(sent=0, done=0, total=total)
        serverTime = clientTime = 0.0
        for _ in range(min(IN_FLIGHT, total)):
            send()
        while state["done"] < total:
            a = time.process_time()
            deliver(toServer, server, server.readSize)
            b = time.process_time()
            deliver(toClient, client, client.readSize)
            c = time.process_time()
            serverTime += b - a
            clientTime += c - b
            clock.advance(0.05)
        return [serverTime / total * 1e6, clientTime / total * 1e6]

    run(min(calls, 10000))  # warm-up
    serverUs, clientUs = run(calls)
    print(f"CPU per call, in process ({calls:,} calls, {IN_FLIGHT} in flight, {server.readSize // 1024} KiB reads):")
    print(f"  both ends  {serverUs + clientUs:6.2f} us")
    print(f"  server     {serverUs:6.2f} us")
    print(f"  client     {clientUs:6.2f} us")


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(numbers[0]) if numbers else 100000)
