"""
The ceiling for any Twisted implementation: a bare LineReceiver pair that
only decodes and encodes the same JSON lines dnode would carry.

    python bench/ceiling.py tuned|stock server PORT
    python bench/ceiling.py tuned|stock lockstep|pipelined PORT CALLS WARMUP

"stock" is LineReceiver and the standard library's json as they come.
"tuned" does what upnode does to go fast: orjson, 16 KiB socket reads, one
write per received chunk, sent at once instead of on the reactor's next
turn (upnode's own fast path, upnode._tuning.sendNowFor), and TCP_NODELAY;
it is the ceiling upnode is measured against.

The client counts only answers, so it can drive upnode's server as well
(bench/instructions.py does, to count what each end costs).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, List, Optional

import orjson
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from upnode._tuning import sendNowFor

PAYLOAD = {"id": 1, "name": "bench", "tags": ["a", "b"], "ok": True, "ratio": 0.5}
PIPELINE = 1000


def stockDumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Lines(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024
    tuned = False
    dumps: Callable[[Any], bytes] = staticmethod(stockDumps)
    loads: Callable[[bytes], Any] = staticmethod(json.loads)

    def connectionMade(self) -> None:
        self.batch: List[bytes] = []
        self.sendNow: Optional[Callable[[], None]] = None
        if self.tuned:
            self.transport.bufferSize = 16 * 1024  # type: ignore[union-attr]
            self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
            self.sendNow = sendNowFor(self.transport)

    def dataReceived(self, data: bytes) -> None:
        LineReceiver.dataReceived(self, data)
        self.writeBatch()

    def writeBatch(self) -> None:
        if self.batch:
            self.transport.write(b"".join(self.batch))  # type: ignore[union-attr]
            self.batch = []
            if self.sendNow is not None:
                self.sendNow()

    def send(self, message: Any) -> None:
        line = self.dumps(message) + b"\n"
        if self.tuned:
            self.batch.append(line)
        else:
            self.transport.write(line)  # type: ignore[union-attr]


class Echo(Lines):
    def lineReceived(self, line: bytes) -> None:
        message = self.loads(line)
        self.send({"method": int(next(iter(message["callbacks"]))), "arguments": [message["arguments"][0]], "callbacks": {}, "links": []})


class Caller(Lines):
    def __init__(self, mode: str, total: int, warmup: int) -> None:
        self.mode, self.total, self.warmup, self.sent, self.done = mode, total, warmup, 0, 0

    def connectionMade(self) -> None:
        Lines.connectionMade(self)
        self.start = time.perf_counter()
        for _ in range(min(1 if self.mode == "lockstep" else PIPELINE, self.warmup + self.total)):
            self.call()
        self.writeBatch()

    def call(self) -> None:
        self.sent += 1
        self.send({"method": 0, "arguments": [PAYLOAD, "[Function]"], "callbacks": {str(self.sent): ["1"]}, "links": []})

    def lineReceived(self, line: bytes) -> None:
        if type(self.loads(line)["method"]) is str:
            # A dnode server's own messages (its methods, its culls), not
            # an answer: so this client can drive our server too
            # (bench/instructions.py).  The ceiling's server sends none.
            return
        self.done += 1
        if self.done == self.warmup:
            self.start = time.perf_counter()
        if self.sent < self.warmup + self.total:
            self.call()
        elif self.done == self.warmup + self.total:
            seconds = time.perf_counter() - self.start
            print(json.dumps({"mode": self.mode, "calls": self.total, "seconds": seconds, "rate": self.total / seconds}), flush=True)
            reactor.stop()


if __name__ == "__main__":
    flavour, mode, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if flavour == "tuned":
        Lines.tuned = True
        Lines.dumps = staticmethod(orjson.dumps)  # type: ignore[assignment]
        Lines.loads = staticmethod(orjson.loads)  # type: ignore[assignment]
    if mode == "server":
        def failed(failure: Any) -> None:
            print(json.dumps({"event": "failed", "error": str(failure.value)}), flush=True)
            reactor.callWhenRunning(reactor.stop)

        TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(Factory.forProtocol(Echo)).addCallbacks(
            lambda _: print(json.dumps({"event": "listening", "port": port}), flush=True), failed
        )
    else:
        total, warmup = int(sys.argv[4]), int(sys.argv[5])
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: Caller(mode, total, warmup)))
    reactor.run()
