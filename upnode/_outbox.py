"""
The durable outbox behind C{up.call(..., durable=True)}: calls whose
arguments are plain data, committed to an SQLite file before the Deferred
is returned, sent in order whenever a link is up (again after every
reconnect, and after a restart of the process), and removed once their
reply has been handed over.  At-least-once: a call whose reply was lost
(the link dropped, or the process died before the removal was committed)
is sent again.

Sending is the L{SendingWindow}'s (L{upnode._outboxwindow}): calls go out
in order, within a window that follows the connection's back-pressure as
the C{up()} queue does.  A call the client's own limits would refuse (its
line longer than C{maxLineLength}, nested deeper than C{maxDepth}) is
refused at C{call()}, before it is committed.  A call whose link is lost
while it is the oldest unanswered one, L{Outbox.maxTries} times in a row,
is taken to be refused by the server: it fails (its Deferred, and the
C{outbox-failed} event) and leaves the outbox, so that it cannot hold the
calls behind it for ever.

One file per client: the file is locked for as long as the client holds it
(SQLite's exclusive locking mode), so a second client, in this process or
another, gets L{OutboxError} instead of sharing it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attr
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._callfile import CallFile, OutboxError
from ._interfaces import ILinkSource
from ._json import nestsDeeper
from ._limits import Limits
from ._outboxwindow import SendingWindow
from ._reactor import cancel
from ._sending import errorFirst, replyValue
from .errors import Closed, QueueFull, UpnodeError, UpTimeout

#: The default bound on calls waiting in one outbox.
DEFAULT_MAX = 100_000
#: How many times a link may be lost while one call is the oldest
#: unanswered before that call fails (see L{Outbox.maxTries}).
DEFAULT_TRIES = 10
#: Seconds before a failed commit of removals is tried again.
REMOVAL_RETRY = 1.0
#: A request line's bytes besides its method's JSON and its arguments'
#: (C{{"method":,"arguments":[...,"[Function]"],"callbacks":{"ID":["N"]},"links":[]}}
#: with a callback id of up to 16 digits), less the digits of N.
_ENVELOPE = 87


class OutboxCallFailed(UpnodeError):
    """
    A durable call left the outbox unanswered: the server kept refusing it
    (its link was lost L{Outbox.maxTries} times in a row while it was the
    oldest unanswered call), or it was dropped with L{Outbox.drop}.

    @ivar id: the call's id in the outbox.
    @ivar method: the remote method's name.
    @ivar arguments: its arguments (decoded from JSON: tuples are lists).
    """

    def __init__(self, message: str, id: int, method: str, arguments: Tuple[Any, ...]) -> None:
        UpnodeError.__init__(self, message)
        self.id = id
        self.method = method
        self.arguments = arguments


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OutboxCall:
    """
    One unanswered durable call, as L{Outbox.calls} lists it.

    @ivar id: its id in the outbox (increasing in the order of the calls).
    @ivar method: the remote method's name.
    @ivar args: its arguments.
    @ivar tries: how many links in a row were lost while it was the oldest
        unanswered call (at L{Outbox.maxTries} it fails).
    @ivar sent: whether it is on the current link, waiting for its reply.
    """

    id: int
    method: str
    args: Tuple[Any, ...]
    tries: int
    sent: bool


class OutboxFull(QueueFull):
    """
    The outbox already holds its maximum of unanswered calls.
    """


@attr.s(frozen=True, slots=True, auto_attribs=True)
class OutboxReply:
    """
    The reply to a durable call that no Deferred waits for (it was queued
    before a restart, or its Deferred was cancelled): the payload of the
    client's C{reply} event.

    @ivar id: the call's id in the outbox (increasing in the order of the calls).
    @ivar method: the remote method's name.
    @ivar args: the arguments it was called with (decoded from JSON: tuples
        are lists).
    @ivar values: what the remote passed to its callback, as a tuple.
    """

    id: int
    method: str
    args: Tuple[Any, ...]
    values: Tuple[Any, ...]


class _Pending:
    __slots__ = ("id", "method", "args", "result", "link", "size", "tries")

    def __init__(
        self, id: int, method: str, args: Tuple[Any, ...], result: Optional[Deferred[Any]], size: int
    ) -> None:
        self.id = id
        self.method = method
        self.args = args
        self.result = result
        #: The link this call was last sent on, or None while unsent.
        self.link: Any = None
        #: Its request line's length, at most (see L{lineLength}).
        self.size = size
        #: Links lost in a row while it was the oldest unanswered call.
        self.tries = 0


def _errorFirst(value: Any) -> Any:
    # The Deferred fired with replyValue(values): back to the values.
    return errorFirst(value if type(value) is tuple else (value,) if value is not None else ())


def _decoded(path: str, rowid: int, blob: bytes) -> Tuple[Any, ...]:
    """
    The arguments of the call C{rowid} found in the file.

    @raise OutboxError: they are not a JSON list (the file was changed by
        something else than an outbox).
    """
    try:
        args = orjson.loads(blob)
    except orjson.JSONDecodeError as e:
        raise OutboxError(f"outbox {path!r} is corrupt: the arguments of call {rowid} are not JSON ({e})") from None
    if type(args) is not list:
        raise OutboxError(f"outbox {path!r} is corrupt: the arguments of call {rowid} are not a list")
    return tuple(args)


def _cancelling(result: Any, timer: IDelayedCall) -> Any:
    cancel(timer)
    return result


def encodeArguments(method: str, args: Sequence[Any]) -> bytes:
    """
    The JSON form of a durable call's arguments.

    @raise TypeError: a callable or any other value with no JSON form.
    """
    if type(method) is not str:
        raise TypeError(f"a durable call's method name must be a string, not {method!r:.40}")
    try:
        return orjson.dumps(list(args))
    except TypeError as e:
        if "ecursion" in str(e):
            raise ValueError(
                f"durable {method}()'s arguments nest too deeply to encode: nothing was committed"
            ) from None
        where = _findCallable(args, "argument")
        if where is not None:
            raise TypeError(
                f"durable calls take plain data only: {where} of {method}() is callable, "
                "and a callback cannot outlive the process"
            ) from None
        raise TypeError(f"durable calls take plain data only (JSON): {method}(): {e}") from None


def lineLength(method: str, encoded: bytes, count: int) -> int:
    """
    The most bytes the request line of a call can take (delimiter
    excluded), from its arguments' JSON C{encoded} (C{count} of them).
    """
    return _ENVELOPE + len(orjson.dumps(method)) + len(encoded) + len(str(count))


def checkLimits(method: str, encoded: bytes, count: int, limits: Limits) -> int:
    """
    Refuse a durable call the link would refuse: its line longer than
    C{limits.maxLineLength}, or nested deeper than C{limits.maxDepth} (the
    message adds one level to its arguments).  Returns its line's length.

    @raise ValueError: it would be refused; the message says why.
    """
    size = lineLength(method, encoded, count)
    if size > limits.maxLineLength:
        raise ValueError(
            f"durable {method}() would be a line of {size:,} bytes, past maxLineLength ({limits.maxLineLength:,}): "
            "the link would be closed on it; nothing was committed"
        )
    if nestsDeeper(encoded, limits.maxDepth - 1):
        raise ValueError(
            f"durable {method}()'s arguments nest deeper than maxDepth ({limits.maxDepth}) allows: "
            "the link would be closed on it; nothing was committed"
        )
    return size


def _findCallable(value: Any, where: str) -> Optional[str]:
    if callable(value):
        return where
    if isinstance(value, dict):
        for k, v in value.items():
            found = _findCallable(v, f"{where}[{k!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _findCallable(v, f"{where} {i + 1}" if where == "argument" else f"{where}[{i}]")
            if found:
                return found
    return None


class Outbox:
    """
    Durable calls of one client, in one SQLite file.

    @param path: the file (created with its directory if need be).
    @param maxSize: the most unanswered calls it may hold.
    @param sync: how safe a commit is (see L{CallFile}).
    @param limits: the client's limits: a call past its C{maxLineLength} or
        C{maxDepth} is refused before it is committed.

    @ivar maxTries: how many links in a row may be lost while one call is
        the oldest unanswered before it fails (see L{OutboxCallFailed}).

    @raise OutboxError: the file cannot be used.
    """

    _log = Logger()
    maxTries = DEFAULT_TRIES

    def __init__(
        self, path: str, maxSize: Optional[int] = None, sync: str = "normal", limits: Optional[Limits] = None
    ) -> None:
        if maxSize is None:
            maxSize = DEFAULT_MAX
        if type(maxSize) is not int or maxSize < 1:
            raise ValueError(f"outboxMax must be a positive integer, not {maxSize!r}")
        self.maxSize = maxSize
        self.limits = limits or Limits()
        self.file = CallFile(path, sync)
        self.path = self.file.path
        self.pending: OrderedDict[int, _Pending] = OrderedDict()
        try:
            for rowid, method, blob in self.file.calls():
                args = _decoded(self.path, rowid, blob)
                self.pending[rowid] = _Pending(rowid, method, args, None, lineLength(method, blob, len(args)))
        except BaseException:
            self.file.close()  # (another try, in this process too, may open it)
            raise
        #: How many calls were found waiting in the file when it was opened.
        self.restored = len(self.pending)
        #: Answered calls whose removal is not committed yet.
        self._answered: List[int] = []
        self._commitLater: Optional[IDelayedCall] = None
        self._client: Optional[ILinkSource] = None
        self.closed = False
        #: What sends the calls, on the client's links.
        self.window = SendingWindow(self)

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def depth(self) -> int:
        """
        Calls in the file: the unanswered ones, and the answered ones whose
        removal is not committed yet (removals are committed once per
        reactor turn, and tried again while the disk refuses them).
        """
        return len(self.pending) + len(self._answered)

    @property
    def unanswered(self) -> int:
        """
        Calls not answered yet.
        """
        return len(self.pending)

    # -- Adding ---------------------------------------------------------------

    def add(self, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[Deferred[Any]]:
        """
        Commit C{calls} (C{(method, args)} pairs) in one transaction, then
        send them when a link is up.  Returns a Deferred of each reply.

        @raise TypeError: an argument is not plain data; nothing is committed.
        @raise ValueError: a call would be refused by the link (see
            L{checkLimits}); nothing is committed.
        @raise OutboxFull: they would pass C{maxSize}; nothing is committed.
        @raise OutboxError: the file refused the commit (the message says
            why: its disk is full, it is corrupt...); nothing is committed.
        @raise Closed: the client is closed.
        """
        return [entry.result for entry in self._add(calls)]  # type: ignore[misc]

    def _add(self, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[_Pending]:
        if self.closed:
            raise Closed("this upnode client is closed")
        limits = self.limits
        encoded = []
        sizes = []
        for method, args in calls:
            blob = encodeArguments(method, args)
            sizes.append(checkLimits(method, blob, len(args), limits))
            encoded.append((method, blob))
        if len(self.pending) + len(encoded) > self.maxSize:
            raise OutboxFull(
                f"the outbox holds {len(self.pending)} unanswered calls; {len(encoded)} more would pass "
                f"its maximum of {self.maxSize} (outboxMax)"
            )
        ids = self.file.add(encoded)
        out: List[_Pending] = []
        for rowid, (method, args), size in zip(ids, calls, sizes, strict=True):
            entry = _Pending(rowid, method, tuple(args), None, size)
            entry.result = Deferred(self._forgetter(entry))
            self.pending[rowid] = entry
            self.window.queue(entry)
            out.append(entry)
        self.window.wake()
        return out

    def call(
        self, clock: Any, name: str, args: Sequence[Any], timeout: Optional[float], errorFirst: bool
    ) -> Deferred[Any]:
        """
        One durable C{up.call}.  A C{timeout} fails the Deferred with
        L{UpTimeout}; the call stays in the outbox, and its reply becomes a
        C{reply} event.
        """
        entry = self._add([(name, args)])[0]
        d = entry.result
        assert d is not None
        if errorFirst:
            d.addCallback(_errorFirst)
        if timeout:
            timer = clock.callLater(timeout, self._timedOut, d, entry, name, timeout)
            d.addBoth(_cancelling, timer)
        return d

    def _timedOut(self, d: Deferred[Any], entry: _Pending, name: str, timeout: float) -> None:
        if d.called:
            return
        entry.result = None
        d.errback(Failure(UpTimeout(f"durable {name}() got no reply within {timeout} seconds; it stays in the outbox")))

    def _forgetter(self, entry: _Pending) -> Any:
        def forget(d: Deferred[Any]) -> None:
            # The Deferred was cancelled: the call stays, its reply is an event.
            entry.result = None

        return forget

    # -- Looking, and dropping --------------------------------------------------

    def calls(self, limit: Optional[int] = None) -> List[OutboxCall]:
        """
        The unanswered calls, oldest first (the first C{limit} of them).
        """
        out: List[OutboxCall] = []
        isSent = self.window.isSent
        for entry in self.pending.values():
            if limit is not None and len(out) >= limit:
                break
            out.append(OutboxCall(entry.id, entry.method, entry.args, entry.tries, isSent(entry)))
        return out

    def stuck(self) -> List[OutboxCall]:
        """
        The unanswered calls that have been the oldest when a link was lost
        (at most the oldest one, as they are sent in order).
        """
        return [call for call in self.calls(1) if call.tries]

    def drop(self, id: int) -> OutboxCall:
        """
        Take the unanswered call C{id} out of the outbox (the removal is
        committed at once); its Deferred, if any, fails with
        L{OutboxCallFailed}, and a late reply to it is ignored.

        @raise KeyError: no unanswered call has this id.
        @raise OutboxError: the file refused the removal; it is tried again.
        """
        entry = self.pending.get(id)
        if entry is None:
            raise KeyError(f"no unanswered durable call has the id {id!r}")
        dropped = OutboxCall(entry.id, entry.method, entry.args, entry.tries, entry.link is not None)
        self._done(entry)
        error = OutboxCallFailed(
            f"durable call {entry.id} ({entry.method}) was dropped from the outbox", entry.id, entry.method, entry.args
        )
        if entry.result is not None and not entry.result.called:
            entry.result.errback(Failure(error))
        self.window.freed()
        self._commitOrRaise()
        return dropped

    def _commitOrRaise(self) -> None:
        failure = self.commitRemovals()
        if failure is not None:
            raise failure

    # -- Sending (the window's) ------------------------------------------------

    def attach(self, client: ILinkSource) -> None:
        """
        Send through C{client}'s links, and tell it of replies and failures.
        """
        self._client = client
        self.window.attach(client)

    def lostWhileOldest(self, entry: _Pending) -> None:
        """
        A link was lost while C{entry} was the oldest call unanswered on it:
        a call the server refuses (it closes the link on it) is that each
        time, and fails after L{maxTries}.
        """
        entry.tries += 1
        if entry.tries >= self.maxTries:
            self._refused(entry)

    def _refused(self, entry: _Pending) -> None:
        self._done(entry)
        error = OutboxCallFailed(
            f"durable call {entry.id} ({entry.method}) failed: its link was lost {entry.tries} times in a row while "
            "it was the oldest unanswered call (the server may refuse it: see its log); it left the outbox",
            entry.id,
            entry.method,
            entry.args,
        )
        result = entry.result
        if result is not None and not result.called:
            result.errback(Failure(error))
        client = self._client
        if client is not None and client.listeners("outbox-failed"):
            client.emit("outbox-failed", error)
        else:
            self._log.error("{error}", error=str(error))

    def answered(self, entry: _Pending, values: Tuple[Any, ...]) -> None:
        """
        The reply to C{entry}: it leaves the outbox, and its Deferred fires
        (or, with none waiting, the client's C{reply} event).
        """
        self._done(entry)
        result = entry.result
        if result is not None and not result.called:
            result.callback(replyValue(values))
        elif self._client is not None:
            reply = OutboxReply(entry.id, entry.method, entry.args, values)
            if self._client.listeners("reply"):
                self._client.emit("reply", reply)
            else:
                self._log.warn(
                    "Nobody listens for 'reply': the reply to durable call {id} ({method}) is dropped",
                    id=entry.id,
                    method=entry.method,
                )

    def cannotSend(self, entry: _Pending, error: Exception) -> None:
        """
        A call that can never be sent (the remote lacks its method): it
        leaves the outbox, and its Deferred fails (or an C{error} event).
        """
        self._done(entry)
        if entry.result is not None and not entry.result.called:
            entry.result.errback(Failure(error))
        elif self._client is not None:
            self._client.emit("error", Failure(error))

    def _done(self, entry: _Pending) -> None:
        self.window.release(entry)
        del self.pending[entry.id]
        self._answered.append(entry.id)
        if self._commitLater is None and self._client is not None:
            # Removals are committed together, once per reactor turn: a
            # reply's removal lost in a crash only means a duplicate.
            self._commitLater = self._client.clock.callLater(0, self.commitRemovals)

    def commitRemovals(self) -> Optional[OutboxError]:
        """
        Commit the removals of the calls answered since the last commit.
        If the file refuses them (a full disk), they are kept and tried
        again L{REMOVAL_RETRY} seconds later, and the error is logged and
        returned.
        """
        cancel(self._commitLater)
        self._commitLater = None
        answered = self._answered
        if not answered or self.closed:
            return None
        try:
            self.file.remove(answered)
        except OutboxError as error:
            self._log.error("{error}; tried again in {seconds} s", error=str(error), seconds=REMOVAL_RETRY)
            if self._client is not None:
                self._commitLater = self._client.clock.callLater(REMOVAL_RETRY, self.commitRemovals)
            return error
        self._answered = []
        return None

    # -- Closing --------------------------------------------------------------

    def close(self) -> None:
        """
        Commit what was answered, release the file, fail waiting Deferreds
        with L{Closed} (their calls stay in the file for the next start).
        """
        if self.closed:
            return
        self.commitRemovals()
        cancel(self._commitLater)
        self._commitLater = None
        self.closed = True
        self.window.stop()
        self.file.close()
        for entry in list(self.pending.values()):
            if entry.result is not None and not entry.result.called:
                entry.result.errback(Failure(Closed("the upnode client was closed; the call stays in the outbox")))

    def status(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "depth": self.depth,
            "unanswered": len(self.pending),
            "max": self.maxSize,
            "restored": self.restored,
            "stuck": [call.id for call in self.stuck()],
        }


__all__ = [
    "DEFAULT_MAX",
    "Outbox",
    "OutboxCall",
    "OutboxCallFailed",
    "OutboxError",
    "OutboxFull",
    "OutboxReply",
    "checkLimits",
    "encodeArguments",
]
