"""
gRPC (grpc.aio) as the peer: a unary /bench.Echo/Echo with orjson as the
request and response serializers, served by a generic handler (no protoc
code generation); gRPC sets TCP_NODELAY itself.

    python bench/grpcpeer.py server PORT
    python bench/grpcpeer.py lockstep|pipelined PORT CALLS WARMUP SECONDS

Pipelined keeps 1000 calls in flight: 1000 tasks, each making calls one
after the other.  The client times CALLS calls after WARMUP, or as many as
SECONDS allow, and prints one JSON line with the rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD  # noqa: E402

try:
    import grpc
    import orjson
except ImportError as e:
    print(json.dumps({"event": "failed", "error": f"not installed: {e.name}"}), flush=True)
    sys.exit(1)

PIPELINE = 1000
METHOD = "/bench.Echo/Echo"


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


async def echo(request: Any, context: Any) -> Any:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(echo, request_deserializer=orjson.loads, response_serializer=orjson.dumps)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    try:
        server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError as e:
        report(event="failed", error=str(e))
        return
    await server.start()
    report(event="listening", port=port)
    await server.wait_for_termination()


async def calls(mode: str, port: int, total: int, warmup: int, seconds: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=orjson.dumps, response_deserializer=orjson.loads)
        await channel.channel_ready()
        window = 1 if mode == "lockstep" else PIPELINE

        async def phase(count: int, deadline: float) -> int:
            """
            C{count} calls (or as many as fit before C{deadline}), C{window}
            at a time: how many were made.
            """
            state = {"sent": 0, "done": 0}

            async def worker() -> None:
                while state["sent"] < count and time.perf_counter() < deadline:
                    state["sent"] += 1
                    await call(PAYLOAD)
                    state["done"] += 1

            await asyncio.gather(*(worker() for _ in range(min(window, count))))
            return state["done"]

        await phase(warmup, float("inf"))
        start = time.perf_counter()
        done = await phase(total, start + seconds)
        elapsed = time.perf_counter() - start
        report(mode=mode, calls=done, seconds=elapsed, rate=done / elapsed)


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        asyncio.run(serve(port))
    else:
        asyncio.run(calls(mode, port, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
