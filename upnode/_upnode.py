# -*- test-case-name: upnode.test.test_habits -*-
"""
C{upnode(cons)}: one object that serves C{cons} with C{listen()} and calls
out with C{connect()}, as Node's upnode does.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults

from ._args import Arguments, clientEndpoint, parseArguments, serverEndpoint, withOptions
from ._arity import ANY, positionalLimit
from ._client import UpnodeClientFactory
from ._connector import EndpointConnector
from ._expose import Cons
from ._guard import ServerLimits
from ._limits import Limits
from ._reactor import resolve
from ._server import UpnodeServerFactory
from .dnode import LIMIT_OPTIONS, SERVER_LIMIT_OPTIONS, listenFailed
from .errors import UpnodeWarning

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

#: Options in seconds that a Node habit writes in milliseconds.  1000 or
#: more is refused as surely milliseconds; an integer from this threshold
#: up is most likely milliseconds too (Node's reconnect of 100 would wait
#: 100 s here), so it is said, as a Python warning.
_SECONDS_OPTIONS = ("ping", "timeout", "reconnect", "handshakeTimeout", "lineTimeout")
MILLISECONDS_HINT = 100


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TESTS = _PACKAGE + "test" + os.sep


def callerLevel() -> int:
    """
    The C{stacklevel} of C{warnings.warn} that names the first caller
    outside this package, for a warning called from here.
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE) or filename.startswith(_TESTS):
            break
        frame = frame.f_back
        level += 1
    return level


def warnMilliseconds(options: Dict[str, Any]) -> None:
    """
    Warn (L{UpnodeWarning}, pointing at the caller's C{connect} or
    C{listen}) about each seconds option given as an integer from
    L{MILLISECONDS_HINT} to 999: most likely Node's milliseconds.  A float
    (C{100.0}) says seconds are meant, and is not warned about.
    """
    for name in _SECONDS_OPTIONS:
        value = options.get(name)
        if type(value) is int and MILLISECONDS_HINT <= value < 1000:
            warnings.warn(
                f"{name}={value} is taken as {value} seconds: upnode's times are in seconds, Node's in "
                f"milliseconds (for {value} ms write {value / 1000}); write {value}.0 if you mean seconds",
                UpnodeWarning,
                stacklevel=callerLevel(),
            )


class Upnode:
    """
    Node's C{upnode(cons)}: serves C{cons} with L{listen} and calls out,
    exposing C{cons} to the server, with L{connect}.

    @param cons: what is exposed to each peer: a dict of functions and data,
        one shared object (its public methods and plain-data attributes), or
        a callable C{cons(remote, conn)} (a class is one) that makes the
        object for each connection.  C{None} exposes nothing (upnode's
        C{ping} is always added).
    @param reactor: the reactor (or a C{twisted.internet.task.Clock} in
        tests); the global reactor by default.
    @param loop: an asyncio event loop the reactor runs on, whose own
        transports then carry the links named by a port or a unix path
        (L{upnode.aio} passes its loop); links named by an endpoint object
        or description use Twisted's transports.
    """

    def __init__(self, cons: Cons = None, reactor: Any = None, loop: Any = None) -> None:
        self.cons = cons
        self._reactor = reactor
        self._loop = loop
        self._ports: List[Any] = []
        self._factories: List[UpnodeServerFactory] = []
        self._ups: List[UpnodeClientFactory] = []

    @property
    def reactor(self) -> Any:
        self._reactor = resolve(self._reactor)
        return self._reactor

    def connect(self, *args: Any, **options: Any) -> UpnodeClientFactory:
        """
        Keep a link to a server, exposing C{cons} to it, and queue
        transactions while the link is down.

        Arguments are dnode-style, told apart by type, in any order:
          - a port (an int, or a string of digits), on C{host} (default
            C{localhost});
          - a host, or C{"host:port"} (C{"[::1]:7000"});
          - a unix socket path (a string starting with C{/});
          - a Twisted endpoint description (C{"tcp:host=example.com:port=7000"},
            C{"tls:example.com:7001:trustRoots=ca.pem"}, C{"unix:..."}) or an
            endpoint object;
          - the connect callback C{cb(remote, conn)}, run on every new link
            before any queued transaction; it must call C{conn.emit("up", obj)},
            and C{obj} is what transactions get (default: the remote itself);
          - an options dict, or the same options as keywords
            (C{connect(7000, ping=0, reconnect=0.2)}).

        Options (times in B{seconds}; an integer of 1000 or more is refused as
        milliseconds; see the README's "Coming from Node"):
          - C{ping} (10.0): seconds between pings; 0 turns them off;
          - C{timeout} (5.0): seconds a ping answer may take before the link is
            dropped and rebuilt;
          - C{reconnect} (1.0): seconds before the first reconnection attempt;
          - C{backoff} (1.5): the factor the delay grows by after each failed
            attempt (1 is Node's fixed delay);
          - C{maxDelay} (30.0): the cap on that delay, in seconds;
          - C{jitter} (0.5): each delay is drawn from C{delay * (1 +- jitter)};
          - C{handshakeTimeout} (30.0): seconds from the start of an attempt (TCP
            connect included) to C{"up"};
          - C{maxQueue} (None): the most transactions that may wait;
          - C{outbox}, C{outboxMax}, C{outboxSync}: the durable outbox (an
            SQLite file path, its bound in calls, C{"normal"} or C{"full"});
          - C{endpoint}, C{endpoints} (several, for failover), C{createStream}
            (a callable returning an endpoint per attempt), C{port}, C{host},
            C{path};
          - C{metrics}: an L{upnode.metrics.Metrics};
          - the per-connection limits of L{Limits} (C{maxLineLength}, ...).

        Returns the client, an L{UpnodeClientFactory}, which is the C{up()}
        transaction function: C{up(cb)}, C{up(seconds, cb)}, C{await up()},
        C{await up.call(name, *args)}, C{up.on(event, handler)}, C{up.close()}.
        """
        factory, connector = self._client(args, options)
        connector.connect()
        return factory

    def service(self, *args: Any, **options: Any) -> UpnodeClientService:
        """
        The same client as L{connect} makes, as a C{twisted.application}
        service: it connects when the service starts, and
        C{stopService()} closes it (waiting transactions fail with
        L{upnode.Closed}; its Deferred fires once the link is gone).  Arguments
        and options as L{connect}; the client is the service's C{client}
        (transactions may be queued on it before it starts).
        """
        return UpnodeClientService(*self._client(args, options))

    def _client(self, args: Sequence[Any], options: Dict[str, Any]) -> Tuple[UpnodeClientFactory, EndpointConnector]:
        parsed = parseArguments(withOptions(args, options), CLIENT_OPTIONS)
        options = parsed.options
        warnMilliseconds(options)
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
        return factory, connector

    def _sources(self, parsed: Arguments) -> List[Callable[[], Any]]:
        createStream = parsed.options.get("createStream")
        if createStream is not None:
            if not callable(createStream):
                raise TypeError("createStream must be callable")
            return [createStream]
        many = parsed.options.get("endpoints")
        if many is not None:
            return [_fixed(self._oneEndpoint(each)) for each in many]
        return [_fixed(clientEndpoint(self.reactor, parsed, self._loop))]

    def _oneEndpoint(self, each: Any) -> Any:
        if isinstance(each, dict):
            return clientEndpoint(self.reactor, parseArguments([each], _ENDPOINT_OPTIONS), self._loop)
        return clientEndpoint(self.reactor, Arguments(endpoint=each))

    def listen(self, *args: Any, **options: Any) -> Deferred[Any]:
        """
        Serve C{cons} (a new C{cons(remote, conn)} per connection if it is
        callable).

        Arguments are dnode-style, told apart by type, in any order: a port (an
        int or a string of digits), a host to listen on (default: every
        interface), C{"host:port"}, a unix socket path (C{/...}), a Twisted
        endpoint description (C{"tcp:7000:interface=127.0.0.1"},
        C{"ssl:7001:privateKey=key.pem:certKey=cert.pem"}) or endpoint object, a
        callback called with no arguments once listening, and an options dict,
        or the same options as keywords (C{listen(7000, ping=0)}).

        Options (times in B{seconds}):
          - C{ping} (10.0): seconds between the server's pings of each client;
            0 turns them off;
          - C{timeout} (5.0): seconds a client may take to answer a ping before
            it is dropped;
          - C{handshakeTimeout} (10.0), C{lineTimeout} (30.0),
            C{maxConnections}, C{maxBufferedTotal}: the server-wide limits;
          - the per-connection limits of L{Limits} (C{maxLineLength},
            C{maxDepth}, C{maxCallbacks}, C{maxLinks}, C{maxPathLength},
            C{maxRate}, C{maxBuffered}, C{maxRemoteCallbacks},
            C{maxLocalCallbacks});
          - C{endpoint}, C{port}, C{host}, C{path}; C{metrics}: an
            L{upnode.metrics.Metrics}.

        Returns a Deferred that fires with the listening port (a failure to
        listen is logged at once too).
        """
        parsed = parseArguments(withOptions(args, options), SERVER_OPTIONS)
        options = parsed.options
        warnMilliseconds(options)
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
        d = serverEndpoint(self.reactor, parsed, self._loop).listen(factory)

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


class UpnodeClientService(Service):
    """
    A client as a C{twisted.application} service (see L{Upnode.service}):
    it connects when started, and its stop closes the client, so that
    nothing waits for a link that no one will make again.  (Twisted's
    C{ClientService} keeps its own attempts, and an upnode client under it
    cannot tell its stop from an ordinary loss.)  One start and one stop:
    a closed client does not connect again.

    @ivar client: the L{UpnodeClientFactory}, which is C{up()}.
    """

    def __init__(self, client: UpnodeClientFactory, connector: EndpointConnector) -> None:
        self.client = client
        self._connector = connector

    def startService(self) -> None:
        Service.startService(self)
        self._connector.connect()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return self.client.close()


def _fixed(endpoint: Any) -> Callable[[], Any]:
    return lambda: endpoint


def upnode(cons: Cons = None, reactor: Any = None) -> Upnode:
    """
    Node's C{upnode(cons)}: an L{Upnode} that serves C{cons} with
    C{.listen(...)} and exposes it to servers it C{.connect(...)}s to.

    @param cons: a dict, one shared object, or a callable C{cons(remote,
        conn)} (a class is one) making the object for each connection.
    @param reactor: the reactor; the global one by default.
    """
    return Upnode(cons, reactor)


def connect(*args: Any, reactor: Any = None, **options: Any) -> UpnodeClientFactory:
    """
    Node's C{upnode.connect(...)}: C{upnode({}).connect(...)}, a client that
    exposes nothing but C{ping}.  It takes what L{Upnode.connect} takes.
    """
    return Upnode({}, reactor).connect(*args, **options)


def isCons(arg: Any) -> bool:
    """
    Whether a callable given to L{listen} is dnode's C{listen(cons, port)}
    habit: a class, or a function that takes C{(remote, conn)}.  The
    listening callback takes no arguments.
    """
    if isinstance(arg, type):
        return True
    if not callable(arg):
        return False
    limit = positionalLimit(arg)
    return limit != ANY and limit >= 2


def listen(*args: Any, reactor: Any = None, **options: Any) -> Deferred[Any]:
    """
    Node's C{upnode.listen(...)}: C{upnode(cons).listen(...)}.  As with
    dnode's C{listen(cons, port)}, a class or a function taking C{(remote,
    conn)} among the arguments is the C{cons}, served anew on each
    connection; without one, only C{ping} is served.  A function taking no
    arguments is the callback called once listening.  The rest is what
    L{Upnode.listen} takes.
    """
    cons, rest = splitCons(args)
    return Upnode(cons, reactor).listen(*rest, **options)


def splitCons(args: Sequence[Any]) -> Tuple[Cons, List[Any]]:
    """
    The first argument that L{isCons} says is a cons (or C{{}}: only
    C{ping} is served), and the other arguments.
    """
    for index, arg in enumerate(args):
        if isCons(arg):
            return arg, [*args[:index], *args[index + 1 :]]
    return {}, list(args)


def _withDetails(function: Callable[..., Any], method: Callable[..., Any]) -> None:
    # help(upnode.connect) says every argument and option, as
    # help(upnode.upnode(cons).connect) does; the source says them once.
    function.__doc__ = f"{inspect.cleandoc(function.__doc__ or '')}\n\n{inspect.cleandoc(method.__doc__ or '')}"


_withDetails(connect, Upnode.connect)
_withDetails(listen, Upnode.listen)


__all__ = ["Upnode", "upnode", "connect", "listen"]
