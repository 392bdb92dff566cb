"""
Model-based tests of the client: a hypothesis state machine drives a client
and a server in memory (upnode.testing, task.Clock) through accepts,
refusals, attempts left hanging, drops, stalled pings, time, transactions,
calls, cancels and close, and checks the client's promises after every step.

The run in the suite is bounded (a fixed seed, 60 examples of each model,
a few seconds); set UPNODE_MODEL_EXAMPLES to run more by hand, e.g.
C{UPNODE_MODEL_EXAMPLES=1000 python -m upnode.test upnode.test.test_model}
(minutes: later examples are longer, and each ends with a collection).
"""

from __future__ import annotations

import gc
import os
from typing import Any, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode import Closed, QueueFull, UpnodeServerFactory, UpTimeout
from upnode.testing import FakeEndpoint, MemoryLink

EXAMPLES = int(os.environ.get("UPNODE_MODEL_EXAMPLES", "60"))

HANDSHAKE_TIMEOUT = 5.0

#: How the connect callback of the next link behaves.
MODES = ("now", "never", "late", "twice", "none")


class Record:
    """
    One transaction or call: how many times it ended, and how.
    """

    def __init__(self, kind: str, seq: int) -> None:
        self.kind = kind
        self.seq = seq
        self.fired: List[Any] = []


class ClientModel(RuleBasedStateMachine):
    #: The client's options beyond the model's own.
    OPTIONS: Dict[str, Any] = {}
    #: ReconnectingClientFactory's maxRetries, set on the client.
    MAX_RETRIES: Optional[int] = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        #: When the attempt under way (or the last one) started.
        self.attemptStarted = 0.0
        connect = self.endpoint.connect

        def started(factory: Any) -> Deferred[Any]:
            self.attemptStarted = self.clock.seconds()
            return connect(factory)

        self.endpoint.connect = started  # type: ignore[method-assign]
        self.logged: List[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.seq = 0
        #: Per server connection, the sequence numbers of the calls it saw.
        self.seen: Dict[int, List[int]] = {}
        self.held: List[Any] = []
        self.server = UpnodeServerFactory(
            {"answer": self._answer, "never": self._never, "boom": self._boom}, ping=0, clock=self.clock
        )
        self.mode = "now"
        self.late: List[Tuple[Any, Any]] = []
        self.links: List[MemoryLink] = []
        self.records: List[Record] = []
        self.deferreds: List[Tuple[Record, Deferred[Any]]] = []
        self.errors: List[Any] = []
        self.closed = False
        self.up = upnode.upnode(reactor=self.clock).connect(
            self.endpoint,
            {
                "ping": 1.0,
                "timeout": 0.5,
                "jitter": 0,
                "reconnect": 1.0,
                "maxDelay": 4.0,
                "handshakeTimeout": HANDSHAKE_TIMEOUT,
                **self.OPTIONS,
            },
            self._onRemote,
        )
        self.maxRetries = self.MAX_RETRIES
        self.up.maxRetries = self.maxRetries
        self.up.on("error", self.errors.append)

    def teardown(self) -> None:
        # Failures logged as Deferreds are collected (an unhandled error)
        # are looked for here, once everything of this example is garbage:
        # when the collector runs is not ours to decide, and a check that
        # depends on it would make the model flaky.
        gc.collect()
        globalLogPublisher.removeObserver(self.logged.append)
        self.nothingUnexpectedLogged()

    # -- The server ----------------------------------------------------------------

    def _answer(self, seq: int, cb: Any) -> None:
        self._saw(seq)
        cb(seq)

    def _never(self, seq: int, cb: Any) -> None:
        self._saw(seq)
        self.held.append(cb)

    def _boom(self, seq: int, cb: Any) -> None:
        self._saw(seq)
        raise ValueError("boom (expected)")

    def _saw(self, seq: int) -> None:
        # Which server connection: the one of the link up now.
        self.seen.setdefault(len(self.links), []).append(seq)

    # -- The client's connect callback -----------------------------------------------

    def _onRemote(self, remote: Any, conn: Any) -> None:
        mode = self.mode
        if mode == "now":
            conn.emit("up", remote)
        elif mode == "twice":
            conn.emit("up", remote)
            conn.emit("up", {"second": remote})
        elif mode == "none":
            conn.emit("up", None)
        elif mode == "late":
            self.late.append((remote, conn))

    # -- Helpers -------------------------------------------------------------------

    def _record(self, kind: str) -> Record:
        self.seq += 1
        record = Record(kind, self.seq)
        self.records.append(record)
        return record

    def _node(self, record: Record) -> Any:
        def cb(*args: Any) -> None:
            if args:
                remote, conn = args
                self._checkLive(conn)
            record.fired.append(args)

        return cb

    def _watch(self, record: Record, d: Deferred[Any]) -> None:
        self.deferreds.append((record, d))

        def done(result: Any) -> None:
            record.fired.append(result)

        d.addBoth(done)

    def _checkLive(self, conn: Any) -> None:
        # Nothing runs without a link: a transaction gets the link that is up.
        assert self.up.status()["state"] == "up", self.up.status()
        assert conn is self.up.conn and conn.connected

    def _flush(self) -> None:
        for link in self.links:
            link.flush()

    # -- Rules ---------------------------------------------------------------------

    @rule(mode=st.sampled_from(MODES))
    def nextLinkBehaves(self, mode: str) -> None:
        self.mode = mode

    @precondition(lambda self: bool(self.endpoint.attempts))
    @rule()
    def accept(self) -> None:
        self.links.append(self.endpoint.accept(self.server))
        self.links[-1].flush()

    @precondition(lambda self: bool(self.endpoint.attempts))
    @rule()
    def refuse(self) -> None:
        self.endpoint.refuse()

    @precondition(lambda self: bool(self.links))
    @rule()
    def drop(self) -> None:
        self.links[-1].cut()

    @rule()
    def flush(self) -> None:
        self._flush()

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        # Without a flush: the server's answers (pings included) stall,
        # and an attempt neither accepted nor refused hangs.
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.endpoint.attempts))
    @rule()
    def hang(self) -> None:
        # The attempt under way meets a dead host: it hangs past the bound.
        self.clock.advance(HANDSHAKE_TIMEOUT)
        assert not self.endpoint.attempts or self.clock.seconds() - self.attemptStarted < HANDSHAKE_TIMEOUT

    @rule()
    def emitLate(self) -> None:
        late, self.late = self.late, []
        for remote, conn in late:
            conn.emit("up", remote)

    @rule(timeout=st.sampled_from([None, 0.5, 2.0]))
    def transaction(self, timeout: Optional[float]) -> None:
        record = self._record("up(cb)")
        try:
            if timeout is None:
                self.up(self._node(record))
            else:
                self.up(timeout, self._node(record))
        except QueueFull:
            record.fired.append("refused")
        if self.closed or self.up.status()["state"] == "gaveUp":
            assert record.fired == [()], record.fired

    @rule()
    def deferredTransaction(self) -> None:
        record = self._record("up()")
        try:
            d = self.up()
        except QueueFull:
            record.fired.append("refused")
            return
        self._watch(record, d)

    @rule(
        method=st.sampled_from(["answer", "never", "boom"]),
        retry=st.booleans(),
        timeout=st.sampled_from([None, 1.0, 4.0]),
    )
    def call(self, method: str, retry: bool, timeout: Optional[float]) -> None:
        record = self._record(f"call {method}")
        try:
            d = self.up.call(method, record.seq, retry=retry, timeout=timeout)
        except QueueFull:
            record.fired.append("refused")
            return
        self._watch(record, d)

    @precondition(lambda self: any(not d.called for _, d in self.deferreds))
    @rule(data=st.data())
    def cancel(self, data: Any) -> None:
        pending = [d for _, d in self.deferreds if not d.called]
        d = data.draw(st.sampled_from(pending))
        d.addErrback(lambda f: None)
        d.cancel()

    @rule()
    def answerHeld(self) -> None:
        held, self.held = self.held, []
        for cb in held:
            try:
                cb("late")
            except Exception:
                pass  # its link is gone

    @precondition(lambda self: self.steps >= 25)
    @rule()
    def close(self) -> None:
        self.up.close()
        ClientModel.closes += 1
        self.closed = True
        self._flush()
        self.clock.advance(0)
        unfired = [r.kind for r in self.records if not r.fired]
        assert unfired == [], unfired
        assert self.clock.getDelayedCalls() == [], self.clock.getDelayedCalls()
        assert self.up.status()["state"] == "closed"

    # -- Invariants ------------------------------------------------------------------

    #: Steps checked, over all examples (the test makes sure it ran).
    allSteps = 0
    closes = 0
    #: Steps of this example: close() comes late, so that most steps
    #: exercise a live client.
    steps = 0

    @invariant()
    def firedAtMostOnce(self) -> None:
        ClientModel.allSteps += 1
        self.steps += 1
        for record in self.records:
            assert len(record.fired) <= 1, (record.kind, record.fired)

    @invariant()
    def fifoPerLink(self) -> None:
        for seqs in self.seen.values():
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs

    @invariant()
    def statusAgrees(self) -> None:
        status = self.up.status()
        state = status["state"]
        attempts = len(self.endpoint.attempts)
        if self.closed:
            assert state == "closed", status
            assert attempts == 0
            assert self.up.conn is None
            return
        if state == "gaveUp":
            assert self.maxRetries is not None, status
            assert attempts == 0 and status["nextAttemptIn"] is None and status["queued"] == 0, status
            assert self.up.conn is None
            return
        assert state in ("connecting", "handshaking", "up", "dropping", "waiting"), status
        if state in ("connecting", "handshaking"):
            # handshakeTimeout bounds the whole attempt, connect included.
            assert self.clock.seconds() - self.attemptStarted <= HANDSHAKE_TIMEOUT, status
        assert (state == "connecting") == (attempts == 1), (status, attempts)
        assert attempts <= 1
        assert (state == "waiting") == (status["nextAttemptIn"] is not None), status
        if state == "up":
            assert self.up.conn is not None and self.up.conn.connected
            assert status["queued"] == 0 or self.up.conn.paused
        else:
            assert self.up.conn is None and self.up.remote is None

    @invariant()
    def onlyExpectedErrors(self) -> None:
        for error in self.errors:
            # The handshake timeout is the only error a client without
            # faults of its own reports.
            assert error.check(UpTimeout), error

    def nothingUnexpectedLogged(self) -> None:
        for event in self.logged:
            failure = event.get("log_failure")
            if failure is not None and not failure.check(ValueError):
                raise AssertionError(f"unexpected logged failure: {failure.getTraceback()}")
            if failure is not None:
                assert "boom (expected)" in str(failure.value), failure


class BoundedClientModel(ClientModel):
    """
    The same with a bound on the queue, and a client that gives up.
    """

    OPTIONS = {"maxQueue": 3}
    MAX_RETRIES = 3


for _model in (ClientModel, BoundedClientModel):
    _model.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=50,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


class ClientModelTests(SynchronousTestCase):
    def test_model(self) -> None:
        """
        The client keeps its promises along every path the model takes.
        """
        self.runModel(ClientModel)

    def test_bounded(self) -> None:
        """
        And with C{maxQueue} and C{maxRetries}.
        """
        self.runModel(BoundedClientModel)

    def runModel(self, model: Any) -> None:
        ClientModel.allSteps = ClientModel.closes = 0
        model.TestCase("runTest").runTest()
        self.flushLoggedErrors(ValueError)
        self.assertGreater(ClientModel.allSteps, EXAMPLES * 10)
        self.assertGreater(ClientModel.closes, 0)


__all__ = ["BoundedClientModel", "ClientModel", "Closed"]
