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
import weakref
from collections import deque
from inspect import iscoroutine
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ._arity import droppedResult, positionalArity, runCoroutine
from ._events import EventEmitter
from ._expose import Cons, construct, exposedMembers
from ._guard import HOSTILE, LARGE, LARGE_LINE, START_READ, UNREAD, ServerGuard
from ._json import decodeLine, encodeLine
from ._limits import Limits
from ._progress import AckedBytes, ackedBytesProbe
from ._reactor import cancel, resolve
from ._remote import Remote, RemoteCallback, replaceMembers
from ._scrub import encodeRequest, unscrub
from ._tuning import setReadSize, tune
from .errors import DeadRemoteError, ProtocolError, RejectedMessage
from .tls import verifyServerIdentity

#: Culls go out in batches of this many ids, or after this many seconds.
CULL_BATCH = 64
CULL_DELAY = 0.05
#: Bytes handed to the transport at a time while a peer is slow to read:
#: the unit of progress that keeps a slow but steady reader connected.
WRITE_SLICE = 64 * 1024
#: Past this much output held for a peer, we stop reading it until it has
#: taken some: a peer that sends calls and reads none of the answers gets
#: no more of our time (the others' latency) or memory.  Any asynchronous
#: peer (Twisted, Node) reads while it writes; one that does not is
#: dropped after stallTimeout, as before.  Reading resumes once it has
#: half as much or less left.
READ_PAUSE = 1024 * 1024
#: (No sample is due: the kernel does not tell.)
NEVER = 1 << 62
#: Where the kernel says what the peer has taken (see L{upnode._progress}),
#: we ask it once per this many bytes handed to the transport; and while
#: output is waiting for the peer, every STALL_CHECK_EVERY seconds (to
#: see whether it is stalled: a server streaming to thousands of peers
#: pays one timer a second for each), or every WATCH_EVERY seconds while
#: we have stopped reading it (to read again soon once it has caught up).
SAMPLE_EVERY = 64 * 1024
STALL_CHECK_EVERY = 1.0
WATCH_EVERY = 0.1


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
        self._partial: Any = b""  # bytes, or a bytearray while it grows
        #: Lines received so far (a guard watches it for lines that never end).
        self.linesReceived = 0
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
        # What we wrote while the transport had us paused, in slices, and
        # its size: what the peer has left unread (see pauseProducing).
        # (Made when first needed: an idle connection has none to pay for.)
        self._held: Optional[Deque[bytes]] = None
        self._heldBytes = 0
        self._endWhenSent = False
        self._readingPaused = False
        # What the peer's TCP stack has taken (see _sample): bytes handed to
        # the transport, acknowledged by the peer, and not yet acknowledged.
        self._ackedBytes: Optional[AckedBytes] = None
        self._handed = 0
        self._nextSample = NEVER
        self._peerAcked = 0
        self._kernelUnread = 0
        self._lastProgress = 0.0
        self._watch: Optional[IDelayedCall] = None
        # How much the transport reads at once, where we set it, and the
        # size of a read that took (nearly) all of that (see _shareReads).
        self._readShare = 0
        self._fullRead = NEVER
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
        self._receiving = True
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
            self._receiving = False
            if self._pendingCulls and not self._closing:
                # Proxies that died while this chunk was handled (those of
                # answered calls) are culled in the same write as the
                # answers: no timer, no packet of their own.
                self._outgoing.append(self._cullLine())
            self._flushOutgoing()

    def _shareReads(self) -> None:
        """
        We read all we could at once: with many connections as busy, read
        less at a time (see L{ServerGuard.readShare}).
        """
        if self.guard is None or self.transport is None:
            self._fullRead = NEVER
            return
        share = self.guard.readShare(self, self.readSize)
        if share != self._readShare:
            if not setReadSize(self.transport, share):
                self._fullRead = NEVER  # a transport whose read size is its own
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

    def _write(self, data: bytes) -> None:
        """
        Hand C{data} to the transport, or hold it while the transport has
        us paused; a large write goes a slice at a time either way.
        """
        if self.paused or self._held or len(data) > WRITE_SLICE:
            self._hold(data)
            self._release()
            self._checkHeld()
        else:
            self.transport.write(data)  # type: ignore[union-attr]
            self._handed += len(data)
            if self._handed >= self._nextSample:
                self._sample()

    def _hold(self, data: bytes) -> None:
        held = self._held
        if held is None:
            held = self._held = deque()
        if len(data) <= WRITE_SLICE:
            held.append(data)
        else:
            view = memoryview(data)
            for start in range(0, len(data), WRITE_SLICE):
                held.append(bytes(view[start : start + WRITE_SLICE]))
        self._heldBytes += len(data)

    def _release(self) -> None:
        held = self._held
        while held and not self.paused and self.transport is not None:
            data = held.popleft()  # type: ignore[union-attr]
            self._heldBytes -= len(data)
            self._handed += len(data)
            self.transport.write(data)
        if self._handed >= self._nextSample:
            self._sample()
        else:
            self._checkReading()
        if self.guard is not None:
            self.guard.noteUnread(self, self._heldBytes)
        if not held and self._endWhenSent:
            self._endWhenSent = False
            self._close()

    def _checkHeld(self) -> None:
        # (Whether to read on was settled by the _release before this.)
        if self._heldBytes > self.limits.maxBuffered and not self._closing:
            self._violation(
                ProtocolError(f"the peer left more than {self.limits.maxBuffered} bytes unread"), UNREAD
            )
            self.abort()

    def _checkReading(self) -> None:
        """
        Stop reading a peer that has more than READ_PAUSE bytes of our
        output left to take, and read again once it has half as much or
        less.

        What counts is what we hold; on a server, where the kernel tells,
        what the transport and the network hold too.  Only a server stops
        reading for that: it answers what it reads.  A client flushing its
        queue writes as fast as the transport takes it, and if it stopped
        reading the answers while the server stopped reading its calls,
        each would wait on the other for ever.
        """
        if self.transport is None or self._closing:
            return
        unread = self._heldBytes
        if self.guard is not None:
            unread += self._kernelUnread
        # (A transport is a push producer of what it reads: IPushProducer.)
        if not self._readingPaused:
            if unread > READ_PAUSE:
                self._readingPaused = True
                self.transport.pauseProducing()  # type: ignore[attr-defined]
                if self._ackedBytes is not None:
                    self._watchWithin(WATCH_EVERY)
        elif unread <= READ_PAUSE // 2:
            self._readingPaused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _dropHeld(self) -> None:
        self._held = None
        self._heldBytes = 0
        self._endWhenSent = False
        if self.guard is not None:
            self.guard.noteUnread(self, 0)

    # -- Framing: back-pressure, a peer that does not read -----------------------
    #
    # Twisted's producer interface: the transport pauses us when its buffer
    # fills and resumes us once it has drained.  While paused, what we
    # write waits here, in slices, and each resume hands the transport one
    # slice more; so a resume is the peer's progress, and what we hold is
    # what it has left unread (give or take the slice the transport has).
    #
    # Behind the transport the kernel queues megabytes, which a peer that
    # reads nothing fills before the transport's buffer ever does.  Where
    # the kernel says what the peer's TCP stack has acknowledged (see
    # upnode._progress), that is the peer's progress instead, and the
    # stall timer is the watch of _watchPeer.

    def _sample(self) -> None:
        """
        Ask the kernel what the peer has taken: its acknowledging anything
        is progress (so is having nothing left to take), and the rest is
        what it has left unread.  While some is, keep watching (see
        L{_watchPeer}).
        """
        self._nextSample = self._handed + SAMPLE_EVERY
        try:
            acked = self._ackedBytes() if self._ackedBytes is not None else None
        except OSError:  # the socket is already gone: connectionLost follows
            acked = None
        if acked is None:
            return
        if acked > self._peerAcked or acked >= self._handed:
            self._peerAcked = acked
            self._lastProgress = self._getClock().seconds()
        # (Over TLS what we hand over grows on the way: records, handshake.)
        self._kernelUnread = max(0, self._handed - acked)
        if self._kernelUnread >= LARGE and self.guard is not None:
            self.guard.noteLarge(self)
        self._checkReading()
        if self._kernelUnread or self.paused:
            self._watchWithin(WATCH_EVERY if self._readingPaused else STALL_CHECK_EVERY)

    def _watchWithin(self, seconds: float) -> None:
        """
        Look at the peer's progress again (see L{_watchPeer}) within
        C{seconds}.
        """
        if self._closing:
            return
        clock = self._getClock()
        if self._watch is None:
            self._watch = clock.callLater(seconds, self._watchPeer)
        elif self._watch.getTime() > clock.seconds() + seconds:
            self._watch.reset(seconds)

    def _watchPeer(self) -> None:
        """
        With output waiting: drop a peer that has taken none of it for
        C{stallTimeout} seconds, and read again from one that has caught up.
        """
        self._watch = None
        if self._closing or self.transport is None:
            return
        self._sample()
        waiting = self._kernelUnread + self._heldBytes
        if waiting and self.stallTimeout and self._getClock().seconds() - self._lastProgress >= self.stallTimeout:
            self._dropStalled(waiting)

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full.  We keep reading (a peer blocked on
        writing to us while we wait on it would deadlock) until we hold
        READ_PAUSE bytes for it, and hold what we write from now on: past C{maxBuffered} bytes held, or with no
        progress for C{stallTimeout} seconds, the peer is dropped.
        Meanwhile C{paused} is true, for writers that can wait (the client's
        queue flush waits for the C{drain} event).
        """
        self.paused = True
        if self._ackedBytes is not None:
            # The kernel tells what the peer takes: see _sample.
            self._watchWithin(STALL_CHECK_EVERY)
        elif self._stallTimer is None and self.stallTimeout and self.transport is not None:
            self._stallTimer = self._getClock().callLater(self.stallTimeout, self._stalled)

    def resumeProducing(self) -> None:
        self.paused = False
        cancel(self._stallTimer)
        self._stallTimer = None
        self._release()
        if not self.paused and not self._held:
            self.emit("drain")

    def stopProducing(self) -> None:
        pass

    def _stalled(self) -> None:
        self._stallTimer = None
        if not self.paused or self.transport is None:
            return
        self._dropStalled(self._heldBytes)

    def _dropStalled(self, waiting: int) -> None:
        self._violation(
            ProtocolError(
                f"the peer took none of our output for {self.stallTimeout:g} seconds ({waiting} bytes waiting)"
            ),
            UNREAD,
        )
        self.abort()

    # -- Session: the connection's life ------------------------------------------

    def connectionMade(self) -> None:
        if self.refused:
            self._closing = True
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        # We are the producer of what we write: when the peer stops reading
        # and the transport's buffer fills, pauseProducing is called.
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._registered = True
        # A server's connections start small and read their share once busy.
        readSize = self.readSize if self.guard is None else min(self.readSize, START_READ)
        if tune(self.transport, readSize) and self.guard is not None:
            self._readShare = readSize
            self._fullRead = readSize * 3 // 4
        self._ackedBytes = ackedBytesProbe(self.transport)
        if self._ackedBytes is not None:
            self._nextSample = SAMPLE_EVERY
            self._lastProgress = self._getClock().seconds()
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
        cancel(self._watch)
        self._cullCall = self._stallTimer = self._watch = None
        self._ackedBytes = None
        self._pendingCulls.clear()
        self._localCallbacks.clear()
        self._localIds.clear()
        self._resent.clear()
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
        # The methods bound once in __init__ refer back to this protocol:
        # without them it goes when the last reference does, not at the
        # collector's next pass (with everything it holds).  The class's
        # own, the same methods, are found from now on.
        for name in _BOUND_ONCE:
            self.__dict__.pop(name, None)

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
        if self._held:
            self._endWhenSent = True  # see _release
        else:
            self._close()

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
        self._dropHeld()
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
        # Arguments beyond what the function takes are left off, as
        # JavaScript does (see _arity); inline, as this is every call's path.
        # A callback we handed out gets None for the ones it is not given
        # (Node's error-first cb(err) to a def cb(err, result)); a method we
        # expose called with too few is the caller's mistake: a TypeError.
        limit, required = positionalArity(target)
        if 0 <= limit < len(arguments):
            arguments = arguments[:limit]
        elif len(arguments) < required and not self._exposes(target, kind):
            arguments = [*arguments, *(None,) * (required - len(arguments))]
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
            result = runCoroutine(result)
        if isinstance(result, Deferred):
            result.addCallbacks(self._returned, self._localError, (target, kind))
        else:
            self._returned(result, target, kind)

    def _exposes(self, target: Any, kind: type) -> bool:
        # Whether the peer called one of our exposed methods (by name, or
        # by the id its methods message gave it) rather than a callback we
        # passed it; asked only off the common path.
        return kind is str or any(member is target for member in self._exposed.values())

    def _returned(self, result: Any, target: Any, kind: type) -> Any:
        if result is not None and self._exposes(target, kind):
            droppedResult(result, target)
        return result  # a Deferred the method also handed elsewhere keeps its value

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

    def _proxyFor(self, callbackId: int) -> RemoteCallback:
        ref = self._remoteCallbacks.get(callbackId)
        if ref is not None:
            proxy = ref()
            if proxy is not None:
                return proxy
        if len(self._remoteCallbacks) >= self.limits.maxRemoteCallbacks:
            raise ProtocolError(
                f"the peer would have us hold more than {self.limits.maxRemoteCallbacks} of its callbacks"
            )
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
            self._write(self._cullLine())

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
            if self.guard is not None and len(self._localCallbacks) >= self.limits.maxLocalCallbacks:
                self._tooManyLocalCallbacks()
            callbackId = self._nextId
            self._nextId += 1
            self._localIds[key] = callbackId
            self._localCallbacks[callbackId] = callback
        return callbackId

    def _tooManyLocalCallbacks(self) -> None:
        # A server's peer that never culls what we send it (every Node dnode
        # client, whose weak module no longer builds), with a method that
        # sends back what it is given, would have us keep every callable for
        # ever.  (A client keeps them: its server's culls are its own.)
        limit = self.limits.maxLocalCallbacks
        self._violation(ProtocolError(f"the peer would have us keep more than {limit} of our callbacks"))
        self.abort()
        raise DeadRemoteError(f"the connection was closed: the peer never culls, and {limit} callbacks are held")

    def callbackCount(self) -> Dict[str, int]:
        """
        The sizes of the callback tables, for monitoring and tests.
        """
        return {"local": len(self._localCallbacks), "remote": len(self._remoteCallbacks)}

    # -- Encoding: requests out --------------------------------------------------

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
                callback = self._localCallbacks.pop(callbackId, None)
                if callback is not None:  # (the tables are empty once the link is lost)
                    self._localIds.pop(_identity(callback), None)
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
            self._write(line)


#: The methods DnodeProtocol.__init__ binds once (see connectionLost).
_BOUND_ONCE = ("_proxyFor", "_proxyDied", "_callbackId")


class _ProxyRef(weakref.ref):  # type: ignore[type-arg]
    """
    A weak reference to a callback proxy that knows the proxy's id.
    """

    __slots__ = ("id",)
    id: int


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
