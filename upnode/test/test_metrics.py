"""
upnode.metrics with task.Clock and an in-memory link: the figures match
what happened.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import UpnodeServerFactory, UpTimeout
from upnode.testing import FakeEndpoint

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover
    text_string_to_metric_families = None  # type: ignore[assignment]


def samples(metrics: Any) -> dict:
    out = {}
    for family in text_string_to_metric_families(metrics.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class MetricsTests(SynchronousTestCase):
    if text_string_to_metric_families is None:
        skip = "prometheus_client is not installed (upnode[metrics])"

    def test_serverAndClient(self) -> None:
        from upnode.metrics import Metrics

        clock = Clock()
        metrics = Metrics()
        server = UpnodeServerFactory({"echo": lambda v, cb: cb(v), "hold": lambda cb: None}, ping=0, clock=clock)
        metrics.watchServer(server, "s")
        endpoint = FakeEndpoint(clock)
        up = upnode.upnode(reactor=clock).connect(endpoint, {"ping": 0, "jitter": 0, "metrics": metrics})
        ds = [up.call("echo", i) for i in range(3)]
        slow = up.call("hold", timeout=1)
        link = endpoint.accept(server)
        link.flush()
        clock.advance(1)
        self.failureResultOf(slow, UpTimeout)
        for d in ds:
            self.successResultOf(d)
        got = samples(metrics)
        s = (("server", "s"),)
        self.assertEqual(got[("upnode_server_connections", s)], 1)
        self.assertEqual(got[("upnode_server_connections_accepted_total", s)], 1)
        self.assertEqual(got[("upnode_server_calls_received_total", s)], 4)
        self.assertGreater(got[("upnode_server_received_bytes_total", s)], 0)
        self.assertGreater(got[("upnode_server_sent_bytes_total", s)], 0)
        c = ("client", "0")
        self.assertEqual(got[("upnode_client_calls_total", (c, ("outcome", "ok")))], 3)
        self.assertEqual(got[("upnode_client_calls_total", (c, ("outcome", "timeout")))], 1)
        self.assertEqual(got[("upnode_client_call_seconds_count", (c,))], 4)
        self.assertEqual(got[("upnode_client_state", (c, ("state", "up")))], 1)
        self.assertEqual(got[("upnode_client_connect_attempts_total", (c,))], 1)
        up.close()
        link.flush()
        got = samples(metrics)
        self.assertEqual(got[("upnode_server_connections", s)], 0)
        self.assertEqual(got[("upnode_client_state", (c, ("state", "closed")))], 1)

    def test_offByDefault(self) -> None:
        self.assertIsNone(UpnodeServerFactory({}).metrics)
        up = upnode.upnode(reactor=Clock()).connect(FakeEndpoint(), {"ping": 0})
        self.assertIsNone(up.metrics)
        up.close()


class WatchCallTests(SynchronousTestCase):
    if text_string_to_metric_families is None:
        skip = "prometheus_client is not installed (upnode[metrics])"

    def test_usesTheClockGiven(self) -> None:
        """
        A call's latency is measured on the clock it is given.
        """
        from twisted.internet.defer import Deferred

        from upnode.metrics import Metrics

        metrics = Metrics(buckets=(1.0, 5.0, 10.0))
        clock = Clock()
        up = upnode.upnode(reactor=clock).connect(FakeEndpoint(), {"ping": 0})
        metrics.watchClient(up, "c")
        d: Deferred[Any] = Deferred()
        up.metrics.watchCall(d, clock)
        clock.advance(7)
        d.callback("ok")
        got = samples(metrics)
        self.assertEqual(got[("upnode_client_call_seconds_sum", (("client", "c"),))], 7.0)
        up.close()
