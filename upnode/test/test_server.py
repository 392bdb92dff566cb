"""
The upnode server side, in memory with task.Clock.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode import DnodeProtocol, UpnodeServerFactory
from upnode._expose import withPing
from upnode._guard import ServerLimits
from upnode.testing import connectInMemory


class ServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def link(self, factory: UpnodeServerFactory, clientCons: Any = None, answerPings: bool = True) -> Any:
        client = DnodeProtocol(clientCons, clock=self.clock, expose=withPing if answerPings else None)
        link = connectInMemory(factory, client, self.clock)
        link.flush()
        return link

    def test_pingAddedWhenMissing(self) -> None:
        link = self.link(UpnodeServerFactory({"x": 1}, ping=0, clock=self.clock))
        self.assertEqual(sorted(link.client.remote), ["ping", "x"])
        answered: List[int] = []
        link.client.remote.ping(lambda: answered.append(1))
        link.flush()
        self.assertEqual(answered, [1])

    def test_ownPingKept(self) -> None:
        pings: List[Any] = []
        link = self.link(UpnodeServerFactory({"ping": lambda cb: pings.append(cb)}, ping=0, clock=self.clock))
        link.client.remote.ping(lambda: None)
        link.flush()
        self.assertEqual(len(pings), 1)

    def test_consPerConnection(self) -> None:
        made: List[Any] = []

        def cons(remote: Any, conn: Any) -> dict:
            made.append((remote, conn))
            return {"n": len(made)}

        factory = UpnodeServerFactory(cons, ping=0, clock=self.clock)
        one = self.link(factory)
        two = self.link(factory)
        self.assertEqual((one.client.remote.n, two.client.remote.n), (1, 2))
        self.assertIs(made[0][1], one.server)
        self.assertIs(made[0][0], one.server.remote)

    def test_consReturningNone(self) -> None:
        link = self.link(UpnodeServerFactory(lambda remote, conn: None, ping=0, clock=self.clock))
        self.assertEqual(list(link.client.remote), ["ping"])

    def test_answeringClientKept(self) -> None:
        factory = UpnodeServerFactory({}, ping=1.0, timeout=0.5, clock=self.clock)
        link = self.link(factory)
        for _ in range(10):
            self.clock.advance(1.0)
            link.flush()
        self.assertTrue(link.server.connected)
        self.assertEqual(len(factory.connections), 1)

    def test_silentClientDropped(self) -> None:
        """
        A client that stops answering is dropped after ping + timeout, and
        its resources (connection entry, timers, tables) are released.
        """
        factory = UpnodeServerFactory({"echo": lambda v, cb: cb(v)}, ping=1.0, timeout=0.5, clock=self.clock)
        link = self.link(factory)
        self.clock.advance(1.0)  # ping written; the client never gets it
        self.clock.advance(0.49)
        self.assertTrue(link.server.connected)
        self.clock.advance(0.01)
        link.flush()
        self.assertFalse(link.server.connected)
        self.assertEqual(factory.connections, set())
        self.assertEqual(link.server.callbackCount()["local"], 0)
        self.assertEqual(factory.status()["dropped"]["ping timeout"], 1)
        self.clock.advance(factory.guard.logPeriod)  # the drop log's period ends
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Nothing in the server (factory, timers, heartbeat) keeps it alive.
        gone = weakref.ref(link.server)
        del link
        gc.collect()
        self.assertIsNone(gone())

    def test_busyClientKept(self) -> None:
        """
        A client whose ping answers are held back (behind its upload, on a
        slow path) while its bytes keep arriving is alive: it is kept for as
        long as they do, and dropped once it falls silent.
        """
        held: List[Any] = []
        factory = UpnodeServerFactory({"note": lambda v: None}, ping=1.0, timeout=0.5, clock=self.clock)
        link = self.link(factory, {"ping": held.append})
        for i in range(40):
            self.clock.advance(0.25)
            link.client.remote.note(i)
            link.flush()
        self.assertTrue(link.server.connected)
        self.assertGreater(len(held), 5)
        for _ in range(8):
            self.clock.advance(0.25)
            link.flush()
        self.assertFalse(link.server.connected)
        self.assertEqual(factory.status()["dropped"]["ping timeout"], 1)

    def test_oneHeartbeatPerConnection(self) -> None:
        """
        A peer that sends its methods again (which replaces the remote's
        members) is still pinged once an interval, not twice.
        """
        pings: List[Any] = []
        factory = UpnodeServerFactory({}, ping=1.0, timeout=0.5, clock=self.clock)
        link = self.link(factory, {"ping": lambda cb: (pings.append(1), cb())})
        link.client.request("methods", [link.client._session.exposed])
        link.flush()
        self.clock.advance(1.0)
        link.flush()
        self.assertEqual(pings, [1])

    def test_serverHooksSurviveRemoveAllListeners(self) -> None:
        """
        A cons that removes every listener of its connection takes away
        only its own: the server still sees the handshake (no drop at the
        handshake timeout), pings the client, passes the connection's
        events on, and forgets the connection when it goes.
        """
        pings: List[Any] = []
        remotes: List[Any] = []

        def cons(remote: Any, conn: Any) -> dict:
            conn.removeAllListeners()
            return {}

        factory = UpnodeServerFactory(
            cons, ping=1.0, timeout=0.5, serverLimits=ServerLimits(handshakeTimeout=2.0), clock=self.clock
        )
        factory.on("remote", lambda remote, conn: remotes.append(conn))
        link = self.link(factory, {"ping": lambda cb: (pings.append(1), cb())})
        self.assertEqual(remotes, [link.server])
        for _ in range(3):
            self.clock.advance(1.0)
            link.flush()
        self.assertTrue(link.server.connected)
        self.assertEqual(pings, [1, 1, 1])
        self.assertEqual(factory.status()["handshaking"], 0)
        link.cut()
        self.assertEqual(factory.connections, set())
        self.assertEqual(factory.status()["connections"], 0)
        self.clock.advance(1.0)
        self.assertEqual(pings, [1, 1, 1])

    def test_idleConnectionFreedWithoutCollector(self) -> None:
        """
        A connection whose peer never sends its methods (a connect/close
        flood) is in no reference cycle: it goes as soon as it is lost and
        dropped, not at the collector's next pass.
        """
        factory = UpnodeServerFactory({"echo": lambda v, cb: cb(v)}, ping=1.0, clock=self.clock)
        client = DnodeProtocol(clock=self.clock)
        client._start = lambda: None  # type: ignore[method-assign]
        link = connectInMemory(factory, client, self.clock)
        link.flush()
        gone = weakref.ref(link.server)
        link.cut()
        self.assertEqual(factory.connections, set())
        wasEnabled = gc.isenabled()
        gc.disable()
        try:
            del link
            self.assertIsNone(gone())
        finally:
            if wasEnabled:
                gc.enable()

    def test_clientWithoutPingNotPinged(self) -> None:
        # (No line timeout: its sweep would be the one timer here.)
        factory = UpnodeServerFactory(
            {}, ping=1.0, timeout=0.5, serverLimits=ServerLimits(lineTimeout=0), clock=self.clock
        )
        link = self.link(factory, answerPings=False)
        self.clock.advance(5)
        link.flush()
        self.assertTrue(link.server.connected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        link.cut()


class FreedWithoutCollectorTests(SynchronousTestCase):
    """
    A connection goes with its last reference, not at the collector's next
    pass: with metrics on or off, and with a peer that hands us callbacks
    (a real upnode client exposes C{ping}: the server's remote holds a
    proxy for it).
    """

    def check(self, metrics: bool) -> None:
        clock = Clock()
        factory = UpnodeServerFactory({"echo": lambda v, cb: cb(v)}, ping=1.0, clock=clock)
        if metrics:
            try:
                from upnode.metrics import Metrics
            except ImportError:  # pragma: no cover
                raise self.skipTest("prometheus_client is not installed") from None
            Metrics().watchServer(factory)
        wasEnabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            client = DnodeProtocol({"ping": lambda cb: cb()}, clock=clock)
            client.isClient = True
            link = connectInMemory(factory, client, clock)
            link.flush()
            got: List[Any] = []
            link.client.remote.echo(1, got.append)
            clock.advance(1.0)  # a ping, answered
            link.flush()
            self.assertEqual(got, [1])
            self.assertIn("ping", link.server.remote)
            server, clientRef = weakref.ref(link.server), weakref.ref(link.client)
            link.cut()
            del link, client
            self.assertIsNone(server())
            self.assertIsNone(clientRef())
        finally:
            if wasEnabled:
                gc.enable()

    def test_withoutMetrics(self) -> None:
        self.check(metrics=False)

    def test_withMetrics(self) -> None:
        self.check(metrics=True)
