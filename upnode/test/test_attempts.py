"""
What bounds a connection attempt, and where the next one goes:
C{handshakeTimeout} counts from the attempt's start (the TCP connect and a
TLS handshake included) on every path the client builds, and failover
moves to the next endpoint after a failed or timed-out attempt and after
a lost link.  Deterministic: task.Clock, FakeEndpoint, and Twisted's
MemoryReactorClock for the paths that end in C{reactor.connectTCP}.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ConnectionRefusedError, UserError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import UpnodeClientFactory, UpnodeServerFactory, UpTimeout
from upnode.test.test_client import ClientTestCase, Recorder
from upnode.testing import FakeEndpoint


def _errors(recorder: Recorder) -> List[Failure]:
    return [e[1] for e in recorder.events if e[0] == "error"]


class EndpointAttemptTests(ClientTestCase):
    """
    An endpoint object (and C{createStream}) whose attempt hangs, as one on
    a dead host does.
    """

    def test_hangingAttemptEndsAtHandshakeTimeout(self) -> None:
        """
        An attempt that never connects is cancelled C{handshakeTimeout}
        seconds after it started: an C{error} event with L{UpTimeout}, then
        the backoff, then another attempt, which may succeed.
        """
        up = self.connect(handshakeTimeout=3.0, reconnect=1.0, backoff=2.0)
        d = up()
        self.clock.advance(2.999)
        self.assertEqual(up.state, "connecting")
        self.clock.advance(0.001)
        self.assertEqual(self.endpoint.cancelled, 1)
        self.assertEqual(self.endpoint.attempts, [])
        self.assertEqual(up.state, "waiting")
        [error] = _errors(self.events)
        self.assertTrue(error.check(UpTimeout))
        self.assertTrue(up.lastFailure is not None and up.lastFailure.check(UpTimeout))
        self.assertEqual(up.status()["nextAttemptIn"], 1.0)
        self.clock.advance(1.0)
        self.assertEqual(len(self.endpoint.attempts), 1)
        # The second one hangs too: the delay after it has grown.
        self.clock.advance(3.0)
        self.assertEqual(self.endpoint.cancelled, 2)
        self.assertEqual(up.status()["nextAttemptIn"], 2.0)
        self.clock.advance(2.0)
        self.accept()
        self.assertEqual(up.state, "up")
        self.assertIs(self.successResultOf(d), up.remote)

    def test_remainderBoundsTheHandshake(self) -> None:
        """
        An attempt that took 2 of its 3 seconds to connect has 1 left for
        the handshake.
        """
        up = self.connect(lambda remote, conn: None, handshakeTimeout=3.0)
        self.clock.advance(2.0)
        self.accept()
        self.assertEqual(up.state, "handshaking")
        self.clock.advance(0.999)
        self.assertEqual(up.state, "handshaking")
        self.clock.advance(0.001)
        self.assertNotEqual(up.state, "handshaking")
        [error] = _errors(self.events)
        self.assertTrue(error.check(UpTimeout))

    def test_zeroIsNoBound(self) -> None:
        """
        C{handshakeTimeout=0}: an attempt may take for ever, and no timer
        runs for it.
        """
        up = self.connect(handshakeTimeout=0)
        self.clock.advance(3600)
        self.assertEqual(up.state, "connecting")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.endpoint.cancelled, 0)

    def test_createStream(self) -> None:
        """
        C{createStream}'s endpoint of one attempt is cancelled at the
        bound; the next attempt asks for a new one.
        """
        made: List[FakeEndpoint] = []

        def createStream() -> FakeEndpoint:
            made.append(FakeEndpoint(self.clock))
            return made[-1]

        up = upnode.upnode(reactor=self.clock).connect(
            {"createStream": createStream, "ping": 0, "jitter": 0, "handshakeTimeout": 3.0, "reconnect": 1.0}
        )
        self.events = Recorder(up)
        self.addCleanup(self.assertNoTimersAfterClose, up)
        d = up()
        self.clock.advance(3.0)
        self.assertEqual(made[0].cancelled, 1)
        self.assertEqual(up.state, "waiting")
        self.clock.advance(1.0)
        self.assertEqual(len(made), 2)
        self.links = [made[1].accept(self.server)]
        self.links[0].flush()
        self.assertIs(self.successResultOf(d), up.remote)


class ReactorPathTests(SynchronousTestCase):
    """
    The paths that end in the reactor's own connector (a port,
    C{"host:port"}, C{tcp:} and C{tls:} descriptions, and the factory on
    C{reactor.connectTCP}): the bound stops the connector's attempt.
    """

    def attemptHangs(self, *args: Any) -> None:
        """
        An attempt that never completes, whether it hangs in the reactor's
        connector or before it (a name being resolved: how far an endpoint
        gets with a memory reactor differs between Twisted releases), is
        stopped at C{handshakeTimeout} and tried again after the delay.
        """
        reactor = MemoryReactorClock()
        up = upnode.upnode(reactor=reactor).connect(
            *args, {"ping": 0, "jitter": 0, "handshakeTimeout": 3.0, "reconnect": 1.0}
        )
        events = Recorder(up)
        reactor.advance(0)  # (an endpoint may start its attempt on the next turn)
        self.assertLessEqual(len(reactor.tcpClients), 1)
        self.assertEqual(up.state, "connecting")
        reactor.advance(3.0)
        self.assertTrue(all(connector.stoppedConnecting for connector in reactor.connectors))
        self.assertEqual(up.state, "waiting")
        [error] = _errors(events)
        self.assertTrue(error.check(UpTimeout))
        reactor.advance(1.0)
        reactor.advance(0)
        self.assertEqual(up.state, "connecting")
        self.assertEqual(up.status()["attempts"], 2)
        up.close()
        reactor.advance(0)
        self.assertEqual([call for call in reactor.getDelayedCalls() if call.active()], [])

    def test_port(self) -> None:
        self.attemptHangs(7000)

    def test_hostPort(self) -> None:
        self.attemptHangs("example.com:7000")

    def test_tcpDescription(self) -> None:
        self.attemptHangs("tcp:host=example.com:port=7000")

    def test_tlsDescription(self) -> None:
        self.attemptHangs("tls:example.com:7001")

    def test_connectTCPDirectly(self) -> None:
        """
        The factory on C{reactor.connectTCP}: the bound calls the
        connector's C{stopConnecting()}, whose failure (Twisted's connector
        reports a C{UserError} at once) ends the attempt as an
        L{UpTimeout}; the retry reconnects through the same connector.
        """
        reactor = MemoryReactorClock()
        factory = UpnodeClientFactory(ping=0, jitter=0, handshakeTimeout=3.0, clock=reactor)
        events = Recorder(factory)
        connector = reactor.connectTCP("127.0.0.1", 7000, factory)
        stops: List[int] = []
        connects: List[int] = []

        def stopConnecting() -> None:
            stops.append(1)
            factory.clientConnectionFailed(connector, Failure(UserError()))

        connector.stopConnecting = stopConnecting  # type: ignore[method-assign]
        connector.connect = lambda: (connects.append(1), factory.startedConnecting(connector))  # type: ignore[method-assign]
        reactor.advance(3.0)
        self.assertEqual(stops, [1])
        self.assertEqual(factory.state, "waiting")
        [error] = _errors(events)
        self.assertTrue(error.check(UpTimeout))
        reactor.advance(1.0)
        self.assertEqual((connects, factory.state), ([1], "connecting"))
        reactor.advance(3.0)
        self.assertEqual(stops, [1, 1])
        factory.close()
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_connectorThatDoesNotReport(self) -> None:
        """
        A connector whose C{stopConnecting()} reports nothing (Twisted's
        fake one): the attempt is over for the client all the same.
        """
        reactor = MemoryReactorClock()
        factory = UpnodeClientFactory(ping=0, jitter=0, handshakeTimeout=3.0, clock=reactor)
        events = Recorder(factory)
        connector = reactor.connectTCP("127.0.0.1", 7000, factory)
        reactor.advance(3.0)
        self.assertTrue(_errors(events)[0].check(UpTimeout))
        self.assertTrue(connector.stoppedConnecting)
        self.assertEqual(factory.state, "waiting")
        factory.close()
        self.assertEqual(reactor.getDelayedCalls(), [])


class FailoverTests(SynchronousTestCase):
    """
    Several endpoints: when the next attempt moves on.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.endpoints = [FakeEndpoint(self.clock) for _ in range(3)]
        self.server = UpnodeServerFactory({}, ping=0, clock=self.clock)

    def connect(self, **options: Any) -> UpnodeClientFactory:
        opts = {
            "endpoints": self.endpoints,
            "ping": 0,
            "jitter": 0,
            "handshakeTimeout": 3.0,
            "reconnect": 1.0,
        }
        opts.update(options)
        up = upnode.upnode(reactor=self.clock).connect(opts)
        self.events = Recorder(up)
        self.addCleanup(self.close, up)
        return up

    def close(self, up: UpnodeClientFactory) -> None:
        up.close()
        for link in getattr(self, "links", []):
            link.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def waiting(self) -> List[int]:
        return [len(each.attempts) for each in self.endpoints]

    def accept(self, index: int) -> Any:
        link = self.endpoints[index].accept(self.server)
        self.links = getattr(self, "links", []) + [link]
        link.flush()
        return link

    def test_failedAttemptMovesOnOnce(self) -> None:
        """
        A refused attempt moves to the next endpoint, not past it.
        """
        up = self.connect()
        self.endpoints[0].refuse(ConnectionRefusedError())
        self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(self.waiting(), [0, 1, 0])

    def test_timedOutAttemptMovesOn(self) -> None:
        """
        An attempt that hangs (a dead host) is cancelled at
        C{handshakeTimeout}, and the next one is on the next endpoint.
        """
        up = self.connect()
        self.clock.advance(3.0)
        self.assertEqual(self.endpoints[0].cancelled, 1)
        self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(self.waiting(), [0, 1, 0])
        self.accept(1)
        self.assertEqual(up.state, "up")

    def test_timedOutHandshakeMovesOn(self) -> None:
        up = self.connect()
        # Connected, but the server's methods never arrive.
        self.links = [self.endpoints[0].accept(self.server)]
        self.clock.advance(3.0)
        self.links[0].flush()
        self.assertEqual(up.state, "waiting")
        self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(self.waiting(), [0, 1, 0])

    def test_lostLinkMovesOn(self) -> None:
        """
        A link that was up is lost: the next attempt is on the next
        endpoint, and round again after the last.
        """
        up = self.connect()
        for index in (0, 1, 2):
            self.accept(index).cut()
            self.clock.advance(up.status()["nextAttemptIn"])
            self.assertEqual(self.waiting(), [int(index == 2), int(index == 0), int(index == 1)])

    def test_silentLinkMovesOn(self) -> None:
        """
        A link dropped for a ping gone unanswered (a blackholed path): the
        next attempt is on the next endpoint.
        """
        up = self.connect(ping=1.0, timeout=0.5)
        self.accept(0)
        self.assertEqual(up.state, "up")
        self.clock.advance(1.0)  # the ping goes out; nothing comes back
        self.clock.advance(0.5)
        self.links[-1].flush()
        self.assertEqual(up.state, "waiting")
        self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(self.waiting(), [0, 1, 0])
