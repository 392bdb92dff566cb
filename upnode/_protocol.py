# -*- test-case-name: upnode.test.test_protocol -*-
"""
The dnode protocol: one JSON message a line, spoken exactly as Node's dnode
1.2.2 speaks it, and never trusting the peer.

L{DnodeProtocol} is the adapter between Twisted and the objects that each
own one concern of the connection: L{upnode._framing.LineFramer} (bytes
to lines), L{upnode._session.DnodeSession} (dispatch, the callback tables,
requests) and L{upnode._outflow.OutputFlow} (what we write, registered as
the transport's producer).  It owns the connection's phase, its Node
events, the TLS gate, and ending it.  The socket settings are in
L{upnode._tuning}; what goes on the wire is built in L{upnode._scrub} and
L{upnode._json}.

Phases (C{_phase}): C{NEW}, then C{OPEN}, or C{TLS_HANDSHAKE} then C{OPEN}
over TLS; C{ENDING} once it is asked to close (output still held may
leave); C{LOST}.  A connection its server's guard refused goes from C{NEW}
to C{REFUSED}, and C{LOST}.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from ._droplog import peerName
from ._events import EventEmitter
from ._expose import Cons, construct, exposedMembers
from ._framing import NO_SHARE, LineFramer
from ._limits import Limits
from ._outflow import (
    NO_FLOW,
    READ_PAUSE,
    SAMPLE_EVERY,
    STALL_CHECK_EVERY,
    WATCH_EVERY,
    WRITE_SLICE,
    OutputFlow,
    Role,
)
from ._progress import ackedBytesProbe
from ._reactor import LazyClock
from ._readshare import START_READ
from ._session import DnodeSession
from ._tables import CULL_BATCH, CULL_DELAY, CULL_IDLE
from ._tuning import setReadSize, tune
from ._wiring import IConnectionHost, IConnectionObserver, IServerBudget
from .errors import DropReason, ProtocolError, RejectedMessage
from .tls import verifyServerIdentity

__all__ = [
    "CULL_BATCH",
    "CULL_DELAY",
    "CULL_IDLE",
    "READ_PAUSE",
    "SAMPLE_EVERY",
    "STALL_CHECK_EVERY",
    "WATCH_EVERY",
    "WRITE_SLICE",
    "DnodeProtocol",
    "Role",
]

#: The connection's phases, in the order it goes through them.
NEW, TLS_HANDSHAKE, OPEN, ENDING, REFUSED, LOST = range(6)


@implementer(IHandshakeListener)
class DnodeProtocol(LineReceiver, EventEmitter):
    """
    One dnode session over a stream.

    It is also the C{conn} of Node's API: an event emitter on which the
    upnode connect callback emits C{"up"}.

    Events: C{local} (exposed object, conn: before C{methods} is sent, so
    a handler may still add members), C{remote} (remote, conn), C{ready}
    (the same moment: dnode's deprecated name, which dnode's own test
    files still use), C{fail} (L{RejectedMessage} or L{ProtocolError}: the
    peer's fault), C{error} (C{Failure}: our side's code raised; logged as
    a failure when nobody listens), C{drain} (see L{paused}), C{end}.

    The inherited C{LineReceiver} API holds: C{sendLine} writes through the
    same flow as every request, C{clearLineBuffer} returns the unfinished
    line; raw mode is not supported.

    @ivar remote: the peer's exposed object, filled in when its C{methods}
        message arrives.
    @ivar local: the object we expose on this connection.
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
    #: build on current Node), and a Node client that is told to is much
    #: slower for it (see docs/benchmarks.md); a server for Node clients
    #: may turn it off per connection, in its cons, at the cost of the
    #: peer's memory.  Our own table shrinks either way.
    sendCulls = True
    #: The server-wide L{upnode._guard.ServerGuard} this connection answers
    #: to, if any (set by the server factory); it hears about drops and
    #: unread output.
    guard: Optional[IServerBudget] = None
    #: Set when the guard refused the connection: it is dropped as it
    #: connects (a factory cannot return None instead: a TLS factory wraps
    #: whatever its factory builds).
    refused = False
    #: Whether we connected (set by the client factories).  A client keeps
    #: the callables its server holds; a server bounds them, and stops
    #: reading a peer for output waiting in the kernel too (see L{Role}).
    #: Over TLS, a client checks the server's certificate for the host
    #: itself, whatever the TLS options were (see
    #: L{upnode.tls.verifyServerIdentity}).
    isClient = False
    #: A client that talks to a server whose certificate it deliberately
    #: does not check sets this False, on a subclass that its factory
    #: builds (C{up.protocol = Unverified}): the check runs when the TLS
    #: handshake completes, before the cons is built.
    verifyServerIdentity = True
    #: Who watches this connection (see L{IConnectionObserver}), set before
    #: it is connected; None: nobody, and no work for it.
    observer: Optional[IConnectionObserver] = None
    #: The factory that built it, told of its C{local}, C{remote} and loss
    #: (see L{IConnectionHost}); None: nobody.
    connectionHost: Optional[IConnectionHost] = None
    _log = Logger()

    def __init__(
        self,
        cons: Cons = None,
        limits: Optional[Limits] = None,
        clock: Optional[IReactorTime] = None,
        expose: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        EventEmitter.__init__(self)
        # (dnode's random id: made when first read, see id.)
        self._id: Optional[str] = None
        self.cons = cons
        self.limits = limits = limits or Limits()
        self.MAX_LENGTH = limits.maxLineLength
        self._clock = LazyClock(clock)
        self._expose = expose
        self._phase = NEW
        # (Made when the first is added: most connections have none.)
        self._lossHooks: Optional[List[Callable[[Failure], None]]] = None
        self.local: Any = None
        self._session = session = DnodeSession(self, limits, self._clock.callLater, self._clock.seconds)
        self.remote = session.remote
        self._framer = LineFramer(self, session, session.lineReceived, limits.maxLineLength, limits.maxRate, self._clock)
        #: What we write, on its way to the transport (made on connection).
        self._flow: OutputFlow = NO_FLOW
        self._registered = False
        # How much the transport reads at once, where we set it (see readFull).
        self._readShare = 0

    @property
    def id(self) -> str:
        """
        A random id for this connection, as dnode gives each one (made when
        first read: most connections are never asked).
        """
        if self._id is None:
            self._id = secrets.token_hex(16)
        return self._id

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    @property
    def role(self) -> Role:
        """
        Which end of the connection we are, as our factory said (L{isClient}).
        """
        return Role.CLIENT if self.isClient else Role.SERVER

    # -- Twisted's side ----------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.refused:
            self._phase = REFUSED
            self._framer.stopped = self._session.closing = True
            transport.abortConnection()
            return
        # A server's connections start small and read their share once busy.
        role = self.role
        readSize = self.readSize if self.guard is None else min(self.readSize, START_READ)
        if tune(transport, readSize) and self.guard is not None:
            self._readShare = readSize
            self._framer.fullRead = readSize * 3 // 4
        observer = self.observer
        send: Callable[[bytes], None] = transport.write
        feed: Callable[[bytes], None] = self._framer.feed
        if observer is not None:
            send, feed = _counted(observer.sent, send), _counted(observer.received, feed)
            self._framer.lineReceived = self._session.observedLineReceived(observer)
        self.dataReceived = feed  # type: ignore[method-assign,assignment]
        framer = self._framer
        flow = self._flow = OutputFlow(
            self,
            transport,
            self._clock.resolve(),
            ackedBytesProbe(transport),
            role,
            self.limits.maxBuffered,
            send,
            framer.chunkCount,
        )
        self._framer.maxLength = self.MAX_LENGTH
        self._session.open(
            flow.write, self.limits.maxLocalCallbacks if role is Role.SERVER else -1, self.readSize, flow.sendNow
        )
        # The flow is the producer of what we write: when the peer stops
        # reading and the transport's buffer fills, it is paused.
        transport.registerProducer(flow, True)
        self._registered = True
        # Over TLS, nothing is written until the handshake (and so the
        # certificate check) has succeeded; see handshakeCompleted.
        if ISSLTransport.providedBy(transport):
            self._phase = TLS_HANDSHAKE
        else:
            self._start()

    def dataReceived(self, data: bytes) -> None:
        # (Replaced on connection by the framer's own, bound once.)
        self._framer.feed(data)

    def handshakeCompleted(self) -> None:
        if self._phase != TLS_HANDSHAKE:
            return
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
        self._phase = OPEN
        try:
            local = construct(self.cons, self.remote, self)
            self.local = local
            # Before the members are read, as in Node: a handler may add some.
            if self.connectionHost is not None:
                self.connectionHost.connectionLocal(local, self)
            self.emit("local", local, self)
            members = exposedMembers(local)
            if self._expose is not None:
                members = self._expose(members)
            self._session.expose(members)
        except Exception:
            self.localError(Failure())
            self.end()
        else:
            # The peer waits for our methods: sent now, where the transport
            # can (see L{upnode._tuning.sendNowFor}), not on the reactor's
            # next turn.  On a server this also has the first connection's
            # transport set, before the next one is made, the attributes
            # its writes set (CPython then gives every later connection's
            # transport the same compact attribute layout; set only after
            # many were made, they cost each one a dict of its own).  Not
            # once a handler has ended or dropped the connection.
            if self._phase == OPEN:
                self._flow.sendNow()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = 0
        self._phase = LOST
        self._framer.stop()
        self._flow.detach()
        self._session.close()
        if self.observer is not None:
            self.observer.ended()
        self.emit("end")
        if self.connectionHost is not None:
            self.connectionHost.connectionGone(self)
        hooks, self._lossHooks = self._lossHooks, None
        for hook in hooks or ():
            hook(reason or Failure(ConnectionDone()))
        # Whatever still holds this protocol (a log event buffered before
        # any observer started names it as its source) must not hold the
        # transport, and the megabytes of unsent output it may have.
        self.transport = None

    # -- The connection's life -----------------------------------------------------

    def notifyOnLoss(self, hook: Callable[[Failure], None]) -> None:
        """
        Call C{hook(reason)} once when this connection is lost.
        """
        if self._lossHooks is None:
            self._lossHooks = []
        self._lossHooks.append(hook)

    def whenLost(self) -> Deferred[None]:
        """
        A Deferred that fires (with None) once this connection is lost.
        """
        lost: Deferred[None] = Deferred()
        self.notifyOnLoss(lambda reason: lost.callback(None))
        return lost

    def _ending(self) -> None:
        if self._phase < ENDING:
            self._phase = ENDING
        self._framer.stopped = self._session.closing = self._session.proxies.closing = True

    def end(self) -> None:
        """
        Close the connection after what has been written is sent (what the
        peer has not yet taken included).
        """
        self._ending()
        self._session.flush()
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
        self._ending()
        self._session.dropOutgoing()
        self._flow.drop()
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def drop(self, reason: str, why: str) -> None:
        """
        Drop the connection for its peer's fault: counted under C{reason}
        (one of L{DropReason.ALL}) by a server's guard, and logged
        with C{why}.
        """
        if self.guard is not None:
            self.guard.drop(self, reason, why)
            return
        self._log.warn("Dropping the connection from {peer} ({reason}): {why}", peer=self._peerName(), reason=reason, why=why)
        self.abort()

    # -- Requests ---------------------------------------------------------------------

    def request(self, method: Any, arguments: Sequence[Any]) -> None:
        """
        Send one dnode request: call the peer's method by name or callback
        id.  Callables in C{arguments}, at any depth, become callbacks.

        @raise TypeError: a value has no JSON form; nothing is sent.
        @raise DeadRemoteError: the connection is gone.
        """
        self._session.request(method, arguments)

    def writeTogether(self, work: Callable[[], Any]) -> None:
        """
        Run C{work}, which sends requests, as a received chunk is handled:
        what it writes reaches the transport in writes of the read size
        (not one a request), and is sent at once where the transport
        allows (see L{upnode._tuning.sendNowFor}).  Inside a received
        chunk's handling, its writes join that chunk's.
        """
        session = self._session
        if session.receiving:
            work()
            return
        session.beginChunk()
        try:
            work()
        finally:
            session.endChunk()

    def takesMore(self) -> bool:
        """
        Whether we may write on, for a writer that can wait for C{drain}
        (the client's queue flush): see L{OutputFlow.takesMore}.
        """
        return self._flow.takesMore()

    @property
    def remoteReady(self) -> bool:
        """
        Whether the peer's C{methods} have come.
        """
        return self._session.remoteReady

    def callbackCount(self) -> Dict[str, int]:
        """
        The sizes of the callback tables, for monitoring and tests.
        """
        return self._session.callbackCount()

    # -- LineReceiver's API, made honest -----------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        self._session.lineReceived(line)

    def sendLine(self, line: bytes) -> None:
        """
        Write C{line} and the delimiter, in order with everything else we
        write (held while the peer is slow, counted against C{maxBuffered}).
        """
        self._session.write(line + self.delimiter)

    def clearLineBuffer(self) -> bytes:
        """
        Forget the unfinished line, and return it.
        """
        return self._framer.takePartial()

    def setRawMode(self) -> None:
        raise NotImplementedError("a dnode connection is made of lines only")

    def hasPartialLine(self) -> bool:
        """
        Whether part of a line has arrived and its delimiter not yet.
        """
        return self._framer.hasPartialLine()

    @property
    def linesReceived(self) -> int:
        """
        Lines received so far (a guard watches it for lines that never end).
        """
        return self._framer.linesReceived

    @property
    def readingPaused(self) -> bool:
        """
        Whether we stopped reading the peer (a server does, while the peer
        leaves too much of our output unread).
        """
        return self._flow.readingPaused

    def written(self) -> int:
        """
        Bytes written to the peer so far, those we hold included.
        """
        return self._flow.handed + self._flow.heldBytes

    def heard(self, upTo: int) -> int:
        """
        A count that moves whenever the peer is heard from: something of
        its arrived, or its TCP stack took some of our output (where the
        kernel tells; elsewhere, the transport took some), up to the
        offset C{upTo}.  Its heartbeat asks, when a ping's answer is late,
        with the offset past that ping (see L{upnode._heartbeat}).
        """
        return self._framer.chunksReceived + min(self._flow.peerProgress(), upTo)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._violation(ProtocolError(f"line longer than {self.MAX_LENGTH} bytes"))

    @property
    def paused(self) -> bool:  # type: ignore[override]
        """
        Whether the transport asked us to stop writing: writers that can
        wait (the client's queue flush) wait for the C{drain} event.
        (LineReceiver's own C{paused}, for reading, is not used: reading
        is paused through the transport.)
        """
        return self._flow.paused

    # (The output flow is the transport's producer; these are its, here
    # for who drives a connection by hand.)

    def pauseProducing(self) -> None:
        self._flow.pauseProducing()

    def resumeProducing(self) -> None:
        self._flow.resumeProducing()

    def stopProducing(self) -> None:
        self._flow.stopProducing()

    # -- What the flow, the framer and the session tell us --------------------------------

    def flowDrained(self) -> None:
        self.emit("drain")

    def flowSent(self) -> None:
        self._close()

    def flowFailed(self, error: ProtocolError) -> None:
        self._violation(error, DropReason.UNREAD)
        self.abort()

    def flowUnread(self, size: int) -> None:
        if self.guard is not None:
            self.guard.noteUnread(self, size)

    def flowLarge(self) -> None:
        if self.guard is not None:
            self.guard.noteLarge(self)

    largeLine = flowLarge

    def framingViolation(self, error: ProtocolError) -> None:
        self._violation(error)

    def readFull(self) -> None:
        """
        We read all we could at once: with many connections as busy, read
        less at a time (see L{upnode._readshare}).
        """
        framer = self._framer
        if self.guard is None or self.transport is None:
            framer.fullRead = NO_SHARE
            return
        share = self.guard.readShare(self, self.readSize)
        if share != self._readShare:
            if not setReadSize(self.transport, share):
                framer.fullRead = NO_SHARE  # a transport whose read size is its own
                return
            self._readShare = share
        # (Over TLS, what a full read gives us is a little less.)
        framer.fullRead = share * 3 // 4

    def remoteArrived(self) -> None:
        if self.connectionHost is not None:
            self.connectionHost.connectionRemote(self)
        self.emit("remote", self.remote, self)
        self.emit("ready")

    def violation(self, error: ProtocolError) -> None:
        self._violation(error)

    def rejected(self, error: RejectedMessage) -> None:
        self._log.warn("Rejected a dnode message from {peer}: {error}", peer=self._peerName(), error=error)
        self.emit("fail", error)

    def localError(self, failure: Failure) -> None:
        """
        Our side's code raised: the C{error} event is its one owner (logged
        as a failure, once, when nobody listens for it).
        """
        self.emit("error", failure)

    def tooManyCallbacks(self, error: ProtocolError) -> None:
        self._violation(error)
        self.abort()

    def _violation(self, error: ProtocolError, reason: str = DropReason.HOSTILE) -> None:
        """
        The peer broke a limit: say so (a server's guard counts it, and logs
        once per reason and period), and close.
        """
        if self.guard is not None:
            self.guard.count(reason, self, "{error}", error=error)
        else:
            self._log.warn("Closing dnode connection from {peer}: {error}", peer=self._peerName(), error=error)
        if self.observer is not None:
            self.observer.dropped(reason)
        self.emit("fail", error)
        self.end()

    def _peerName(self) -> str:
        return peerName(self, "peer")


def _counted(count: Callable[[int], None], f: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """
    C{f}, telling C{count} the size of what it is given first.
    """

    def counted(data: bytes) -> None:
        count(len(data))
        f(data)

    return counted
