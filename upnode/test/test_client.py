"""
The upnode client, deterministically: task.Clock, a fake endpoint whose
attempts the tests accept or refuse, and an in-memory server.
"""

from __future__ import annotations

import random
from typing import Any, List

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, DeadRemoteError, QueueFull, UpnodeClientFactory, UpnodeServerFactory, UpTimeout
from upnode.testing import FakeEndpoint, MemoryLink


class Recorder:
    """
    Records every event a client emits, in order.
    """

    NAMES = ("remote", "up", "down", "reconnect", "ping", "error", "close")

    def __init__(self, emitter: Any) -> None:
        self.events: List[tuple] = []
        for name in self.NAMES:
            emitter.on(name, lambda *args, name=name: self.events.append((name,) + args))

    def names(self) -> List[str]:
        return [e[0] for e in self.events]


class ClientTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.served: List[Any] = []
        self.server = UpnodeServerFactory(
            {"echo": lambda value, cb: cb(value), "boop": 6}, ping=0, clock=self.clock
        )

    def connect(self, *args: Any, **options: Any) -> UpnodeClientFactory:
        opts = {"ping": 0, "jitter": 0}
        opts.update(options)
        up = upnode.upnode(reactor=self.clock).connect(self.endpoint, opts, *args)
        self.events = Recorder(up)
        self.addCleanup(self.assertNoTimersAfterClose, up)
        return up

    def assertNoTimersAfterClose(self, up: UpnodeClientFactory) -> None:
        up.close()
        for link in getattr(self, "links", []):
            link.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def accept(self) -> MemoryLink:
        link = self.endpoint.accept(self.server)
        self.links = getattr(self, "links", []) + [link]
        link.flush()
        return link


class BackoffTests(ClientTestCase):
    def test_schedule(self) -> None:
        """
        The first retry waits reconnect seconds, then the delay grows by
        backoff up to maxDelay; each attempt after the first emits reconnect.
        """
        up = self.connect(reconnect=1.0, backoff=2.0, maxDelay=5.0)
        delays = []
        for _ in range(5):
            self.endpoint.refuse()
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0, 5.0, 5.0])
        self.assertEqual(self.events.names(), ["reconnect"] * 5)
        self.assertEqual(up.status()["attempts"], 6)

    def test_resetAfterUp(self) -> None:
        up = self.connect(reconnect=1.0, backoff=2.0)
        self.endpoint.refuse()
        self.clock.advance(1.0)
        self.endpoint.refuse()
        self.clock.advance(2.0)
        link = self.accept()
        self.assertIsNotNone(up.remote)
        link.cut()
        [call] = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 1.0)

    def test_jitterSpreadsClients(self) -> None:
        """
        With the default jitter, a thousand clients' first retries spread
        across [0.5, 1.5] x reconnect instead of landing at one instant, and
        status() says exactly when each comes.
        """
        delays = []
        for seed in range(1000):
            f = UpnodeClientFactory(clock=self.clock, random=random.Random(seed))
            f.retry(connector=_NeverConnector())  # type: ignore[arg-type]
            [call] = self.clock.getDelayedCalls()
            self.assertEqual(f.status()["nextAttemptIn"], call.getTime() - self.clock.seconds())
            delays.append(f.status()["nextAttemptIn"])
            f.stopTrying()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(all(0.5 <= d <= 1.5 for d in delays))
        buckets = [sum(1 for d in delays if 0.5 + i / 10 <= d < 0.6 + i / 10) for i in range(10)]
        self.assertTrue(all(50 < b < 150 for b in buckets), buckets)

    def test_jitterAtTheCap(self) -> None:
        """
        Clients that have reached maxDelay still spread: the jitter applies
        after the cap, so 200 of them never retry at one instant.
        """
        delays = set()
        for seed in range(200):
            f = UpnodeClientFactory(clock=self.clock, random=random.Random(seed), maxDelay=30.0)
            f.retries = 50
            f.retry(connector=_NeverConnector())  # type: ignore[arg-type]
            delays.add(f.status()["nextAttemptIn"])
            f.stopTrying()
        self.assertEqual(len(delays), 200)
        self.assertTrue(all(15.0 <= d <= 45.0 for d in delays), (min(delays), max(delays)))

    def test_scheduleWithJitterPinned(self) -> None:
        """
        The schedule, jitter included, is the policy's: each delay is
        base x (1 - j + 2 j r) for the injected draw r, whatever Twisted's
        own ReconnectingClientFactory would do.
        """
        draws = iter([0.0, 1.0 - 2**-53, 0.5, 0.25, 0.75])

        class Pinned(random.Random):
            def random(self) -> float:
                return next(draws)

        from upnode._connector import EndpointConnector

        up = UpnodeClientFactory(
            ping=0, reconnect=1.0, backoff=2.0, maxDelay=5.0, jitter=0.5, clock=self.clock, random=Pinned()
        )
        self.addCleanup(self.assertNoTimersAfterClose, up)
        EndpointConnector([lambda: self.endpoint], up).connect()
        delays = []
        for _ in range(5):
            self.endpoint.refuse()
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.assertEqual(up.status()["nextAttemptIn"], delays[-1])
            self.clock.advance(delays[-1])
        expected = [1.0 * 0.5, 2.0 * (1.5 - 2**-53), 4.0 * 1.0, 5.0 * 0.75, 5.0 * 1.25]
        for got, want in zip(delays, expected, strict=True):
            self.assertAlmostEqual(got, want, places=9)

    def test_policyIsPure(self) -> None:
        """
        The policy is a function of the retry count alone: no reactor, no
        state; a huge count gives the cap, not an overflow.
        """
        from upnode._backoff import backoffPolicy

        policy = backoffPolicy(0.5, 30.0, 1.5, 0.0, lambda: 0.5)
        self.assertEqual([policy(n) for n in range(3)], [0.5, 0.75, 1.125])
        self.assertEqual(policy(10_000), 30.0)
        self.assertEqual(policy(2), policy(2))

    def test_maxRetries(self) -> None:
        """
        ReconnectingClientFactory's maxRetries still holds: past it, no
        retry is scheduled.
        """
        up = self.connect(reconnect=1.0)
        up.maxRetries = 2
        for _ in range(2):
            self.endpoint.refuse()
            self.clock.advance(up.status()["nextAttemptIn"])
        self.endpoint.refuse()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.endpoint.attempts, [])

    def test_badOptions(self) -> None:
        for options in [{"ping": -1}, {"timeout": "5"}, {"jitter": 1.5}, {"backoff": 0.5}, {"nope": 1}]:
            self.assertRaises((ValueError, TypeError), upnode.upnode(reactor=self.clock).connect, self.endpoint, options)


class _NeverConnector:
    def connect(self) -> None:
        raise AssertionError("not in this test")

    def stopConnecting(self) -> None:
        from twisted.internet.error import NotConnectingError

        raise NotConnectingError()


class TransactionTests(ClientTestCase):
    def test_queuedInOrderAfterConnectCallback(self) -> None:
        """
        Transactions queued while down fire in order, all forms, right after
        the connect callback emits up and before the up event.
        """
        order: List[Any] = []

        def onRemote(remote: Any, conn: Any) -> None:
            order.append("callback")
            conn.emit("up", {"session": remote})

        up = self.connect(onRemote)
        up.on("up", lambda obj: order.append("up event"))
        d1 = up()
        up(lambda remote, conn: order.append(("cb", remote["session"].boop)))
        d2 = up(timeout=5)
        up(10, lambda remote=None, conn=None: order.append(("cb10", remote is not None)))
        d1.addCallback(lambda r: order.append("d1"))
        d2.addCallback(lambda r: order.append("d2"))
        self.assertEqual(order, [])
        self.assertEqual(up.queued, 4)
        self.accept()
        self.assertEqual(order, ["callback", "d1", ("cb", 6), "d2", ("cb10", True), "up event"])
        self.assertEqual(up.queued, 0)

    def test_immediateWhenUp(self) -> None:
        up = self.connect()
        self.accept()
        remote = self.successResultOf(up())
        self.assertEqual(remote.boop, 6)
        got: List[Any] = []
        up(lambda r, conn: got.append((r, conn)))
        self.assertEqual(got, [(remote, up.conn)])

    def test_timeoutLeavesQueue(self) -> None:
        """
        A timed-out transaction fails with UpTimeout, leaves the queue and
        is never fired later; Node style gets cb() with no arguments.
        """
        up = self.connect()
        d = up(timeout=2.0)
        called: List[Any] = []
        up(1.0, lambda *args: called.append(args))
        self.clock.advance(1.0)
        self.assertEqual(called, [()])
        self.assertNoResult(d)
        self.clock.advance(1.0)
        self.failureResultOf(d, UpTimeout)
        self.assertEqual(up.queued, 0)
        self.endpoint.refuse()
        self.clock.advance(1.0)
        self.accept()
        self.assertEqual(called, [()])

    def test_cancel(self) -> None:
        up = self.connect()
        d = up()
        d.cancel()
        self.assertEqual(up.queued, 0)
        self.failureResultOf(d)

    def test_addedDuringFlushKeepsOrder(self) -> None:
        up = self.connect()
        order: List[str] = []

        def first(remote: Any) -> None:
            order.append("first")
            up().addCallback(lambda r: order.append("added during flush"))

        up().addCallback(first)
        up().addCallback(lambda r: order.append("second"))
        self.accept()
        self.assertEqual(order, ["first", "second", "added during flush"])

    def test_linkLostDuringFlushKeepsRest(self) -> None:
        up = self.connect()
        fired: List[str] = []

        def first(remote: Any) -> None:
            fired.append("first")
            up.conn.abort()  # type: ignore[union-attr]
            self.links[-1].flush()

        up().addCallback(first)
        second = up()
        self.accept()
        self.assertEqual(fired, ["first"])
        self.assertNoResult(second)
        self.assertEqual(up.queued, 1)
        self.clock.advance(1.0)
        self.accept()
        self.successResultOf(second)

    def test_flushWaitsWhileTransportIsFull(self) -> None:
        """
        When the transport asks the link to pause, the queue flush stops;
        the transport's drain resumes it, in order, and calls made meanwhile
        queue behind the rest.
        """
        up = self.connect()
        fired: List[int] = []

        def transaction(n: int) -> Any:
            def fire(remote: Any, conn: Any) -> None:
                fired.append(n)
                if n == 2:
                    conn.pauseProducing()  # as a full transport does

            return fire

        for n in range(5):
            up(transaction(n))
        self.accept()
        self.assertEqual(fired, [0, 1, 2])
        self.assertEqual(up.queued, 2)
        up(transaction(5))
        self.assertEqual(fired, [0, 1, 2])
        up.conn.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(fired, [0, 1, 2, 3, 4, 5])
        self.assertEqual(up.queued, 0)

    def test_timedOutEntriesDoNotPileUp(self) -> None:
        """
        Transactions that time out while the link stays down leave nothing
        behind: the queue's storage stays bounded.
        """
        up = self.connect(reconnect=3600.0)  # an hour: a float, as an integer this large is taken for ms
        for _ in range(10_000):
            up(timeout=1.0).addErrback(lambda f: None)
            self.clock.advance(1.0)
        self.assertEqual(up.queued, 0)
        self.assertLess(len(up._queue._entries), 200)
        d = up(timeout=5)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(up.queued, 0)

    def test_maxQueue(self) -> None:
        up = self.connect(maxQueue=2)
        waiting = [up(), up()]
        self.assertRaises(QueueFull, up)
        self.assertEqual(up.queued, 2)
        up.close()
        for d in waiting:
            self.failureResultOf(d, Closed)

    def test_survivesReconnects(self) -> None:
        """
        The queue waits through any number of failed attempts and lost
        links that never came up.
        """
        connected: List[int] = []
        up = self.connect(lambda remote, conn: connected.append(1), handshakeTimeout=0)
        d = up()
        for _ in range(3):
            self.endpoint.refuse()
            self.clock.advance(up.status()["nextAttemptIn"])
            link = self.accept()  # the callback never emits up: no transaction fires
            link.cut()
            self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(len(connected), 3)
        self.assertNoResult(d)
        up.close()
        self.failureResultOf(d, Closed)


class LinkTests(ClientTestCase):
    def test_events(self) -> None:
        up = self.connect()
        link = self.accept()
        self.assertEqual(self.events.names(), ["remote", "up"])
        remote = self.events.events[0][1]
        self.assertIs(self.events.events[0][2], link.client)
        self.assertIs(self.events.events[1][1], remote)
        self.assertIs(up.remote, remote)
        self.assertIs(up.conn, link.client)
        link.cut()
        self.assertEqual(self.events.names(), ["remote", "up", "down"])
        self.assertIsNone(up.remote)
        self.assertIsNone(up.conn)
        self.clock.advance(1.0)
        self.assertEqual(self.events.names()[-1], "reconnect")

    def test_deadRemote(self) -> None:
        up = self.connect()
        link = self.accept()
        remote = self.successResultOf(up())
        link.cut()
        self.assertRaises(DeadRemoteError, remote.echo, 1, lambda v: None)

    def test_connectCallbackOncePerLink(self) -> None:
        calls: List[Any] = []
        up = self.connect(lambda remote, conn: (calls.append(conn), conn.emit("up", remote)))
        link = self.accept()
        link.server.request("methods", [{"again": 1}])
        link.flush()
        self.assertEqual(calls, [link.client])
        self.assertEqual(dir(up.remote), ["again"])

    def test_serverDiesDuringAuthentication(self) -> None:
        """
        Nothing queued is sent on a link whose authentication never
        finished: the server sees only the auth call, then the link dies,
        and the transactions wait for the next link.
        """
        seen: List[str] = []
        self.server = UpnodeServerFactory(
            {"auth": lambda cb: seen.append("auth"), "echo": lambda v, cb: seen.append("echo")},
            ping=0,
            clock=self.clock,
        )
        up = self.connect(lambda remote, conn: remote.auth(lambda session: conn.emit("up", session)))
        waiting = [up(lambda remote, conn, i=i: remote.echo(i, lambda v: None)) for i in range(3)]
        link = self.accept()
        link.cut()
        self.assertEqual(seen, ["auth"])
        self.assertEqual(up.queued, 3)
        self.assertEqual(waiting, [None, None, None])

    def test_connectCallbackRaises(self) -> None:
        def broken(remote: Any, conn: Any) -> None:
            raise ValueError("nope")

        self.connect(broken)
        link = self.accept()
        self.assertFalse(link.client.connected)
        self.assertIn("error", self.events.names())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.flushLoggedErrors(ValueError)

    def test_handshakeTimeout(self) -> None:
        """
        A connect callback that never emits up: an error event after
        handshakeTimeout, the link dropped, another attempt later.
        """
        up = self.connect(lambda remote, conn: None, handshakeTimeout=3.0)
        link = self.accept()
        self.clock.advance(2.9)
        self.assertTrue(link.client.connected)
        self.clock.advance(0.1)
        link.flush()
        self.assertFalse(link.client.connected)
        [error] = [e for e in self.events.events if e[0] == "error"]
        self.assertTrue(error[1].check(UpTimeout))
        self.assertEqual(up.status()["state"], "waiting")


class HeartbeatTests(ClientTestCase):
    def test_pingAnswered(self) -> None:
        up = self.connect(ping=1.0, timeout=0.5)
        link = self.accept()
        self.clock.advance(1.0)
        self.clock.advance(0.25)
        link.flush()
        pings = [e for e in self.events.events if e[0] == "ping"]
        self.assertEqual(pings, [("ping", 0.25)])
        self.assertEqual(up.status()["lastPing"], 0.25)

    def test_silentServer(self) -> None:
        """
        No answer within timeout: the link is aborted (no FIN needed),
        down is emitted and a reconnect scheduled.
        """
        up = self.connect(ping=1.0, timeout=0.5)
        link = self.accept()
        self.clock.advance(1.0)  # ping sent, never delivered: the server is silent
        self.clock.advance(0.49)
        self.assertIsNotNone(up.remote)
        self.clock.advance(0.01)
        self.assertTrue(link.client.transport.disconnecting)
        link.flush()
        self.assertIn("down", self.events.names())
        self.assertEqual(up.status()["state"], "waiting")

    def test_busyServerKept(self) -> None:
        """
        The answer to our ping is held back (behind megabytes of replies on
        a slow path) while the server's bytes keep arriving: the link is
        kept; once nothing arrives for C{timeout}, it is dropped.
        """
        up = self.connect(ping=1.0, timeout=0.5)
        link = self.accept()
        self.clock.advance(1.0)  # the ping goes out, its answer is late
        for _ in range(10):
            self.clock.advance(0.25)
            link.client.dataReceived(b" ")  # a reply on its way
        self.assertFalse(link.client.transport.disconnecting)
        self.assertIsNotNone(up.remote)
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertTrue(link.client.transport.disconnecting)
        link.flush()
        self.assertIn("down", self.events.names())

    def test_remoteWithoutPing(self) -> None:
        self.server = upnode.dnode.DnodeFactory({"x": 1}, clock=self.clock)
        self.connect(ping=1.0)
        self.accept()
        errors = [e[1] for e in self.events.events if e[0] == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn("ping", str(errors[0].value))


class CloseTests(ClientTestCase):
    """
    close() in every state: waiting Deferreds fail with Closed, close is
    emitted, and (checked in cleanup) no timer is left.
    """

    def closeAndCheck(self, up: UpnodeClientFactory, waiting: Deferred) -> None:
        up.close()
        self.failureResultOf(waiting, Closed)
        self.assertEqual(self.events.names()[-1], "close")
        self.failureResultOf(up(), Closed)

    def test_connecting(self) -> None:
        up = self.connect()
        d = up(timeout=10)
        [(_, attempt)] = self.endpoint.attempts
        self.closeAndCheck(up, d)
        self.assertEqual(attempt.called, True)  # the attempt was cancelled
        self.assertEqual(self.endpoint.attempts, [])  # and can no longer be accepted

    def test_waitingToRetry(self) -> None:
        up = self.connect()
        d = up()
        self.endpoint.refuse()
        self.closeAndCheck(up, d)

    def test_handshaking(self) -> None:
        up = self.connect(lambda remote, conn: None)
        d = up()
        link = self.accept()
        self.closeAndCheck(up, d)
        link.flush()
        self.assertFalse(link.client.connected)

    def test_up(self) -> None:
        up = self.connect(ping=1.0)
        link = self.accept()
        closed = up.close()
        link.flush()
        self.successResultOf(closed)
        self.assertFalse(link.server.connected)
        self.assertEqual(self.events.names()[-2:], ["down", "close"])
        self.assertEqual(self.events.names().count("down"), 1)

    def test_nodeStyleOnClose(self) -> None:
        up = self.connect()
        got: List[Any] = []
        up(lambda *args: got.append(args))
        up.close()
        self.assertEqual(got, [()])


class ConnectTCPTests(SynchronousTestCase):
    """
    The factory straight on reactor.connectTCP: the reactor's own connector
    drives the same reconnect loop.
    """

    def test_retriesThroughConnector(self) -> None:
        reactor = MemoryReactorClock()
        factory = UpnodeClientFactory(ping=0, jitter=0, clock=reactor)
        connector = reactor.connectTCP("127.0.0.1", 7000, factory)
        factory.startedConnecting(connector)
        d = factory()
        factory.clientConnectionFailed(connector, _failure(ConnectionRefusedError()))
        [call] = reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), 1.0)
        attempts: List[int] = []
        connector.connect = lambda: attempts.append(1)  # type: ignore[method-assign]
        reactor.advance(1.0)
        self.assertEqual(attempts, [1])
        factory.close()
        self.failureResultOf(d, Closed)
        self.assertEqual(reactor.getDelayedCalls(), [])


def _failure(error: Exception) -> Any:
    from twisted.python.failure import Failure

    return Failure(error)




class NodeStyleCallbackTests(ClientTestCase):
    def test_oneParameterCallback(self) -> None:
        """
        up(lambda remote: ...) works queued and with the link up, as in
        Node, where extra arguments are ignored.
        """
        up = self.connect()
        got: List[Any] = []
        up(lambda remote: got.append(("queued", remote)))
        self.accept()
        up(lambda remote: got.append(("now", remote)))
        self.assertEqual([tag for tag, _ in got], ["queued", "now"])
        self.assertTrue(all(remote is up.remote for _, remote in got))

    def test_raisingCallbackOneRule(self) -> None:
        """
        A callback that raises never raises into up()'s caller, whether it
        ran at once or from the queue: it is an error event.
        """
        up = self.connect()

        def boom(remote: Any) -> None:
            raise RuntimeError("boom")

        up(boom)
        self.accept()
        up(boom)  # link up: runs at once, and still does not raise
        errors = [e for e in self.events.events if e[0] == "error"]
        self.assertEqual([e[1].getErrorMessage() for e in errors], ["boom", "boom"])

    def test_raisingCallbackWithNobodyListeningIsLogged(self) -> None:
        from twisted.logger import LogLevel, globalLogPublisher

        logged: List[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        up = upnode.upnode(reactor=self.clock).connect(self.endpoint, {"ping": 0})
        self.addCleanup(self.assertNoTimersAfterClose, up)
        self.accept()
        up(lambda remote: 1 / 0)
        failures = [e for e in logged if "log_failure" in e and e["log_level"] == LogLevel.critical]
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0]["log_failure"].check(ZeroDivisionError))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_peerCallsWithExtraArguments(self) -> None:
        """
        A callback the peer calls with more arguments than it takes gets
        the ones it takes.
        """
        self.server = UpnodeServerFactory(
            {"twice": lambda cb: cb("a", "extra", "more")}, ping=0, clock=self.clock
        )
        up = self.connect()
        link = self.accept()
        got: List[Any] = []
        up.remote.twice(lambda first: got.append(first))
        link.flush()
        self.assertEqual(got, ["a"])
