# -*- test-case-name: upnode.test.test_framing -*-
"""
Bytes to lines: L{LineFramer} splits what the peer sends into lines in
linear time however it is cut, bounds a line's length (C{MAX_LENGTH}) and
the peer's message rate (C{maxRate}), and hands each chunk's lines to a
receiver between its C{beginChunk} and C{endChunk}, so that what is
written in between can leave in one write.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ._wiring import IFramerOwner
from .errors import ProtocolError

#: An unfinished line this long or longer is large (see
#: L{IFramerOwner.largeLine}).
LARGE_LINE = 256 * 1024
#: (Reads are not shared: no read is ever this large.)
NO_SHARE = 1 << 62


class IClock(Protocol):
    def seconds(self) -> float:
        """
        The time now.
        """


class IChunkReceiver(Protocol):
    """
    Who handles the lines of each chunk (the session).
    """

    def beginChunk(self) -> None:
        """
        Lines of one received chunk follow.
        """

    def endChunk(self) -> None:
        """
        They have all been handled.
        """


class LineFramer:
    """
    The lines of one connection's input.

    @ivar stopped: set once the connection is closing: no line is handed on.
    @ivar linesReceived: lines received so far (a server's guard watches it
        for lines that never end).
    @ivar chunksReceived: chunks received so far: whether it moves says
        whether the peer is heard from (its heartbeat and stall watch ask),
        at the cost of one increment a read.
    @ivar fullRead: the size from which a read took (nearly) all the
        transport reads at once (see L{IFramerOwner.readFull}).
    """

    def __init__(
        self,
        owner: IFramerOwner,
        receiver: IChunkReceiver,
        lineReceived: Callable[[bytes], Any],
        maxLength: int,
        maxRate: int,
        clock: IClock,
    ) -> None:
        self._owner = owner
        self._receiver = receiver
        self.lineReceived = lineReceived
        self.maxLength = maxLength
        self._maxRate = maxRate
        self._clock = clock
        self._partial: Any = b""  # bytes, or a bytearray while it grows
        self.linesReceived = 0
        self.chunksReceived = 0
        self.stopped = False
        self.fullRead = NO_SHARE
        self._windowStart = 0.0
        self._windowCount = 0

    def feed(self, data: bytes) -> None:
        """
        One chunk from the transport.  An unfinished line is kept in one
        buffer that grows in place (a list of small pieces would cost
        several times the bytes it holds).
        """
        if self.stopped:
            return
        self.chunksReceived += 1
        if len(data) >= self.fullRead:
            self._owner.readFull()
        receiver = self._receiver
        receiver.beginChunk()
        try:
            # (find, not "in": bytes.__contains__ first tries its argument
            # as an integer, and makes and clears a TypeError to learn it
            # is not, costing several times the search.)
            end = data.find(b"\n")
            if 0 <= end == len(data) - 1 and not self._partial and end <= self.maxLength:
                # One whole line, the chunk of a call made one at a time:
                # no list of lines to make.
                self.linesReceived += 1
                self._windowCount += 1
                if self._windowCount > self._maxRate and self._overRate(1):
                    return
                self.lineReceived(data[:end])
                return
            if end < 0:
                partial = self._partial
                if type(partial) is bytes:
                    self._partial = partial = bytearray(partial)
                partial += data
                if len(partial) > self.maxLength:
                    self._owner.lineLengthExceeded(b"")
                elif len(partial) >= LARGE_LINE:
                    self._owner.largeLine()
                return
            lines = data.split(b"\n")
            partial = self._partial
            # No line can be too long when this chunk and the piece before it
            # are not together: the usual case, checked once for all lines.
            checkLengths = len(partial) + len(data) > self.maxLength
            if partial:
                lines[0] = bytes(partial) + lines[0] if type(partial) is bytearray else partial + lines[0]
            self._partial = tail = lines.pop()
            count = len(lines)
            self.linesReceived += count
            # (_overRate's first test inline: a call saved on every chunk.)
            self._windowCount += count
            if self._windowCount > self._maxRate and self._overRate(count):
                return
            lineReceived = self.lineReceived
            if checkLengths:
                for line in lines:
                    if self.stopped:
                        return
                    if len(line) > self.maxLength:
                        self._owner.lineLengthExceeded(line)
                        return
                    lineReceived(line)
            else:
                for line in lines:
                    if self.stopped:
                        return
                    lineReceived(line)
            if len(tail) > self.maxLength and not self.stopped:
                self._owner.lineLengthExceeded(tail)
        finally:
            receiver.endChunk()

    def _overRate(self, lines: int) -> bool:
        """
        The count of messages, C{lines} more just added (once a chunk
        rather than once a line), has passed C{maxRate}: start a new second
        if the last one is over; return True (the owner was told) when the
        peer sends more than C{maxRate} within one.
        """
        maxRate = self._maxRate
        now = self._clock.seconds()
        if now - self._windowStart >= 1.0:
            self._windowStart, self._windowCount = now, lines
        if self._windowCount > maxRate:
            self._owner.framingViolation(ProtocolError(f"more than {maxRate} messages a second"))
            return True
        return False

    def chunkCount(self) -> int:
        """
        L{chunksReceived}, for who asks through a function (the output
        flow: a bound method costs a connection less than a closure).
        """
        return self.chunksReceived

    def hasPartialLine(self) -> bool:
        """
        Whether part of a line has arrived and its delimiter not yet.
        """
        return bool(self._partial)

    def takePartial(self) -> bytes:
        """
        The unfinished line, which is forgotten.
        """
        partial, self._partial = bytes(self._partial), b""
        return partial

    def stop(self) -> None:
        """
        The connection is gone: hand nothing more on, keep nothing.
        """
        self.stopped = True
        self._partial = b""
        # (What it was handed refers back to the connection.)
        self._owner = self._receiver = _INERT
        self.lineReceived = _ignore


def _ignore(line: bytes) -> None:
    pass


class _Inert:
    def beginChunk(self) -> None:
        pass

    def endChunk(self) -> None:
        pass

    def lineLengthExceeded(self, line: bytes) -> None:
        pass

    def framingViolation(self, error: ProtocolError) -> None:
        pass

    def readFull(self) -> None:
        pass

    def largeLine(self) -> None:
        pass


_INERT: Any = _Inert()
