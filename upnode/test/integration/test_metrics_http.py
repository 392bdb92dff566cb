"""
A real twistd upnode-server with --metrics, scraped over real HTTP while
clients connect, call, get dropped and reconnect.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Tuple

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

import upnode

from .helpers import freePort, sleep, spawnTwistd, until

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    text_string_to_metric_families = None  # type: ignore[assignment]


async def scrape(port: int) -> Dict[Tuple[str, Tuple[Any, ...]], float]:
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}/metrics".encode())
    body = (await readBody(response)).decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "server"))
            out[(s.name, labels)] = s.value
    return out


class ScrapedTwistd(TestCase):
    timeout = 60
    if text_string_to_metric_families is None:
        skip = "prometheus_client is not installed (upnode[metrics])"

    async def test_numbersMatchWhatHappened(self) -> None:
        port, metricsPort = await freePort(), await freePort()
        twistd = spawnTwistd(
            self,
            f"--port=tcp:{port}:interface=127.0.0.1",
            f"--metrics=tcp:{metricsPort}:interface=127.0.0.1",
            "--ping=0.2",
            "--timeout=5",
        )
        await until(lambda: b"Site starting" in twistd.output or b"starting on" in twistd.output, timeout=30)
        await until(lambda: _open(port) and _open(metricsPort), timeout=30)
        before = await scrape(metricsPort)  # the probes above were accepted too
        ups: List[Any] = []
        for _ in range(3):
            up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.05, "jitter": 0, "ping": 0})
            self.addCleanup(up.close)
            ups.append(up)
        for up in ups:
            await up()
        for up in ups:
            for i in range(5):
                await up.call("echo", i)
        # A hostile peer: one line that is not JSON.
        bad = socket.create_connection(("127.0.0.1", port))
        bad.sendall(b"this is not json\n")
        await until(lambda: _closedByPeer(bad))
        bad.close()
        # One client's link drops; it reconnects.
        ups[0].conn.transport.abortConnection()
        await until(lambda: ups[0].state == "up" and ups[0].attempts == 2)
        await sleep(0.5)  # a few pings answered
        got = await scrape(metricsPort)
        self.assertEqual(got[("upnode_server_connections", ())], 3)
        accepted = ("upnode_server_connections_accepted_total", ())
        self.assertEqual(got[accepted] - before[accepted], 5)
        self.assertEqual(got[("upnode_server_connections_dropped_total", (("reason", "hostile_input"),))], 1)
        self.assertEqual(got[("upnode_server_connections_dropped_total", (("reason", "ping_timeout"),))], 0)
        self.assertGreaterEqual(got[("upnode_server_calls_received_total", ())], 15)
        self.assertGreater(got[("upnode_server_received_bytes_total", ())], 0)
        self.assertGreater(got[("upnode_server_sent_bytes_total", ())], 0)
        self.assertGreater(got[("upnode_server_ping_seconds_count", ())], 0)
        self.assertEqual(got[("upnode_server_unread_bytes", ())], 0)


def _open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _closedByPeer(sock: socket.socket) -> bool:
    import select

    while select.select([sock], [], [], 0)[0]:
        try:
            if sock.recv(65536) == b"":
                return True
        except OSError:
            return True
    return False
