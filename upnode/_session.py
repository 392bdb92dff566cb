# -*- test-case-name: upnode.test.test_protocol -*-
"""
One dnode session: L{DnodeSession} dispatches each line the peer sends
(C{methods}, C{cull}, a call by name or by callback id), keeps the two
callback tables, and encodes our requests.  It writes through an C{out}
sink it is handed and tells its owner (an L{ILinkOwner}, the connection)
what happened; it knows no transport and no reactor.

Every call on either side goes through L{DnodeSession.request} and
L{DnodeSession.lineReceived}: they are the hot path, and use only
attributes and methods bound once.
"""

from __future__ import annotations

from inspect import iscoroutine
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ._arity import droppedResult, runCoroutine
from ._json import _fastLoads, decodeLine
from ._limits import Limits
from ._remote import Remote, Sender, describe, replaceMembers
from ._scrub import encodeRequest, unscrub
from ._tables import Entry, LocalCallbacks, RemoteProxies, TooManyCallbacks, entryFor
from ._wiring import IConnectionObserver, ILinkOwner
from .errors import DeadRemoteError, ProtocolError, RejectedMessage

__all__ = ["DnodeSession"]


class DnodeSession:
    """
    The dnode session of one connection.

    @ivar out: where our lines go outside a received chunk (the
        connection's output flow, once it is connected).
    @ivar remote: the peer's exposed object.
    @ivar exposed: the members we expose (see L{expose}).
    @ivar closing: set once the connection is closing: no more culls.
    @ivar closed: set once it is lost (and before it is made): requests
        raise L{DeadRemoteError}.
    @ivar flushPast: within a chunk, lines wait to leave together at its
        end, unless they pass this many bytes (one read's worth).
    """

    def __init__(
        self, owner: ILinkOwner, limits: Limits, callLater: Callable[..., Any], seconds: Callable[[], float]
    ) -> None:
        self._owner = owner
        self.limits = limits
        self._maxDepth = limits.maxDepth
        self.remote = Remote()
        self.remoteReady = False
        self.exposed: Dict[str, Any] = {}
        # The exposed members that can be called, with their arity, worked
        # out once when they are exposed.
        self._targets: Dict[str, Entry] = {}
        # The identities of the exposed callables, made when first asked
        # (off the common path; most connections never are).
        self._exposedIds: Optional[FrozenSet[int]] = None
        self.sender = Sender(self.request)
        self.local = LocalCallbacks(None)
        self.proxies = RemoteProxies(limits.maxRemoteCallbacks, self.sender, callLater, self._cullsDue, seconds)
        # Bound once: handed on for each callback received, and request sent.
        self._proxyFor = self.proxies.proxyFor
        self._idOf = self.local.idOf
        self.out: Callable[[bytes], None] = _nowhere
        self.sendNow: Callable[[], None] = _nothing
        self.receiving = False
        self._outgoing: List[bytes] = []
        self._outgoingBytes = 0
        self.flushPast = 16 * 1024
        self.closing = False
        self.closed = True

    def open(
        self,
        out: Callable[[bytes], None],
        maxLocalCallbacks: int,
        flushPast: int,
        sendNow: Optional[Callable[[], None]] = None,
    ) -> None:
        """
        The connection is made: write to C{out}; bound the callables the
        peer may make us keep to C{maxLocalCallbacks} (-1: no bound, as a
        client keeps what its server does not cull); after a received
        chunk's answers are written, call C{sendNow} (they are what the
        peer waits for).
        """
        self.out = out
        self.sendNow = sendNow or _nothing
        self.local.limit = maxLocalCallbacks
        self.flushPast = flushPast
        self.closed = False

    # -- A received chunk ------------------------------------------------------

    def beginChunk(self) -> None:
        # Lines written while a received chunk is handled go out in one
        # write when it has been: one trip through the transport, not one
        # a line.
        self.receiving = self.proxies.receiving = True

    def endChunk(self) -> None:
        self.receiving = self.proxies.receiving = False
        proxies = self.proxies
        if proxies.pending and not self.closing:
            # Proxies that died while this chunk was handled (those of
            # answered calls) are culled after the answers, in the same
            # write: at once on a connection answered now and then, in
            # batches on a busy one (see L{RemoteProxies.culls}), so that
            # calls made back to back do not cost the peer a message more
            # each.
            if self._owner.sendCulls:  # type: ignore[attr-defined]
                culls = proxies.culls()
                if culls:
                    self._outgoing.append(culls)
            else:
                proxies.dropCulls()
        if self._outgoing:
            self.flush()
            self.sendNow()

    def flush(self) -> None:
        """
        Hand over what waits for the end of the chunk.
        """
        outgoing = self._outgoing
        if outgoing:
            data = b"".join(outgoing)
            outgoing.clear()
            self._outgoingBytes = 0
            if not self.closed:
                self.out(data)

    def write(self, data: bytes) -> None:
        """
        Write C{data} (whole lines) in order with our requests.
        """
        if self.receiving:
            self._outgoing.append(data)
            self._outgoingBytes += len(data)
            if self._outgoingBytes > self.flushPast:
                self.flush()
        else:
            self.out(data)

    # -- Dispatch ----------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        """
        Handle one line from the peer.
        """
        maxDepth = self._maxDepth
        try:
            # decodeLine's common case inline (a line that cannot nest too
            # deep, for orjson): one call less on every line.
            if line[:1] != b" " and (len(line) <= 2 * maxDepth or line.count(b"[") + line.count(b"{") <= maxDepth):
                try:
                    message = _fastLoads(line)
                except ValueError:
                    message = decodeLine(line, maxDepth)
            else:
                message = decodeLine(line, maxDepth)
            self._dispatch(message)
        except RejectedMessage as e:
            # As in _handle: a fresh error, with no traceback.
            self._owner.rejected(RejectedMessage(*e.args))
        except ProtocolError as e:
            self._owner.violation(ProtocolError(*e.args))

    def _handle(self, message: Any) -> None:
        try:
            self._dispatch(message)
        except RejectedMessage as e:
            # A fresh error, with no traceback: one kept (by a fail
            # handler, or a log buffer) must not keep the message's values
            # alive, nor anything made from them.
            self._owner.rejected(RejectedMessage(*e.args))
        except ProtocolError as e:
            self._owner.violation(ProtocolError(*e.args))

    def observedLineReceived(self, observer: IConnectionObserver) -> Callable[[bytes], None]:
        """
        L{lineReceived}, telling C{observer} of every call of ours the peer
        makes (for a connection that is watched: no other pays for it).
        """
        called = observer.called
        entries = self.local.entries

        def observed(line: bytes) -> None:
            try:
                message = decodeLine(line, self._maxDepth)
            except ProtocolError as e:
                self._owner.violation(e)
                return
            method = message.get("method") if type(message) is dict else None
            if type(method) is int:
                # dnode calls exposed methods by callback id too, as any
                # callback: an id whose target is one we expose is a call.
                entry = entries.get(method)
                if entry is not None:
                    called(id(entry[0]) in self._exposedIdSet())
            elif type(method) is str and method in self._targets and method not in ("methods", "cull"):
                called(True)
            self._handle(message)

        return observed

    def _dispatch(self, message: Any) -> None:
        if type(message) is not dict:
            raise RejectedMessage("a message must be a JSON object")
        method: Any = message.get("method")
        kind = type(method)
        if kind is int:
            entry = self.local.entries.get(method)
            if entry is None:
                raise RejectedMessage(f"no callback with id {method}")
        elif kind is str:
            if method == "methods":
                self._receiveMethods(unscrub(message, self._proxyFor, self.limits))
                return
            if method == "cull":
                self.local.cull(message.get("arguments", []))
                return
            entry = self._targets.get(method)
            if entry is None:
                raise RejectedMessage(f"no callable method {method!r:.60} is exposed")
        else:
            raise RejectedMessage(f"method must be a string or an integer, not {method!r:.40}")
        arguments = unscrub(message, self._proxyFor, self.limits)
        # Arguments beyond what the function takes are left off, as
        # JavaScript does (see _arity); its arity was worked out once.  A
        # callback we handed out gets None for the ones it is not given
        # (Node's error-first cb(err) to a def cb(err, result)); a method we
        # expose called with too few is the caller's mistake: a TypeError.
        target, limit, required = entry
        if 0 <= limit < len(arguments):
            arguments = arguments[:limit]
        elif len(arguments) < required and not self._exposes(target, kind):
            arguments = [*arguments, *(None,) * (required - len(arguments))]
        try:
            result = target(*arguments)
        except DeadRemoteError:
            if not self.closing:
                self._owner.localError(Failure())
            return  # (the link went while the method ran: said already)
        except Exception:
            self._owner.localError(Failure())
            return
        if result is None:
            return
        if iscoroutine(result):
            result = runCoroutine(result)
        if isinstance(result, Deferred):
            result.addCallbacks(self._returned, self._owner.localError, (target, kind))
        else:
            self._returned(result, target, kind)

    def _exposes(self, target: Any, kind: type) -> bool:
        # Whether the peer called one of our exposed methods (by name, or
        # by the id its methods message gave it) rather than a callback we
        # passed it; asked only off the common path.
        return kind is str or id(target) in self._exposedIdSet()

    def _exposedIdSet(self) -> FrozenSet[int]:
        exposedIds = self._exposedIds
        if exposedIds is None:
            exposedIds = self._exposedIds = frozenset(id(entry[0]) for entry in self._targets.values())
        return exposedIds

    def _returned(self, result: Any, target: Any, kind: type) -> Any:
        if result is not None and self._exposes(target, kind):
            droppedResult(result, target)
        return result  # a Deferred the method also handed elsewhere keeps its value

    def _receiveMethods(self, arguments: List[Any]) -> None:
        members = arguments[0] if arguments else None
        replaceMembers(
            self.remote,
            {k: v for k, v in members.items() if type(k) is str} if isinstance(members, dict) else {}
        )
        self.remoteReady = True
        self._owner.remoteArrived()

    # -- Requests out --------------------------------------------------------------

    def expose(self, members: Dict[str, Any]) -> None:
        """
        Expose C{members}: send them (C{methods}), and answer calls of the
        callable ones.
        """
        self.exposed = members
        self._targets = {name: entryFor(value) for name, value in members.items() if type(name) is str and callable(value)}
        self._exposedIds = None
        self.request("methods", [members])

    def request(self, method: Any, arguments: Sequence[Any]) -> None:
        """
        Send one dnode request: call the peer's method by name or callback
        id.  Callables in C{arguments}, at any depth, become callbacks.

        @raise TypeError: a value has no JSON form; nothing is sent.
        @raise DeadRemoteError: the connection is gone.
        """
        if self.closed:
            raise DeadRemoteError(f"the dnode link is gone: {describe(method)} was not called")
        local = self.local
        firstNewId = local.nextId
        try:
            line = encodeRequest(method, arguments, self._idOf, self._maxDepth)
        except TooManyCallbacks as e:
            local.takeBack(firstNewId)
            # A server's peer that never culls what we send it (every Node
            # dnode client, whose weak module no longer builds), with a
            # method that sends back what it is given, would have us keep
            # every callable for ever.
            self._owner.tooManyCallbacks(e)
            raise DeadRemoteError(
                f"the connection was closed: the peer never culls, and {local.limit} callbacks are held"
            ) from None
        except Exception:
            # Nothing is sent, so the ids handed out for it are taken back.
            local.takeBack(firstNewId)
            raise
        if self.receiving:
            self._outgoing.append(line)
            self._outgoingBytes += len(line)
            # Past one read's worth, hand it over: the transport then tells
            # writers that can wait (a queue flush) when to stop.
            if self._outgoingBytes > self.flushPast:
                self.flush()
        else:
            self.out(line)

    def _cullsDue(self) -> None:
        # Culls due outside a received chunk (those leave with its answers:
        # see endChunk).
        if self.closing or self.closed:
            self.proxies.dropCulls()
        elif self._owner.sendCulls:  # type: ignore[attr-defined]
            self.out(self.proxies.takeCulls())
        else:
            self.proxies.dropCulls()

    def callbackCount(self) -> Dict[str, int]:
        return {"local": len(self.local), "remote": len(self.proxies)}

    # -- The end -----------------------------------------------------------------------

    def dropOutgoing(self) -> None:
        self._outgoing.clear()
        self._outgoingBytes = 0

    def close(self) -> None:
        """
        The connection is lost: forget both tables, let no proxy send, and
        let go of the owner (whatever still holds the session or a proxy
        does not hold the connection).
        """
        self.closing = self.closed = True
        self.proxies.stop()
        self.local.clear()
        self.sender.close()
        self.dropOutgoing()
        self.out = _nowhere
        self.sendNow = _nothing
        self._owner = _GONE


def _nothing() -> None:
    pass


def _nowhere(data: bytes) -> None:
    pass


class _Gone:
    """
    The owner of a closed session: hears nothing, wants no culls.
    """

    sendCulls = False

    def remoteArrived(self) -> None:
        pass

    def violation(self, error: ProtocolError) -> None:
        pass

    def rejected(self, error: RejectedMessage) -> None:
        pass

    def localError(self, failure: Failure) -> None:
        pass

    def tooManyCallbacks(self, error: ProtocolError) -> None:
        pass


_GONE: Any = _Gone()
