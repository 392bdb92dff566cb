# -*- test-case-name: upnode.test.test_outflow -*-
"""
How much of our output the peer has taken, as its TCP stack tells ours.

Twisted's producer interface only says when the transport's own buffer is
full, and behind it the kernel queues megabytes (on Linux, loopback
included, a socket's send buffer grows to 4 MB): a peer that reads
nothing looks like a fast reader until all of that has filled.  The
kernel knows better: the bytes the peer's stack has acknowledged.  Once
its receive buffer is full, that count moves only when its application
reads.

Linux reports the count in C{TCP_INFO} (C{tcpi_bytes_acked}, since Linux
4.1).  Elsewhere, or over a UNIX socket, there is no probe and the
protocol falls back to the transport's pause and resume.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, Optional

from twisted.internet.interfaces import ISystemHandle, ITCPTransport

from ._tuning import layers

#: Where C{tcpi_bytes_acked} sits in Linux's C{struct tcp_info} (the
#: structure only ever grows at its end, so the offset holds).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 120
_TCP_INFO_SIZE = _BYTES_ACKED_OFFSET + _BYTES_ACKED.size

AckedBytes = Callable[[], int]


def ackedBytesProbe(transport: Any) -> Optional[AckedBytes]:
    """
    A function returning how many bytes of our output the peer's TCP stack
    has acknowledged so far on C{transport} (the TCP transport itself or
    one under it, as with TLS), or None where the system does not say.
    """
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    for layer in layers(transport):
        # (A TLS wrapper provides what its transport does, but its handle
        # is its TLS connection: the socket is a layer further down.)
        if ITCPTransport.providedBy(layer) and ISystemHandle.providedBy(layer):
            handle = layer.getHandle()
            # A socket, or an asyncio loop's stand-in for one (asyncio's
            # TransportSocket, uvloop's PseudoSocket), which answer
            # getsockopt for the same socket.
            if callable(getattr(handle, "getsockopt", None)):
                return _probe(handle, option)
    return None


class _AckedBytes:
    """
    The probe of one socket (an object rather than a closure: a server
    keeps one for each of its connections).
    """

    __slots__ = ("sock", "option")

    def __init__(self, sock: Any, option: int) -> None:
        self.sock = sock
        self.option = option

    def __call__(self) -> int:
        info = self.sock.getsockopt(socket.IPPROTO_TCP, self.option, _TCP_INFO_SIZE)
        return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0])


def _probe(sock: Any, option: int) -> Optional[AckedBytes]:
    try:
        # An older kernel answers with a shorter structure: no probe.
        if len(sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_SIZE)) < _TCP_INFO_SIZE:
            return None
    except OSError:
        return None
    return _AckedBytes(sock, option)
