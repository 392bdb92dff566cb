"""
The dnode protocol: one JSON message a line, spoken exactly as Node's dnode
1.2.2 speaks it, and never trusting the peer.
"""

from __future__ import annotations

import secrets
import socket
import weakref
from inspect import iscoroutine
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ._events import EventEmitter
from ._expose import Cons, construct, exposedMembers
from ._json import decodeLine, encodeLine
from ._limits import Limits
from ._reactor import cancel, resolve
from ._remote import Remote, RemoteCallback, replaceMembers
from ._scrub import encodeRequest, unscrub
from .errors import DeadRemoteError, ProtocolError, RejectedMessage

#: Culls go out in batches of this many ids, or after this many seconds.
CULL_BATCH = 64
CULL_DELAY = 0.05


@implementer(IHandshakeListener)
class DnodeProtocol(LineReceiver, EventEmitter):
    """
    One dnode session over a stream.

    It is also the C{conn} of Node's API: an event emitter on which the
    upnode connect callback emits C{"up"}.

    Events: C{local} (exposed object, conn: before C{methods} is sent, so
    a handler may still add members), C{remote} (remote, conn), C{fail}
    (L{RejectedMessage} or L{ProtocolError}: the peer's fault), C{error}
    (L{Failure}: our side's code raised), C{end}.

    @ivar remote: the peer's exposed object, filled in when its C{methods}
        message arrives.
    @ivar local: the object we expose on this connection.
    @ivar id: a random id for this connection, as dnode gives each one.
    """

    delimiter = b"\n"
    #: Seconds a peer may leave our writes unread before it is dropped.
    stallTimeout = 60.0
    #: Bytes taken from the socket at a time (Twisted takes 64 KiB).  With
    #: many calls in flight, a smaller slice lets our replies to its first
    #: calls leave while we work on the rest, so both ends are busy at once:
    #: this alone took pipelined calls from 40,000 to 76,000 a second in
    #: bench/run.py.
    readSize = 16 * 1024
    #: Whether we tell the peer to forget the callbacks we no longer hold
    #: (cull).  Node's dnode never does (its optional weak module does not
    #: build on current Node), and a Node client that is told to slows down
    #: to a crawl (see the README's benchmarks); a server for Node clients
    #: may turn it off per connection, in its cons, at the cost of the
    #: peer's memory.  Our own table shrinks either way.
    sendCulls = True
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
        # Our callables the peer may call, by id; and the reverse, so that a
        # callable sent again keeps its id.
        self._localCallbacks: Dict[int, Callable[..., Any]] = {}
        self._localIds: Dict[Any, int] = {}
        # Ids sent in more than one message: a cull for them may cross a
        # later message in flight, so they are kept (see _receiveCull).
        self._resent: Set[int] = set()
        self._nextId = 0
        # The peer's callbacks we hold proxies for; a proxy that dies is
        # culled, so this never outgrows what our code still references.
        # Weak references whose callback drops the entry and culls the id:
        # cheaper than a WeakValueDictionary, or a __del__ on the proxy, on
        # the path every call takes.
        self._remoteCallbacks: Dict[int, _ProxyRef] = {}
        self._pendingCulls: Dict[int, None] = {}
        # Bound once, not on every message: these are handed on for each
        # callback received, proxy made, and request sent.  (The cycles
        # they make through self are the collector's; a protocol is in
        # others anyway, through its transport.)
        self._proxyFor = self._proxyFor  # type: ignore[method-assign]
        self._proxyDied = self._proxyDied  # type: ignore[method-assign]
        self._callbackId = self._callbackId  # type: ignore[method-assign]
        self._cullCall: Optional[IDelayedCall] = None
        self._partial: List[bytes] = []
        self._partialLength = 0
        self._receiving = False
        # Lines written while a received chunk is being handled go out in one
        # write when it has been: one trip through the transport, not one a line.
        self._outgoing: List[bytes] = []
        self._outgoingBytes = 0
        #: Whether the transport asked us to stop writing (see pauseProducing).
        self.paused = False
        self._closing = False
        self._started = False
        self._lossHooks: List[Callable[[Failure], None]] = []
        self._stallTimer: Optional[IDelayedCall] = None
        self._registered = False
        self._lastBuffered: Optional[int] = None
        self._windowStart = 0.0
        self._windowCount = 0

    # -- Connection lifecycle -------------------------------------------------

    def connectionMade(self) -> None:
        # We are the producer of what we write: when the peer stops reading
        # and the transport's buffer fills, pauseProducing is called.
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._registered = True
        _tuneSocket(self.transport, self.readSize)
        # Over TLS, nothing is written until the handshake (and so the
        # certificate check) has succeeded; see handshakeCompleted.
        if not ISSLTransport.providedBy(self.transport):
            self._start()

    def handshakeCompleted(self) -> None:
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
            self.request("methods", [members])
        except Exception:
            self._log.failure("The exposed object could not be built")
            self.emit("error", Failure())
            self.end()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = 0
        self._closing = True
        cancel(self._cullCall)
        cancel(self._stallTimer)
        self._cullCall = self._stallTimer = None
        self._pendingCulls.clear()
        self._localCallbacks.clear()
        self._localIds.clear()
        self._resent.clear()
        self._partial = []
        self.emit("end")
        hooks, self._lossHooks = self._lossHooks, []
        for hook in hooks:
            hook(reason or Failure(ConnectionDone()))

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
        Close the connection after what has been written is sent.
        """
        self._closing = True
        self._flushOutgoing()
        if self.transport is not None:
            # A TLS transport waits for its producer to go before it closes.
            if self._registered:
                self._registered = False
                self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    # -- Back-pressure: a peer that does not read ------------------------------

    def pauseProducing(self) -> None:
        """
        Our writes are piling up (called on each write while they do).  We
        keep reading (a peer blocked on writing to us while we wait on it
        would deadlock), but a peer that leaves more than C{maxBuffered}
        bytes unread, or takes none of them in C{stallTimeout} seconds, is
        dropped.  Meanwhile C{paused} is true, for writers that can wait
        (the client's queue flush waits for the C{drain} event).
        """
        self.paused = True
        if self._closing:
            return
        buffered = _buffered(self.transport)
        if buffered is not None and buffered > self.limits.maxBuffered:
            self._violation(ProtocolError(f"the peer left more than {self.limits.maxBuffered} bytes unread"))
            self.abort()
            return
        if self._stallTimer is None and self.stallTimeout:
            self._lastBuffered = buffered
            self._stallTimer = self._getClock().callLater(self.stallTimeout, self._checkStall)

    def resumeProducing(self) -> None:
        self.paused = False
        cancel(self._stallTimer)
        self._stallTimer = None
        self.emit("drain")

    def stopProducing(self) -> None:
        pass

    def _checkStall(self) -> None:
        self._stallTimer = None
        now = _buffered(self.transport)
        if now is None or self._lastBuffered is None or now < self._lastBuffered:
            self.pauseProducing()  # it moved (or we cannot tell): look again later
            return
        self._violation(ProtocolError(f"the peer read nothing for {self.stallTimeout} seconds"))
        self.abort()

    def abort(self) -> None:
        """
        Drop the connection now, without waiting for a peer that may never
        read what is buffered.
        """
        self._closing = True
        self._outgoing, self._outgoingBytes = [], 0
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- Receiving --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split lines in linear time whatever the chunking: a line's pieces are
        kept in a list and joined once, when its delimiter arrives.
        """
        if self._closing:
            return
        self._receiving = True
        try:
            if b"\n" not in data:
                self._partial.append(data)
                self._partialLength += len(data)
                if self._partialLength > self.MAX_LENGTH:
                    self.lineLengthExceeded(b"")
                return
            lines = data.split(b"\n")
            # No line can be too long when this chunk and the piece before it
            # are not together: the usual case, checked once for all lines.
            checkLengths = self._partialLength + len(data) > self.MAX_LENGTH
            if self._partial:
                self._partial.append(lines[0])
                lines[0] = b"".join(self._partial)
                self._partial = []
                self._partialLength = 0
            tail = lines.pop()
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
            if tail and not self._closing:
                self._partial.append(tail)
                self._partialLength = len(tail)
                if self._partialLength > self.MAX_LENGTH:
                    self.lineLengthExceeded(tail)
        finally:
            self._receiving = False
            if self._pendingCulls and not self._closing:
                # Proxies that died while this chunk was handled (those of
                # answered calls) are culled in the same write as the
                # answers: no timer, no packet of their own.
                self._outgoing.append(self._cullLine())
            self._flushOutgoing()

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

    def _dispatch(self, message: Any) -> None:
        if type(message) is not dict:
            raise RejectedMessage("a message must be a JSON object")
        method: Any = message.get("method")
        kind = type(method)
        if kind is int:
            target = self._localCallbacks.get(method)
            if target is None:
                raise RejectedMessage(f"no callback with id {method}")
        elif kind is str:
            if method == "methods":
                self._receiveMethods(unscrub(message, self._proxyFor, self.limits))
                return
            if method == "cull":
                self._receiveCull(message.get("arguments", []))
                return
            target = self._exposed.get(method)
            if target is None or not callable(target):
                raise RejectedMessage(f"no callable method {method!r:.60} is exposed")
        else:
            raise RejectedMessage(f"method must be a string or an integer, not {method!r:.40}")
        arguments = unscrub(message, self._proxyFor, self.limits)
        try:
            result = target(*arguments)
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
            {k: v for k, v in members.items() if type(k) is str} if type(members) is dict else {}
        )
        self.remoteReady = True
        self.emit("remote", self.remote, self)
        self.emit("ready")  # dnode's deprecated name, still used by its tests

    def _receiveCull(self, ids: Any) -> None:
        if type(ids) is not list:
            raise RejectedMessage("cull arguments must be a list")
        localCallbacks, localIds, resent = self._localCallbacks, self._localIds, self._resent
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
                callback = localCallbacks.pop(callbackId, None)
                if callback is not None:
                    try:  # _identity(callback), inline: a cull names many ids
                        localIds.pop(callback, None)
                    except TypeError:
                        localIds.pop(_identity(callback), None)
        if bad:
            raise RejectedMessage(f"cull ids must be integers, not {bad[0]!r:.40}")

    def _violation(self, error: ProtocolError) -> None:
        self._log.warn(
            "Closing dnode connection from {peer}: {error}",
            peer=self._peerName(),
            error=error,
        )
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

    # -- Callback tables --------------------------------------------------------

    def _proxyFor(self, callbackId: int) -> RemoteCallback:
        ref = self._remoteCallbacks.get(callbackId)
        if ref is not None:
            proxy = ref()
            if proxy is not None:
                return proxy
        proxy = RemoteCallback(self, callbackId)
        ref = _ProxyRef(proxy, self._proxyDied)
        ref.id = callbackId
        self._remoteCallbacks[callbackId] = ref
        if self._pendingCulls:
            # A cull not yet sent must not forget an id that is live again.
            self._pendingCulls.pop(callbackId, None)
        return proxy

    def _proxyDied(self, ref: _ProxyRef) -> None:
        # Called by the weak reference when its proxy is collected (maybe in
        # the middle of anything): touch nothing but our own tables.  The
        # entry may hold a newer proxy's reference for the same id by then;
        # that one is live, so the id is neither dropped nor culled.
        callbackId = ref.id
        if self._remoteCallbacks.get(callbackId) is not ref:
            return
        del self._remoteCallbacks[callbackId]
        if self._closing or not self.sendCulls:
            return
        self._pendingCulls[callbackId] = None
        if not self._receiving:
            self._scheduleCulls()

    def _scheduleCulls(self) -> None:
        # A proxy dropped outside a received chunk: its cull waits up to
        # CULL_DELAY seconds for others (or for CULL_BATCH of them), as a
        # cull message per dropped callback would be wasteful.
        if len(self._pendingCulls) >= CULL_BATCH:
            self._sendCulls()
        elif self._cullCall is None:
            self._cullCall = self._getClock().callLater(CULL_DELAY, self._cullLater)

    def _cullLater(self) -> None:
        self._cullCall = None
        self._sendCulls()

    def _sendCulls(self) -> None:
        # Never called while a chunk is handled: those culls leave with its
        # answers (see dataReceived).
        if self._pendingCulls and not self._closing and self.transport is not None:
            self.transport.write(self._cullLine())

    def _cullLine(self) -> bytes:
        cancel(self._cullCall)
        self._cullCall = None
        ids = list(self._pendingCulls)
        self._pendingCulls.clear()
        return encodeLine({"method": "cull", "arguments": ids})

    def _callbackId(self, callback: Callable[..., Any]) -> int:
        # _identity(callback), inline: this is every request's path.
        key = callback
        try:
            callbackId = self._localIds.get(key)
        except TypeError:
            key = _identity(callback)
            callbackId = self._localIds.get(key)
        if callbackId is not None:
            self._resent.add(callbackId)
        else:
            callbackId = self._nextId
            self._nextId += 1
            self._localIds[key] = callbackId
            self._localCallbacks[callbackId] = callback
        return callbackId

    def _getClock(self) -> IReactorTime:
        self._clock = resolve(self._clock)
        return self._clock  # type: ignore[return-value]

    # -- Sending ----------------------------------------------------------------

    def request(self, method: Any, arguments: Sequence[Any]) -> None:
        """
        Send one dnode request: call the peer's method by name or callback
        id.  Callables in C{arguments}, at any depth, become callbacks.

        @raise TypeError: a value has no JSON form; nothing is sent.
        @raise DeadRemoteError: the connection is gone.
        """
        if not self.connected or self.transport is None:
            raise DeadRemoteError(f"the dnode link is gone: {_describe(method)} was not called")
        firstNewId = self._nextId
        try:
            line = encodeRequest(method, arguments, self._callbackId, self.limits.maxDepth)
        except Exception:
            # Nothing is sent, so the ids handed out for it are taken back.
            for callbackId in range(firstNewId, self._nextId):
                self._localIds.pop(_identity(self._localCallbacks.pop(callbackId)), None)
                self._resent.discard(callbackId)
            self._nextId = firstNewId
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
            self.transport.write(line)  # type: ignore[union-attr]

    def _flushOutgoing(self) -> None:
        if self._outgoing:
            lines, self._outgoing, self._outgoingBytes = self._outgoing, [], 0
            if self.transport is not None:
                _writeNow(self.transport, b"".join(lines))

    def callbackCount(self) -> Dict[str, int]:
        """
        The sizes of the callback tables, for monitoring and tests.
        """
        return {"local": len(self._localCallbacks), "remote": len(self._remoteCallbacks)}


class _ProxyRef(weakref.ref):  # type: ignore[type-arg]
    """
    A weak reference to a callback proxy that knows the proxy's id.
    """

    __slots__ = ("id",)
    id: int


def _writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data}, sending it at once when C{transport} is a socket with
    nothing buffered.  Twisted would register for writability and send on
    the reactor's next turn: two more system calls and a turn for every
    answer, which is most of what an idle link's ping costs.
    """
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataBuffer
        and len(transport.dataBuffer) == transport.offset
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def _tuneSocket(transport: Any, readSize: int) -> None:
    """
    Make the socket transport under C{transport} (for TLS, the TCP one under
    it) read C{readSize} bytes at a time, and send without waiting.

    The read size is also where it tells its producer to pause, which suits
    us: a peer that stops reading is noticed with less buffered.  Waiting
    (Nagle's algorithm) only delays us: we already write once per received
    chunk, and the tail of each write would wait for the peer's delayed
    acknowledgement while calls are in flight (pipelined calls 140,000 to
    165,000 a second in back-to-back runs).
    """
    for layer in _layers(transport):
        if hasattr(layer, "bufferSize") and hasattr(layer, "doRead"):
            layer.bufferSize = readSize
            sock = getattr(layer, "socket", None)
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            return


def _buffered(transport: Any) -> Optional[int]:
    """
    How many bytes wait in the transport's write buffer (for TLS, in the
    TCP transport under it), or None when it cannot tell.
    """
    for layer in _layers(transport):
        if hasattr(layer, "dataBuffer") and hasattr(layer, "_tempDataLen"):
            return len(layer.dataBuffer) - layer.offset + layer._tempDataLen  # type: ignore[no-any-return]
        if hasattr(layer, "io") and hasattr(layer, "value"):  # StringTransport, in tests
            return len(layer.value())
    return None


def _layers(transport: Any) -> Iterator[Any]:
    """
    C{transport} and the transports under it (TLS over TCP), outermost
    first, a few deep at most.
    """
    for _ in range(4):
        if transport is None:
            return
        yield transport
        transport = getattr(transport, "transport", None)


def _describe(method: Any) -> str:
    """
    A request's target, for error messages.
    """
    return f"callback {method}" if type(method) is int else f"method {method!r:.40}"


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
