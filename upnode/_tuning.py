# -*- test-case-name: upnode.test.test_tuning -*-
"""
Socket settings for a dnode link, on public interfaces where Twisted has
them, and the fast paths that need more, each behind a feature check.

A transport here may be TCP, TLS over TCP (a protocol wrapper whose
C{transport} is the TCP one), UNIX, or a test's in-memory transport: every
setting is skipped where it does not apply, and nothing here ever writes:
what reaches the socket is only ever what the transport's own C{write()}
put in its buffer (a TLS layer's records, after C{startTLS} too).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITCPTransport, IWriteDescriptor

from ._aiostream import StreamTransport


def tune(transport: Any, readSize: int) -> bool:
    """
    Send without waiting (no Nagle), and read C{readSize} bytes at a time
    where the transport allows it; return whether it did (see
    L{setReadSize}).
    """
    setNoDelay(transport)
    return setReadSize(transport, readSize)


def setNoDelay(transport: Any) -> bool:
    """
    Turn off Nagle's algorithm through C{ITCPTransport.setTcpNoDelay}.

    We already write once per received chunk; waiting would only hold the
    tail of each write for the peer's delayed acknowledgement while calls
    are in flight.  Returns whether a TCP transport took it.
    """
    for layer in layers(transport):
        if ITCPTransport.providedBy(layer):
            try:
                layer.setTcpNoDelay(True)
            except OSError:  # the socket is already gone
                return False
            return True
    return False


def setReadSize(transport: Any, readSize: int) -> bool:
    """
    Fast path: make a socket transport read C{readSize} bytes at a time
    (Twisted reads 64 KiB).  With many calls in flight, a smaller slice
    lets our replies to the first calls leave while we work on the rest,
    so both ends are busy at once.  Over an asyncio loop's transport
    (L{upnode._aiostream.StreamTransport}) it is that transport's
    C{readSize}, which is ours.

    C{bufferSize} is a documented class attribute of Twisted's
    C{FileDescriptor} (its read size and its write-buffer threshold), but
    setting it on one connection is not a promise Twisted makes; so it is
    done only where the attribute is there and is an int, and otherwise
    the transport reads as it always does (the fallback, tested).  Returns
    whether the read size was set.
    """
    for layer in layers(transport):
        if isinstance(layer, StreamTransport):
            layer.readSize = readSize
            return True
        if isinstance(layer, FileDescriptor):
            if type(getattr(layer, "bufferSize", None)) is int:
                layer.bufferSize = readSize
                return True
            return False
    return False


def sendNowFor(transport: Any) -> Optional[Callable[[], None]]:
    """
    Fast path: a function that makes a socket transport send what its
    C{write()} has buffered at once, instead of on the reactor's next turn;
    None where the transport is not such a descriptor (the fallback: it
    sends on its next turn, as it always does).

    A reply written with C{write()} waits for the reactor to poll again,
    see the socket writable and call the descriptor's C{doWrite}: a second
    trip round the reactor for every exchange, which is what a call made
    one at a time waits for.  C{doWrite} is the descriptor's side of the
    public C{IWriteDescriptor} interface, and it sends only the
    transport's own buffer.  It is not asked of a transport that is
    disconnecting (its C{doWrite} then finishes the close, which is the
    reactor's to do); an error it meets stays the reactor's to report, as
    the descriptor remains registered for writing.  Under TLS the
    descriptor is the TCP transport under the TLS layer, so what it sends
    is the TLS layer's records.
    """
    for layer in layers(transport):
        if isinstance(layer, FileDescriptor):
            return _sendNow(layer) if IWriteDescriptor.providedBy(layer) else None
    return None


def _sendNow(descriptor: FileDescriptor) -> Callable[[], None]:
    def sendNow() -> None:
        if not descriptor.disconnecting:
            # The descriptor's doWrite as it is now, not as it was: an
            # aborted TCP transport puts one in place that sends nothing,
            # so that what was written after the abort never leaves.
            descriptor.doWrite()

    return sendNow


def layers(transport: Any) -> Iterator[Any]:
    """
    C{transport} and the transports under it (TLS over TCP), outermost
    first, a few deep at most.
    """
    for _ in range(4):
        if transport is None:
            return
        yield transport
        transport = getattr(transport, "transport", None)
