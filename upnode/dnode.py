"""
Plain dnode, with no reconnect logic: serve an object, or call a peer.

    port = yield dnode.listen({"time": time_}, 5004)
    conn = yield dnode.connect(5004)
    conn.remote.time(print)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory

from ._args import clientEndpoint, parseArguments, serverEndpoint
from ._events import EventEmitter
from ._expose import Cons
from ._limits import Limits
from ._protocol import DnodeProtocol
from ._reactor import resolve

LIMIT_OPTIONS = ("maxLineLength", "maxDepth", "maxCallbacks", "maxLinks", "maxPathLength", "maxRate", "maxBuffered")
_OPTIONS = ("port", "host", "path", "endpoint") + LIMIT_OPTIONS

__all__ = ["DnodeProtocol", "DnodeFactory", "listen", "connect"]


class DnodeFactory(Factory, EventEmitter):
    """
    Builds a L{DnodeProtocol} exposing C{cons} for each connection, on
    either side, and keeps the set of live ones.

    As a dnode server does, it emits each connection's C{local} (exposed
    object, conn) and C{remote} (remote, conn) events.
    """

    protocol = DnodeProtocol

    def __init__(
        self,
        cons: Cons = None,
        limits: Optional[Limits] = None,
        clock: Optional[IReactorTime] = None,
        expose: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
    ) -> None:
        EventEmitter.__init__(self)
        self.cons = cons
        self.limits = limits or Limits()
        self.clock = clock
        self.expose = expose
        self.connections: Set[DnodeProtocol] = set()

    def buildProtocol(self, addr: Any) -> DnodeProtocol:
        conn = self.protocol(self.cons, self.limits, self.clock, self.expose)
        conn.factory = self
        conn.on("local", lambda local, conn: self.emit("local", local, conn))
        conn.on("remote", lambda remote, conn: self.emit("remote", remote, conn))
        self.connections.add(conn)
        conn.notifyOnLoss(lambda reason: self.connections.discard(conn))
        return conn


def listen(cons: Cons, *args: Any, reactor: Any = None) -> Deferred[Any]:
    """
    Serve C{cons} with dnode-style arguments (port, host, unix path, options
    dict, endpoint, callback called once listening).  Fires with the
    C{IListeningPort}.
    """
    reactor = resolve(reactor)
    parsed = parseArguments(args, _OPTIONS)
    factory = DnodeFactory(cons, Limits.fromOptions(parsed.options), reactor)
    d = serverEndpoint(reactor, parsed).listen(factory)
    if parsed.callback is not None:
        callback = parsed.callback

        def listening(port: Any) -> Any:
            callback()
            return port

        d.addCallback(listening)
    return d


def connect(*args: Any, cons: Cons = None, reactor: Any = None) -> Deferred[DnodeProtocol]:
    """
    Connect to a dnode peer with dnode-style arguments.  Fires with the
    connection once the peer's methods have arrived (C{conn.remote}); a
    callback among the arguments is called as C{callback(remote, conn)}.
    """
    reactor = resolve(reactor)
    parsed = parseArguments(args, _OPTIONS)
    factory = DnodeFactory(cons, Limits.fromOptions(parsed.options), reactor)
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
