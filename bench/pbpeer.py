"""
Twisted's Perspective Broker as the peer: a Root with remote_echo, called
with callRemote("echo", payload); TCP_NODELAY on both ends, as ours.

    python bench/pbpeer.py server PORT
    python bench/pbpeer.py lockstep|pipelined PORT CALLS WARMUP SECONDS

The client times CALLS calls after WARMUP, or as many as SECONDS allow,
and prints one JSON line with the rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.spread import pb

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.payload import PAYLOAD, peerMain  # noqa: E402

PIPELINE = 1000


def report(**values: Any) -> None:
    print(json.dumps(values), flush=True)


class Broker(pb.Broker):
    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        pb.Broker.connectionMade(self)


class Echo(pb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value


def serve(port: int) -> None:
    factory = pb.PBServerFactory(Echo())
    factory.protocol = Broker

    def failed(failure: Any) -> None:
        report(event="failed", error=str(failure.value))
        reactor.callWhenRunning(reactor.stop)

    listening = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(factory)
    listening.addCallbacks(lambda _: report(event="listening", port=port), failed)
    reactor.run()


def calls(mode: str, port: int, total: int, warmup: int, seconds: float) -> None:
    factory = pb.PBClientFactory()
    factory.protocol = Broker
    state = {"sent": 0, "done": 0, "start": 0.0, "deadline": 0.0, "over": False}

    def finish() -> None:
        if not state["over"]:
            state["over"] = True
            elapsed = time.perf_counter() - state["start"]
            timed = state["done"] - warmup
            report(mode=mode, calls=timed, seconds=elapsed, rate=timed / elapsed)
            reactor.stop()

    def send(root: Any) -> None:
        state["sent"] += 1
        root.callRemote("echo", PAYLOAD).addCallbacks(lambda value: replied(root), failed)

    def replied(root: Any) -> None:
        state["done"] += 1
        if state["over"]:
            return
        if state["done"] == warmup:
            state["start"] = time.perf_counter()
            state["deadline"] = state["start"] + seconds
        if state["done"] == warmup + total or (state["done"] > warmup and time.perf_counter() >= state["deadline"]):
            finish()
        elif state["sent"] < warmup + total:
            send(root)

    def failed(failure: Any) -> None:
        if not state["over"]:
            state["over"] = True
            report(event="failed", error=str(failure.value))
            reactor.stop()

    def start(root: Any) -> None:
        state["start"] = time.perf_counter()
        state["deadline"] = state["start"] + seconds
        for _ in range(min(1 if mode == "lockstep" else PIPELINE, warmup + total)):
            send(root)

    TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    factory.getRootObject().addCallbacks(start, failed)
    reactor.run()


if __name__ == "__main__":
    peerMain(sys.argv, serve, calls)
