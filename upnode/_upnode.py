"""
C{upnode(cons)}: one object that serves C{cons} with C{listen()} and calls
out with C{connect()}, as Node's upnode does.
"""

from __future__ import annotations

from typing import Any, Callable, List

from twisted.internet.defer import Deferred, DeferredList, gatherResults

from ._args import Arguments, clientEndpoint, parseArguments, serverEndpoint
from ._client import UpnodeClientFactory
from ._connector import EndpointConnector
from ._expose import Cons
from ._guard import ServerLimits
from ._limits import Limits
from ._reactor import resolve
from ._server import UpnodeServerFactory
from .dnode import LIMIT_OPTIONS, SERVER_LIMIT_OPTIONS, listenFailed

_ENDPOINT_OPTIONS = ("port", "host", "path", "endpoint")
_CLIENT_TIMING = (
    "ping",
    "timeout",
    "reconnect",
    "backoff",
    "maxDelay",
    "jitter",
    "handshakeTimeout",
    "maxQueue",
    "outbox",
    "outboxMax",
    "outboxSync",
)
CLIENT_OPTIONS = _ENDPOINT_OPTIONS + ("createStream", "endpoints", "metrics") + _CLIENT_TIMING + LIMIT_OPTIONS
SERVER_OPTIONS = _ENDPOINT_OPTIONS + ("ping", "timeout", "metrics") + LIMIT_OPTIONS + SERVER_LIMIT_OPTIONS


class Upnode:
    """
    Serves and connects with one exposed C{cons}.
    """

    def __init__(self, cons: Cons = None, reactor: Any = None) -> None:
        self.cons = cons
        self._reactor = reactor
        self._ports: List[Any] = []
        self._factories: List[UpnodeServerFactory] = []
        self._ups: List[UpnodeClientFactory] = []

    @property
    def reactor(self) -> Any:
        self._reactor = resolve(self._reactor)
        return self._reactor

    def connect(self, *args: Any) -> UpnodeClientFactory:
        """
        Keep a link to a server, with dnode-style arguments: port, host,
        unix path, options dict, connect callback, endpoint object.  Options:
        C{endpoint} (object or description), C{endpoints} (several, for
        failover), C{createStream} (returns a new endpoint per attempt),
        C{ping}, C{timeout}, C{reconnect}, C{backoff}, C{maxDelay},
        C{jitter}, C{handshakeTimeout}, C{maxQueue}, C{outbox}, C{outboxMax},
        C{outboxSync} and the L{Limits}.

        Returns the client, which is the C{up()} transaction function.
        """
        parsed = parseArguments(args, CLIENT_OPTIONS)
        options = parsed.options
        factory = UpnodeClientFactory(
            self.cons,
            parsed.callback,
            limits=Limits.fromOptions(options),
            clock=self.reactor,
            **{name: options[name] for name in _CLIENT_TIMING if name in options},
        )
        if options.get("metrics") is not None:
            options["metrics"].watchClient(factory)
        connector = EndpointConnector(self._sources(parsed), factory)
        self._ups.append(factory)
        connector.connect()
        return factory

    def _sources(self, parsed: Arguments) -> List[Callable[[], Any]]:
        createStream = parsed.options.get("createStream")
        if createStream is not None:
            if not callable(createStream):
                raise TypeError("createStream must be callable")
            return [createStream]
        many = parsed.options.get("endpoints")
        if many is not None:
            return [_fixed(self._oneEndpoint(each)) for each in many]
        return [_fixed(clientEndpoint(self.reactor, parsed))]

    def _oneEndpoint(self, each: Any) -> Any:
        if isinstance(each, dict):
            return clientEndpoint(self.reactor, parseArguments([each], _ENDPOINT_OPTIONS))
        return clientEndpoint(self.reactor, Arguments(endpoint=each))

    def listen(self, *args: Any) -> Deferred[Any]:
        """
        Serve C{cons} with dnode-style arguments: port, host, unix path,
        options dict (C{endpoint}, C{ping}, C{timeout}, the L{Limits} and
        the L{ServerLimits}),
        endpoint object, callback called once listening.  Fires with the
        listening port.
        """
        parsed = parseArguments(args, SERVER_OPTIONS)
        options = parsed.options
        factory = UpnodeServerFactory(
            self.cons,
            ping=options.get("ping", 10.0),
            timeout=options.get("timeout", 5.0),
            limits=Limits.fromOptions(options),
            serverLimits=ServerLimits.fromOptions(options),
            clock=self.reactor,
        )
        if options.get("metrics") is not None:
            options["metrics"].watchServer(factory)
        self._factories.append(factory)
        d = serverEndpoint(self.reactor, parsed).listen(factory)

        def listening(port: Any) -> Any:
            self._ports.append(port)
            if parsed.callback is not None:
                parsed.callback()
            return port

        return d.addCallbacks(listening, listenFailed, errbackArgs=(parsed,))

    @property
    def connections(self) -> List[Any]:
        """
        The live server-side connections.
        """
        return [conn for factory in self._factories for conn in factory.connections]

    def close(self) -> Deferred[Any]:
        """
        Stop listening; live connections stay.
        """
        ports, self._ports = self._ports, []
        return gatherResults([Deferred.fromCoroutine(_stop(port)) for port in ports])

    def end(self) -> Deferred[Any]:
        """
        Stop listening, drop every server connection and close every client
        made by C{connect()}.  Fires once all of it is done.
        """
        done = [self.close()]
        for conn in self.connections:
            done.append(conn.whenLost())
            conn.end()
        for up in self._ups:
            done.append(up.close())
        return DeferredList(done, consumeErrors=True)


async def _stop(port: Any) -> None:
    await port.stopListening()


def _fixed(endpoint: Any) -> Callable[[], Any]:
    return lambda: endpoint


def upnode(cons: Cons = None, reactor: Any = None) -> Upnode:
    """
    Node's C{upnode(cons)}.
    """
    return Upnode(cons, reactor)


def connect(*args: Any, reactor: Any = None) -> UpnodeClientFactory:
    """
    Node's C{upnode.connect(...)}: C{upnode({}).connect(...)}.
    """
    return Upnode({}, reactor).connect(*args)


def listen(*args: Any, reactor: Any = None) -> Deferred[Any]:
    """
    Node's C{upnode.listen(...)}: C{upnode({}).listen(...)}.
    """
    return Upnode({}, reactor).listen(*args)


__all__ = ["Upnode", "upnode", "connect", "listen"]
