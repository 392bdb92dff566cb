# -*- test-case-name: upnode.test.test_aiostream -*-
"""
A Twisted protocol carried over an asyncio transport: the connections of an
asyncio program (L{upnode.aio}), so that the loop's own transport (uvloop's,
in C) does the reading and writing instead of Twisted's, which does them in
Python on top of the loop.

Owns: the bridge between the two protocol models (L{StreamBridge}), the
Twisted-facing transport over an asyncio one (L{StreamTransport}), and the
endpoints that make them (L{LoopClientEndpoint}, L{LoopServerEndpoint}).

Everything is written through the asyncio transport's own C{write()}.
TLS and C{startTLS} are not offered here: a link that needs them is named
by an endpoint object or description, and rides Twisted's transports.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from typing import Any, Callable, Optional

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, getConnectError
from twisted.internet.interfaces import (
    IConsumer,
    IListeningPort,
    IPushProducer,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ISystemHandle,
    ITCPTransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()

#: What one read takes unless told otherwise: what Twisted's transports
#: read (asyncio's and uvloop's would take up to 256 KiB).
READ_SIZE = 64 * 1024

# Every connection reads into the one buffer: the loop reads into it and
# hands it over at once (get_buffer, recv_into, buffer_updated, with nothing
# in between), and the bytes are copied out before the next read, so no
# connection needs one of its own (an idle connection would hold it).
_shared = bytearray(READ_SIZE)


def readBuffer(size: int) -> memoryview:
    """
    The first C{size} bytes of the buffer every connection reads into.
    """
    global _shared
    if size > len(_shared):
        _shared = bytearray(size)
    return memoryview(_shared)[:size]


def addressOf(name: Any, transportType: Any = "TCP") -> Any:
    """
    A Twisted address for what C{get_extra_info("peername"/"sockname")}
    gave: a host/port pair (v4), a 4-tuple (v6), or a unix path.
    """
    if isinstance(name, tuple):
        if len(name) == 2:
            return IPv4Address(transportType, name[0], name[1])
        return IPv6Address(transportType, name[0], name[1], name[2], name[3])
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return UNIXAddress(name or None)


@implementer(ITCPTransport, IConsumer, IPushProducer, ISystemHandle)
class StreamTransport:
    """
    The Twisted transport a protocol sees over an asyncio transport.

    Its producer side pauses and resumes the asyncio transport's reading;
    its consumer side hands the asyncio transport's write flow control
    (C{pause_writing}/C{resume_writing}) to the registered producer.
    C{readSize} is how much one read takes, as C{bufferSize} is for
    Twisted's transports (see L{upnode._tuning.setReadSize}).
    Over a unix socket it still answers the TCP option calls, and sets
    nothing.

    @ivar connected: whether the connection is still up.
    @ivar disconnecting: whether C{loseConnection} was called.
    @ivar readSize: the bytes one read takes at most.
    """

    readSize = READ_SIZE

    def __init__(self, stream: Any, host: Any, peer: Any, callSoon: Callable[[Callable[[], None]], Any]) -> None:
        self._stream = stream
        self._callSoon = callSoon
        self._host = host
        self._peer = peer
        self.connected = True
        self.disconnecting = False
        self.producer: Any = None
        self._streamingProducer = False
        self._writingPaused = False
        self._readingPaused = False
        self._yielding = False

    def write(self, data: bytes) -> None:
        # Dropped once closing, as asyncio's would (and uvloop's would
        # raise once the socket is closed): nothing more is to be sent.
        if not self.disconnecting:
            self._stream.write(data)

    def writeSequence(self, data: Any) -> None:
        if not self.disconnecting:
            self._stream.writelines(data)

    def loseConnection(self) -> None:
        # asyncio sends what is buffered, then closes.
        if not self.disconnecting:
            self.disconnecting = True
            self._stream.close()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._stream.abort()

    def loseWriteConnection(self) -> None:
        if self._stream.can_write_eof():
            self._stream.write_eof()

    def getPeer(self) -> Any:
        return self._peer

    def getHost(self) -> Any:
        return self._host

    def getHandle(self) -> Any:
        """
        The socket, as the loop exposes it (uvloop's is a stand-in that
        answers C{getsockopt}/C{setsockopt}, not a C{socket.socket}).
        """
        return self._stream.get_extra_info("socket")

    # ITCPTransport's options, on the loop's socket.

    def _option(self, level: int, name: int, value: Optional[bool] = None) -> bool:
        sock = self.getHandle()
        if sock is None or isinstance(self._peer, UNIXAddress):
            return False
        if value is not None:
            sock.setsockopt(level, name, int(value))
            return value
        return bool(sock.getsockopt(level, name))

    def setTcpNoDelay(self, enabled: bool) -> None:
        self._option(socket.IPPROTO_TCP, socket.TCP_NODELAY, enabled)

    def getTcpNoDelay(self) -> bool:
        return self._option(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self._option(socket.SOL_SOCKET, socket.SO_KEEPALIVE, enabled)

    def getTcpKeepAlive(self) -> bool:
        return self._option(socket.SOL_SOCKET, socket.SO_KEEPALIVE)

    # IPushProducer: our reading.

    def pauseProducing(self) -> None:
        self._readingPaused = True
        if self.connected:
            self._stream.pause_reading()

    def resumeProducing(self) -> None:
        self._readingPaused = False
        if self.connected and not self._yielding:
            self._stream.resume_reading()

    def yieldReading(self) -> None:
        """
        Read no more until the loop has served its other ready callbacks.

        After a read that filled its buffer: libuv (under uvloop) reads a
        ready socket again, up to 32 times, before it serves the next one,
        so a peer with much to send would get 32 reads a turn where asyncio
        and Twisted give it one, and everyone else's calls would wait for
        them.
        """
        if self._yielding or self._readingPaused or not self.connected:
            return
        self._yielding = True
        self._stream.pause_reading()
        self._callSoon(self._yielded)

    def _yielded(self) -> None:
        self._yielding = False
        if self.connected and not self._readingPaused:
            self._stream.resume_reading()

    def stopProducing(self) -> None:
        self.loseConnection()

    # IConsumer: whoever writes to us.

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.producer is not None:
            raise RuntimeError(f"Cannot register producer {producer!r}, because {self.producer!r} is already registered.")
        if not self.connected:
            producer.stopProducing()
            return
        self.producer = producer
        self._streamingProducer = bool(streaming)
        if streaming:
            if self._writingPaused:
                producer.pauseProducing()
        else:
            self._pull()

    def unregisterProducer(self) -> None:
        self.producer = None

    def _pull(self) -> None:
        # A pull producer writes once each time it is asked, and is asked
        # again while the loop's buffer has room (resume_writing asks too).
        producer = self.producer
        if producer is None or self._streamingProducer or self._writingPaused or not self.connected:
            return
        producer.resumeProducing()
        self._callSoon(self._pull)

    # From the bridge.

    def writingPaused(self) -> None:
        self._writingPaused = True
        if self.producer is not None and self._streamingProducer:
            self.producer.pauseProducing()

    def writingResumed(self) -> None:
        self._writingPaused = False
        if self.producer is not None:
            if self._streamingProducer:
                self.producer.resumeProducing()
            else:
                self._pull()

    def lost(self) -> None:
        self.connected = False
        self.disconnecting = True
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()


class StreamBridge(asyncio.BufferedProtocol):
    """
    The asyncio protocol that hands a connection's events to the Twisted
    protocol the factory builds for it.  It reads into the shared buffer
    (L{readBuffer}), so that the transport's C{readSize} bounds each read
    (a server shares its reads between its busy connections that way).  An exception the
    Twisted protocol raises is logged as a failure and ends the connection,
    as Twisted's own transports do (asyncio would only report it to its
    loop's handler).
    """

    def __init__(self, factory: Any, loop: asyncio.AbstractEventLoop, made: Optional[Deferred[Any]] = None) -> None:
        """
        @param made: a client's: fired with the protocol once it is
            connected (or failed if the factory builds none), before any
            event of the connection after that, as Twisted's endpoints do.
        """
        self._factory = factory
        self._loop: Any = loop
        self._made = made
        self.protocol: Any = None
        self.transport: Optional[StreamTransport] = None
        self._received: Callable[[bytes], None] = _nothing
        self._buffer = readBuffer(READ_SIZE)

    def connection_made(self, stream: Any) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses.)
        kind = "TCP" if stream.get_extra_info("peername") is not None and not _isUnix(stream) else "UNIX"
        peer = addressOf(stream.get_extra_info("peername"), kind)
        host = addressOf(stream.get_extra_info("sockname"), kind)
        made, self._made = self._made, None
        protocol = self._factory.buildProtocol(peer)
        if protocol is None:
            stream.abort()
            if made is not None:
                made.errback(ConnectionLost("the factory built no protocol"))
            return
        self.protocol = protocol
        self.transport = StreamTransport(stream, host, peer, self._loop.call_soon)
        self._guard(protocol.makeConnection, self.transport)
        # Bound once connected: a protocol may put its own receiver in place then.
        self._received = protocol.dataReceived
        if made is not None:
            made.callback(protocol)

    def get_buffer(self, sizehint: int) -> memoryview:
        transport = self.transport
        if transport is not None and len(self._buffer) != transport.readSize:
            self._buffer = readBuffer(transport.readSize)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._received(self._buffer[:nbytes].tobytes())
        except BaseException:
            self._failed(Failure())
        if nbytes == len(self._buffer) and self.transport is not None:
            self.transport.yieldReading()

    def eof_received(self) -> Optional[bool]:
        return None  # asyncio then closes, and connection_lost follows

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.writingPaused()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.writingResumed()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.transport is None:
            return
        self.transport.lost()
        reason = Failure(ConnectionDone()) if exc is None else Failure(ConnectionLost(str(exc) or type(exc).__name__))
        self._guard(self.protocol.connectionLost, reason)

    def _guard(self, handler: Callable[[Any], Any], argument: Any) -> None:
        try:
            handler(argument)
        except BaseException:
            self._failed(Failure())

    def _failed(self, failure: Failure) -> None:
        _log.failure("Unhandled error in {protocol!r}; its connection is closed", failure, protocol=self.protocol)
        if self.transport is not None and self.transport.connected:
            self.transport.abortConnection()


def _nothing(data: bytes) -> None:
    pass


def _isUnix(stream: asyncio.BaseTransport) -> bool:
    sock = stream.get_extra_info("socket")
    return sock is not None and getattr(sock, "family", None) == socket.AF_UNIX


def _deferredFrom(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Deferred[Any]:
    return Deferred.fromFuture(asyncio.ensure_future(coroutine, loop=loop))


@implementer(IStreamClientEndpoint)
class LoopClientEndpoint:
    """
    Connects over the asyncio loop: to C{host}/C{port} over TCP, or to a
    unix C{path}.  The connection's Deferred fires with the protocol once
    it is connected, as Twisted's endpoints' do; cancelling it cancels the
    attempt.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, host: Any = None, port: Any = None, path: Optional[str] = None) -> None:
        self._loop: Any = loop
        self._host = host
        self._port = port
        self._path = path

    def __repr__(self) -> str:
        where = self._path if self._path is not None else f"{self._host}:{self._port}"
        return f"<LoopClientEndpoint {where}>"

    def connect(self, factory: Any) -> Deferred[Any]:
        # The connection's Deferred fires from the bridge's connection_made,
        # not when the loop's connect finishes: by then the connection may
        # already be lost (the peer reset it at once), and whoever waits
        # for it would hear of the loss before the connection.
        made: Deferred[Any] = Deferred(lambda d: attempt.cancel())
        bridge = StreamBridge(factory, self._loop, made)
        if self._path is not None:
            connecting = self._loop.create_unix_connection(lambda: bridge, self._path)
        else:
            connecting = self._loop.create_connection(lambda: bridge, self._host, self._port)
        attempt = asyncio.ensure_future(connecting, loop=self._loop)

        def settled(future: Any) -> None:
            if made.called or future.cancelled():
                return  # (connected; or cancelled, which the Deferred says)
            error = future.exception()
            if error is not None:
                made.errback(_connectError(Failure(error)))

        attempt.add_done_callback(settled)
        return made


def _connectError(failure: Failure) -> Failure:
    # Twisted's own errors (ConnectionRefusedError, TimeoutError, ...), as
    # its endpoints give them and the client's reconnecting expects them.
    if isinstance(failure.value, OSError):
        return Failure(getConnectError(failure.value))
    return failure


@implementer(IStreamServerEndpoint)
class LoopServerEndpoint:
    """
    Listens through the asyncio loop: on C{port} (all interfaces, or
    C{interface}), or on a unix C{path}.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        port: Any = None,
        interface: str = "",
        path: Optional[str] = None,
        backlog: int = 100,
    ) -> None:
        self._loop: Any = loop
        self._port = port
        self._interface = interface
        self._path = path
        self._backlog = backlog

    def listen(self, factory: Any) -> Deferred[Any]:
        def bridge() -> StreamBridge:
            return StreamBridge(factory, self._loop)

        if self._path is not None:
            serving = self._loop.create_unix_server(bridge, self._path, backlog=self._backlog)
        else:
            serving = self._loop.create_server(
                bridge, self._interface or None, self._port, backlog=self._backlog, reuse_address=True
            )
        factory.doStart()

        def listening(server: asyncio.AbstractServer) -> LoopListeningPort:
            return LoopListeningPort(server, factory, self._path)

        def failed(failure: Failure) -> Failure:
            factory.doStop()
            return failure

        return _deferredFrom(self._loop, serving).addCallbacks(listening, failed)


@implementer(IListeningPort)
class LoopListeningPort:
    """
    A listening asyncio server as Twisted's C{IListeningPort}: stopping it
    stops accepting; the connections it accepted stay.
    """

    def __init__(self, server: asyncio.AbstractServer, factory: Any, path: Optional[str]) -> None:
        self._server = server
        self._factory = factory
        self._path = path
        self._listening = True

    def startListening(self) -> None:
        """
        Listening starts when the endpoint makes the port.
        """

    def stopListening(self) -> Deferred[None]:
        if self._listening:
            self._listening = False
            self._server.close()
            if self._path is not None:
                _removeSocketFile(self._path)
            self._factory.doStop()
        return Deferred.fromFuture(asyncio.ensure_future(_settled()))

    loseConnection = stopListening

    def getHost(self) -> Any:
        sockets = getattr(self._server, "sockets", None) or ()
        if self._path is not None:
            return UNIXAddress(self._path)
        return addressOf(sockets[0].getsockname()) if sockets else None


def _removeSocketFile(path: str) -> None:
    # As Twisted's unix ports do when they stop (asyncio's servers leave
    # the file before Python 3.13).
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass  # gone already, or not ours to remove


async def _settled() -> None:
    # One turn of the loop: the listening socket is closed by then.
    await asyncio.sleep(0)
