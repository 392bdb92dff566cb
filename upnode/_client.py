# -*- test-case-name: upnode.test.test_client,upnode.test.test_lifecycle,upnode.test.test_model -*-
"""
The upnode client's surface: C{UpnodeClientFactory}, the
C{ReconnectingClientFactory} that is also C{up()}.  It owns the options and
their checks, the transactions' entry (C{up()}, C{up.call}, C{callMany})
and their queue, and turns the factory's callbacks into inputs of the
client's state machine (L{upnode._lifecycle}), which owns the link.

C{up()} on a link that is up is every transaction's path: it reads the link
the machine mirrors for it, and nothing else.
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, overload

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConnector, IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._arity import callLikeJavaScript
from ._backoff import backoffPolicy
from ._calls import Call
from ._events import EventEmitter
from ._expose import Cons, withPing
from ._interfaces import LinkWaiter
from ._lifecycle import ClientMachine, Up
from ._limits import Limits, seconds
from ._outbox import Outbox
from ._protocol import DnodeProtocol
from ._queue import TransactionQueue
from ._reactor import resolve

ConnectCallback = Callable[[Any, DnodeProtocol], Any]


def emitUp(remote: Any, conn: DnodeProtocol) -> None:
    """
    The default connect callback: expose the raw remote to transactions.
    """
    conn.emit("up", remote)


def _delay(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


class UpnodeClientFactory(ReconnectingClientFactory, EventEmitter):
    """
    Keeps a dnode link up.  Calling the factory (C{up()}) is a transaction.

    Use it through L{upnode.connect}, or directly with
    C{reactor.connectTCP(host, port, factory)} (or C{connectSSL},
    C{connectUNIX}).

    A façade over the client's state machine (L{upnode._lifecycle}):
    C{ReconnectingClientFactory}'s callbacks are its inputs, and its knobs
    (C{initialDelay}, C{factor}, C{maxDelay}, C{jitter}, C{maxRetries})
    take effect when set, at the next delay.  Transactions on a link that
    is up (C{up(cb)}, C{up()}) never enter the machine: they read the link
    it mirrors for them.

    Times are in seconds.

    @param cons: what we expose to the server (dict, object or callable).
    @param onRemote: C{onRemote(remote, conn)}, run on every new link before
        any queued transaction; it must call C{conn.emit("up", obj)}
        (C{conn.emit("up")} with no object exposes the raw remote).
    @param ping: seconds between pings; 0 disables them.
    @param timeout: seconds a ping may take before the link is dropped.
    @param reconnect: seconds before the first reconnection attempt
        (C{initialDelay}).
    @param backoff: factor by which that delay grows on each failed attempt
        (C{factor}).
    @param maxDelay: the cap on that delay.
    @param jitter: each delay is drawn uniformly from
        C{delay * (1 - jitter)} to C{delay * (1 + jitter)}.
    @param handshakeTimeout: seconds from the start of an attempt (the TCP
        connect and a TLS handshake included) to C{"up"}; past it the
        attempt is stopped (or the link dropped), an C{error}
        (L{UpTimeout}) emitted, and another attempt made after the delay.
        0 waits forever.
    @param maxQueue: the most transactions that may wait; None is no bound.
        Calls with C{retry} put back after a lost link are not counted
        against it: they were admitted once.
    @param outbox: the SQLite file of the durable outbox, for
        C{call(..., durable=True)}; C{outboxMax} bounds it and C{outboxSync}
        (C{"normal"} or C{"full"}) sets its durability (see L{Outbox}).

    @ivar backoffPolicy: C{retry -> seconds}, the delay before each retry
        of an outage (0 for the first), from L{upnode._backoff.backoffPolicy};
        rebuilt when a knob is set.
    @ivar maxRetries: past this many retries of one outage, the client gives
        up: its state is C{gaveUp} and waiting transactions fail with the
        last failure.  None (the default) never gives up.
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
        self.cons = cons
        self.onRemote = onRemote or emitUp
        self.ping = ping
        self.timeout = timeout
        self.random = random or _random.Random()
        # The knobs, checked; each setter rebuilds the policy.
        self._knobs: Dict[str, float] = {}
        self.initialDelay = reconnect
        self.factor = backoff
        self.maxDelay = maxDelay
        self.jitter = jitter
        self.delay = self.initialDelay
        self.continueTrying = True
        self.handshakeTimeout = handshakeTimeout
        self.limits = limits or Limits()
        self._clockGiven = clock
        #: The link that is up, for up()'s hot path (written by the machine).
        self._live: Optional[Up] = None
        self._queue = TransactionQueue(self.clock, self._fire, self._end, maxQueue)
        #: The durable outbox (see L{upnode._outbox}), with the C{outbox} option.
        self.outbox: Optional[Outbox] = None
        self._machine = ClientMachine(self.emit, self._queue, self, self, self._runCallback)
        # Bound once: handed to every up(cb) on the link that is up.
        self._callbackFailed = self._callbackFailed  # type: ignore[method-assign]
        if outbox is not None:
            self.outbox = Outbox(outbox, outboxMax, outboxSync, self.limits)
            self.outbox.attach(self)

    @property  # type: ignore[override]
    def clock(self) -> IReactorTime:
        """
        The clock of every timer (the global reactor unless one was given).
        """
        clock = self._clockGiven = resolve(self._clockGiven)
        return clock

    @clock.setter
    def clock(self, value: IReactorTime) -> None:
        self._clockGiven = value

    # -- The knobs: checked, and honoured when set ----------------------------------

    def _knob(self, name: str, value: float) -> None:
        self._knobs[name] = value
        if len(self._knobs) == 4:
            k = self._knobs
            self.backoffPolicy = backoffPolicy(
                k["initialDelay"], k["maxDelay"], k["factor"], k["jitter"], self.random.random
            )

    @property
    def initialDelay(self) -> float:
        """
        Seconds before the first retry of an outage (the C{reconnect} option).
        """
        return self._knobs["initialDelay"]

    @initialDelay.setter
    def initialDelay(self, value: float) -> None:
        self._knob("initialDelay", seconds("reconnect", value))

    @property
    def factor(self) -> float:
        """
        How much the delay grows at each retry (the C{backoff} option).
        """
        return self._knobs["factor"]

    @factor.setter
    def factor(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
            raise ValueError(f"backoff must be >= 1, not {value!r}")
        self._knob("factor", float(value))

    @property  # type: ignore[override]
    def maxDelay(self) -> float:
        """
        The cap on the delay, in seconds.
        """
        return self._knobs["maxDelay"]

    @maxDelay.setter
    def maxDelay(self, value: float) -> None:
        self._knob("maxDelay", _delay("maxDelay", value))

    @property
    def jitter(self) -> float:
        """
        The spread of each delay, in [0, 1): C{delay * (1 +- jitter)}.
        """
        return self._knobs["jitter"]

    @jitter.setter
    def jitter(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"jitter must be in [0, 1), not {value!r}")
        self._knob("jitter", float(value))

    @property
    def jitterFraction(self) -> float:
        """
        The former name of L{jitter}.
        """
        return self.jitter

    # -- What the machine knows, for reading ------------------------------------------

    @property
    def state(self) -> str:
        """
        C{idle}, C{connecting}, C{handshaking}, C{up}, C{waiting}, C{closed}
        or C{gaveUp}: the label of the machine's state, nothing else.
        """
        return self._machine.state.label

    @property
    def closed(self) -> bool:
        """
        Whether C{close()} was called.
        """
        return self._machine.state.label == "closed"

    @property
    def remote(self) -> Any:
        """
        What the connect callback emitted on the link that is up, or None.
        """
        state = self._machine.state
        return state.remote if isinstance(state, Up) else None

    @property
    def conn(self) -> Optional[DnodeProtocol]:
        """
        The connection of the link that is up, or None.
        """
        state = self._machine.state
        return state.conn if isinstance(state, Up) else None

    @property
    def attempts(self) -> int:
        """
        Connection attempts so far.
        """
        return self._machine.attempts

    @property
    def retries(self) -> int:
        """
        Retries of the current outage so far (RCF's count).
        """
        return self._machine.retries

    @retries.setter
    def retries(self, value: int) -> None:
        self._machine.retries = value

    @property
    def lastFailure(self) -> Optional[Failure]:
        return self._machine.lastFailure

    @property
    def lastPing(self) -> Optional[float]:
        return self._machine.lastPing

    @property
    def nextAttemptAt(self) -> Optional[float]:
        return self._machine.nextAttemptAt

    # -- Transactions ------------------------------------------------------------

    @overload
    def __call__(self, *, timeout: Optional[float] = None) -> Deferred[Any]: ...

    @overload
    def __call__(self, timeout: float, /) -> Deferred[Any]: ...

    @overload
    def __call__(self, callback: Callable[..., Any], /) -> None: ...

    @overload
    def __call__(self, timeout: Optional[float], callback: Callable[..., Any], /) -> None: ...

    def __call__(self, *args: Any, timeout: Optional[float] = None) -> Optional[Deferred[Any]]:
        """
        A transaction.  C{up()} and C{up(timeout=t)} return a Deferred that
        fires with the remote once the link is up, or fails with
        L{UpTimeout} after C{t} seconds, L{Closed} on C{close()}, or the
        last failure once the client has given up (C{maxRetries}).  Node's
        forms C{up(cb)} and C{up(t, cb)} call C{cb(remote, conn)}, or C{cb()}
        with no arguments when the transaction ends without a link.
        """
        live = self._live
        if live is not None and timeout is None and len(args) == 1 and callable(args[0]):
            # up(cb) on a link that is up and that nobody waits for (the
            # machine writes _live only then): every transaction's path,
            # with nothing made for it.
            try:
                callLikeJavaScript(args[0], live.arguments, self._callbackFailed)
            except Exception:
                self.emit("error", Failure())  # with nobody listening, a logged failure
            return None
        if args and callable(args[-1]):
            callback = args[-1]
            args = args[:-1]
        else:
            callback = None
        if args or timeout is not None:
            if len(args) > 1 or (args and timeout is not None):
                raise TypeError("up() takes at most a timeout and a callback")
            if args:
                timeout = args[0]
            if timeout is not None:
                timeout = seconds("timeout", timeout)
        if live is not None:
            if callback is not None:
                self._runCallback(callback, live.arguments)
                return None
            return succeed(live.remote)
        refusal = self._machine.refusal()
        if refusal is not None:
            if callback is not None:
                self._runCallback(callback, ())
                return None
            return fail(refusal)
        if callback is not None:
            self._queue.add(callback, timeout)
            return None
        entry = None
        result: Deferred[Any] = Deferred(lambda d: self._queue.remove(entry))
        entry = self._queue.add(result, timeout)
        return result

    def whenUp(self, waiter: LinkWaiter) -> None:
        """
        L{upnode._interfaces.ILinkSource}: C{waiter.linkUp(remote, link)}
        now, or once the link is up.
        """
        live = self._live
        if live is not None:
            waiter.linkUp(live.remote, live)
            return
        refusal = self._machine.refusal()
        if refusal is not None:
            waiter.linkNever(refusal)
            return
        self._queue.add(waiter)
        waiter.queued = True

    def stopWaiting(self, waiter: LinkWaiter) -> None:
        """
        L{upnode._interfaces.ILinkSource}: a queued waiter has ended.
        """
        self._queue.remove(waiter)

    def _fire(self, waiter: Any) -> None:
        self._machine.fire(waiter)

    def _end(self, waiter: Any, error: Exception) -> None:
        self._machine.end(waiter, error)

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
        (whose C{reason} says what ended the link) if the link drops before
        the reply, and with L{Closed} on C{close()}.  With C{retry}, a call
        whose link dropped is sent again on the next link, ahead of calls
        made later, until it is answered or times out: at-least-once, so the
        server may see it more than once.  With C{errorFirst}, the reply is
        read as Node's C{(err, result)}: a non-null C{err} fails the call
        with L{RemoteError}.

        With C{durable}, the call (plain data only) is committed to the
        outbox file before this returns, and sent until answered, across
        reconnects and restarts (see the README's "Durable calls").

        @raise QueueFull: C{maxQueue} transactions already wait.
        """
        if timeout is not None:
            timeout = seconds("timeout", timeout)
        if durable:
            result = self._durable().call(self.clock, name, args, timeout, errorFirst)
        else:
            call = Call(self, name, args, timeout, retry, errorFirst)
            live = self._live
            if live is not None:
                call.linkUp(live.remote, live)  # (whenUp's own first case)
            else:
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

    # -- ReconnectingClientFactory's callbacks: the machine's inputs -------------------

    def startedConnecting(self, connector: IConnector) -> None:
        self.connector = connector  # type: ignore[assignment]
        self._machine.attemptStarted(connector)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._machine.attemptFailed(connector, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """
        Nothing: the connection itself reported its loss to the machine
        (the one loss path), before its connector calls this.
        """

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = self.protocol(self.cons, self.limits, self.clock, withPing)
        conn.factory = self
        conn.isClient = True
        if not self._machine.linkBuilt(conn):
            # Closed, given up, or not connecting: dropped as it connects
            # (returning None would break wrapping factories such as TLS's).
            conn.refused = True
        return conn

    def retry(self, connector: Optional[IConnector] = None) -> None:
        """
        Connect again after the delay that C{backoffPolicy} gives for this
        retry (or give up, past C{maxRetries}).
        """
        self._machine.retryWanted(connector or self.connector)

    def stopTrying(self) -> None:
        """
        Stop reconnecting: cancel the waiting retry (the client gives up),
        or the attempt under way; a link that is up stays up, and the client
        gives up when it is lost.
        """
        self.continueTrying = False
        self._machine.stopTrying()

    def resetDelay(self) -> None:
        """
        The link came up: the next outage starts the schedule again.
        """
        self.delay = self.initialDelay
        self._machine.retries = 0

    # -- Closing ---------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """
        Stop reconnecting, end the link, fail every waiting transaction with
        L{Closed}, and emit C{close}.  The Deferred fires once the link is
        gone.
        """
        gone: Deferred[None] = Deferred()
        self._machine.close(gone)
        return gone

    # Node's name for it.
    end = close

    def status(self) -> Dict[str, Any]:
        """
        A read-only snapshot for humans and monitoring.
        """
        machine = self._machine
        now = self.clock.seconds()
        nextAttemptAt = machine.nextAttemptAt
        return {
            "state": machine.state.label,
            "attempts": machine.attempts,
            "lastFailure": None if machine.lastFailure is None else str(machine.lastFailure.value),
            "nextAttemptIn": None if nextAttemptAt is None else max(0.0, nextAttemptAt - now),
            "queued": len(self._queue),
            "lastPing": machine.lastPing,
            "outbox": None if self.outbox is None else self.outbox.depth,
        }
