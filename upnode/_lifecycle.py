# -*- test-case-name: upnode.test.test_lifecycle -*-
"""
The client's life as one state machine: which link it has, what it waits
for, and what each state must cancel when it is left.

A state is an object that owns its resources: C{Connecting} the
connector's attempt and its timer (C{handshakeTimeout} bounds an attempt
from its start), C{Handshaking} the connection, the rest of that timer,
its heartbeat and its owner proxy, C{Up} the connection, heartbeat and
owner proxy plus the remote and the calls in flight in the order they
were sent, C{Waiting} the retry timer, C{Closing} the connection and the
Deferreds waiting for it to go.  Leaving
a state releases what it owns (L{_State.exit}); so a timer cannot outlive
its state, and a connection cannot report to a machine that has moved on:
its L{LinkOwner} stops forwarding when the state that owns it is left.

The table (L{TRANSITIONS}) maps a state and an input to the state it goes
to and the behaviour that gets it there; an input a state has no row for
is ignored (it comes from something that state no longer owns).  Each
state's C{label} is what C{status()["state"]} says: it is written by
entering the state, and nothing else writes it.

Inputs are processed at once, even when they come from user code that a
behaviour runs (an event handler, a transaction callback): the new state
is entered before any user code runs, and a behaviour that runs user code
checks afterwards that its state is still current before going on.  The
client's façade (L{upnode._client}) turns C{ReconnectingClientFactory}'s
callbacks into these inputs; C{up()}'s hot path never enters the machine,
it reads the L{LiveMirror}.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple, Type

from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConnector, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._heartbeat import Heartbeat, startHeartbeat
from ._interfaces import IFailover, LinkWaiter, LiveMirror
from ._queue import TransactionQueue
from ._reactor import cancel
from .errors import Closed as ClosedError
from .errors import ConnectionLostError, UpTimeout

#: Bytes a client's queue flushes may hand over past the transport's own
#: pauses between two times the queue is empty (see ClientMachine.flush):
#: a thousand calls of a small payload, in flight at once.
FLUSH_PUSH = 256 * 1024

#: Failures that are the ordinary weather of a reconnecting client: logged
#: quietly, never an C{error} event.
ROUTINE = (
    netError.ConnectionRefusedError,
    netError.ConnectError,
    netError.ConnectionDone,
    netError.ConnectionLost,
    netError.ConnectionAborted,
    CancelledError,
)


class LinkOwner:
    """
    The machine's proxy for one connection: the connection's events reach
    the machine through it until the last state that owns the connection
    is left and calls L{stopProxying}.  A connection that is no longer the
    client's link can then emit what it likes.
    """

    __slots__ = ("conn", "_machine")

    def __init__(self, machine: ClientMachine, conn: Any) -> None:
        self.conn = conn
        self._machine: Optional[ClientMachine] = machine

    def stopProxying(self) -> None:
        # The connection holds this proxy's methods as its listeners: the
        # proxy lets go of it, so that the two make no cycle once it is lost.
        self._machine = None
        self.conn = None

    @property
    def forwarding(self) -> bool:
        return self._machine is not None

    def remoteArrived(self, remote: Any, conn: Any = None) -> None:
        if self._machine is not None:
            self._machine.remoteArrived(self, remote)

    def upEmitted(self, obj: Any = None) -> None:
        if self._machine is not None:
            self._machine.upEmitted(self, obj)

    def lost(self, reason: Failure) -> None:
        if self._machine is not None:
            self._machine.linkLost(self, reason)

    def drained(self) -> None:
        if self._machine is not None:
            self._machine.drained(self)

    def error(self, failure: Failure) -> None:
        if self._machine is not None:
            self._machine.emit("error", failure)

    def fail(self, error: Exception) -> None:
        if self._machine is not None:
            self._machine.emit("error", Failure(error))


# -- States -------------------------------------------------------------------


class _State:
    #: What status() says in this state.
    label = ""

    def exit(self, machine: ClientMachine) -> None:
        """
        Release what this state owns; called once, as it is left.
        """


class Idle(_State):
    label = "idle"


class Connecting(_State):
    """
    An attempt is under way (or about to be, when C{started} is false: the
    retry timer fired and the connector is being asked to connect).

    It owns the attempt's timer: C{handshakeTimeout} bounds the whole
    attempt, from its start to C{up}, so the TCP connect (and a TLS
    handshake that runs before the connection is built) counts against it.
    C{deadline} is when it ends, carried into L{Handshaking} as the
    remainder; C{expired} is the failure the attempt ends with once its
    timer fired and the connector was told to stop.
    """

    label = "connecting"

    def __init__(self, connector: Any, started: bool) -> None:
        self.connector = connector
        self.started = started
        self.timer: Optional[IDelayedCall] = None
        self.deadline: Optional[float] = None
        self.expired: Optional[Failure] = None

    def exit(self, machine: ClientMachine) -> None:
        cancel(self.timer)
        self.timer = None


class _Linked(_State):
    """
    A state that owns a connection and its heartbeat.
    """

    owner: LinkOwner
    conn: Any
    heartbeat: Optional[Heartbeat] = None

    def stopHeartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None


class Handshaking(_Linked):
    """
    Connected; the connect callback has not emitted C{up} yet.
    """

    label = "handshaking"

    def __init__(self, owner: LinkOwner, timer: Optional[IDelayedCall]) -> None:
        self.owner = owner
        self.conn = owner.conn
        self.timer = timer
        self.calledBack = False

    def exit(self, machine: ClientMachine) -> None:
        cancel(self.timer)
        self.timer = None


class Up(_Linked):
    """
    The link is up.  Also the record of the link that calls get
    (L{LinkWaiter.linkUp}): C{conn}, C{remote}, and C{inflight}, the calls
    sent on it and not answered, in the order they were sent (a dict used
    as an ordered set).
    """

    label = "up"

    def __init__(self, owner: LinkOwner, remote: Any, heartbeat: Optional[Heartbeat]) -> None:
        self.owner = owner
        self.conn = owner.conn
        self.remote = remote
        #: What up(cb) calls its callback with, made once.
        self.arguments = (remote, self.conn)
        self.heartbeat = heartbeat
        self.inflight: Dict[LinkWaiter, None] = {}
        #: Bytes the queue's flushes may still hand over past the
        #: transport's own pauses before the queue next empties (see
        #: L{ClientMachine.flush}).
        self.pushable = FLUSH_PUSH

    def exit(self, machine: ClientMachine) -> None:
        machine.mirror._live = None
        self.stopHeartbeat()


class Dropping(_Linked):
    """
    We aborted the link (handshake or ping timeout, a connect callback
    that raised): nothing it emits counts any more, and the next attempt
    waits for its loss, as its connector serves one connection at a time.
    """

    label = "dropping"

    def __init__(self, owner: LinkOwner, reason: Failure) -> None:
        self.owner = owner
        self.conn = owner.conn
        self.reason = reason


class Waiting(_State):
    """
    Between attempts: the retry timer runs.
    """

    label = "waiting"

    def __init__(self, connector: Any, timer: IDelayedCall) -> None:
        self.connector = connector
        self.timer: Optional[IDelayedCall] = timer

    def exit(self, machine: ClientMachine) -> None:
        cancel(self.timer)
        machine.nextAttemptAt = None


class Closing(_Linked):
    """
    Closed by the user; the connection is ending.  Reported as C{closed}:
    for the user it is, only the connection's goodbye is left.
    """

    label = "closed"

    def __init__(self, owner: LinkOwner) -> None:
        self.owner = owner
        self.conn = owner.conn
        self.gone: List[Deferred[None]] = []


class Closed(_State):
    label = "closed"


class GaveUp(_State):
    """
    No more attempts (C{maxRetries} reached, or C{stopTrying()}): waiting
    transactions failed with C{error}, and so do later ones.
    """

    label = "gaveUp"

    def __init__(self, error: Exception) -> None:
        self.error = error


# -- The machine -----------------------------------------------------------------


class ClientSettings(Protocol):
    """
    The client's options as the machine reads them: when it needs them, so
    that one set after construction takes effect.  C{delay} and
    C{continueTrying} are C{ReconnectingClientFactory}'s, written back.
    """

    clock: IReactorTime
    backoffPolicy: Callable[[int], float]
    continueTrying: int
    delay: float
    handshakeTimeout: float
    ping: float
    timeout: float
    onRemote: Callable[[Any, Any], Any]
    outbox: Any

    @property
    def maxRetries(self) -> Optional[int]:
        """
        Retries of one outage before giving up; None: never.
        """

    def resetDelay(self) -> None:
        """
        The link came up: the next outage starts the schedule again.
        """


class ClientMachine:
    """
    One client's life.  The inputs are its public methods; each docstring
    says what happened.

    @param emit: the client's C{emit}, for its events.
    @param queue: the transactions waiting for a link.
    @param mirror: where the link that is up is written for C{up()}.
    @param settings: the client's options (L{ClientSettings}).
    """

    _log = Logger()

    def __init__(
        self,
        emit: Callable[..., Any],
        queue: TransactionQueue,
        mirror: LiveMirror,
        settings: ClientSettings,
        runCallback: Callable[[Callable[..., Any], Tuple[Any, ...]], None],
    ) -> None:
        self.emit = emit
        self.queue = queue
        self.mirror = mirror
        self.settings = settings
        self.runCallback = runCallback
        self.state: _State = Idle()
        self.attempts = 0
        self.retries = 0
        self.lastFailure: Optional[Failure] = None
        self.nextAttemptAt: Optional[float] = None
        self.lastPing: Optional[float] = None
        self.connector: Any = None
        self.flushing = False

    @property
    def clock(self) -> IReactorTime:
        return self.settings.clock

    # -- The mechanics -------------------------------------------------------

    def _input(self, name: str, *args: Any) -> None:
        state = self.state
        row = TRANSITIONS.get((type(state), name))
        if row is None:
            return  # from something this state does not own: ignored
        row[1](self, state, *args)

    def enter(self, new: _State) -> None:
        """
        Leave the current state (releasing what it owns), then enter C{new}.
        """
        old = self.state
        old.exit(self)
        self.state = new
        if new.label != old.label:
            self._log.debug(
                "upnode client {old} -> {new}",
                old=old.label,
                new=new.label,
                attempts=self.attempts,
                queued=len(self.queue),
            )

    # -- Inputs ------------------------------------------------------------------

    def attemptStarted(self, connector: IConnector) -> None:
        """
        A connector started an attempt (C{startedConnecting}).
        """
        self.connector = connector
        self._input("attemptStarted", connector)

    def attemptFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        The attempt failed before any connection (C{clientConnectionFailed}).
        """
        self._input("attemptFailed", connector, reason)

    def linkBuilt(self, conn: Any) -> bool:
        """
        The attempt connected and C{conn} was built for it
        (C{buildProtocol}).  Returns whether the machine took it; a
        connection it did not take must be refused.
        """
        self._input("linkBuilt", conn)
        state = self.state
        return isinstance(state, Handshaking) and state.owner.conn is conn

    def remoteArrived(self, owner: LinkOwner, remote: Any) -> None:
        """
        The peer's C{methods} arrived on the link (the first, or a later one).
        """
        self._input("remoteArrived", owner, remote)

    def upEmitted(self, owner: LinkOwner, obj: Any) -> None:
        """
        The connect callback emitted C{up} with C{obj}.
        """
        self._input("upEmitted", owner, obj)

    def handshakeExpired(self) -> None:
        """
        C{handshakeTimeout} passed since the attempt started without C{up}
        (while connecting, or in the handshake).
        """
        self._input("handshakeExpired")

    def pingExpired(self) -> None:
        """
        A ping went unanswered for C{timeout} seconds.
        """
        self._input("pingExpired")

    def linkLost(self, owner: LinkOwner, reason: Failure) -> None:
        """
        The connection is gone.
        """
        self._input("linkLost", owner, reason)

    def drained(self, owner: LinkOwner) -> None:
        """
        The connection's transport takes more again.
        """
        self._input("drained", owner)

    def retryDue(self) -> None:
        """
        The retry timer fired.
        """
        self._input("retryDue")

    def retryWanted(self, connector: Any) -> None:
        """
        Someone called C{retry()} by hand: schedule an attempt on C{connector}.
        """
        self._input("retryWanted", connector)

    def stopTrying(self) -> None:
        """
        C{stopTrying()}: no attempt after this one.
        """
        self._input("stopTrying")

    def close(self, gone: Deferred[None]) -> None:
        """
        The user closed the client; C{gone} fires once no connection is left.
        """
        self._input("close", gone)
        if not gone.called and not isinstance(self.state, Closing):
            gone.callback(None)

    # -- Helpers for behaviours ----------------------------------------------------

    def destination(self) -> str:
        try:
            return str(self.connector.getDestination())
        except Exception:
            return "the server"

    def noteFailure(self, reason: Failure, message: str) -> None:
        """
        Log a failed attempt or link (quietly if routine, else an C{error}
        event too).  Called once the next state is entered: a handler of
        that event sees the machine settled.
        """
        if reason.check(*ROUTINE):
            self._log.info(message, destination=self.destination(), reason=reason.value)
        else:
            self._log.error(message, destination=self.destination(), reason=reason.value)
            self.emit("error", reason)

    def failover(self) -> None:
        """
        The attempt failed or timed out, or the link (up or not yet) is
        gone: a connector with several endpoints makes its next attempt on
        the next one (L{IFailover}).  Only the machine moves it on.
        """
        if IFailover.providedBy(self.connector):
            self.connector.failover()

    def startAttemptTimer(self, state: Connecting) -> None:
        """
        An attempt started: C{handshakeTimeout} (0: no bound) from now, it
        is stopped unless the link came up.
        """
        timeout = self.settings.handshakeTimeout
        if timeout:
            state.timer = self.clock.callLater(timeout, self.handshakeExpired)
            state.deadline = state.timer.getTime()

    def scheduleOrGiveUp(self, connector: Any) -> None:
        """
        After a failure: enter C{Waiting} with the policy's delay, or
        C{GaveUp} past C{maxRetries} or after C{stopTrying()}.
        """
        settings = self.settings
        if connector is None:
            # A link built without a connector (an endpoint used directly):
            # nothing can make another attempt.
            self.giveUp()
            return
        delay = settings.backoffPolicy(self.retries)
        self.retries += 1
        maxRetries = settings.maxRetries
        if not settings.continueTrying or (maxRetries is not None and self.retries > maxRetries):
            if settings.continueTrying:
                self._log.info(
                    "Giving up on {destination} after {retries} retries",
                    destination=self.destination(),
                    retries=self.retries - 1,
                )
            self.giveUp()
            return
        settings.delay = delay
        timer = self.clock.callLater(delay, self.retryDue)
        self.nextAttemptAt = timer.getTime()
        self.enter(Waiting(connector, timer))

    def giveUp(self) -> None:
        last = self.lastFailure
        error: Exception
        if last is not None and isinstance(last.value, Exception):
            error = last.value
        else:
            error = ConnectionLostError("the upnode client stopped trying to connect")
        self.enter(GaveUp(error))
        self.queue.endAll(error)

    def dropLink(self, state: _Linked, reason: Failure, lost: bool) -> None:
        """
        Handshaking: the link is lost, or (C{lost} false) we drop it,
        before it came up.
        """
        state.stopHeartbeat()
        self.failover()
        self.lastFailure = reason
        if lost:
            state.owner.stopProxying()
            self.scheduleOrGiveUp(self.connector)
        else:
            self.abandon(state, reason)
        self.noteFailure(reason, "Link to {destination} lost before it came up: {reason}")

    def abandon(self, state: _Linked, reason: Failure) -> None:
        """
        Enter L{Dropping}: the link is aborted, and the next attempt waits
        for its loss.
        """
        self.enter(Dropping(state.owner, reason))
        state.conn.abort()

    def flush(self, up: Up) -> None:
        """
        Fire waiting transactions while C{up} is the state and its
        transport takes more; when it asks us to pause, the rest wait for
        its drain, so a long queue never sits in memory twice.  The mirror
        is cleared meanwhile: C{up()} called from a transaction queues
        behind the rest.  Their requests are written together, as a
        received chunk's answers are.

        A Twisted transport pauses us once it holds its read size, 16 KiB,
        until the reactor's next turn; a flush that stopped there every
        time never emptied a queue that calls kept joining (those made
        from the answers to the calls it sent), and every call then took
        the queue's path.  So up to L{FLUSH_PUSH} bytes between two times
        the queue is empty go on past such a pause where the kernel takes
        what caused it (L{upnode._protocol.DnodeProtocol.takesMore}).  A
        long backlog goes out a pause at a time beyond that: pushing it
        all would have us write far faster than we read the answers, and
        the server stop reading us (a flush of 100,000 calls took half as
        long again).
        """
        if self.flushing:
            return  # (a drain while a transaction runs: the flush goes on)
        mirror = self.mirror
        mirror._live = None
        conn = up.conn
        until = 0

        def goOn() -> bool:
            if self.state is not up:
                return False
            return conn.takesMore() if conn.written() < until else not conn.paused

        self.flushing = True
        try:
            while True:
                until = conn.written() + up.pushable
                conn.writeTogether(lambda: self.queue.flush(goOn))
                if self.state is not up or not len(self.queue):
                    break
                up.pushable = max(0, until - conn.written())
                if conn.paused:
                    break
                # (Resumed as the flush ended: the drain came while it
                # was flushing, and was not acted on.)
        finally:
            self.flushing = False
        if self.state is up and not len(self.queue):
            up.pushable = FLUSH_PUSH
            mirror._live = up

    def fire(self, waiter: Any) -> None:
        """
        Deliver the link that is up to one waiting transaction.
        """
        up = self.state
        assert isinstance(up, Up)
        if isinstance(waiter, Deferred):
            waiter.callback(up.remote)
        elif isinstance(waiter, LinkWaiter):
            waiter.queued = False
            waiter.linkUp(up.remote, up)
        else:
            self.runCallback(waiter, (up.remote, up.conn))

    def end(self, waiter: Any, error: Exception) -> None:
        """
        End one waiting transaction without a link.
        """
        if isinstance(waiter, Deferred):
            waiter.errback(Failure(error))
        elif isinstance(waiter, LinkWaiter):
            waiter.queued = False
            waiter.linkNever(error)
        else:
            self.runCallback(waiter, ())

    def refusal(self) -> Optional[Exception]:
        """
        What a new transaction fails with at once, or None if it may wait.
        """
        state = self.state
        if isinstance(state, (Closing, Closed)):
            return ClosedError("this upnode client is closed")
        if isinstance(state, GaveUp):
            return state.error
        return None

    def startHeartbeat(self, state: _Linked, remote: Any) -> None:
        settings = self.settings
        if state.heartbeat is not None or not settings.ping:
            return
        if not callable(getattr(remote, "ping", None)):
            self.emit("error", Failure(RuntimeError("the remote does not implement ping")))
            return
        state.heartbeat = startHeartbeat(
            state.conn, remote, settings.ping, settings.timeout, self.clock, self._pingAnswered, self.pingExpired
        )

    def _pingAnswered(self, roundTrip: float) -> None:
        self.lastPing = roundTrip
        self.emit("ping", roundTrip)


# -- Behaviours ------------------------------------------------------------------
# Each is (machine, state, *input arguments); it enters the target state the
# table names for it (before any user code runs).


def _firstAttempt(m: ClientMachine, s: _State, connector: Any) -> None:
    m.attempts += 1
    state = Connecting(connector, started=True)
    m.enter(state)
    m.startAttemptTimer(state)


def _linkWithoutAttempt(m: ClientMachine, s: Idle, conn: Any) -> None:
    # The factory was handed to an endpoint directly: one link, no retries.
    m.attempts += 1
    _linkBuilt(m, s, conn)  # type: ignore[arg-type]


def _attemptFromRetry(m: ClientMachine, s: Connecting, connector: Any) -> None:
    if s.started:
        # A second attempt on top of one under way (a connector driven by
        # hand): count it, nothing else changes.
        m.attempts += 1
    else:
        s.started = True
        m.startAttemptTimer(s)
    s.connector = connector


def _attemptByHand(m: ClientMachine, s: Waiting, connector: Any) -> None:
    _firstAttempt(m, s, connector)


def _attemptWhenClosed(m: ClientMachine, s: _State, connector: Any) -> None:
    # The connector started one more attempt after we stopped (it was
    # already under way, or a handler closed us as it began): stop it.
    try:
        connector.stopConnecting()
    except netError.NotConnectingError:
        pass


def _attemptFailed(m: ClientMachine, s: Connecting, connector: Any, reason: Failure) -> None:
    if s.expired is not None:
        # We stopped it: what it failed with is our timeout.
        reason = s.expired
    m.failover()
    m.lastFailure = reason
    m.scheduleOrGiveUp(connector)
    m.noteFailure(reason, "Connection attempt to {destination} failed: {reason}")


def _attemptExpired(m: ClientMachine, s: Connecting) -> None:
    """
    C{handshakeTimeout} passed and the attempt has not connected: stop it.
    The connector reports the failure it stopped with (at once, for
    Twisted's connectors and ours), which L{_attemptFailed} replaces with
    an L{UpTimeout}, not routine: an C{error} event.
    """
    cancel(s.timer)
    s.timer = None
    timeout = m.settings.handshakeTimeout
    s.expired = Failure(UpTimeout(f"the attempt did not connect within handshakeTimeout ({timeout} seconds)"))
    connector = s.connector
    try:
        connector.stopConnecting()
    except netError.NotConnectingError:
        pass
    if m.state is s:
        # A connector that reports its failure later, or not at all: the
        # attempt is over for us now (a late report finds no row).
        _attemptFailed(m, s, connector, s.expired)


def _linkBuilt(m: ClientMachine, s: Connecting, conn: Any) -> None:
    # The attempt's deadline carries over: what is left of it bounds the
    # handshake (a link built without an attempt gets the whole timeout).
    deadline = s.deadline if isinstance(s, Connecting) else None
    owner = LinkOwner(m, conn)
    conn.on("remote", owner.remoteArrived)
    conn.on("up", owner.upEmitted)
    conn.on("error", owner.error)
    conn.on("drain", owner.drained)
    conn.on("fail", owner.fail)
    conn.notifyOnLoss(owner.lost)
    timer = None
    if deadline is not None:
        timer = m.clock.callLater(max(0.0, deadline - m.clock.seconds()), m.handshakeExpired)
    elif m.settings.handshakeTimeout:
        timer = m.clock.callLater(m.settings.handshakeTimeout, m.handshakeExpired)
    m.enter(Handshaking(owner, timer))


def _remoteWhileHandshaking(m: ClientMachine, s: Handshaking, owner: LinkOwner, remote: Any) -> None:
    m.emit("remote", remote, owner.conn)
    if m.state is not s:
        return  # a handler closed us
    m.startHeartbeat(s, remote)
    # A later methods message only refreshes the remote; the connect
    # callback runs once per link.
    if s.calledBack or m.state is not s:
        return
    s.calledBack = True
    try:
        m.settings.onRemote(remote, owner.conn)
    except Exception:
        failure = Failure()
        m._log.failure("The connect callback raised; dropping the link", failure)
        state = m.state
        # Dropped whether or not it emitted up before raising.
        if state is s:
            s.stopHeartbeat()
            m.failover()
            m.lastFailure = failure
            m.abandon(s, failure)
        elif isinstance(state, Up) and state.owner is owner:
            _downFromUp(m, state, failure, lost=False)
        m.emit("error", failure)


def _remoteWhileUp(m: ClientMachine, s: Up, owner: LinkOwner, remote: Any) -> None:
    # The remote object is refreshed in place by the protocol.
    m.emit("remote", remote, owner.conn)
    if m.state is s:
        m.startHeartbeat(s, remote)


def _upEmitted(m: ClientMachine, s: Handshaking, owner: LinkOwner, obj: Any) -> None:
    conn = owner.conn
    if not conn.connected:
        return  # it is going; its loss follows
    if obj is None:
        # conn.emit("up") or emit("up", None): the raw remote, as the
        # default connect callback gives.
        obj = conn.remote
    up = Up(owner, obj, s.heartbeat)
    s.heartbeat = None
    m.enter(up)
    m.settings.resetDelay()
    m._log.info("upnode link up to {peer}", peer=_peer(conn))
    m.flush(up)
    if m.state is up:
        m.emit("up", obj)


def _handshakeExpired(m: ClientMachine, s: Handshaking) -> None:
    timeout = m.settings.handshakeTimeout
    failure = Failure(
        UpTimeout(f"the link was not up within handshakeTimeout ({timeout} seconds) of the attempt's start")
    )
    # Dropped now, not when the loss arrives: an "up" emitted meanwhile is
    # for a link we have given up on.  (Not routine: an error event.)
    m.dropLink(s, failure, lost=False)


def _pingExpiredHandshaking(m: ClientMachine, s: Handshaking) -> None:
    m._log.warn(
        "No ping answer from {peer} within {timeout} seconds; dropping the link",
        peer=_peer(s.conn),
        timeout=m.settings.timeout,
    )
    m.dropLink(s, _silent(m.settings.timeout), lost=False)


def _peer(conn: Any) -> str:
    try:
        return str(conn.transport.getPeer())
    except Exception:
        return "the server"


def _silent(timeout: float) -> Failure:
    # The weather, as a lost connection is: no error event.
    return Failure(netError.ConnectionLost(f"no ping answer within {timeout} seconds"))


def _lostHandshaking(m: ClientMachine, s: Handshaking, owner: LinkOwner, reason: Failure) -> None:
    m.dropLink(s, reason, lost=True)


def _downFromUp(m: ClientMachine, s: Up, reason: Failure, lost: bool) -> None:
    """
    The link that was up is gone: calls sent on it and marked retry go
    back to the head of the queue in the order they were sent; the others
    fail with what ended the link.
    """
    m.lastFailure = reason
    inflight = list(s.inflight)
    s.inflight.clear()
    again = [call for call in inflight if call.retry and not call.done]
    for call in again:
        call.requeued()
    # They were admitted once: they go back ahead of the rest, bound or not.
    m.queue.prepend(again)
    m._log.info("upnode link down: {reason}", reason=reason.value)
    # The next attempt goes to the next endpoint: the one that served us
    # may be what went (a dead host would hold that attempt to its timeout).
    m.failover()
    if lost:
        s.owner.stopProxying()
        m.scheduleOrGiveUp(m.connector)
    else:
        m.abandon(s, reason)
    m.emit("down")
    error = ConnectionLostError(f"the link dropped before the reply: {reason.getErrorMessage()}", reason)
    for call in inflight:
        if not call.retry:
            call.linkLost(error)


def _lostUp(m: ClientMachine, s: Up, owner: LinkOwner, reason: Failure) -> None:
    _downFromUp(m, s, reason, lost=True)


def _pingExpiredUp(m: ClientMachine, s: Up) -> None:
    timeout = m.settings.timeout
    m._log.warn(
        "No ping answer from {peer} within {timeout} seconds; dropping the link",
        peer=_peer(s.conn),
        timeout=timeout,
    )
    _downFromUp(m, s, _silent(timeout), lost=False)


def _drained(m: ClientMachine, s: Up, owner: LinkOwner) -> None:
    if len(m.queue):
        m.flush(s)


def _lostDropping(m: ClientMachine, s: Dropping, owner: LinkOwner, reason: Failure) -> None:
    s.owner.stopProxying()
    m.scheduleOrGiveUp(m.connector)


def _closeDropping(m: ClientMachine, s: Dropping, gone: Deferred[None]) -> None:
    closing = Closing(s.owner)
    closing.gone.append(gone)
    m.enter(closing)
    _closed(m)


def _lostClosing(m: ClientMachine, s: Closing, owner: LinkOwner, reason: Failure) -> None:
    s.owner.stopProxying()
    m.lastFailure = reason
    gone = s.gone
    m.enter(Closed())
    for d in gone:
        d.callback(None)


def _retryDue(m: ClientMachine, s: Waiting) -> None:
    connector = s.connector
    state = Connecting(connector, started=False)
    m.attempts += 1
    m.enter(state)
    m.emit("reconnect")
    if m.state is not state:
        return  # a reconnect handler closed us: no attempt
    try:
        connector.connect()
    except Exception:
        if m.state is state:
            m._input("attemptFailed", connector, Failure())


def _retryWanted(m: ClientMachine, s: _State, connector: Any) -> None:
    if connector is None:
        raise ValueError("no connector to retry")
    m.connector = connector
    m.scheduleOrGiveUp(connector)


def _stopConnecting(m: ClientMachine, s: Connecting) -> None:
    # Its failure (attemptFailed) finds continueTrying false and gives up.
    try:
        m.connector.stopConnecting()
    except netError.NotConnectingError:
        pass


def _stopWaiting(m: ClientMachine, s: Waiting) -> None:
    m.giveUp()


def _closeIdle(m: ClientMachine, s: _State, gone: Deferred[None]) -> None:
    m.enter(Closed())
    _closed(m)


def _closeConnecting(m: ClientMachine, s: Connecting, gone: Deferred[None]) -> None:
    m.enter(Closed())
    try:
        s.connector.stopConnecting()
    except netError.NotConnectingError:
        pass
    _closed(m)


def _closeHandshaking(m: ClientMachine, s: Handshaking, gone: Deferred[None]) -> None:
    s.stopHeartbeat()
    closing = Closing(s.owner)
    closing.gone.append(gone)
    m.enter(closing)
    s.conn.end()
    _closed(m)


def _closeUp(m: ClientMachine, s: Up, gone: Deferred[None]) -> None:
    closing = Closing(s.owner)
    closing.gone.append(gone)
    m.enter(closing)
    inflight = list(s.inflight)
    s.inflight.clear()
    # The link is down for the user now, before close is emitted.
    m.emit("down")
    error = ClosedError("the upnode client was closed before the reply")
    for call in inflight:
        call.linkLost(error)
    s.conn.end()
    _closed(m)


def _closeClosing(m: ClientMachine, s: Closing, gone: Deferred[None]) -> None:
    s.gone.append(gone)


def _closed(m: ClientMachine) -> None:
    m.settings.continueTrying = False
    outbox = m.settings.outbox
    if outbox is not None:
        outbox.close()
    m.queue.endAll(ClosedError("this upnode client was closed"))
    m.emit("close")


_Behaviour = Callable[..., None]

#: (state, input) -> (the state it goes to, the behaviour).  Rows that lead
#: to Waiting may lead to GaveUp instead, past C{maxRetries} or after
#: C{stopTrying()}; the row from Handshaking on remoteArrived may go to
#: Dropping (the connect callback raised).  The same table is drawn in
#: docs/decisions.md ("The client's life").
TRANSITIONS: Dict[Tuple[Type[_State], str], Tuple[Type[_State], _Behaviour]] = {
    (Idle, "attemptStarted"): (Connecting, _firstAttempt),
    (Idle, "linkBuilt"): (Handshaking, _linkWithoutAttempt),
    (Idle, "retryWanted"): (Waiting, _retryWanted),
    (Idle, "close"): (Closed, _closeIdle),
    (Connecting, "attemptStarted"): (Connecting, _attemptFromRetry),
    (Connecting, "attemptFailed"): (Waiting, _attemptFailed),
    (Connecting, "handshakeExpired"): (Waiting, _attemptExpired),
    (Connecting, "linkBuilt"): (Handshaking, _linkBuilt),
    (Connecting, "retryWanted"): (Waiting, _retryWanted),
    (Connecting, "stopTrying"): (Connecting, _stopConnecting),
    (Connecting, "close"): (Closed, _closeConnecting),
    (Handshaking, "remoteArrived"): (Handshaking, _remoteWhileHandshaking),
    (Handshaking, "upEmitted"): (Up, _upEmitted),
    (Handshaking, "handshakeExpired"): (Dropping, _handshakeExpired),
    (Handshaking, "pingExpired"): (Dropping, _pingExpiredHandshaking),
    (Handshaking, "linkLost"): (Waiting, _lostHandshaking),
    (Handshaking, "close"): (Closing, _closeHandshaking),
    (Up, "remoteArrived"): (Up, _remoteWhileUp),
    (Up, "drained"): (Up, _drained),
    (Up, "pingExpired"): (Dropping, _pingExpiredUp),
    (Up, "linkLost"): (Waiting, _lostUp),
    (Up, "close"): (Closing, _closeUp),
    (Dropping, "linkLost"): (Waiting, _lostDropping),
    (Dropping, "close"): (Closing, _closeDropping),
    (Waiting, "retryDue"): (Connecting, _retryDue),
    (Waiting, "attemptStarted"): (Connecting, _attemptByHand),
    (Waiting, "retryWanted"): (Waiting, _retryWanted),
    (Waiting, "stopTrying"): (GaveUp, _stopWaiting),
    (Waiting, "close"): (Closed, _closeIdle),
    (Closing, "linkLost"): (Closed, _lostClosing),
    (Closing, "close"): (Closing, _closeClosing),
    (Closing, "attemptStarted"): (Closing, _attemptWhenClosed),
    (Closed, "attemptStarted"): (Closed, _attemptWhenClosed),
    (GaveUp, "attemptStarted"): (Connecting, _firstAttempt),
    (GaveUp, "retryWanted"): (Waiting, _retryWanted),
    (GaveUp, "close"): (Closed, _closeIdle),
}

#: Every state, in the order the docs draw them.
STATES: List[Type[_State]] = [Idle, Connecting, Handshaking, Up, Dropping, Waiting, Closing, Closed, GaveUp]


__all__ = [
    "ClientMachine",
    "Closed",
    "Closing",
    "Connecting",
    "Dropping",
    "GaveUp",
    "Handshaking",
    "Idle",
    "LinkOwner",
    "ROUTINE",
    "STATES",
    "TRANSITIONS",
    "Up",
    "Waiting",
]
