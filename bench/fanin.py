"""
Fan-in: many clients at once, each calling now and then, as a server's real
load is.  This is the load generator; bench/run.py starts each server (ours,
Node's upnode, the bare asyncio floor) and runs it against them in rounds.

    python bench/fanin.py load PORT CLIENTS INTERVAL SECONDS WARMUP dnode|lines
    python bench/fanin.py idle PORT CLIENTS SECONDS dnode|lines


It opens CLIENTS connections, then each calls the server's echo every
INTERVAL seconds (each at its own phase), for WARMUP seconds and then
SECONDS more, timed.  It speaks the wire itself, on asyncio's event loop
(uvloop where installed), so that the generator costs little and the same
generator drives every server: C{dnode} exchanges C{methods} first and
answers the server's pings, as a real upnode client does; C{lines} sends the
floor's bare JSON lines.

A call's latency counts from when it was due, not from when the generator
got round to sending it, so a generator that falls behind shows as
latency rather than hiding it (and its own lateness is reported beside).
Prints one JSON line: offered and answered calls a second, latency p50,
p99 and max in ms, the generator's worst lateness and its CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import socket
import sys
import time
from typing import Any, Dict, List, Optional

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD  # noqa: E402

try:
    import uvloop
except ImportError:  # the plain asyncio loop then; the report says which
    uvloop = None

#: Connections opened at once while connecting: a server's accept backlog
#: is finite, and a burst past it costs SYN retries, not the server's work.
CONNECT_BATCH = 100


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


class Client(asyncio.Protocol):
    """
    One connection: calls C{echo} when told to and times each reply.
    """

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: Optional[asyncio.Transport] = None
        self.partial = b""
        self.echo: Optional[int] = 0 if generator.lines else None
        self.ready = asyncio.get_running_loop().create_future()
        self.nextId = 1
        self.due: Dict[int, float] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.generator.lines:
            self.ready.set_result(None)
        else:
            # We expose ping, as an upnode client does: its server pings us.
            transport.write(
                b'{"method":"methods","arguments":[{"ping":"[Function]"}],"callbacks":{"0":["0","ping"]},"links":[]}\n'
            )

    def data_received(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        now = time.perf_counter()
        for line in lines:
            message = orjson.loads(line)
            method = message.get("method")
            if type(method) is int:
                due = self.due.pop(method, None)
                if due is not None:
                    self.generator.answered(now - due)
                elif method == 0:
                    # The server called our ping(cb): answer cb().
                    for callbackId in message.get("callbacks", {}):
                        self.transport.write(b'{"method":%s,"arguments":[],"callbacks":{},"links":[]}\n' % callbackId.encode())
            elif method == "methods":
                for callbackId, path in message.get("callbacks", {}).items():
                    if path == ["0", "echo"]:
                        self.echo = int(callbackId)
                if not self.ready.done():
                    self.ready.set_result(None)
            # (culls of the callbacks we sent: nothing to do, as they are never reused)

    def call(self, due: float) -> None:
        callbackId = self.nextId
        self.nextId += 1
        self.due[callbackId] = due
        self.transport.write(  # type: ignore[union-attr]
            orjson.dumps(
                {"method": self.echo, "arguments": [PAYLOAD, "[Function]"], "callbacks": {str(callbackId): ["1"]}, "links": []}
            )
            + b"\n"
        )

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.generator.lost += 1


class Generator:
    def __init__(self, lines: bool) -> None:
        self.lines = lines
        self.latencies: List[float] = []
        self.recording = False
        self.lost = 0
        self.lateness = 0.0

    def answered(self, latency: float) -> None:
        if self.recording:
            self.latencies.append(latency)

    async def connect(self, port: int, clients: int) -> List[Client]:
        loop = asyncio.get_running_loop()
        connections: List[Client] = []
        for start in range(0, clients, CONNECT_BATCH):
            batch = await asyncio.gather(
                *(
                    loop.create_connection(lambda: Client(self), "127.0.0.1", port)
                    for _ in range(start, min(clients, start + CONNECT_BATCH))
                )
            )
            connections.extend(protocol for _, protocol in batch)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in connections)), 60)
        report(event="connected", clients=clients)
        return connections

    async def idle(self, port: int, clients: int, seconds: float) -> Dict[str, Any]:
        """
        Hold C{clients} connections open, calling nothing, for C{seconds}
        (the driver measures the server meanwhile, then stops us).
        """
        connections = await self.connect(port, clients)
        await asyncio.sleep(seconds)
        return {"mode": "idle", "clients": len(connections), "lost": self.lost}

    async def run(self, port: int, clients: int, interval: float, seconds: float, warmup: float) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        connections = await self.connect(port, clients)
        rng = random.Random(1)
        begin = loop.time() + 0.1
        end = begin + warmup + seconds
        sent = 0

        def tick(client: Client, due: float) -> None:
            nonlocal sent
            now = loop.time()
            if now >= end:
                return
            self.lateness = max(self.lateness, now - due) if self.recording else self.lateness
            # Latency counts from when the call was due (perf_counter's
            # origin differs from the loop's: carry the lateness over).
            client.call(time.perf_counter() - (now - due))
            if self.recording:
                sent += 1
            loop.call_at(due + interval, tick, client, due + interval)

        for client in connections:
            due = begin + rng.random() * interval
            loop.call_at(due, tick, client, due)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(begin + warmup - loop.time())
        self.recording = True
        timedStart = loop.time()
        await asyncio.sleep(end - loop.time())
        timed = loop.time() - timedStart
        self.recording = False
        await asyncio.sleep(0.5)  # the last replies
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        for client in connections:
            client.transport.close()  # type: ignore[union-attr]
        latencies = sorted(self.latencies)

        def quantile(q: float) -> Optional[float]:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

        return {
            "mode": "load",
            "clients": clients,
            "interval": interval,
            "offered": sent / timed,
            "answered": len(latencies) / timed,
            "p50": quantile(0.50),
            "p99": quantile(0.99),
            "max": latencies[-1] * 1000 if latencies else None,
            "lost": self.lost,
            "generatorLateMs": self.lateness * 1000,
            "generatorCpu": (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / (warmup + seconds),
            "loop": "uvloop" if uvloop is not None else "asyncio",
        }


def main(argv: List[str]) -> None:
    mode, wire = argv[1], argv[-1]
    if wire not in ("dnode", "lines") or (mode, len(argv)) not in (("load", 8), ("idle", 6)):
        raise SystemExit(__doc__)
    generator = Generator(lines=wire == "lines")
    if mode == "idle":
        run = generator.idle(int(argv[2]), int(argv[3]), float(argv[4]))
    else:
        port, clients, interval, seconds, warmup = argv[2:7]
        run = generator.run(int(port), int(clients), float(interval), float(seconds), float(warmup))
    result = uvloop.run(run) if uvloop is not None else asyncio.run(run)
    report(**result)


if __name__ == "__main__":
    main(sys.argv)
