# -*- test-case-name: upnode.test.test_tables -*-
"""
The two callback tables of one connection.

L{LocalCallbacks}: our callables the peer may call, by id, each with how
many positional arguments it takes, worked out once when it is first
handed out (not on every call that reaches it); the ids sent more than
once; and, for a server, the bound on how many the peer may make us keep.

L{RemoteProxies}: the peer's callbacks our code holds, as weakly held
proxies; a proxy that dies is culled (the peer is told to forget its id),
in batches.

Neither refers to the connection: what they must tell it goes through
callables handed in, let go of by L{RemoteProxies.stop}.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.interfaces import IDelayedCall

from ._arity import positionalArity
from ._json import encodeLine
from ._reactor import cancel
from ._remote import RemoteCallback, Sender
from .errors import ProtocolError, RejectedMessage

#: Culls go out in batches of this many ids, or after this many seconds.
CULL_BATCH = 64
CULL_DELAY = 0.05
#: Culls of answered calls that have waited CULL_DELAY leave with the next
#: received chunk's answers, or on their own after this many seconds more.
CULL_IDLE = 1.0

#: A callable, how many positional arguments it takes and how many of them
#: it requires (see L{upnode._arity.positionalArity}).
Entry = Tuple[Callable[..., Any], int, int]


class TooManyCallbacks(ProtocolError):
    """
    A server's peer would have us keep more of our callables than
    C{maxLocalCallbacks}.
    """


def entryFor(target: Callable[..., Any]) -> Entry:
    """
    C{target} with its arity, as the tables keep it.
    """
    return (target, *positionalArity(target))


class LocalCallbacks:
    """
    Our callables the peer may call, by id, and the reverse, so that a
    callable sent again keeps its id.

    @ivar entries: id to L{Entry}.
    """

    def __init__(self, limit: Optional[int]) -> None:
        """
        @param limit: how many the peer may make us keep at once (a
            server's peer that never culls, and a method that hands out
            new callables, would have us keep every one for ever); None
            for no bound (a client keeps what its server does not cull).
        """
        self.entries: Dict[int, Entry] = {}
        self.ids: Dict[Any, int] = {}
        # Ids sent in more than one message: a cull for them may cross a
        # later message in flight, so they are kept (see cull).  (A dict
        # as a set: an empty one is a quarter of an empty set's size.)
        self.resent: Dict[int, None] = {}
        self.nextId = 0
        #: How many the peer may make us keep; -1: no bound.
        self.limit = limit if limit is not None else -1

    def __len__(self) -> int:
        return len(self.entries)

    def idOf(self, callback: Callable[..., Any]) -> int:
        """
        The id of C{callback}, handed out now if it has none (an encoder's
        callback: it is on every request's path).

        @raise TooManyCallbacks: past the bound; nothing is handed out.
        """
        key = callback
        try:
            callbackId = self.ids.get(key)
        except TypeError:
            key = _identity(callback)
            callbackId = self.ids.get(key)
        if callbackId is not None:
            self.resent[callbackId] = None
            return callbackId
        if len(self.entries) == self.limit:
            raise TooManyCallbacks(f"the peer would have us keep more than {self.limit} of our callbacks")
        callbackId = self.nextId
        self.nextId = callbackId + 1
        self.ids[key] = callbackId
        # (entryFor, inline: every callback sent comes here.)
        self.entries[callbackId] = (callback, *positionalArity(callback))
        return callbackId

    def takeBack(self, firstNewId: int) -> None:
        """
        Forget the ids handed out from C{firstNewId} on: the message they
        were for was never sent.
        """
        for callbackId in range(firstNewId, self.nextId):
            entry = self.entries.pop(callbackId, None)
            if entry is not None:  # (the tables are empty once the link is lost)
                self.ids.pop(_identity(entry[0]), None)
            self.resent.pop(callbackId, None)
        self.nextId = firstNewId

    def cull(self, ids: Any) -> None:
        """
        The peer forgets C{ids}: so do we, where that is certain.

        @raise RejectedMessage: C{ids} is not a list of integers (the
            integers among them are culled all the same).
        """
        if type(ids) is not list:
            raise RejectedMessage("cull arguments must be a list")
        entries, keys, resent = self.entries, self.ids, self.resent
        bad: List[Any] = []
        for callbackId in ids:
            if type(callbackId) is not int:
                bad.append(callbackId)
            # A cull is only certain for an id we sent once.  For one sent
            # again, the peer may have culled its first proxy before our later
            # message reached it and made a new one, which it may still call:
            # forgetting the id would break that call.  Such ids are few (one
            # per reused callable), so keeping them keeps the table bounded.
            elif callbackId not in resent:
                entry = entries.pop(callbackId, None)
                if entry is not None:
                    callback = entry[0]
                    try:  # _identity(callback), inline: a cull names many ids
                        keys.pop(callback, None)
                    except TypeError:
                        keys.pop(_identity(callback), None)
        if bad:
            raise RejectedMessage(f"cull ids must be integers, not {bad[0]!r:.40}")

    def clear(self) -> None:
        self.entries.clear()
        self.ids.clear()
        self.resent.clear()


class _ProxyRef(weakref.ref):  # type: ignore[type-arg]
    """
    A weak reference to a callback proxy that knows the proxy's id.
    """

    __slots__ = ("id",)
    id: int


class RemoteProxies:
    """
    The peer's callbacks we hold proxies for, weakly: a proxy that dies is
    culled, so this never outgrows what our code still references.  Weak
    references whose callback drops the entry and culls the id: cheaper
    than a C{WeakValueDictionary}, or a C{__del__} on the proxy, on the
    path every call takes.

    Culls of proxies our code drops wait up to L{CULL_DELAY} seconds, or
    for L{CULL_BATCH} of them, and are then handed to C{due}; those of
    proxies that die while a received chunk is handled (C{receiving}) are
    counted at its end, and leave with its answers if the connection is
    not busy, else with a chunk's answers once they make a batch or have
    waited the delay (see L{culls}).
    """

    def __init__(
        self,
        limit: int,
        sender: Sender,
        callLater: Callable[..., IDelayedCall],
        due: Callable[[], None],
        seconds: Callable[[], float],
    ) -> None:
        self.refs: Dict[int, _ProxyRef] = {}
        self.pending: Dict[int, None] = {}
        self.receiving = False
        self.closing = False
        self._limit = limit
        self._sender = sender
        self._callLater = callLater
        self._due = due
        self._seconds = seconds
        self._timer: Optional[IDelayedCall] = None
        # When the last received chunk that left culls ended (None: none
        # has yet, and the first waits, as a connection's first calls
        # often come in a burst).
        self._lastCulls: Optional[float] = None
        # The culls pending have waited CULL_DELAY: the next chunk's end takes them.
        self._ripe = False
        # The timer is the answered calls' (see culls), not CULL_DELAY's.
        self._waiting = False
        # Bound once: handed to the weak reference of every proxy made (and
        # let go of by stop, as it refers back to this table).
        self._onProxyDied: Optional[Callable[[_ProxyRef], None]] = self._proxyDied

    def __len__(self) -> int:
        return len(self.refs)

    def proxyFor(self, callbackId: int) -> RemoteCallback:
        """
        The proxy for the peer's callback C{callbackId} (a decoder's
        callback: on the path of every message with callbacks).

        @raise ProtocolError: the peer would have us hold too many.
        """
        ref = self.refs.get(callbackId)
        if ref is not None:
            proxy = ref()
            if proxy is not None:
                return proxy
        if len(self.refs) >= self._limit:
            raise ProtocolError(f"the peer would have us hold more than {self._limit} of its callbacks")
        proxy = RemoteCallback(self._sender, callbackId)
        ref = _ProxyRef(proxy, self._onProxyDied)
        ref.id = callbackId
        self.refs[callbackId] = ref
        if self.pending:
            # A cull not yet sent must not forget an id that is live again.
            self.pending.pop(callbackId, None)
        return proxy

    def _proxyDied(self, ref: _ProxyRef) -> None:
        # Called by the weak reference when its proxy is collected (maybe in
        # the middle of anything): touch nothing but our own tables.  The
        # entry may hold a newer proxy's reference for the same id by then;
        # that one is live, so the id is neither dropped nor culled.
        callbackId = ref.id
        if self.refs.get(callbackId) is not ref:
            return
        del self.refs[callbackId]
        if self.closing:
            return
        self.pending[callbackId] = None
        if not self.receiving:
            if len(self.pending) >= CULL_BATCH:
                self._due()
            elif self._timer is None or self._waiting:
                # Our code dropped it: it goes within CULL_DELAY, with the
                # answered calls' culls still waiting for a chunk.
                cancel(self._timer)
                self._waiting = False
                self._timer = self._callLater(CULL_DELAY, self._later)

    def _later(self) -> None:
        self._timer = None
        self._waiting = False
        self._due()

    def culls(self) -> bytes:
        """
        At the end of a received chunk: the cull message for the ids
        pending, to leave with the chunk's answers, if the connection is
        not busy (the chunk before it that left culls did so at least
        L{CULL_DELAY} seconds ago: a call now and then, a ping; a
        connection's first is taken as busy), or if they make a batch
        (L{CULL_BATCH}) or have waited L{CULL_DELAY} seconds; else nothing.
        Culls that have waited leave with the next chunk's answers, in the
        write that goes anyway; only where no chunk comes within
        L{CULL_IDLE} seconds more are they handed to C{due}, in a write of
        their own.  On a busy connection (calls made one at a time, back to
        back) the peer decodes one message per batch, not one per received
        chunk; a connection answered now and then costs no timer and no
        write for its culls; and what the peer keeps for us stays bounded
        by a batch and the two delays.
        """
        now, last = self._seconds(), self._lastCulls
        self._lastCulls = now
        idle = last is not None and now - last >= CULL_DELAY
        if idle or len(self.pending) >= CULL_BATCH or self._ripe:
            return self.takeCulls()
        if self._timer is None:
            self._waiting = True
            self._timer = self._callLater(CULL_DELAY, self._ripen)
        return b""

    def _ripen(self) -> None:
        self._ripe = True
        self._timer = self._callLater(CULL_IDLE, self._later)

    def takeCulls(self) -> bytes:
        """
        The cull message for every id pending, which are no longer.
        """
        cancel(self._timer)
        self._timer = None
        self._ripe = self._waiting = False
        ids = list(self.pending)
        self.pending.clear()
        return encodeLine({"method": "cull", "arguments": ids})

    def dropCulls(self) -> None:
        """
        Forget the pending culls (the peer is not told: see C{sendCulls}).
        """
        cancel(self._timer)
        self._timer = None
        self._ripe = self._waiting = False
        self.pending.clear()

    def stop(self) -> None:
        """
        The connection is gone: no timer, no culls, and nothing of the
        connection's held.
        """
        self.closing = True
        self.dropCulls()
        self._due = _nothing
        # (A proxy made after this is not watched: the table is done with.)
        self._onProxyDied = None


def _nothing() -> None:
    pass


def _identity(callback: Callable[..., Any]) -> Any:
    """
    The key of a callable in the id table: itself (bound methods compare
    equal when they bind the same function to the same object), or its
    identity when it is not hashable.
    """
    try:
        hash(callback)
    except TypeError:
        return ("unhashable", id(callback))
    return callback
