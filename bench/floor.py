"""
The floor for JSON lines in Python: a bare asyncio pair (start_server,
StreamReader.readline, orjson, TCP_NODELAY on both ends) carrying the same
lines as the ceiling (the dnode message with the payload in it), each
reply written as it is made, as asyncio's streams are meant to be used.

    python bench/floor.py server PORT
    python bench/floor.py lockstep|pipelined PORT CALLS WARMUP SECONDS

With UPNODE_BENCH_LOOP=uvloop both run on uvloop's event loop (the floor
for this framing in Python) instead of asyncio's own.

The client times CALLS calls after WARMUP, or as many as SECONDS allow,
and prints one JSON line with the rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD, Window  # noqa: E402

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency of the package
    print(json.dumps({"event": "failed", "error": "not installed: orjson"}), flush=True)
    sys.exit(1)

PIPELINE = 1000


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def noDelay(writer: asyncio.StreamWriter) -> None:
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    noDelay(writer)
    try:
        while line := await reader.readline():
            message = orjson.loads(line)
            reply = {"method": int(next(iter(message["callbacks"]))), "arguments": [message["arguments"][0]], "callbacks": {}, "links": []}
            writer.write(orjson.dumps(reply) + b"\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", port, limit=1024 * 1024)
    report(event="listening", port=port)
    async with server:
        await server.serve_forever()


async def calls(mode: str, port: int, total: int, warmup: int, seconds: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024 * 1024)
    noDelay(writer)
    sent = 0

    def call() -> None:
        nonlocal sent
        sent += 1
        message = {"method": 0, "arguments": [PAYLOAD, "[Function]"], "callbacks": {str(sent): ["1"]}, "links": []}
        writer.write(orjson.dumps(message) + b"\n")

    window = Window(warmup, seconds)
    for _ in range(min(1 if mode == "lockstep" else PIPELINE, warmup + total)):
        call()
    # Bounded: one reply read for each call sent, and no more than
    # warmup + total calls are sent.
    while window.done < sent:
        line = await reader.readline()
        if not line:
            raise ConnectionError("the server hung up")
        orjson.loads(line)
        if window.answered():
            break
        if sent < warmup + total:
            call()
    done, elapsed = window.timed()
    report(mode=mode, calls=done, seconds=elapsed, rate=done / elapsed)
    writer.close()


def run(main: Any) -> None:
    if os.environ.get("UPNODE_BENCH_LOOP") == "uvloop":
        try:
            import uvloop
        except ImportError:
            report(event="failed", error="not installed: uvloop")
            sys.exit(1)
        uvloop.run(main)
    else:
        asyncio.run(main)


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        try:
            run(serve(port))
        except OSError as e:
            report(event="failed", error=str(e))
    else:
        run(calls(mode, port, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
