"""
CPU per connection of the server alone: the factory ``twistd -n
upnode-server`` builds (demo service, default limits), listening on a
loopback port of the default reactor in this process, and clients in the
same reactor that do what the cycles attack's do (bench/attackers.py):
connect, wait for the server's first line (its C{methods}), and close with
a reset.  It is the figure to watch while changing what a connection costs
to set up and tear down (the cycles attack is too noisy for a few per cent).

    python bench/setup_cost.py [CYCLES] [--concurrency=50] [--profile]

Prints the CPU time per cycle (server and clients, which are a few socket
calls each).  With --profile, the cProfile table of the timed cycles, by
own time.  For a count that does not depend on the machine's load, run it
under callgrind with two cycle counts and take the difference, e.g.:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/setup_cost.py 1000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/setup_cost.py 3000

((Ir of the second - Ir of the first) / 2000 is instructions per cycle.)
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from upnode import tap  # noqa: E402
from upnode._server import UpnodeServerFactory  # noqa: E402

WARMUP = 200
#: SO_LINGER on, zero seconds: close() resets, leaving no TIME_WAIT.
LINGER = b"\x01\0\0\0\0\0\0\0"


def serverFactory() -> UpnodeServerFactory:
    """
    The factory of tap.makeService with the plugin's default options.
    """
    options = tap.Options()
    options.parseOptions(["--port", "tcp:0:interface=127.0.0.1"])
    return tap.serverFactory(options)


@implementer(IReadDescriptor)
class Client:
    """
    One cycle: connect, read until the first line, close with a reset.
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", driver.port))
        reactor.addReader(self)

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "cycle"

    def doRead(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        reactor.removeReader(self)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER)
        self.sock.close()
        self.driver.finished(b"\n" in data)

    def connectionLost(self, reason: Any) -> None:
        pass


class Driver:
    def __init__(self, port: int, cycles: int, concurrency: int, profile: Any) -> None:
        self.port = port
        self.total = WARMUP + cycles
        self.concurrency = concurrency
        self.profile = profile
        self.started = 0
        self.done = 0
        self.failures = 0
        self.cpu: Optional[float] = None
        self.wall: Optional[float] = None

    def begin(self) -> None:
        while self.started < self.total and self.started - self.done < self.concurrency:
            self.started += 1
            Client(self)

    def finished(self, ok: bool) -> None:
        self.done += 1
        if not ok:
            self.failures += 1
        if self.done == WARMUP:
            self.cpu, self.wall = time.process_time(), time.perf_counter()
            if self.profile is not None:
                self.profile.enable()
        if self.done == self.total:
            if self.profile is not None:
                self.profile.disable()
            self.cpu = time.process_time() - (self.cpu or 0.0)
            self.wall = time.perf_counter() - (self.wall or 0.0)
            reactor.stop()
        else:
            self.begin()


def main(argv: List[str]) -> None:
    cycles = 2000
    concurrency = 50
    profile = None
    for arg in argv:
        if arg == "--profile":
            import cProfile

            profile = cProfile.Profile()
        elif arg.startswith("--concurrency="):
            concurrency = int(arg.split("=", 1)[1])
        else:
            cycles = int(arg)
    factory = serverFactory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    driver = Driver(port.getHost().port, cycles, concurrency, profile)
    reactor.callWhenRunning(driver.begin)
    reactor.run()
    print(
        f"{cycles} cycles, {concurrency} at a time, {driver.failures} failed: "
        f"{driver.cpu / max(cycles, 1) * 1e6:.1f} us CPU a cycle "  # type: ignore[operator]
        f"({driver.wall / max(cycles, 1) * 1e6:.1f} us wall)"  # type: ignore[operator]
    )
    status = factory.status()
    print(f"server: accepted {status['accepted']}, live {status['connections']}, dropped {status['dropped']}")
    if profile is not None:
        import pstats

        pstats.Stats(profile).sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main(sys.argv[1:])
