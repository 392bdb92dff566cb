# -*- test-case-name: upnode.test.test_protocol -*-
"""
The dnode protocol: one JSON message a line, spoken exactly as Node's dnode
1.2.2 speaks it, and never trusting the peer.

L{DnodeProtocol} reads as framing (bytes to lines and back, and
back-pressure), then the session (the connection's life, dispatch, the
callback tables), then encoding (L{DnodeProtocol.request}).  The socket
settings, and the one fast path that needs more than public Twisted API,
are in L{upnode._tuning}; what goes on the wire is built in
L{upnode._scrub} and L{upnode._json}.
"""

from __future__ import annotations

import secrets
from inspect import iscoroutine
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ._events import EventEmitter
from ._expose import Cons, construct, exposedMembers
from ._guard import HOSTILE, LARGE_LINE, START_READ, UNREAD, ServerGuard
from ._json import decodeLine
from ._limits import Limits
from ._outflow import READ_PAUSE, SAMPLE_EVERY, STALL_CHECK_EVERY, WATCH_EVERY, WRITE_SLICE, OutputFlow, Role
from ._progress import ackedBytesProbe
from ._reactor import resolve
from ._remote import Remote, Sender, describe, replaceMembers
from ._scrub import encodeRequest, unscrub
from ._tables import CULL_BATCH, CULL_DELAY, Entry, LocalCallbacks, RemoteProxies, TooManyCallbacks, entryFor
from ._tuning import setReadSize, tune
from .errors import DeadRemoteError, ProtocolError, RejectedMessage
from .tls import verifyServerIdentity

#: (Reads are not shared: no read is ever this large.)
NO_SHARE = 1 << 62

__all__ = [
    "CULL_BATCH",
    "CULL_DELAY",
    "READ_PAUSE",
    "SAMPLE_EVERY",
    "STALL_CHECK_EVERY",
    "WATCH_EVERY",
    "WRITE_SLICE",
    "DnodeProtocol",
    "Role",
]


@implementer(IHandshakeListener)
class DnodeProtocol(LineReceiver, EventEmitter):
    """
    One dnode session over a stream.

    It is also the C{conn} of Node's API: an event emitter on which the
    upnode connect callback emits C{"up"}.

    Events: C{local} (exposed object, conn: before C{methods} is sent, so
    a handler may still add members), C{remote} (remote, conn), C{fail}
    (L{RejectedMessage} or L{ProtocolError}: the peer's fault), C{error}
    (C{Failure}: our side's code raised), C{end}.

    @ivar remote: the peer's exposed object, filled in when its C{methods}
        message arrives.
    @ivar local: the object we expose on this connection.
    @ivar id: a random id for this connection, as dnode gives each one.
    """

    delimiter = b"\n"
    #: Seconds a peer that has output waiting may go without taking any of
    #: it before it is dropped.  Where the kernel tells (Linux TCP, TLS
    #: included) "taking" is its TCP stack acknowledging a byte, which a
    #: live peer does within a round trip unless its application has
    #: stopped reading and its receive buffer is full; elsewhere it is the
    #: transport draining its buffer (one slice, see WRITE_SLICE).
    stallTimeout = 5.0
    #: Bytes taken from the socket at a time, where the transport allows it
    #: (see L{upnode._tuning.setReadSize}; Twisted takes 64 KiB).
    readSize = 16 * 1024
    #: Whether we tell the peer to forget the callbacks we no longer hold
    #: (cull).  Node's dnode never does (its optional weak module does not
    #: build on current Node), and a Node client that is told to slows down
    #: to a crawl (see the README's benchmarks); a server for Node clients
    #: may turn it off per connection, in its cons, at the cost of the
    #: peer's memory.  Our own table shrinks either way.
    sendCulls = True
    #: The server-wide L{ServerGuard} this connection answers to, if any
    #: (set by the server factory); it hears about drops and unread output.
    guard: Optional[ServerGuard] = None
    #: Set when the guard refused the connection: it is dropped on arrival.
    refused = False
    #: Whether we connected (set by the client factories): over TLS, a
    #: client checks the server's certificate for the host itself, whatever
    #: the TLS options were (see L{upnode.tls.verifyServerIdentity}).
    isClient = False
    #: A client that talks to a server whose certificate it deliberately
    #: does not check sets this False (on a subclass, or in its cons).
    verifyServerIdentity = True
    _log = Logger()

    def __init__(
        self,
        cons: Cons = None,
        limits: Optional[Limits] = None,
        clock: Optional[IReactorTime] = None,
        expose: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        EventEmitter.__init__(self)
        self.id = secrets.token_hex(16)
        self.cons = cons
        self.limits = limits or Limits()
        self.MAX_LENGTH = self.limits.maxLineLength
        self._clock = clock
        self._expose = expose
        self.remote = Remote()
        self.local: Any = None
        self.remoteReady = False
        self._exposed: Dict[str, Any] = {}
        # The exposed members that can be called, with their arity, worked
        # out once when they are exposed (see _start).
        self._targets: Dict[str, Entry] = {}
        # The callback tables (see upnode._tables), and the one way their
        # proxies send: through this connection while it is open.
        self._sender = Sender(self.request)
        self._local = LocalCallbacks(None)
        self._proxies = RemoteProxies(
            self.limits.maxRemoteCallbacks, self._sender, _LazyCallLater(clock), self._sendCulls
        )
        # Bound once: handed on for each callback received, and request sent.
        self._proxyFor = self._proxies.proxyFor
        self._idOf = self._local.idOf
        self._partial: Any = b""  # bytes, or a bytearray while it grows
        #: Lines received so far (a guard watches it for lines that never end).
        self.linesReceived = 0
        self._receiving = False
        # Lines written while a received chunk is being handled go out in one
        # write when it has been: one trip through the transport, not one a line.
        self._outgoing: List[bytes] = []
        self._outgoingBytes = 0
        self._closing = False
        self._started = False
        self._lossHooks: List[Callable[[Failure], None]] = []
        #: What we write, on its way to the transport (built on connection).
        self._flow: OutputFlow = _NO_FLOW
        self._write: Callable[[bytes], None] = _NO_FLOW.write
        self._registered = False
        # How much the transport reads at once, where we set it, and the
        # size of a read that took (nearly) all of that (see _shareReads).
        self._readShare = 0
        self._fullRead = NO_SHARE
        self._windowStart = 0.0
        self._windowCount = 0

    # -- Framing: bytes in, lines out --------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split lines in linear time whatever the chunking: an unfinished
        line is kept in one buffer that grows in place (a list of small
        pieces would cost several times the bytes it holds).
        """
        if self._closing:
            return
        if len(data) >= self._fullRead:
            self._shareReads()
        self._receiving = self._proxies.receiving = True
        try:
            if b"\n" not in data:
                partial = self._partial
                if type(partial) is bytes:
                    self._partial = partial = bytearray(partial)
                partial += data
                if len(partial) > self.MAX_LENGTH:
                    self.lineLengthExceeded(b"")
                elif len(partial) >= LARGE_LINE and self.guard is not None:
                    self.guard.noteLarge(self)
                return
            lines = data.split(b"\n")
            partial = self._partial
            # No line can be too long when this chunk and the piece before it
            # are not together: the usual case, checked once for all lines.
            checkLengths = len(partial) + len(data) > self.MAX_LENGTH
            if partial:
                lines[0] = bytes(partial) + lines[0] if type(partial) is bytearray else partial + lines[0]
            self._partial = tail = lines.pop()
            self.linesReceived += len(lines)
            if self._overRate(len(lines)):
                return
            lineReceived = self.lineReceived
            for line in lines:
                if self._closing:
                    return
                if checkLengths and len(line) > self.MAX_LENGTH:
                    self.lineLengthExceeded(line)
                    return
                lineReceived(line)
            if len(tail) > self.MAX_LENGTH and not self._closing:
                self.lineLengthExceeded(tail)
        finally:
            self._receiving = self._proxies.receiving = False
            if self._proxies.pending and not self._closing:
                # Proxies that died while this chunk was handled (those of
                # answered calls) are culled in the same write as the
                # answers: no timer, no packet of their own.
                if self.sendCulls:
                    self._outgoing.append(self._proxies.takeCulls())
                else:
                    self._proxies.dropCulls()
            self._flushOutgoing()

    def _shareReads(self) -> None:
        """
        We read all we could at once: with many connections as busy, read
        less at a time (see L{ServerGuard.readShare}).
        """
        if self.guard is None or self.transport is None:
            self._fullRead = NO_SHARE
            return
        share = self.guard.readShare(self, self.readSize)
        if share != self._readShare:
            if not setReadSize(self.transport, share):
                self._fullRead = NO_SHARE  # a transport whose read size is its own
                return
            self._readShare = share
        # (Over TLS, what a full read gives us is a little less.)
        self._fullRead = share * 3 // 4

    def hasPartialLine(self) -> bool:
        """
        Whether part of a line has arrived and its delimiter not yet.
        """
        return bool(self._partial)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._violation(ProtocolError(f"line longer than {self.MAX_LENGTH} bytes"))

    def _overRate(self, lines: int) -> bool:
        """
        Count C{lines} more messages against C{maxRate}, once a chunk rather
        than once a line; close and return True when a peer sends more than
        that within a second.
        """
        self._windowCount += lines
        maxRate = self.limits.maxRate
        if self._windowCount > maxRate:
            now = self._getClock().seconds()
            if now - self._windowStart >= 1.0:
                self._windowStart, self._windowCount = now, lines
            if self._windowCount > maxRate:
                self._violation(ProtocolError(f"more than {maxRate} messages a second"))
                return True
        return False

    # -- Framing: lines out, bytes to the transport ------------------------------

    def _flushOutgoing(self) -> None:
        if self._outgoing:
            lines, self._outgoing, self._outgoingBytes = self._outgoing, [], 0
            if self.transport is not None:
                self._write(b"".join(lines))

    @property
    def paused(self) -> bool:  # type: ignore[override]
        """
        Whether the transport asked us to stop writing: writers that can
        wait (the client's queue flush) wait for the C{drain} event.
        (LineReceiver's own C{paused}, for reading, is not used: reading
        is paused through the transport.)
        """
        return self._flow.paused

    def pauseProducing(self) -> None:
        """
        As the transport does to the flow (see L{OutputFlow.pauseProducing}).
        """
        self._flow.pauseProducing()

    def resumeProducing(self) -> None:
        self._flow.resumeProducing()

    def stopProducing(self) -> None:
        self._flow.stopProducing()

    # IFlowOwner: what the output flow tells us

    def flowDrained(self) -> None:
        self.emit("drain")

    def flowSent(self) -> None:
        self._close()

    def flowFailed(self, error: ProtocolError) -> None:
        self._violation(error, UNREAD)
        self.abort()

    def flowUnread(self, size: int) -> None:
        if self.guard is not None:
            self.guard.noteUnread(self, size)

    def flowLarge(self) -> None:
        if self.guard is not None:
            self.guard.noteLarge(self)

    # -- Session: the connection's life ------------------------------------------

    def connectionMade(self) -> None:
        if self.refused:
            self._closing = True
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        # A server's connections start small and read their share once busy.
        transport = self.transport
        readSize = self.readSize if self.guard is None else min(self.readSize, START_READ)
        if tune(transport, readSize) and self.guard is not None:
            self._readShare = readSize
            self._fullRead = readSize * 3 // 4
        role = Role.CLIENT if self.isClient else Role.SERVER
        if role is Role.SERVER:
            self._local.limit = self.limits.maxLocalCallbacks
        flow = self._flow = OutputFlow(
            self, transport, self._getClock(), ackedBytesProbe(transport), role, self.limits.maxBuffered
        )
        self._write = flow.write  # bound once: every line's way out
        # The flow is the producer of what we write: when the peer stops
        # reading and the transport's buffer fills, it is paused.
        transport.registerProducer(flow, True)  # type: ignore[union-attr]
        self._registered = True
        # Over TLS, nothing is written until the handshake (and so the
        # certificate check) has succeeded; see handshakeCompleted.
        if not ISSLTransport.providedBy(self.transport):
            self._start()

    def handshakeCompleted(self) -> None:
        if self.isClient and self.verifyServerIdentity:
            problem = verifyServerIdentity(self.transport)
            if problem is not None:
                self._log.error(
                    "The TLS certificate of {peer} is not valid for it: {problem}; closing before any dnode byte",
                    peer=self._peerName(),
                    problem=problem,
                )
                self.emit("fail", ProtocolError(f"the server's TLS certificate is not valid for it: {problem}"))
                self.abort()
                return
        self._start()

    def _start(self) -> None:
        if self._started or self._closing:
            return
        self._started = True
        try:
            local = construct(self.cons, self.remote, self)
            self.local = local
            # Before the members are read, as in Node: a handler may add some.
            self.emit("local", local, self)
            members = exposedMembers(local)
            if self._expose is not None:
                members = self._expose(members)
            self._exposed = members
            self._targets = {
                name: entryFor(value) for name, value in members.items() if type(name) is str and callable(value)
            }
            self.request("methods", [members])
        except Exception:
            self._log.failure("The exposed object could not be built")
            self.emit("error", Failure())
            self.end()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = 0
        self._closing = True
        self._flow.detach()
        self._proxies.stop()
        self._local.clear()
        self._sender.close()
        self._partial = b""
        self._outgoing, self._outgoingBytes = [], 0
        self.emit("end")
        hooks, self._lossHooks = self._lossHooks, []
        for hook in hooks:
            hook(reason or Failure(ConnectionDone()))
        # Whatever still holds this protocol (a log event buffered before
        # any observer started names it as its source) must not hold the
        # transport, and the megabytes of unsent output it may have.
        self.transport = None

    def notifyOnLoss(self, hook: Callable[[Failure], None]) -> None:
        """
        Call C{hook(reason)} once when this connection is lost.
        """
        self._lossHooks.append(hook)

    def whenLost(self) -> Deferred[None]:
        """
        A Deferred that fires (with None) once this connection is lost.
        """
        lost: Deferred[None] = Deferred()
        self.notifyOnLoss(lambda reason: lost.callback(None))
        return lost

    def end(self) -> None:
        """
        Close the connection after what has been written is sent (what the
        peer has not yet taken included).
        """
        self._closing = True
        self._flushOutgoing()
        if self._flow.endWhenSent():
            self._close()  # (else once what is held has gone: flowSent)

    def _close(self) -> None:
        if self.transport is not None:
            # A TLS transport waits for its producer to go before it closes.
            if self._registered:
                self._registered = False
                self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    def abort(self) -> None:
        """
        Drop the connection now, without waiting for a peer that may never
        read what is buffered.
        """
        self._closing = True
        self._outgoing, self._outgoingBytes = [], 0
        self._flow.drop()
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- Session: dispatch -------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        try:
            message = decodeLine(line, self.limits.maxDepth)
        except ProtocolError as e:
            self._violation(e)
            return
        try:
            self._dispatch(message)
        except RejectedMessage as e:
            self._reject(e)
        except ProtocolError as e:
            self._violation(e)

    def _dispatch(self, message: Any) -> None:
        if type(message) is not dict:
            raise RejectedMessage("a message must be a JSON object")
        method: Any = message.get("method")
        kind = type(method)
        if kind is int:
            entry = self._local.entries.get(method)
            if entry is None:
                raise RejectedMessage(f"no callback with id {method}")
        elif kind is str:
            if method == "methods":
                self._receiveMethods(unscrub(message, self._proxyFor, self.limits))
                return
            if method == "cull":
                self._receiveCull(message.get("arguments", []))
                return
            entry = self._targets.get(method)
            if entry is None:
                raise RejectedMessage(f"no callable method {method!r:.60} is exposed")
        else:
            raise RejectedMessage(f"method must be a string or an integer, not {method!r:.40}")
        arguments = unscrub(message, self._proxyFor, self.limits)
        # Arguments beyond what the function takes are left off, as
        # JavaScript does (see _arity); its arity was worked out once.
        target, limit = entry
        if 0 <= limit < len(arguments):
            arguments = arguments[:limit]
        try:
            result = target(*arguments)
        except DeadRemoteError:
            if not self._closing:
                self._localError(Failure())
            return  # (the link went while the method ran: said already)
        except Exception:
            self._localError(Failure())
            return
        if result is None:
            return
        if iscoroutine(result):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            result.addErrback(self._localError)

    def _localError(self, failure: Failure) -> None:
        self._log.failure("A local method raised", failure)
        self.emit("error", failure)

    def _receiveMethods(self, arguments: List[Any]) -> None:
        members = arguments[0] if arguments else None
        replaceMembers(
            self.remote,
            {k: v for k, v in members.items() if type(k) is str} if isinstance(members, dict) else {}
        )
        self.remoteReady = True
        self.emit("remote", self.remote, self)
        self.emit("ready")  # dnode's deprecated name, still used by its tests

    def _receiveCull(self, ids: Any) -> None:
        self._local.cull(ids)

    def _violation(self, error: ProtocolError, reason: str = HOSTILE) -> None:
        """
        The peer broke a limit: say so (a server's guard counts it, and logs
        once per reason and period), and close.
        """
        if self.guard is not None:
            self.guard.count(reason, self, "{error}", error=error)
        else:
            self._log.warn("Closing dnode connection from {peer}: {error}", peer=self._peerName(), error=error)
        self.emit("fail", error)
        self.end()

    def _reject(self, error: RejectedMessage) -> None:
        self._log.warn("Rejected a dnode message from {peer}: {error}", peer=self._peerName(), error=error)
        self.emit("fail", error)

    def _peerName(self) -> str:
        try:
            return str(self.transport.getPeer())  # type: ignore[union-attr]
        except Exception:
            return "peer"

    def _getClock(self) -> IReactorTime:
        self._clock = resolve(self._clock)
        return self._clock  # type: ignore[return-value]

    # -- Session: callback tables ------------------------------------------------

    def _sendCulls(self) -> None:
        # The tables' culls are due, outside a received chunk (those leave
        # with its answers: see dataReceived).
        if self._closing or self.transport is None:
            return
        if self.sendCulls:
            self._write(self._proxies.takeCulls())
        else:
            self._proxies.dropCulls()

    def callbackCount(self) -> Dict[str, int]:
        """
        The sizes of the callback tables, for monitoring and tests.
        """
        return {"local": len(self._local), "remote": len(self._proxies)}

    # -- Encoding: requests out --------------------------------------------------

    def request(self, method: Any, arguments: Sequence[Any]) -> None:
        """
        Send one dnode request: call the peer's method by name or callback
        id.  Callables in C{arguments}, at any depth, become callbacks.

        @raise TypeError: a value has no JSON form; nothing is sent.
        @raise DeadRemoteError: the connection is gone.
        """
        if not self.connected or self.transport is None:
            raise DeadRemoteError(f"the dnode link is gone: {describe(method)} was not called")
        local = self._local
        firstNewId = local.nextId
        try:
            line = encodeRequest(method, arguments, self._idOf, self.limits.maxDepth)
        except TooManyCallbacks as e:
            local.takeBack(firstNewId)
            # A server's peer that never culls what we send it (every Node
            # dnode client, whose weak module no longer builds), with a
            # method that sends back what it is given, would have us keep
            # every callable for ever.
            self._violation(e)
            self.abort()
            raise DeadRemoteError(
                f"the connection was closed: the peer never culls, and {local.limit} callbacks are held"
            ) from None
        except Exception:
            # Nothing is sent, so the ids handed out for it are taken back.
            local.takeBack(firstNewId)
            raise
        # While a received chunk is handled, lines wait to leave together
        # when it has been (see dataReceived).
        if self._receiving:
            self._outgoing.append(line)
            self._outgoingBytes += len(line)
            # Past one read's worth, hand it over: the transport then tells
            # writers that can wait (a queue flush) when to stop.
            if self._outgoingBytes > self.readSize:
                self._flushOutgoing()
        else:
            self._write(line)


class _NoFlow:
    """
    The flow of a connection not yet made: nothing is paused or held.
    """

    paused = False

    def write(self, data: bytes) -> None:
        pass

    def endWhenSent(self) -> bool:
        return True

    def drop(self) -> None:
        pass

    def detach(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


_NO_FLOW: Any = _NoFlow()


class _LazyCallLater:
    """
    The given clock's C{callLater}, or the global reactor's, found when
    first needed (library code never installs a reactor at import or
    construction).
    """

    def __init__(self, clock: Optional[IReactorTime]) -> None:
        self._clock = clock

    def __call__(self, delay: float, f: Callable[..., Any], *args: Any) -> IDelayedCall:
        self._clock = clock = resolve(self._clock)
        return clock.callLater(delay, f, *args)  # type: ignore[union-attr]
