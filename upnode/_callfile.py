# -*- test-case-name: upnode.test.test_outbox -*-
"""
The file behind the durable outbox: an SQLite database of calls (an id,
the method's name, the arguments as JSON), which one client holds at a
time.

L{CallFile} opens it (creating it and its directory, in write-ahead-log
mode, locked for as long as it is open: SQLite's exclusive locking mode),
lists the calls found in it, commits new calls and removes answered ones,
each in one transaction, and says SQLite's errors as what happened to the
file (L{OutboxError}).  What the calls mean, and when they are sent, is
the outbox's (L{upnode._outbox}).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from .errors import UpnodeError

#: SQLite's C{synchronous} settings we accept, by option value.
SYNC_MODES = {"normal": "NORMAL", "full": "FULL"}
_SCHEMA_VERSION = 1
#: Opening a file another process is opening at the same moment: this many
#: tries, about this many seconds apart (each pause drawn between half and
#: one and a half times it, so that two processes whose tries met do not
#: meet again at every try and both give up), before it is "locked".
OPEN_TRIES = 25
OPEN_PAUSE = 0.02

#: How the opening waits between tries, and draws each pause (replaced by
#: the tests).
_pause = time.sleep
_jitter = random.random

#: Files held open by a client of this process (real paths).
_open: Set[str] = set()


class OutboxError(UpnodeError):
    """
    The outbox file cannot be used: corrupt, locked by another client, not
    an outbox, or unwritable.
    """


class CallFile:
    """
    One outbox file, open and locked.

    @param path: the file (created with its directory if need be).
    @param sync: C{"normal"} (the default: a commit survives the process
        being killed, as the write-ahead log is in the OS's hands; an OS
        crash or power loss may lose the last commits) or C{"full"} (every
        commit is on the disk, at the price of an fsync each).

    @ivar db: the SQLite connection.

    @raise OutboxError: the file cannot be used.
    """

    def __init__(self, path: str, sync: str = "normal") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"outboxSync must be one of {sorted(SYNC_MODES)}, not {sync!r}")
        self.path = os.fspath(path)
        self.sync = sync
        self._real = os.path.realpath(self.path)
        if self._real in _open:
            raise OutboxError(f"outbox {self.path!r} is already used by another client of this process")
        self.db = self._openDatabase()
        _open.add(self._real)
        self.closed = False

    def _openDatabase(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise OutboxError(f"cannot open the outbox {self.path!r}: {e}") from None
        # Two processes opening a new file at the same moment meet each
        # other's short locks (creating the file, switching to WAL): the
        # loser tries again, and only a lock that is held is "locked".
        for attempt in range(OPEN_TRIES):
            if attempt:
                _pause(OPEN_PAUSE * (0.5 + _jitter()))
            db = self._tryOpen()
            if db is not None:
                return db
        raise OutboxError(f"outbox {self.path!r} is locked by another process (or another client uses it)")

    def _tryOpen(self) -> Optional[sqlite3.Connection]:
        """
        One try at opening the file: the connection, or None if another
        connection holds a lock on it.
        """
        try:
            db = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self.explain(e, "open") from None
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
        except sqlite3.Error as e:
            db.close()
            if _isLocked(e):
                return None
            raise self.explain(e, "open") from None
        return db

    def explain(self, error: sqlite3.Error, doing: str) -> OutboxError:
        """
        An SQLite error, said as what happened to the outbox.
        """
        name = getattr(error, "sqlite_errorname", "")
        text = str(error)
        if name == "SQLITE_FULL" or "disk is full" in text:
            return OutboxError(f"the outbox file's disk is full: cannot {doing} {self.path!r}: {text}")
        if _isLocked(error):
            return OutboxError(f"the outbox {self.path!r} is locked by another process: cannot {doing} it: {text}")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text or "not a database" in text:
            return OutboxError(f"the outbox {self.path!r} is corrupt or not an SQLite file: cannot {doing} it: {text}")
        if name == "SQLITE_READONLY" or "readonly" in text:
            return OutboxError(f"the outbox {self.path!r} is read-only: cannot {doing} it: {text}")
        return OutboxError(f"cannot {doing} the outbox {self.path!r}: {text}")

    def calls(self) -> Iterable[Tuple[int, str, bytes]]:
        """
        The calls in the file, oldest first: id, method, arguments (JSON).
        """
        return self.db.execute("SELECT id, method, args FROM calls ORDER BY id")

    def add(self, calls: Sequence[Tuple[str, bytes]]) -> List[int]:
        """
        Commit C{calls} (method, arguments as JSON) in one transaction;
        return their ids.

        @raise OutboxError: the file refused the commit (the message says
            why); nothing is committed.
        """
        db = self.db
        try:
            if len(calls) == 1:
                return [_id(db.execute("INSERT INTO calls (method, args) VALUES (?, ?)", calls[0]).lastrowid)]
            with _transaction(db):
                return [_id(db.execute("INSERT INTO calls (method, args) VALUES (?, ?)", row).lastrowid) for row in calls]
        except sqlite3.Error as e:
            raise self.explain(e, "commit calls to") from None

    def remove(self, ids: Sequence[int]) -> None:
        """
        Remove the calls C{ids}, in one transaction.

        @raise OutboxError: the file refused it; nothing is removed.
        """
        db = self.db
        try:
            with _transaction(db):
                db.executemany("DELETE FROM calls WHERE id = ?", [(i,) for i in ids])
        except sqlite3.Error as e:
            raise self.explain(e, f"remove {len(ids)} answered calls from") from None

    def close(self) -> None:
        """
        Release the file (and its lock).
        """
        if self.closed:
            return
        self.closed = True
        self.db.close()
        _open.discard(self._real)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """
    BEGIN, then COMMIT; ROLLBACK where the block or the commit failed
    (unless SQLite rolled back already, as a full disk has it do).
    """
    db.execute("BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def _id(rowid: Optional[int]) -> int:
    assert rowid is not None  # (an INSERT's)
    return rowid


def _isLocked(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "")
    text = str(error)
    return name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text or "busy" in text


__all__ = ["CallFile", "OutboxError", "SYNC_MODES"]
