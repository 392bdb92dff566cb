# -*- test-case-name: upnode.test.test_metrics -*-
"""
Prometheus metrics for upnode servers and clients, on prometheus_client
(install C{upnode[metrics]}).  Off unless asked for: nothing here is
imported by the library, and an unwatched server or client does no work for
metrics at all::

    from upnode.metrics import Metrics
    metrics = Metrics()                      # its own CollectorRegistry
    u = upnode.upnode(service)
    u.listen(7000, {"metrics": metrics})     # or metrics.watchServer(factory)
    up = upnode.connect(7000, {"metrics": metrics})   # or metrics.watchClient(up)
    root.putChild(b"metrics", metrics.resource())     # twisted.web

C{metrics.registry} is a plain C{prometheus_client.CollectorRegistry}: expose
it any way prometheus_client allows.  Most figures are read from the
server's guard and the client's own state when scraped; only bytes, calls
and callbacks (server) and call latencies (client) are counted as they
happen, and only for what is watched.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

from twisted.internet.defer import CancelledError

from ._reactor import resolve
from .errors import Closed, ConnectionLostError, DropReason, UpTimeout

#: Call outcomes, the values of the C{outcome} label.
OUTCOMES = ("ok", "timeout", "lost", "closed", "error")
CLIENT_STATES = ("idle", "connecting", "handshaking", "up", "dropping", "waiting", "closed", "gaveUp")
#: The C{reason} label of each drop reason.
REASON_LABELS = {
    DropReason.HOSTILE: "hostile_input",
    DropReason.PING: "ping_timeout",
    DropReason.HANDSHAKE: "handshake_timeout",
    DropReason.UNREAD: "unread_output",
    DropReason.BUDGET: "budget_shedding",
    DropReason.CAPACITY: "connection_cap",
    DropReason.SLOW_LINE: "unfinished_line",
}


class _ServerStats:
    """
    What one watched server counts as it happens: the observer of each of
    its connections (see L{upnode._wiring.IConnectionObserver}), which
    holds none of them.
    """

    def __init__(self, factory: Any, name: str, pingHistogram: Any) -> None:
        self.factory = factory
        self.name = name
        self.bytesIn = 0
        self.bytesOut = 0
        self.calls = 0
        self.callbacks = 0
        self._ping = pingHistogram.labels(server=name)

    def connection(self, conn: Any) -> None:
        """
        Watch C{conn}, a connection not yet connected.
        """
        conn.observer = self
        conn.on("ping", self._ping.observe)

    # IConnectionObserver

    def received(self, size: int) -> None:
        self.bytesIn += size

    def sent(self, size: int) -> None:
        self.bytesOut += size

    def called(self, exposed: bool) -> None:
        if exposed:
            self.calls += 1
        else:
            self.callbacks += 1

    def dropped(self, reason: str) -> None:
        pass  # (the guard counts drops by reason)

    def ended(self) -> None:
        pass


class _ClientStats:
    def __init__(self, client: Any, name: str, latency: Any, outcomes: Any) -> None:
        self.client = client
        self.name = name
        self._latency = latency.labels(client=name)
        self._outcomes = {outcome: outcomes.labels(client=name, outcome=outcome) for outcome in OUTCOMES}

    def watchCall(self, d: Any, clock: Any) -> None:
        """
        Time one C{up.call} Deferred on C{clock} (the client's), and count
        its outcome.
        """
        clock = resolve(clock)
        start = clock.seconds()

        def done(result: Any) -> Any:
            self._latency.observe(clock.seconds() - start)
            if not hasattr(result, "check"):
                outcome = "ok"
            elif result.check(UpTimeout):
                outcome = "timeout"
            elif result.check(ConnectionLostError):
                outcome = "lost"
            elif result.check(Closed, CancelledError):
                outcome = "closed"
            else:
                outcome = "error"
            self._outcomes[outcome].inc()
            return result

        d.addBoth(done)


class Metrics:
    """
    The metrics of the servers and clients it watches, in C{registry}.

    @param registry: a C{prometheus_client.CollectorRegistry}; a new one
        by default (not the global one, so that two stay apart).
    @param buckets: the histograms' buckets, in seconds.
    """

    def __init__(self, registry: Any = None, buckets: Optional[Tuple[float, ...]] = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry() if registry is None else registry
        buckets = buckets or (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
        self._servers: List[_ServerStats] = []
        self._clients: List[_ClientStats] = []
        self._ping = Histogram(
            "upnode_server_ping_seconds",
            "Round trip of the server's pings to its clients.",
            ["server"],
            registry=self.registry,
            buckets=buckets,
        )
        self._latency = Histogram(
            "upnode_client_call_seconds",
            "up.call latency, from the call to its outcome (link wait included).",
            ["client"],
            registry=self.registry,
            buckets=buckets,
        )
        self._outcomes = Counter(
            "upnode_client_calls",
            "up.call outcomes: ok, timeout, lost (link dropped), closed, error.",
            ["client", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_Collector(self))

    def watchServer(self, factory: Any, name: str = "") -> Any:
        """
        Watch an L{UpnodeServerFactory}: its connections from now on.
        """
        stats = _ServerStats(factory, name or str(len(self._servers)), self._ping)
        factory.metrics = stats
        self._servers.append(stats)
        return factory

    def watchClient(self, client: Any, name: str = "") -> Any:
        """
        Watch an L{UpnodeClientFactory} (what C{connect()} returns).
        """
        stats = _ClientStats(client, name or str(len(self._clients)), self._latency, self._outcomes)
        client.metrics = stats
        self._clients.append(stats)
        return client

    def resource(self) -> Any:
        """
        A twisted.web resource that serves the registry (text exposition format).
        """
        from prometheus_client.twisted import MetricsResource

        return MetricsResource(registry=self.registry)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


class _Collector:
    """
    The figures read when scraped.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> List[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def family(kind: Callable[..., Any], name: str, doc: str, labels: List[str]) -> Any:
            return kind(name, doc, labels=labels)

        s = ["server"]
        live = family(GaugeMetricFamily, "upnode_server_connections", "Live connections.", s)
        accepted = family(CounterMetricFamily, "upnode_server_connections_accepted", "Connections accepted.", s)
        dropped = family(
            CounterMetricFamily, "upnode_server_connections_dropped", "Connections dropped, by reason.", s + ["reason"]
        )
        unread = family(GaugeMetricFamily, "upnode_server_unread_bytes", "Output peers have left unread.", s)
        bytesIn = family(CounterMetricFamily, "upnode_server_received_bytes", "Bytes received.", s)
        bytesOut = family(CounterMetricFamily, "upnode_server_sent_bytes", "Bytes written.", s)
        calls = family(CounterMetricFamily, "upnode_server_calls_received", "Calls of exposed methods received.", s)
        callbacks = family(CounterMetricFamily, "upnode_server_callbacks_invoked", "Callbacks invoked by peers.", s)
        for stats in self.metrics._servers:
            guard = stats.factory.guard
            n = [stats.name]
            live.add_metric(n, len(stats.factory.connections))
            if guard is not None:
                accepted.add_metric(n, guard.accepted)
                for reason in DropReason.ALL:
                    dropped.add_metric(n + [REASON_LABELS[reason]], guard.dropped.get(reason, 0))
                unread.add_metric(n, guard.unreadTotal)
            bytesIn.add_metric(n, stats.bytesIn)
            bytesOut.add_metric(n, stats.bytesOut)
            calls.add_metric(n, stats.calls)
            callbacks.add_metric(n, stats.callbacks)
        yield from (live, accepted, dropped, unread, bytesIn, bytesOut, calls, callbacks)

        c = ["client"]
        state = family(GaugeMetricFamily, "upnode_client_state", "1 for the client's current state.", c + ["state"])
        attempts = family(CounterMetricFamily, "upnode_client_connect_attempts", "Connection attempts.", c)
        reconnects = family(CounterMetricFamily, "upnode_client_reconnects", "Reconnection attempts (after the first).", c)
        queued = family(GaugeMetricFamily, "upnode_client_transactions_queued", "Transactions waiting for a link.", c)
        outbox = family(GaugeMetricFamily, "upnode_client_outbox_depth", "Durable calls in the outbox file (unanswered, or answered and not yet removed).", c)
        for client in self.metrics._clients:
            up = client.client
            n = [client.name]
            for name in CLIENT_STATES:
                state.add_metric(n + [name], 1 if up.state == name else 0)
            attempts.add_metric(n, up.attempts)
            reconnects.add_metric(n, max(0, up.attempts - 1))
            queued.add_metric(n, up.queued)
            outbox.add_metric(n, 0 if up.outbox is None else up.outbox.depth)
        yield from (state, attempts, reconnects, queued, outbox)


def serve(metrics: Metrics, description: str, reactor: Any = None) -> Any:
    """
    Serve C{/metrics} on the endpoint C{description} (twisted.web); fires
    with the listening port.
    """
    from twisted.internet.endpoints import serverFromString

    return serverFromString(resolve(reactor), description).listen(site(metrics))


def site(metrics: Metrics) -> Any:
    """
    A twisted.web Site with the registry at C{/metrics}.
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    root = Resource()
    root.putChild(b"metrics", metrics.resource())
    return Site(root)


__all__ = ["Metrics", "OUTCOMES", "REASON_LABELS", "serve", "site"]
