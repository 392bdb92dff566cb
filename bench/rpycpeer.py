"""
RPyC as the peer: a service with exposed_echo on a ThreadedServer; lockstep
with plain calls, pipelined with rpyc.async_ keeping 1000 calls outstanding;
TCP_NODELAY on both ends, as ours.

    python bench/rpycpeer.py server PORT
    python bench/rpycpeer.py lockstep|pipelined PORT CALLS WARMUP SECONDS

The payload goes by value, as nested tuples: brine, RPyC's wire format,
copies tuples of plain values, while a dict or a list would go as a netref
(a proxy to the caller's own object) and never cross the wire.

The client times CALLS calls after WARMUP, or as many as SECONDS allow,
and prints one JSON line with the rate.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD, Window, peerMain  # noqa: E402

try:
    import rpyc
    from rpyc.utils.server import ThreadedServer
except ImportError:
    print(json.dumps({"event": "failed", "error": "not installed: rpyc"}), flush=True)
    sys.exit(1)

PIPELINE = 1000


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def byValue(value: Any) -> Any:
    """
    C{value} as brine copies it: dicts as tuples of pairs, lists as tuples.
    """
    if isinstance(value, dict):
        return tuple((k, byValue(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(byValue(v) for v in value)
    return value


class EchoService(rpyc.Service):
    def on_connect(self, conn: Any) -> None:
        conn._channel.stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def exposed_echo(self, value: Any) -> Any:
        return value


def serve(port: int) -> None:
    try:
        server = ThreadedServer(EchoService, hostname="127.0.0.1", port=port)
    except OSError as e:
        report(event="failed", error=str(e))
        return
    report(event="listening", port=port)
    server.start()


def calls(mode: str, port: int, total: int, warmup: int, seconds: float) -> None:
    stream = rpyc.SocketStream.connect("127.0.0.1", port, nodelay=True)
    conn = rpyc.connect_stream(stream)
    echo = conn.root.echo  # looked up once: each attribute lookup is a round trip
    payload = byValue(PAYLOAD)
    if mode == "lockstep":
        for _ in range(warmup):
            echo(payload)
        start = time.perf_counter()
        deadline = start + seconds
        done = 0
        while done < total:
            echo(payload)
            done += 1
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    else:
        aecho = rpyc.async_(echo)
        pending: collections.deque[Any] = collections.deque()
        sent = 0
        window = Window(warmup, seconds)
        for _ in range(min(PIPELINE, warmup + total)):
            pending.append(aecho(payload))
            sent += 1
        # Bounded: one wait for each call sent, and no more than
        # warmup + total calls are sent.  Replies come in order.
        while pending:
            pending.popleft().value  # noqa: B018 - waits for the reply (raises if it failed)
            if window.answered():
                break
            if sent < warmup + total:
                pending.append(aecho(payload))
                sent += 1
        done, elapsed = window.timed()
    report(mode=mode, calls=done, seconds=elapsed, rate=done / elapsed)
    conn.close()


if __name__ == "__main__":
    peerMain(sys.argv, serve, calls)
