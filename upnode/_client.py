"""
The upnode client: a C{ReconnectingClientFactory} that keeps one dnode link
up, rebuilds state on every new link through the connect callback, pings,
and hands the remote to transactions queued with C{up()}.
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IConnector, IDelayedCall, IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._arity import callLikeJavaScript
from ._backoff import backoffPolicy
from ._calls import Call
from ._events import EventEmitter
from ._expose import Cons, withPing
from ._heartbeat import Heartbeat, dropSilentPeer
from ._limits import Limits, seconds
from ._outbox import Outbox
from ._protocol import DnodeProtocol
from ._queue import TransactionQueue
from ._reactor import cancel, resolve
from .errors import Closed, UpTimeout

ConnectCallback = Callable[[Any, DnodeProtocol], Any]

#: Failures that are the ordinary weather of a reconnecting client: logged
#: quietly, never an C{error} event.
_ROUTINE = (
    netError.ConnectionRefusedError,
    netError.ConnectError,
    netError.ConnectionDone,
    netError.ConnectionLost,
    netError.ConnectionAborted,
    CancelledError,
)


def emitUp(remote: Any, conn: DnodeProtocol) -> None:
    """
    The default connect callback: expose the raw remote to transactions.
    """
    conn.emit("up", remote)


class UpnodeClientFactory(ReconnectingClientFactory, EventEmitter):
    """
    Keeps a dnode link up.  Calling the factory (C{up()}) is a transaction.

    Use it through L{upnode.connect}, or directly with
    C{reactor.connectTCP(host, port, factory)} (or C{connectSSL},
    C{connectUNIX}).

    Times are in seconds.

    @param cons: what we expose to the server (dict, object or callable).
    @param onRemote: C{onRemote(remote, conn)}, run on every new link before
        any queued transaction; it must call C{conn.emit("up", obj)}.
    @param ping: seconds between pings; 0 disables them.
    @param timeout: seconds a ping may take before the link is dropped.
    @param reconnect: seconds before the first reconnection attempt.
    @param backoff: factor by which that delay grows on each failed attempt.
    @param maxDelay: the cap on that delay.
    @param jitter: each delay is drawn uniformly from
        C{delay * (1 - jitter)} to C{delay * (1 + jitter)}.
    @param handshakeTimeout: seconds from connection to C{"up"}; past it the
        link is dropped and an C{error} emitted.  0 waits forever.
    @param maxQueue: the most transactions that may wait; None is no bound.
    @param outbox: the SQLite file of the durable outbox, for
        C{call(..., durable=True)}; C{outboxMax} bounds it and C{outboxSync}
        (C{"normal"} or C{"full"}) sets its durability (see L{Outbox}).

    @ivar backoffPolicy: C{retry -> seconds}, the delay before each retry
        of an outage (0 for the first), from L{upnode._backoff.backoffPolicy}.
    """

    protocol = DnodeProtocol
    noisy = False
    _log = Logger()
    #: Set by L{upnode.metrics.Metrics.watchClient}; None: no metrics, no work.
    metrics: Any = None

    def __init__(
        self,
        cons: Cons = None,
        onRemote: Optional[ConnectCallback] = None,
        *,
        ping: float = 10.0,
        timeout: float = 5.0,
        reconnect: float = 1.0,
        backoff: float = 1.5,
        maxDelay: float = 30.0,
        jitter: float = 0.5,
        handshakeTimeout: float = 30.0,
        maxQueue: Optional[int] = None,
        outbox: Optional[str] = None,
        outboxMax: Optional[int] = None,
        outboxSync: str = "normal",
        limits: Optional[Limits] = None,
        clock: Optional[IReactorTime] = None,
        random: Optional[_random.Random] = None,
    ) -> None:
        EventEmitter.__init__(self)
        ping, timeout, reconnect, handshakeTimeout = (
            seconds(name, value)
            for name, value in (
                ("ping", ping),
                ("timeout", timeout),
                ("reconnect", reconnect),
                ("handshakeTimeout", handshakeTimeout),
            )
        )
        if isinstance(maxDelay, bool) or not isinstance(maxDelay, (int, float)) or not maxDelay >= 0:
            raise ValueError(f"maxDelay must be a number of seconds >= 0, not {maxDelay!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
        if backoff < 1:
            raise ValueError(f"backoff must be >= 1, not {backoff!r}")
        self.cons = cons
        self.onRemote = onRemote or emitUp
        self.ping = ping
        self.timeout = timeout
        self.initialDelay = self.delay = float(reconnect)
        self.factor = backoff
        self.maxDelay = maxDelay  # type: ignore[assignment]
        self.jitterFraction = jitter
        self.jitter = 0  # ReconnectingClientFactory's own jitter: ours replaces it
        self.random = random or _random.Random()
        self.backoffPolicy = backoffPolicy(self.initialDelay, maxDelay, backoff, jitter, self.random.random)
        self.retries = 0
        self.continueTrying = True
        self._retryCall: Optional[IDelayedCall] = None
        self.handshakeTimeout = handshakeTimeout
        self.limits = limits or Limits()
        self.clock = clock  # type: ignore[assignment]
        self.remote: Any = None
        self.conn: Optional[DnodeProtocol] = None
        self.closed = False
        self.state = "idle"
        self.attempts = 0
        self.lastFailure: Optional[Failure] = None
        self.nextAttemptAt: Optional[float] = None
        self.lastPing: Optional[float] = None
        self._link: Optional[DnodeProtocol] = None
        self._calledBackFor: Optional[DnodeProtocol] = None
        self._heartbeat: Optional[Heartbeat] = None
        self._handshakeTimer: Optional[IDelayedCall] = None
        self._flushing = False
        self._whenLinkGone: list = []
        self._calls: Set[Call] = set()
        self._queue = TransactionQueue(self._clock(), self._fireTransaction, self._endTransaction, maxQueue)
        #: The durable outbox (see L{upnode._outbox}), with the C{outbox} option.
        self.outbox: Optional[Outbox] = None
        if outbox is not None:
            self.outbox = Outbox(outbox, outboxMax, outboxSync)
            self.outbox.attach(self)

    def _clock(self) -> IReactorTime:
        self.clock = resolve(self.clock)
        return self.clock  # type: ignore[return-value]

    # -- Transactions ------------------------------------------------------------

    def __call__(self, *args: Any, timeout: Optional[float] = None) -> Optional[Deferred[Any]]:
        """
        A transaction.  C{up()} and C{up(timeout=t)} return a Deferred that
        fires with the remote once the link is up, or fails with
        L{UpTimeout} after C{t} seconds or L{Closed} on C{close()}.  Node's
        forms C{up(cb)} and C{up(t, cb)} call C{cb(remote, conn)}, or C{cb()}
        with no arguments when the transaction ends without a link.
        """
        if args and callable(args[-1]):
            callback = args[-1]
            args = args[:-1]
        else:
            callback = None
        if args or timeout is not None:
            # (Tested only when given: this is every call's path.)
            if len(args) > 1 or (args and timeout is not None):
                raise TypeError("up() takes at most a timeout and a callback")
            if args:
                timeout = args[0]
            if timeout is not None:
                timeout = seconds("timeout", timeout)
        if self.closed:
            if callback is not None:
                self._runCallback(callback, ())
                return None
            return fail(Closed("this upnode client is closed"))
        if self.remote is not None and not self._flushing and not self._queue.waiting:
            # The link is up and nobody is ahead: no queueing at all.
            if callback is not None:
                self._runCallback(callback, (self.remote, self.conn))
                return None
            return succeed(self.remote)
        result: Optional[Deferred[Any]] = None
        if callback is not None:
            self._queue.add(callback, timeout)
        else:
            entry = None
            result = Deferred(lambda d: self._queue.remove(entry))
            entry = self._queue.add(result, timeout)
        if self.remote is not None and not self._flushing:
            self._flush()
        return result

    def _fireTransaction(self, waiter: Any) -> None:
        if isinstance(waiter, Deferred):
            waiter.callback(self.remote)
            return
        self._runCallback(waiter, (self.remote, self.conn))

    def _endTransaction(self, waiter: Any, error: Exception) -> None:
        if isinstance(waiter, Deferred):
            waiter.errback(Failure(error))
            return
        self._runCallback(waiter, ())

    def _runCallback(self, callback: Callable[..., Any], arguments: Tuple[Any, ...]) -> None:
        """
        Run a Node-style C{up(cb)} callback, one rule whether it runs at
        once or from the queue: C{cb(remote, conn)}, or C{cb(remote)} for a
        callback that takes one argument (as Node would call it); if it
        raises, the exception never reaches the caller (a queued callback
        has none): it is an C{error} event (with nobody listening, a logged
        critical failure).
        """
        try:
            callLikeJavaScript(callback, arguments, self._callbackFailed)
        except Exception:
            self.emit("error", Failure())  # with nobody listening, a logged failure

    def _callbackFailed(self, failure: Failure) -> None:
        # An async def callback's coroutine failed: as if it had raised.
        self.emit("error", failure)

    def _flush(self) -> None:
        # Transactions fire while the link they were flushed for is up and
        # its transport takes more; when it asks us to pause, the rest wait
        # for its drain event, so a long queue never sits in memory twice.
        link = self._link
        if link is None:
            return
        self._flushing = True
        try:
            self._queue.flush(lambda: self.remote is not None and self._link is link and not link.paused)
        finally:
            self._flushing = False

    def _drained(self, conn: DnodeProtocol) -> None:
        if conn is self._link and self.remote is not None and not self._flushing and len(self._queue):
            self._flush()

    def call(
        self,
        name: str,
        *args: Any,
        timeout: Optional[float] = None,
        retry: bool = False,
        errorFirst: bool = False,
        durable: bool = False,
    ) -> Deferred[Any]:
        """
        Call the remote's method C{name} with C{args} and a callback; fire
        with what the callback receives (one value as is, several as a
        tuple, none as None).

        Fails with L{UpTimeout} C{timeout} seconds after the call if no
        reply came (a late reply is dropped), with L{ConnectionLostError}
        if the link drops before the reply, and with L{Closed} on
        C{close()}.  With C{retry}, a call whose link dropped is sent again
        on the next link until it is answered or times out: at-least-once,
        so the server may see it more than once.  With C{errorFirst}, the
        reply is read as Node's C{(err, result)}: a non-null C{err} fails
        the call with L{RemoteError}.

        With C{durable}, the call (plain data only) is committed to the
        outbox file before this returns, and sent until answered, across
        reconnects and restarts (see the README's "Durable calls").
        """
        if timeout is not None:
            timeout = seconds("timeout", timeout)
        if durable:
            result = self._durable().call(self._clock(), name, args, timeout, errorFirst)
        else:
            call = Call(self, name, args, timeout, retry, errorFirst)
            call.start()
            result = call.result
        if self.metrics is not None:
            self.metrics.watchCall(result, self.clock)
        return result

    def callMany(self, calls: Iterable[Sequence[Any]], *, durable: bool = False) -> List[Deferred[Any]]:
        """
        C{call(name, *args)} for each C{(name, *args)} of C{calls}; with
        C{durable}, all of them are committed in one transaction.
        """
        if durable:
            return self._durable().add([(each[0], tuple(each[1:])) for each in calls])
        return [self.call(each[0], *each[1:]) for each in calls]

    def _durable(self) -> Outbox:
        if self.outbox is None:
            raise TypeError("durable calls need an outbox: connect with the option {'outbox': 'path.sqlite'}")
        return self.outbox

    @property
    def queued(self) -> int:
        """
        How many transactions are waiting for a link.
        """
        return len(self._queue)

    def _setState(self, state: str) -> None:
        """
        Every transition is a structured log event (at debug level: routine
        weather), with the attempt count and the queue depth.
        """
        if state != self.state:
            self._log.debug(
                "upnode client {old} -> {new}",
                old=self.state,
                new=state,
                attempts=self.attempts,
                queued=len(self._queue),
            )
            self.state = state

    # -- Connection attempts -----------------------------------------------------

    def startedConnecting(self, connector: IConnector) -> None:
        self.connector = connector  # type: ignore[assignment]
        self.attempts += 1
        self.nextAttemptAt = None
        self._setState("connecting")
        if self.attempts > 1:
            self.emit("reconnect")

    # ReconnectingClientFactory's retry(), stopTrying() and resetDelay(),
    # with our own policy and timer: its internal order (when the delay
    # grows, when jitter applies) has changed between Twisted releases, and
    # the schedule must not.

    def retry(self, connector: Optional[IConnector] = None) -> None:
        """
        Connect again after the delay that C{backoffPolicy} gives for this retry.
        """
        if self.closed or not self.continueTrying:
            return
        connector = connector or self.connector
        if connector is None:
            raise ValueError("no connector to retry")
        self.connector = connector  # type: ignore[assignment]
        self.delay = self.backoffPolicy(self.retries)
        self.retries += 1
        if self.maxRetries is not None and self.retries > self.maxRetries:
            self._log.info(
                "Giving up on {destination} after {retries} retries",
                destination=_destination(connector),
                retries=self.retries - 1,
            )
            return
        self._setState("waiting")
        cancel(self._retryCall)
        self._retryCall = self._clock().callLater(self.delay, self._reconnect, connector)
        self.nextAttemptAt = self._retryCall.getTime()

    def _reconnect(self, connector: IConnector) -> None:
        self._retryCall = None
        connector.connect()

    def stopTrying(self) -> None:
        """
        Stop reconnecting: cancel the waiting retry, or the attempt under way.
        """
        self.continueTrying = False
        cancel(self._retryCall)
        self._retryCall = None
        if self.connector is not None:
            try:
                self.connector.stopConnecting()
            except netError.NotConnectingError:
                pass

    def resetDelay(self) -> None:
        """
        The link came up: the next outage starts the schedule again.
        """
        self.delay = self.initialDelay
        self.retries = 0

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        self.retry(connector)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._noteFailure(reason, "Connection attempt to {destination} failed: {reason}", connector)
        self.retry(connector)

    def _noteFailure(self, reason: Failure, message: str, connector: Any) -> None:
        self.lastFailure = reason
        if self.closed:
            return
        if reason.check(*_ROUTINE):
            self._log.info(message, destination=_destination(connector), reason=reason.value)
        else:
            self._log.error(message, destination=_destination(connector), reason=reason.value)
            self.emit("error", reason)

    # -- One link --------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = self.protocol(self.cons, self.limits, self._clock(), withPing)
        conn.factory = self
        conn.isClient = True
        self._link = conn
        self._setState("handshaking")
        conn.on("remote", self._remoteArrived)
        conn.once("up", lambda obj: self._linkUp(conn, obj))
        conn.on("error", lambda failure: self.emit("error", failure))
        conn.on("drain", lambda: self._drained(conn))
        conn.on("fail", lambda error: self.emit("error", Failure(error)))
        conn.notifyOnLoss(lambda reason: self._linkLost(conn, reason))
        if self.handshakeTimeout:
            self._handshakeTimer = self._clock().callLater(
                self.handshakeTimeout, self._handshakeExpired, conn
            )
        return conn

    def _remoteArrived(self, remote: Any, conn: DnodeProtocol) -> None:
        if conn is not self._link or self.closed:
            return
        self.emit("remote", remote, conn)
        if self._heartbeat is None and self.ping:
            if callable(getattr(remote, "ping", None)):
                self._heartbeat = Heartbeat(
                    lambda cb: remote.ping(cb),
                    self.ping,
                    self.timeout,
                    self._clock(),
                    self._pingAnswered,
                    dropSilentPeer(conn, self.timeout),
                )
                self._heartbeat.start()
            else:
                self.emit("error", Failure(RuntimeError("the remote does not implement ping")))
        # A later methods message only refreshes the remote; the connect
        # callback runs once per link.
        if self._calledBackFor is not conn:
            self._calledBackFor = conn
            try:
                self.onRemote(remote, conn)
            except Exception:
                failure = Failure()
                self._log.failure("The connect callback raised; dropping the link", failure)
                self.emit("error", failure)
                conn.abort()

    def _linkUp(self, conn: DnodeProtocol, obj: Any) -> None:
        if conn is not self._link or self.closed or not conn.connected:
            return
        self._cancelHandshakeTimer()
        self.remote = obj
        self.conn = conn
        self._setState("up")
        self.resetDelay()
        self._log.info("upnode link up to {peer}", peer=conn._peerName())
        self._flush()
        if self._link is conn:
            self.emit("up", obj)

    def _handshakeExpired(self, conn: DnodeProtocol) -> None:
        self._handshakeTimer = None
        if conn is not self._link:
            return
        self.emit(
            "error",
            Failure(
                UpTimeout(f"the connect callback did not emit 'up' within {self.handshakeTimeout} seconds")
            ),
        )
        conn.abort()

    def _pingAnswered(self, roundTrip: float) -> None:
        self.lastPing = roundTrip
        self.emit("ping", roundTrip)

    def _cancelHandshakeTimer(self) -> None:
        cancel(self._handshakeTimer)
        self._handshakeTimer = None

    def _linkLost(self, conn: DnodeProtocol, reason: Failure) -> None:
        if conn is not self._link:
            return
        self._link = None
        self._cancelHandshakeTimer()
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        wasUp = self.conn is conn
        self.remote = None
        self.conn = None
        if not wasUp:
            failover = getattr(self.connector, "failover", None)
            if failover is not None:
                failover()
            self._noteFailure(
                reason, "Link to {destination} lost before it came up: {reason}", self.connector
            )
        else:
            self.lastFailure = reason
        self._setState("closed" if self.closed else "waiting")
        if wasUp:
            self._log.info("upnode link down: {reason}", reason=reason.value)
            self.emit("down")
        for call in [c for c in self._calls if c.conn is conn]:
            call.linkLost()
        waiters, self._whenLinkGone = self._whenLinkGone, []
        for waiter in waiters:
            waiter.callback(None)

    # -- Closing ---------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """
        Stop reconnecting, end the link, fail every waiting transaction with
        L{Closed}, and emit C{close}.  The Deferred fires once the link is
        gone.
        """
        if self.closed:
            return succeed(None)
        self.closed = True
        self._setState("closed")
        self.nextAttemptAt = None
        self.stopTrying()
        self._cancelHandshakeTimer()
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self.conn is not None:
            # The link is down for the user now, before close is emitted.
            self.remote = None
            self.conn = None
            self.emit("down")
        gone: Deferred[None]
        if self._link is not None:
            gone = Deferred()
            self._whenLinkGone.append(gone)
            self._link.end()
        else:
            gone = succeed(None)
        if self.outbox is not None:
            self.outbox.close()
        self._queue.endAll(Closed("this upnode client was closed"))
        self.emit("close")
        return gone

    # Node's name for it.
    end = close

    def status(self) -> Dict[str, Any]:
        """
        A read-only snapshot for humans and monitoring.
        """
        now = self._clock().seconds()
        return {
            "state": self.state,
            "attempts": self.attempts,
            "lastFailure": None if self.lastFailure is None else str(self.lastFailure.value),
            "nextAttemptIn": None if self.nextAttemptAt is None else max(0.0, self.nextAttemptAt - now),
            "queued": len(self._queue),
            "lastPing": self.lastPing,
            "outbox": None if self.outbox is None else self.outbox.depth,
        }



def _destination(connector: Any) -> str:
    try:
        return str(connector.getDestination())
    except Exception:
        return "the server"
