"""
Socket settings for a dnode link, on public interfaces where Twisted has
them, and the one fast path that needs more, behind a feature check.

A transport here may be TCP, TLS over TCP (a protocol wrapper whose
C{transport} is the TCP one), UNIX, or a test's in-memory transport: every
setting is skipped where it does not apply, and nothing here ever writes.
"""

from __future__ import annotations

from typing import Any, Iterator

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITCPTransport


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
    so both ends are busy at once.

    C{bufferSize} is a documented class attribute of Twisted's
    C{FileDescriptor} (its read size and its write-buffer threshold), but
    setting it on one connection is not a promise Twisted makes; so it is
    done only where the attribute is there and is an int, and otherwise
    the transport reads as it always does (the fallback, tested).  Returns
    whether the read size was set.
    """
    for layer in layers(transport):
        if isinstance(layer, FileDescriptor):
            if type(getattr(layer, "bufferSize", None)) is int:
                layer.bufferSize = readSize
                return True
            return False
    return False


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
