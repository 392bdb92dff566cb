# -*- test-case-name: upnode.test.test_outflow -*-
"""
The output side of one connection: L{OutputFlow}, the push producer
registered with the transport, owns what we write and cannot hand over
yet, and the peer's progress in taking it.

Twisted's producer interface: the transport pauses the flow when its buffer
fills and resumes it once it has drained.  While paused, what we write
waits here, in slices, and each resume hands the transport one slice more;
so a resume is the peer's progress, and what we hold is what it has left
unread (give or take the slice the transport has).

Behind the transport the kernel queues megabytes, which a peer that reads
nothing fills before the transport's buffer ever does.  Where the kernel
says what the peer's TCP stack has acknowledged (see L{upnode._progress}),
that is the peer's progress instead (L{KernelProgress}); elsewhere the
transport's resume is (L{TransportProgress}).  Which one is chosen once,
when the flow is built.

Write side: C{FLOWING} (nothing held, not paused), C{HOLDING} (paused, or
output held), C{ENDING} (the owner asked to close once what is held has
gone), C{DROPPED} (the connection is gone: nothing is held or written).
Read side, independently: reading, or (a server only) paused past
L{READ_PAUSE} bytes unread until half of that is left.

A stall is neither direction moving: nothing of ours taken and nothing
arriving from the peer, for the owner's C{stallTimeout}.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Optional

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from ._reactor import cancel
from ._tuning import sendNowFor
from .errors import ProtocolError

if TYPE_CHECKING:
    from ._progress import AckedBytes
    from ._wiring import IFlowOwner

#: Bytes handed to the transport at a time while a peer is slow to read:
#: the unit of progress that keeps a slow but steady reader connected.
WRITE_SLICE = 64 * 1024
#: Past this much output held for a peer, we stop reading it until it has
#: taken some: a peer that sends calls and reads none of the answers gets
#: no more of our time (the others' latency) or memory.  Any asynchronous
#: peer (Twisted, Node) reads while it writes; one that does not is
#: dropped after the stall timeout.  Reading resumes once it has half as
#: much or less left.
READ_PAUSE = 1024 * 1024
#: Where the kernel says what the peer has taken, we ask it once per this
#: many bytes handed to the transport; and while output is waiting for the
#: peer, every STALL_CHECK_EVERY seconds (to see whether it is stalled,
#: without a timer per peer per tick on a server streaming to many), or
#: every WATCH_EVERY seconds while we have stopped reading it (to read
#: again soon once it has caught up).
SAMPLE_EVERY = 64 * 1024
STALL_CHECK_EVERY = 1.0
WATCH_EVERY = 0.1
#: No sample is due: the kernel does not tell.
NO_SAMPLE = 1 << 62
#: Unread output (handed over, not acknowledged) from which a connection is
#: large, for its owner (a server hands freed memory back when it goes).
LARGE = 1024 * 1024


class Role(enum.Enum):
    """
    Which end of the connection we are.  A server stops reading a peer that
    leaves too much of its output unread, in the kernel too (it answers
    what it reads), and bounds the callables a peer holds; a client does
    neither.
    """

    SERVER = "server"
    CLIENT = "client"


FLOWING = "flowing"
HOLDING = "holding"
ENDING = "ending"
DROPPED = "dropped"


class TransportProgress:
    """
    The peer's progress is the transport resuming us: a stall is a pause
    that lasts C{stallTimeout} seconds.
    """

    firstSample = NO_SAMPLE
    kernelUnread = 0

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._timer: Optional[IDelayedCall] = None
        self._heardMark = 0

    def acked(self, flow: OutputFlow) -> int:
        """
        Bytes of our output the peer took: not known here (a resume says
        only that the transport's buffer drained), so none.
        """
        return 0

    def sample(self, flow: OutputFlow) -> None:
        flow._nextSample = NO_SAMPLE

    def paused(self, flow: OutputFlow) -> None:
        timeout = flow.owner.stallTimeout
        if self._timer is None and timeout:
            self._heardMark = flow.heardFrom()
            self._timer = self._clock.callLater(timeout, self._stalled, flow)

    def resumed(self, flow: OutputFlow) -> None:
        cancel(self._timer)
        self._timer = None

    def readingPaused(self, flow: OutputFlow) -> None:
        pass

    def stop(self) -> None:
        cancel(self._timer)
        self._timer = None

    def _stalled(self, flow: OutputFlow) -> None:
        # A peer still writing to us is alive and reading its own input
        # is its business: wait on (a server stops reading a peer that
        # leaves too much unread, and then hears nothing more from it).
        self._timer = None
        if flow.paused and not flow.dropped:
            heard = flow.heardFrom()
            if heard != self._heardMark:
                self._heardMark = heard
                self._timer = self._clock.callLater(flow.owner.stallTimeout, self._stalled, flow)
                return
            flow.stalled(flow.heldBytes)


class KernelProgress:
    """
    The peer's progress is its TCP stack acknowledging our bytes, as the
    kernel tells (C{probe}): asked once per L{SAMPLE_EVERY} bytes handed
    over, and watched while anything waits for the peer.
    """

    firstSample = SAMPLE_EVERY

    def __init__(self, clock: IReactorTime, probe: AckedBytes) -> None:
        self._clock = clock
        self.probe = probe
        self._peerAcked = 0
        self.kernelUnread = 0
        self._lastProgress = clock.seconds()
        self._heardMark = 0
        self._watch: Optional[IDelayedCall] = None

    def acked(self, flow: OutputFlow) -> int:
        """
        The bytes of our output the peer's TCP stack has acknowledged, as
        the kernel says now.
        """
        try:
            acked = self.probe()
        except OSError:
            return self._peerAcked
        if acked > self._peerAcked:
            self._peerAcked = acked
            self._lastProgress = self._clock.seconds()
        return self._peerAcked

    def sample(self, flow: OutputFlow) -> None:
        """
        Ask the kernel what the peer has taken: its acknowledging anything
        is progress (so is having nothing left to take), and the rest is
        what it has left unread.  While some is, keep watching.
        """
        flow._nextSample = flow.handed + SAMPLE_EVERY
        try:
            acked = self.probe()
        except OSError:  # the socket is already gone: connectionLost follows
            return
        handed = flow.handed
        if acked > self._peerAcked or acked >= handed:
            self._peerAcked = acked
            self._lastProgress = self._clock.seconds()
        # (Over TLS what we hand over grows on the way: records, handshake.)
        self.kernelUnread = max(0, handed - acked)
        if self.kernelUnread >= LARGE:
            flow.owner.flowLarge()
        flow.checkReading()
        if self.kernelUnread or flow.paused:
            self._within(flow, WATCH_EVERY if flow.readingPaused else STALL_CHECK_EVERY)

    def paused(self, flow: OutputFlow) -> None:
        self._within(flow, STALL_CHECK_EVERY)

    def resumed(self, flow: OutputFlow) -> None:
        pass

    def readingPaused(self, flow: OutputFlow) -> None:
        self._within(flow, WATCH_EVERY)

    def stop(self) -> None:
        cancel(self._watch)
        self._watch = None

    def _within(self, flow: OutputFlow, seconds: float) -> None:
        if flow.closing:
            return
        if self._watch is None:
            self._watch = self._clock.callLater(seconds, self._watchPeer, flow)
        elif self._watch.getTime() > self._clock.seconds() + seconds:
            self._watch.reset(seconds)

    def _watchPeer(self, flow: OutputFlow) -> None:
        """
        With output waiting: drop a peer that has taken none of it, and
        from which nothing arrived either, for the stall timeout; and read
        again from one that has caught up.

        A peer still writing to us is alive, whatever it leaves unread
        meanwhile: on a slow path its upload and our replies each fill one
        direction, and it reads ours once its own have gone.  One that
        sends and never reads is stopped being read (L{READ_PAUSE}), and
        then nothing arrives from it.
        """
        self._watch = None
        if flow.closing:
            return
        heard = flow.heardFrom()
        if heard != self._heardMark:
            self._heardMark = heard
            self._lastProgress = self._clock.seconds()
        self.sample(flow)
        waiting = self.kernelUnread + flow.heldBytes
        timeout = flow.owner.stallTimeout
        if waiting and timeout and self._clock.seconds() - self._lastProgress >= timeout:
            flow.stalled(waiting)


@implementer(IPushProducer)
class OutputFlow:
    """
    What one connection writes, on its way to the transport.

    @ivar paused: whether the transport asked us to stop writing.
    @ivar readingPaused: whether we asked the transport to stop reading.
    @ivar handed: bytes handed to the transport so far.
    """

    def __init__(
        self,
        owner: IFlowOwner,
        transport: Any,
        clock: IReactorTime,
        probe: Optional[AckedBytes],
        role: Role,
        maxBuffered: int,
        send: Optional[Callable[[bytes], None]] = None,
        heardFrom: Callable[[], int] = lambda: 0,
    ) -> None:
        """
        @param send: what hands bytes to the transport: its own C{write}
            (a startTLS transport routes it to its TLS layer), or a function
            that calls it.
        @param heardFrom: a count that moves whenever something arrives from
            the peer (see L{upnode._framing.LineFramer.chunksReceived}).
        """
        self.owner = owner
        self._transport = transport
        self._send: Callable[[bytes], None] = send if send is not None else transport.write
        self._sendNow = sendNowFor(transport)
        self._server = role is Role.SERVER
        self.heardFrom = heardFrom
        self._maxBuffered = maxBuffered
        self.progress = KernelProgress(clock, probe) if probe is not None else TransportProgress(clock)
        self._nextSample = self.progress.firstSample
        self.handed = 0
        self.paused = False
        self.readingPaused = False
        self.closing = False
        self.dropped = False
        # What we wrote while the transport had us paused, in slices, and
        # its size: what the peer has left unread.  (Made when first
        # needed: an idle connection has none to pay for.)
        self._held: Optional[Deque[bytes]] = None
        self.heldBytes = 0
        self._endWhenSent = False

    @property
    def state(self) -> str:
        """
        The write side's state: L{FLOWING}, L{HOLDING}, L{ENDING} or L{DROPPED}.
        """
        if self.dropped:
            return DROPPED
        if self._endWhenSent:
            return ENDING
        if self.paused or self._held:
            return HOLDING
        return FLOWING

    def write(self, data: bytes) -> None:
        """
        Hand C{data} to the transport, or hold it while the transport has
        us paused; a large write goes a slice at a time either way.
        """
        if self.paused or self._held or len(data) > WRITE_SLICE:
            if self.dropped:
                return
            self._hold(data)
            self._release()
            self._checkHeld()
        else:
            self._send(data)
            self.handed += len(data)
            if self.handed >= self._nextSample:
                self.progress.sample(self)

    def sendNow(self) -> None:
        """
        The end of a received chunk, whose answers were just written: have
        the transport send them now where it can (see
        L{upnode._tuning.sendNowFor}).  Also while the transport has us
        paused, as long as we hold nothing: what paused us may be only its
        own buffer passing its threshold, which the kernel takes at once
        (the transport then resumes us, before this returns).  Not while
        we hold output: that waits for the peer, and the reactor's own
        turn resumes us.
        """
        if self._sendNow is not None and not self._held and not self.dropped:
            self._sendNow()

    def takesMore(self) -> bool:
        """
        Whether we may write on: the transport has not paused us, or has
        just sent what paused us.  A Twisted transport pauses us once it
        holds more than the read size we set on it (one chunk's writes can
        be that much) until the reactor's next turn writes it out; the
        kernel takes that at once unless the peer is behind, so it is
        handed over now (L{sendNow}), and a writer that can wait waits
        for the drain only where it did not all go.
        """
        if self.paused:
            self.sendNow()
        return not self.paused

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
        self.heldBytes += len(data)

    def _release(self) -> None:
        held = self._held
        send = self._send
        while held and not self.paused and not self.dropped:
            data = held.popleft()
            self.heldBytes -= len(data)
            self.handed += len(data)
            send(data)
        if self.handed >= self._nextSample:
            self.progress.sample(self)
        else:
            self.checkReading()
        self.owner.flowUnread(self.heldBytes)
        if not held and self._endWhenSent:
            self._endWhenSent = False
            self.owner.flowSent()

    def _checkHeld(self) -> None:
        # (Whether to read on was settled by the _release before this.)
        if self.heldBytes > self._maxBuffered and not self.closing:
            self.owner.flowFailed(ProtocolError(f"the peer left more than {self._maxBuffered} bytes unread"))

    def checkReading(self) -> None:
        """
        Stop reading a peer that has more than READ_PAUSE bytes of our
        output left to take, and read again once it has half as much or
        less.

        What counts is what we hold and, where the kernel tells, what the
        transport and the network hold too.  Only a server stops reading:
        it answers what it reads.  A client never does: its output is its
        own calls (its queue waits for the transport), and if it stopped
        reading the answers while the server stopped reading its calls,
        each would wait on the other until one gave up.
        """
        if self.closing or not self._server:
            return
        unread = self.heldBytes + self.progress.kernelUnread
        # (A transport is a push producer of what it reads: IPushProducer.)
        if not self.readingPaused:
            if unread > READ_PAUSE:
                self.readingPaused = True
                self._transport.pauseProducing()
                self.progress.readingPaused(self)
        elif unread <= READ_PAUSE // 2:
            self.readingPaused = False
            self._transport.resumeProducing()

    def peerProgress(self) -> int:
        """
        Bytes of our output the peer's TCP stack acknowledged, where the
        kernel tells, else 0 (for the heartbeat: see L{upnode._heartbeat}).
        """
        return self.progress.acked(self)

    def stalled(self, waiting: int) -> None:
        """
        The peer took none of our output for the stall timeout.
        """
        self.owner.flowFailed(
            ProtocolError(
                f"the peer took none of our output for {self.owner.stallTimeout:g} seconds ({waiting} bytes waiting)"
            )
        )

    def endWhenSent(self) -> bool:
        """
        The owner wants to close: return True if it may now, or False if
        output is held (L{IFlowOwner.flowSent} says when it has gone).
        """
        self.closing = True
        if self._held:
            self._endWhenSent = True
            return False
        return True

    def drop(self) -> None:
        """
        Forget what is held; nothing more is written.
        """
        self.closing = True
        self._held = None
        self.heldBytes = 0
        self._endWhenSent = False
        self.owner.flowUnread(0)

    def detach(self) -> None:
        """
        The connection is gone: cancel every timer, and let go of the
        owner and the transport (whatever still holds this flow holds
        neither, nor the output it held).
        """
        self.drop()
        self.dropped = True
        self.progress.stop()
        self._nextSample = NO_SAMPLE
        self.owner = _GONE
        self._transport = None
        self._send = _discard
        self._sendNow = None

    # IPushProducer: the transport's side

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full.  We keep reading (a peer blocked on
        writing to us while we wait on it would deadlock) until we hold
        READ_PAUSE bytes for it, and hold what we write from now on.
        """
        self.paused = True
        if not self.dropped:
            self.progress.paused(self)

    def resumeProducing(self) -> None:
        self.paused = False
        self.progress.resumed(self)
        self._release()
        if not self.paused and not self._held and not self.dropped:
            self.owner.flowDrained()

    def stopProducing(self) -> None:
        """
        The transport is going: what is held will never be sent.
        """
        self.drop()


def _discard(data: bytes) -> None:
    pass


class _Gone:
    """
    The owner of a detached flow: hears nothing.
    """

    stallTimeout = 0.0

    def flowDrained(self) -> None:
        pass

    def flowSent(self) -> None:
        pass

    def flowFailed(self, error: ProtocolError) -> None:
        pass

    def flowUnread(self, size: int) -> None:
        pass

    def flowLarge(self) -> None:
        pass


_GONE: Any = _Gone()


class _NoFlow:
    """
    The flow of a connection not yet made (or refused): nothing is paused,
    held or written.
    """

    paused = False
    readingPaused = False
    handed = 0
    heldBytes = 0

    def write(self, data: bytes) -> None:
        pass

    def peerProgress(self) -> int:
        return 0

    def sendNow(self) -> None:
        pass

    def takesMore(self) -> bool:
        return True

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


#: The flow of a connection not yet made.
NO_FLOW: Any = _NoFlow()
