"""
The socket settings both ends make, on real connections: reads of
C{readSize} bytes, and no Nagle delay on TCP (a UNIX socket has none to
turn off, and must not fail for it).
"""

from __future__ import annotations

import os
import socket
import tempfile
from typing import Any

from twisted.trial.unittest import TestCase

import upnode
from upnode import _tuning


def _socketTransport(conn: Any) -> Any:
    transport = conn.transport
    while not hasattr(transport, "socket"):
        transport = transport.transport
    return transport


class SocketSettings(TestCase):
    timeout = 30

    async def tcpPair(self) -> Any:
        """
        An echo server and a client linked to it over loopback TCP.
        """
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        up = upnode.connect(port, "127.0.0.1", {"ping": 0})
        self.addCleanup(up.close)
        await up()
        return server, up

    async def test_tcpBothEnds(self) -> None:
        server, up = await self.tcpPair()
        self.assertEqual(await up.call("echo", "hi", timeout=10), "hi")
        for conn in [up.conn, *server.connections]:
            transport = _socketTransport(conn)
            self.assertEqual(transport.bufferSize, conn.readSize)
            self.assertEqual(transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual(len(server.connections), 1)

    async def test_unixSocket(self) -> None:
        directory = tempfile.mkdtemp(dir="/tmp")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s")
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        await server.listen(path, {"ping": 0})
        up = upnode.connect(path, {"ping": 0})
        self.addCleanup(up.close)
        await up()
        self.assertEqual(await up.call("echo", "hi", timeout=10), "hi")
        for conn in [up.conn, *server.connections]:
            self.assertEqual(_socketTransport(conn).bufferSize, conn.readSize)

    async def test_readSizeFallback(self) -> None:
        """
        Where the read-size fast path's feature check fails, the transports
        keep Twisted's own read size, and many calls in flight, with the
        transport pausing us, still all arrive.
        """

        class NotAFileDescriptor:
            pass

        self.patch(_tuning, "FileDescriptor", NotAFileDescriptor)
        server, up = await self.tcpPair()
        from twisted.internet.defer import gatherResults

        payload = "x" * 1000
        answers = await gatherResults([up.call("echo", payload, timeout=30) for _ in range(2000)])
        self.assertEqual(answers, [payload] * 2000)
        for conn in [up.conn, *server.connections]:
            transport = _socketTransport(conn)
            self.assertEqual(transport.bufferSize, 2**16)
            self.assertEqual(transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
