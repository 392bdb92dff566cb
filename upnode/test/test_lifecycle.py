"""
The client's life (upnode._lifecycle): the defects its states make
impossible, each through the public API, and the machine itself.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, ConnectionLostError, QueueFull, UpnodeClientFactory, UpnodeServerFactory, UpTimeout
from upnode.test.test_client import ClientTestCase
from upnode.testing import FakeEndpoint


class LoggedFailures:
    """
    Every failure logged while a test runs.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: List[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def failures(self) -> List[Failure]:
        return [e["log_failure"] for e in self.events if "log_failure" in e]


class HoldingServer(ClientTestCase):
    """
    A server whose C{hold(n, cb)} keeps its callbacks and records the order
    of the calls it saw.
    """

    def setUp(self) -> None:
        super().setUp()
        self.seen: List[Any] = []
        self.held: List[Any] = []

        def hold(n: Any, cb: Any) -> None:
            self.seen.append(n)
            self.held.append(cb)

        self.server = UpnodeServerFactory({"hold": hold, "echo": lambda v, cb: cb(v)}, ping=0, clock=self.clock)


class GiveUpTests(ClientTestCase):
    def test_maxRetriesFailsWaitersAndSaysSo(self) -> None:
        """
        Past maxRetries the client gives up: waiting transactions fail with
        the last failure, status() says gaveUp, a later up() fails at once,
        and no timer is left.
        """
        up = self.connect(reconnect=1.0)
        up.maxRetries = 1
        d = up()
        got: List[Any] = []
        up(lambda *args: got.append(args))
        self.endpoint.refuse()
        self.clock.advance(up.status()["nextAttemptIn"])
        self.endpoint.refuse()
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(got, [()])
        self.assertEqual(up.status()["state"], "gaveUp")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(up(), ConnectionRefusedError)
        self.failureResultOf(up.call("echo", 1), ConnectionRefusedError)

    def test_stopTryingWhileWaiting(self) -> None:
        up = self.connect()
        d = up()
        self.endpoint.refuse()
        up.stopTrying()
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(up.status()["state"], "gaveUp")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class KnobTests(ClientTestCase):
    def test_knobsSetLaterTakeEffect(self) -> None:
        """
        ReconnectingClientFactory's knobs set after construction change the
        schedule.
        """
        up = self.connect(reconnect=1.0, backoff=1.5)
        up.maxDelay = 0.1
        up.factor = 1.0
        delays = []
        for _ in range(3):
            self.endpoint.refuse()
            delays.append(up.status()["nextAttemptIn"])
            self.clock.advance(delays[-1])
        self.assertEqual([round(d, 9) for d in delays], [0.1, 0.1, 0.1])
        up.maxDelay = 30.0
        up.initialDelay = 2.0
        up.resetDelay()
        self.endpoint.refuse()
        self.assertAlmostEqual(up.status()["nextAttemptIn"], 2.0, places=9)

    def test_jitterIsOneKnob(self) -> None:
        up = UpnodeClientFactory(jitter=0.25, clock=self.clock)
        self.assertEqual(up.jitter, 0.25)
        self.assertEqual(up.jitterFraction, 0.25)

    def test_badKnobsRaise(self) -> None:
        up = UpnodeClientFactory(clock=self.clock)
        for name, value in [("maxDelay", -1), ("factor", 0.5), ("jitter", 1.0), ("initialDelay", "1")]:
            self.assertRaises(ValueError, setattr, up, name, value)


class CallDefectTests(HoldingServer):
    def test_retriedCallsKeepCallOrder(self) -> None:
        """
        Calls with retry in flight when the link drops are sent again on
        the next link in the order they were made.
        """
        up = self.connect()
        self.accept()
        calls = [up.call("hold", n, retry=True) for n in range(40)]
        self.links[-1].flush()
        self.assertEqual(self.seen, list(range(40)))
        self.links[-1].cut()
        self.clock.advance(up.status()["nextAttemptIn"])
        del self.seen[:]
        self.accept()
        self.assertEqual(self.seen, list(range(40)))
        for cb in self.held[40:]:
            cb("ok")
        self.links[-1].flush()
        self.assertEqual([self.successResultOf(d) for d in calls], ["ok"] * 40)

    def test_connectionLostErrorCarriesTheReason(self) -> None:
        up = self.connect()
        link = self.accept()
        d = up.call("hold", 1)
        link.flush()
        link.cut()
        failure = self.failureResultOf(d, ConnectionLostError)
        self.assertIsInstance(failure.value.reason, Failure)
        self.assertTrue(failure.value.reason.check(ConnectionDone))
        self.assertIn(failure.value.reason.getErrorMessage(), str(failure.value))
        self.assertIn("hold()", str(failure.value))

    def test_callTimeoutWhileDown(self) -> None:
        """
        A call that times out while the server is down fails with
        UpTimeout, and nothing is logged.
        """
        logged = LoggedFailures(self)
        up = self.connect()
        d = up.call("echo", 1, timeout=1)
        self.clock.advance(1)
        self.failureResultOf(d, UpTimeout)
        self.assertEqual(logged.failures(), [])
        self.assertEqual(up.queued, 0)

    def test_requeuedPastMaxQueue(self) -> None:
        """
        Calls with retry put back after a lost link are not refused by
        maxQueue: the loss raises nothing, a retry is scheduled, and they
        are sent again, in order.
        """
        logged = LoggedFailures(self)
        up = self.connect(maxQueue=1)
        self.accept()
        calls = [up.call("hold", n, retry=True) for n in range(3)]
        self.links[-1].flush()
        self.links[-1].cut()
        self.assertEqual(logged.failures(), [])
        self.assertEqual(up.status()["state"], "waiting")
        self.assertEqual(up.queued, 3)
        self.assertRaises(QueueFull, up)
        self.clock.advance(up.status()["nextAttemptIn"])
        self.accept()
        self.assertEqual(self.seen, [0, 1, 2, 0, 1, 2])
        for d in calls:
            self.assertNoResult(d)
        up.close()
        for d in calls:
            self.failureResultOf(d, Closed)

    def test_queueFullCallLeavesNoTimer(self) -> None:
        up = self.connect(maxQueue=1)
        up().addErrback(lambda f: None)
        self.assertRaises(QueueFull, up.call, "echo", 1, timeout=5)
        up.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CloseDefectTests(HoldingServer):
    def test_closeInTransactionCallback(self) -> None:
        up = self.connect()
        up(lambda remote, conn: up.close())
        later = up()
        self.accept()
        self.assertEqual(self.events.names(), ["remote", "down", "close"])
        self.failureResultOf(later, Closed)
        self.assertEqual(up.status()["state"], "closed")

    def test_closeFromReconnectHandler(self) -> None:
        up = self.connect(handshakeTimeout=3.0)
        up.on("reconnect", lambda: up.close())
        self.endpoint.refuse()
        self.clock.advance(up.status()["nextAttemptIn"])
        self.assertEqual(self.endpoint.attempts, [])
        self.assertEqual(up.status()["state"], "closed")
        self.clock.advance(10)
        self.assertNotIn("error", self.events.names())
        self.assertIsNone(up.conn)

    def test_connectCallbackNotRunAfterCloseInRemoteHandler(self) -> None:
        ran: List[Any] = []
        up = self.connect(lambda remote, conn: ran.append(conn))
        up.on("remote", lambda remote, conn: up.close())
        self.accept()
        self.assertEqual(ran, [])
        self.assertEqual(up.status()["state"], "closed")


class LateUpTests(HoldingServer):
    def test_noUpOnALinkAbortedByTheHandshakeTimeout(self) -> None:
        """
        The handshake timer fires, then (in the same turn, before the abort
        is felt) the connect callback emits up: the client does not go up
        on that link nor spend a transaction on it.
        """
        conns: List[Any] = []
        up = self.connect(lambda remote, conn: conns.append((remote, conn)), handshakeTimeout=3.0)
        fired: List[Any] = []
        up(lambda remote, conn: fired.append(conn))
        self.accept()
        self.clock.advance(3.0)
        remote, conn = conns[0]
        conn.emit("up", remote)
        self.assertEqual(fired, [])
        self.assertNotEqual(up.status()["state"], "up")
        self.assertNotIn("up", self.events.names())
        self.assertEqual(up.queued, 1)
        self.flushLoggedErrors(UpTimeout)

    def test_noUpOnALinkAbortedByThePingTimeout(self) -> None:
        conns: List[Any] = []
        up = self.connect(
            lambda remote, conn: conns.append((remote, conn)), ping=1.0, timeout=0.5, handshakeTimeout=0
        )
        fired: List[Any] = []
        up(lambda remote, conn: fired.append(conn))
        self.accept()
        self.clock.advance(1.0)  # a ping goes out; the server never gets it
        self.clock.advance(0.5)
        remote, conn = conns[0]
        conn.emit("up", remote)
        self.assertEqual(fired, [])
        self.assertNotIn("up", self.events.names())
        self.assertEqual(up.queued, 1)

    def test_connectCallbackRaisesAfterUp(self) -> None:
        """
        A connect callback that emits up, then raises: the link is dropped
        (an error event, then down), and nothing more runs on it.
        """

        def onRemote(remote: Any, conn: Any) -> None:
            conn.emit("up", remote)
            raise ValueError("after up")

        up = self.connect(onRemote)
        self.accept()
        self.assertEqual(self.events.names(), ["remote", "up", "down", "error"])
        self.assertEqual(up.status()["state"], "waiting")
        fired: List[Any] = []
        up(lambda remote, conn: fired.append(conn))
        self.assertEqual(fired, [])
        self.flushLoggedErrors(ValueError)

    def test_emitUpWithNone(self) -> None:
        """
        conn.emit("up", None) (or no object): the raw remote is exposed, and
        the queue is flushed.
        """
        up = self.connect(lambda remote, conn: conn.emit("up", None))
        d = up()
        self.accept()
        self.assertEqual(up.status()["state"], "up")
        self.assertEqual(self.successResultOf(d).echo.__class__.__name__, "RemoteCallback")


class FakeEndpointTests(SynchronousTestCase):
    def test_cancelledAttemptIsNotConnected(self) -> None:
        endpoint = FakeEndpoint(Clock())
        d = endpoint.connect(UpnodeClientFactory())
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(endpoint.attempts, [])


class MachineTests(ClientTestCase):
    # (upnode._lifecycle is imported in each test, so that the tests above
    # also run on a client without it.)

    def test_stateLabelIsTheMachines(self) -> None:
        """
        status()["state"] is the label of the machine's state after every
        transition: there is no other copy to disagree with it.
        """
        up = self.connect(lambda remote, conn: None, handshakeTimeout=0)
        machine = up._machine
        seen: List[str] = []

        def check() -> None:
            label = up.status()["state"]
            self.assertEqual(label, type(machine.state).label)
            self.assertEqual(label, up.state)
            seen.append(label)

        original = machine.enter

        def enter(new: Any) -> None:
            original(new)
            check()

        machine.enter = enter  # type: ignore[method-assign]
        check()
        self.endpoint.refuse()
        self.clock.advance(up.status()["nextAttemptIn"])
        link = self.accept()
        link.client.emit("up", link.client.remote)
        link.cut()
        up.maxRetries = 0
        self.clock.advance(up.status()["nextAttemptIn"])
        self.endpoint.refuse()
        up.close()
        self.assertEqual(
            seen, ["connecting", "waiting", "connecting", "handshaking", "up", "waiting", "connecting", "gaveUp", "closed"]
        )
        self.assertNotIn("state", vars(up))

    def test_tableIsWellFormed(self) -> None:
        from upnode._lifecycle import STATES, TRANSITIONS

        inputs = {
            "attemptStarted", "attemptFailed", "linkBuilt", "remoteArrived", "upEmitted", "handshakeExpired",
            "pingExpired", "linkLost", "drained", "retryDue", "retryWanted", "stopTrying", "close",
        }
        for (state, name), (target, behaviour) in TRANSITIONS.items():
            self.assertIn(state, STATES)
            self.assertIn(target, STATES)
            self.assertIn(name, inputs)
            self.assertTrue(callable(behaviour))
        # Every state but Closed can be closed.
        closable = {state for (state, name) in TRANSITIONS if name == "close"}
        self.assertEqual(set(STATES) - closable, {upnode._lifecycle.Closed})

    def test_mirrorOnlyWhileUp(self) -> None:
        from upnode._lifecycle import Up

        up = self.connect()
        self.assertIsNone(up._live)
        link = self.accept()
        self.assertIsInstance(up._live, Up)
        self.assertIs(up._live.conn, up.conn)
        link.cut()
        self.assertIsNone(up._live)

    def test_staleOwnerIsSilent(self) -> None:
        """
        A connection the machine has left behind reports nothing: its
        owner proxy stopped forwarding.
        """
        up = self.connect()
        link = self.accept()
        old = link.client
        link.cut()
        self.clock.advance(up.status()["nextAttemptIn"])
        self.accept()
        names = self.events.names()
        old.emit("up", "stale")
        old.emit("remote", "stale", old)
        self.assertEqual(self.events.names(), names)
        self.assertNotEqual(up.remote, "stale")


class _FakeConn:
    """
    Just enough of a connection for the machine alone.
    """

    connected = 1
    paused = False
    transport = None

    def __init__(self) -> None:
        self.remote = object()
        self.listeners: List[Any] = []
        self.ended = self.aborted = False

    def on(self, event: str, handler: Any) -> None:
        self.listeners.append((event, handler))

    def notifyOnLoss(self, hook: Any) -> None:
        self.listeners.append(("lost", hook))

    def end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.aborted = True

    def writeTogether(self, work: Any) -> None:
        work()

    def takesMore(self) -> bool:
        return not self.paused

    def written(self) -> int:
        return 0


class _FakeConnector:
    def __init__(self) -> None:
        self.connects = self.stops = 0

    def connect(self) -> None:
        self.connects += 1

    def stopConnecting(self) -> None:
        self.stops += 1

    def getDestination(self) -> str:
        return "nowhere"


class _Settings:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.backoffPolicy = lambda retries: 1.0
        self.maxRetries = None
        self.continueTrying = True
        self.handshakeTimeout = 5.0
        self.ping = 0.0
        self.timeout = 1.0
        self.onRemote = lambda remote, conn: None
        self.outbox = None
        self.delay = 1.0
        self._live = None

    def resetDelay(self) -> None:
        pass


class StateByInputTests(SynchronousTestCase):
    """
    Every input in every state, on the machine alone: it goes where the
    table says (or stays, for an input the state has no row for), and
    raises nothing.
    """

    def machine(self) -> Any:
        from upnode._lifecycle import ClientMachine
        from upnode._queue import TransactionQueue

        clock = Clock()
        settings = _Settings(clock)
        holder: List[Any] = []
        queue = TransactionQueue(clock, lambda w: holder[0].fire(w), lambda w, e: holder[0].end(w, e))
        m = ClientMachine(lambda *args: None, queue, settings, settings, lambda cb, args: cb(*args))
        holder.append(m)
        m.connector = _FakeConnector()
        return m

    def reach(self, name: str) -> Any:
        from twisted.internet.defer import Deferred

        m = self.machine()
        connector = m.connector
        refused = Failure(ConnectionRefusedError())
        steps = {
            "Idle": [],
            "Connecting": [lambda: m.attemptStarted(connector)],
            "Waiting": [lambda: m.attemptStarted(connector), lambda: m.attemptFailed(connector, refused)],
            "Handshaking": [lambda: m.attemptStarted(connector), lambda: m.linkBuilt(_FakeConn())],
            "Up": [
                lambda: m.attemptStarted(connector),
                lambda: m.linkBuilt(_FakeConn()),
                lambda: m.upEmitted(m.state.owner, "obj"),
            ],
            "Dropping": [
                lambda: m.attemptStarted(connector),
                lambda: m.linkBuilt(_FakeConn()),
                lambda: m.handshakeExpired(),
            ],
            "Closing": [
                lambda: m.attemptStarted(connector),
                lambda: m.linkBuilt(_FakeConn()),
                lambda: m.upEmitted(m.state.owner, "obj"),
                lambda: m.close(Deferred()),
            ],
            "Closed": [lambda: m.close(Deferred())],
            "GaveUp": [
                lambda: m.attemptStarted(connector),
                lambda: m.attemptFailed(connector, refused),
                lambda: m.stopTrying(),
            ],
        }[name]
        for step in steps:
            step()
        self.assertEqual(type(m.state).__name__, name)
        return m

    def test_everyInputInEveryState(self) -> None:
        from twisted.internet.defer import Deferred

        from upnode._lifecycle import STATES, TRANSITIONS, GaveUp, LinkOwner, Waiting

        inputs = {
            "attemptStarted": lambda m, owner: m.attemptStarted(m.connector),
            "attemptFailed": lambda m, owner: m.attemptFailed(m.connector, Failure(ConnectionRefusedError())),
            "linkBuilt": lambda m, owner: m.linkBuilt(_FakeConn()),
            "remoteArrived": lambda m, owner: m.remoteArrived(owner, object()),
            "upEmitted": lambda m, owner: m.upEmitted(owner, "obj"),
            "handshakeExpired": lambda m, owner: m.handshakeExpired(),
            "pingExpired": lambda m, owner: m.pingExpired(),
            "linkLost": lambda m, owner: m.linkLost(owner, Failure(ConnectionDone())),
            "drained": lambda m, owner: m.drained(owner),
            "retryDue": lambda m, owner: m.retryDue(),
            "retryWanted": lambda m, owner: m.retryWanted(m.connector),
            "stopTrying": lambda m, owner: m.stopTrying(),
            "close": lambda m, owner: m.close(Deferred()),
        }
        for state in STATES:
            for name, feed in inputs.items():
                m = self.reach(state.__name__)
                owner = getattr(m.state, "owner", None) or LinkOwner(m, _FakeConn())
                feed(m, owner)
                row = TRANSITIONS.get((state, name))
                expected = {state} if row is None else {row[0]}
                if Waiting in expected:
                    expected.add(GaveUp)  # past maxRetries, or after stopTrying
                self.assertIn(type(m.state), expected, (state.__name__, name))
                # No timer outlives its state: the clock holds exactly the
                # timer the current state owns, if any.
                timer = getattr(m.state, "timer", None)
                owned = [timer] if timer is not None and timer.active() else []
                self.assertEqual(m.settings.clock.getDelayedCalls(), owned, (state.__name__, name))
