"""
The durable outbox behind C{up.call(..., durable=True)}: calls whose
arguments are plain data, committed to an SQLite file before the Deferred
is returned, sent in order whenever a link is up (again after every
reconnect, and after a restart of the process), and removed once their
reply has been handed over.  At-least-once: a call whose reply was lost
(the link dropped, or the process died before the removal was committed)
is sent again.

One file per client: the file is locked for as long as the client holds it
(SQLite's exclusive locking mode), so a second client, in this process or
another, gets L{OutboxError} instead of sharing it.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Set, Tuple

import attr
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._interfaces import ILinkSource, LinkWaiter
from ._reactor import cancel
from ._sending import errorFirst, methodOf, replyValue
from .errors import Closed, DeadRemoteError, QueueFull, UpnodeError, UpTimeout

#: The default bound on calls waiting in one outbox.
DEFAULT_MAX = 100_000
#: SQLite's C{synchronous} settings we accept, by option value.
SYNC_MODES = {"normal": "NORMAL", "full": "FULL"}
_SCHEMA_VERSION = 1

#: Outbox files held open by a client of this process (real paths).
_open: Set[str] = set()


class OutboxError(UpnodeError):
    """
    The outbox file cannot be used: corrupt, locked by another client, not
    an outbox, or unwritable.
    """


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
    __slots__ = ("id", "method", "args", "result", "link")

    def __init__(self, id: int, method: str, args: Tuple[Any, ...], result: Optional[Deferred[Any]]) -> None:
        self.id = id
        self.method = method
        self.args = args
        self.result = result
        #: The link this call was last sent on, or None while unsent.
        self.link: Any = None


def _errorFirst(value: Any) -> Any:
    # The Deferred fired with replyValue(values): back to the values.
    return errorFirst(value if type(value) is tuple else (value,) if value is not None else ())


class _LinkWait(LinkWaiter):
    """
    The outbox's place in the client's queue: one wait at a time.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def linkUp(self, remote: Any, link: Any) -> None:
        self.done = True
        self.outbox._linkReady(remote, link.conn)

    def linkNever(self, error: Exception) -> None:
        self.done = True
        self.outbox._notReady()

    def linkLost(self, error: Exception) -> None:
        pass  # never in flight


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
        where = _findCallable(args, "argument")
        if where is not None:
            raise TypeError(
                f"durable calls take plain data only: {where} of {method}() is callable, "
                "and a callback cannot outlive the process"
            ) from None
        raise TypeError(f"durable calls take plain data only (JSON): {method}(): {e}") from None


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
    @param sync: C{"normal"} (the default: a commit survives the process
        being killed, as the write-ahead log is in the OS's hands; an OS
        crash or power loss may lose the last commits) or C{"full"} (every
        commit is on the disk, at the price of an fsync each).

    @raise OutboxError: the file cannot be used.
    """

    _log = Logger()

    def __init__(self, path: str, maxSize: Optional[int] = None, sync: str = "normal") -> None:
        if maxSize is None:
            maxSize = DEFAULT_MAX
        if type(maxSize) is not int or maxSize < 1:
            raise ValueError(f"outboxMax must be a positive integer, not {maxSize!r}")
        if sync not in SYNC_MODES:
            raise ValueError(f"outboxSync must be one of {sorted(SYNC_MODES)}, not {sync!r}")
        self.path = os.fspath(path)
        self.maxSize = maxSize
        self.sync = sync
        self._real = os.path.realpath(self.path)
        if self._real in _open:
            raise OutboxError(f"outbox {self.path!r} is already used by another client of this process")
        self._db = self._openDatabase()
        _open.add(self._real)
        self.pending: OrderedDict[int, _Pending] = OrderedDict()
        for rowid, method, blob in self._db.execute("SELECT id, method, args FROM calls ORDER BY id"):
            self.pending[rowid] = _Pending(rowid, method, tuple(orjson.loads(blob)), None)
        #: How many calls were found waiting in the file when it was opened.
        self.restored = len(self.pending)
        #: Unanswered calls not yet sent on the current link, in order.
        self._unsent: Deque[_Pending] = deque(self.pending.values())
        self._answered: List[int] = []
        self._commitLater: Optional[IDelayedCall] = None
        self._client: Optional[ILinkSource] = None
        self._waiting: Optional[_LinkWait] = None
        self._link: Any = None
        self._remote: Any = None
        self.closed = False

    def _openDatabase(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"cannot open the outbox {self.path!r}: {e}") from None
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"outbox {self.path!r}: SQLite refused WAL mode ({mode})")
            db.execute(f"PRAGMA synchronous={SYNC_MODES[self.sync]}")
            # Take the exclusive lock now, so that a second user fails here.
            db.execute("BEGIN IMMEDIATE")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise OutboxError(f"outbox {self.path!r} is corrupt: {check}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " method TEXT NOT NULL, args BLOB NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS outbox (version INTEGER NOT NULL)")
            versions = [row[0] for row in db.execute("SELECT version FROM outbox")]
            if not versions:
                db.execute("INSERT INTO outbox VALUES (?)", (_SCHEMA_VERSION,))
            elif versions != [_SCHEMA_VERSION]:
                raise OutboxError(f"outbox {self.path!r} has version {versions}, not {_SCHEMA_VERSION}")
            columns = [row[1] for row in db.execute("PRAGMA table_info(calls)")]
            if columns != ["id", "method", "args"]:
                raise OutboxError(f"{self.path!r} is not an upnode outbox (its calls table has {columns})")
            db.execute("COMMIT")
        except OutboxError:
            db.close()
            raise
        except sqlite3.OperationalError as e:
            db.close()
            if "locked" in str(e) or "busy" in str(e):
                raise OutboxError(f"outbox {self.path!r} is locked: another client (or process) uses it") from None
            raise OutboxError(f"cannot use the outbox {self.path!r}: {e}") from None
        except sqlite3.DatabaseError as e:
            db.close()
            raise OutboxError(f"outbox {self.path!r} is corrupt or not an SQLite file: {e}") from None
        return db

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def depth(self) -> int:
        """
        Unanswered calls (what is in the file, less the removals not yet committed).
        """
        return len(self.pending)

    # -- Adding ---------------------------------------------------------------

    def add(self, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[Deferred[Any]]:
        """
        Commit C{calls} (C{(method, args)} pairs) in one transaction, then
        send them when a link is up.  Returns a Deferred of each reply.

        @raise TypeError: an argument is not plain data; nothing is committed.
        @raise OutboxFull: they would pass C{maxSize}; nothing is committed.
        @raise Closed: the client is closed.
        """
        return [entry.result for entry in self._add(calls)]  # type: ignore[misc]

    def _add(self, calls: Sequence[Tuple[str, Sequence[Any]]]) -> List[_Pending]:
        if self.closed:
            raise Closed("this upnode client is closed")
        encoded = [(method, encodeArguments(method, args)) for method, args in calls]
        if len(self.pending) + len(encoded) > self.maxSize:
            raise OutboxFull(
                f"the outbox holds {len(self.pending)} unanswered calls; {len(encoded)} more would pass "
                f"its maximum of {self.maxSize} (outboxMax)"
            )
        db = self._db
        try:
            if len(encoded) == 1:
                ids = [db.execute("INSERT INTO calls (method, args) VALUES (?, ?)", encoded[0]).lastrowid]
            else:
                db.execute("BEGIN")
                try:
                    ids = [db.execute("INSERT INTO calls (method, args) VALUES (?, ?)", row).lastrowid for row in encoded]
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as e:
            raise OutboxError(f"cannot commit to the outbox {self.path!r}: {e}") from None
        out: List[_Pending] = []
        for rowid, (method, args) in zip(ids, calls, strict=True):
            assert rowid is not None
            entry = _Pending(rowid, method, tuple(args), None)
            entry.result = Deferred(self._forgetter(entry))
            self.pending[rowid] = entry
            self._unsent.append(entry)
            out.append(entry)
        self._wake()
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

    # -- Sending --------------------------------------------------------------

    def attach(self, client: ILinkSource) -> None:
        self._client = client
        client.on("down", self._down)
        self._wake()

    def _wake(self) -> None:
        """
        Something is unsent: ask for the remote, unless we already have.
        """
        client = self._client
        if client is None or self._waiting is not None or self.closed:
            return
        if self._link is not None and self._link is client.conn:
            self._send(self._remote)
            return
        # Set first: when the link is up, it is called at once.
        waiting = self._waiting = _LinkWait(self)
        client.whenUp(waiting)

    def _notReady(self) -> None:
        self._waiting = None  # the client was closed, or gave up

    def _linkReady(self, remote: Any, conn: Any) -> None:
        self._waiting = None
        self._link = conn
        self._remote = remote
        self._send(remote)

    def _send(self, remote: Any) -> None:
        link = self._link
        client = self._client
        unsent = self._unsent
        while unsent:
            if self.closed or client is None or client.conn is not link:
                return
            entry = unsent.popleft()
            if entry.link is link or self.pending.get(entry.id) is not entry:
                continue
            try:
                method = methodOf(remote, entry.method)
            except AttributeError as e:
                self._failed(entry, e)
                continue
            entry.link = link
            try:
                method(*entry.args, lambda *values, entry=entry, link=link: self._reply(entry, link, values))
            except DeadRemoteError:
                entry.link = None
                unsent.appendleft(entry)  # the link is going: the next one
                return
            except Exception as e:
                entry.link = None
                self._log.failure("A durable call to {method}() could not be sent", method=entry.method)
                self._failed(entry, e)

    def _down(self) -> None:
        self._link = self._remote = None
        # Everything unanswered goes again, in order, on the next link.
        self._unsent = deque(self.pending.values())
        if self.pending:
            self._wake()

    def _reply(self, entry: _Pending, link: Any, values: Tuple[Any, ...]) -> None:
        if self.pending.get(entry.id) is not entry or entry.link is not link:
            return  # answered already
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

    def _failed(self, entry: _Pending, error: Exception) -> None:
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
        del self.pending[entry.id]
        self._answered.append(entry.id)
        if self._commitLater is None and self._client is not None:
            # Removals are committed together, once per reactor turn: a
            # reply's removal lost in a crash only means a duplicate.
            self._commitLater = self._client.clock.callLater(0, self.commitRemovals)

    def commitRemovals(self) -> None:
        """
        Commit the removals of the calls answered since the last commit.
        """
        cancel(self._commitLater)
        self._commitLater = None
        answered, self._answered = self._answered, []
        if not answered:
            return
        db = self._db
        try:
            db.execute("BEGIN")
            db.executemany("DELETE FROM calls WHERE id = ?", [(i,) for i in answered])
            db.execute("COMMIT")
        except sqlite3.Error as e:
            self._log.error("Cannot commit removals to the outbox {path}: {e}", path=self.path, e=e)
            if db.in_transaction:
                db.execute("ROLLBACK")

    # -- Closing --------------------------------------------------------------

    def close(self) -> None:
        """
        Commit what was answered, release the file, fail waiting Deferreds
        with L{Closed} (their calls stay in the file for the next start).
        """
        if self.closed:
            return
        self.commitRemovals()
        self.closed = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting.queued and self._client is not None:
            waiting.done = True
            waiting.queued = False
            self._client.stopWaiting(waiting)
        self._db.close()
        _open.discard(self._real)
        for entry in list(self.pending.values()):
            if entry.result is not None and not entry.result.called:
                entry.result.errback(Failure(Closed("the upnode client was closed; the call stays in the outbox")))

    def status(self) -> Dict[str, Any]:
        return {"path": self.path, "depth": len(self.pending), "max": self.maxSize, "restored": self.restored}


__all__ = ["DEFAULT_MAX", "Outbox", "OutboxError", "OutboxFull", "OutboxReply", "encodeArguments"]
