# -*- test-case-name: upnode.test.test_server -*-
"""
Plain dnode, with no reconnect logic: serve an object, or call a peer::

    port = yield dnode.listen({"time": time_}, 5004)
    conn = yield dnode.connect(5004)
    conn.remote.time(print)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set

import attr
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._args import clientEndpoint, parseArguments, serverEndpoint, withOptions
from ._events import EventEmitter
from ._expose import Cons
from ._guard import ServerGuard, ServerLimits
from ._limits import Limits
from ._protocol import DnodeProtocol
from ._reactor import resolve

#: Options that bound each connection (see L{Limits}).
LIMIT_OPTIONS = tuple(attr.fields_dict(Limits))
#: Options that bound a whole server (see L{ServerLimits}).
SERVER_LIMIT_OPTIONS = tuple(attr.fields_dict(ServerLimits))
_OPTIONS = ("port", "host", "path", "endpoint") + LIMIT_OPTIONS
_SERVER_OPTIONS = _OPTIONS + SERVER_LIMIT_OPTIONS

__all__ = ["DnodeProtocol", "DnodeFactory", "listen", "connect"]

_log = Logger()


class DnodeFactory(Factory, EventEmitter):
    """
    Builds a L{DnodeProtocol} exposing C{cons} for each connection, on
    either side, and keeps the set of live ones.

    As a dnode server does, it emits each connection's C{local} (exposed
    object, conn) and C{remote} (remote, conn) events.

    @param guard: for a server, the L{ServerGuard} that admits, times and
        sheds its connections (see L{ServerLimits}).
    """

    protocol = DnodeProtocol
    #: Whether its connections are ones we made (see L{DnodeProtocol.isClient}).
    isClient = False

    def __init__(
        self,
        cons: Cons = None,
        limits: Optional[Limits] = None,
        clock: Optional[IReactorTime] = None,
        expose: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
        guard: Optional[ServerGuard] = None,
    ) -> None:
        EventEmitter.__init__(self)
        self.cons = cons
        self.limits = limits or Limits()
        self.clock = clock
        self.expose = expose
        self.guard = guard
        self.connections: Set[DnodeProtocol] = set()

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = self.protocol(self.cons, self.limits, self.clock, self.expose)
        conn.factory = self
        conn.isClient = self.isClient
        if self.guard is not None:
            conn.guard = self.guard
            if not self.guard.admit(conn):
                # Dropped as it connects: returning None instead would
                # crash a TLS factory, which wraps whatever is built.
                conn.refused = True
                return conn
        conn.connectionHost = self
        self.connections.add(conn)
        return conn

    # What each connection tells us (IConnectionHost): before its own
    # events, as listeners added when it was built would hear them.

    def connectionLocal(self, local: Any, conn: DnodeProtocol) -> None:
        self.emit("local", local, conn)

    def connectionRemote(self, conn: DnodeProtocol) -> None:
        if self.guard is not None:
            self.guard.handshaken(conn)
        self.emit("remote", conn.remote, conn)

    def connectionGone(self, conn: DnodeProtocol) -> None:
        if self.guard is not None:
            self.guard.lost(conn)
        self.connections.discard(conn)

    def startFactory(self) -> None:
        if self.guard is not None:
            self.guard.start()

    def stopFactory(self) -> None:
        if self.guard is not None:
            self.guard.stop()

    def status(self) -> Dict[str, Any]:
        """
        The server's connections and drops (see L{ServerGuard.status}).
        """
        if self.guard is None:
            return {"connections": len(self.connections)}
        return self.guard.status()


def listen(cons: Cons, *args: Any, reactor: Any = None, **options: Any) -> Deferred[Any]:
    """
    Serve C{cons} with dnode-style arguments (port, host, unix path, options
    dict, endpoint, callback called once listening).  Fires with the
    C{IListeningPort}.
    """
    reactor = resolve(reactor)
    parsed = parseArguments(withOptions(args, options), _SERVER_OPTIONS)
    guard = ServerGuard(ServerLimits.fromOptions(parsed.options), reactor)
    factory = DnodeFactory(cons, Limits.fromOptions(parsed.options), reactor, guard=guard)
    d = serverEndpoint(reactor, parsed).listen(factory)
    if parsed.callback is not None:
        callback = parsed.callback

        def listening(port: Any) -> Any:
            callback()
            return port

        d.addCallback(listening)
    return d.addErrback(listenFailed, parsed)


def listenFailed(failure: Failure, parsed: Any) -> Failure:
    """
    Say that a listen failed now, as a critical failure (which a plain
    script with no log observer shows at once), not when the unhandled
    Deferred is collected, maybe at exit; the failure goes on to the
    caller's errbacks.
    """
    endpoint = parsed.endpoint or parsed.options.get("endpoint")
    if endpoint is not None:
        where = str(endpoint)
    else:
        where = parsed.path or f"port {parsed.port}" + (f" on {parsed.host}" if parsed.host else "")
    _log.failure("upnode could not listen ({where})", failure, where=where)
    return failure


def connect(*args: Any, cons: Cons = None, reactor: Any = None, **options: Any) -> Deferred[DnodeProtocol]:
    """
    Connect to a dnode peer with dnode-style arguments.  Fires with the
    connection once the peer's methods have arrived (C{conn.remote}); a
    callback among the arguments is called as C{callback(remote, conn)}.
    """
    reactor = resolve(reactor)
    parsed = parseArguments(withOptions(args, options), _OPTIONS)
    factory = DnodeFactory(cons, Limits.fromOptions(parsed.options), reactor)
    factory.isClient = True
    ready: Deferred[DnodeProtocol] = Deferred()

    def connected(conn: DnodeProtocol) -> None:
        def onRemote(remote: Any, conn: DnodeProtocol) -> None:
            if parsed.callback is not None:
                parsed.callback(remote, conn)
            ready.callback(conn)

        def onEnd() -> None:
            if not ready.called:
                ready.errback(ConnectionError("the connection closed before the peer's methods came"))

        conn.once("remote", onRemote)
        conn.once("end", onEnd)

    d = clientEndpoint(reactor, parsed).connect(factory)
    d.addCallbacks(connected, ready.errback)
    return ready
