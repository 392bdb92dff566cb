"""
The ceiling for any Twisted implementation: a bare LineReceiver pair that
only decodes and encodes the same JSON lines dnode would carry.

    python bench/ceiling.py server PORT
    python bench/ceiling.py lockstep|pipelined PORT CALLS
"""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

PAYLOAD = {"id": 1, "name": "bench", "tags": ["a", "b"], "ok": True, "ratio": 0.5}
PIPELINE = 1000


class Echo(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        reply = {"method": int(next(iter(message["callbacks"]))), "arguments": [message["arguments"][0]], "callbacks": {}, "links": []}
        self.transport.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")


class Caller(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(self, mode: str, total: int) -> None:
        self.mode, self.total, self.sent, self.done = mode, total, 0, 0

    def connectionMade(self) -> None:
        self.start = time.perf_counter()
        for _ in range(min(1 if self.mode == "lockstep" else PIPELINE, self.total)):
            self.send()

    def send(self) -> None:
        self.sent += 1
        message = {"method": 0, "arguments": [PAYLOAD, "[Function]"], "callbacks": {str(self.sent): ["1"]}, "links": []}
        self.transport.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def lineReceived(self, line: bytes) -> None:
        json.loads(line)
        self.done += 1
        if self.sent < self.total:
            self.send()
        elif self.done == self.total:
            seconds = time.perf_counter() - self.start
            print(json.dumps({"mode": self.mode, "calls": self.total, "seconds": seconds, "rate": self.total / seconds}), flush=True)
            reactor.stop()


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(Factory.forProtocol(Echo))
        reactor.callWhenRunning(lambda: print(json.dumps({"event": "listening", "port": port}), flush=True))
    else:
        total = int(sys.argv[3])
        TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(lambda: Caller(mode, total)))
    reactor.run()
