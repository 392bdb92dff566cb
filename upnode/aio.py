# -*- test-case-name: upnode.test.test_asyncio -*-
"""
upnode in an asyncio program, one run by C{asyncio.run(main())} (or
C{uvloop.run}) with no C{reactor.run()} of its own::

    import asyncio
    import upnode.aio

    async def main():
        up = await upnode.aio.connect(7000, ping=0)
        print(await up.call("echo", "hi", timeout=5))
        remote = await up(timeout=5.0)
        await up.close()

    asyncio.run(main())

The first L{connect}, L{listen} or L{start} installs Twisted's asyncio
reactor on the running loop (unless an asyncio reactor is installed
already) and starts it without blocking; when C{asyncio.run} ends, the
reactor's shutdown runs (connections closed, its thread pool stopped).
What these objects return can be awaited by asyncio tasks (asyncio futures,
not Deferreds), and coroutine functions that upnode runs (C{async def}
server methods, callbacks, event handlers) run as asyncio tasks, so they
may await anything asyncio code awaits (C{await asyncio.sleep(0.1)}); a
Twisted Deferred is awaited there as C{await d.asFuture(loop)}.

Links named by a port or a unix path ride the loop's own transports
(uvloop's read and write in C), not Twisted's; links named by an endpoint
object or description (C{"tls:..."}, C{"tcp:..."}) ride Twisted's, which
is how TLS and C{startTLS} are had here (see L{upnode._aiostream}).

One event loop per process: Twisted's reactor is installed once and
cannot restart, so a second C{asyncio.run} in the same process is refused.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Iterable, List, Optional, Sequence, overload

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import Deferred
from twisted.internet.posixbase import PosixReactorBase

from . import _arity
from ._client import UpnodeClientFactory
from ._expose import Cons
from ._upnode import Upnode as _Upnode
from ._upnode import splitCons


class _GuestReactor(AsyncioSelectorReactor):
    """
    Twisted's asyncio reactor as a guest on a loop that asyncio runs: the
    end of its shutdown (C{crash}) leaves the loop running, since
    C{asyncio.run} owns it.
    """

    def crash(self) -> None:
        PosixReactorBase.crash(self)


# The loop the reactor runs on, and the task that runs its shutdown when
# asyncio.run ends (held here: the loop keeps only weak references).
_loop: Optional[asyncio.AbstractEventLoop] = None
_keeper: Optional[asyncio.Task[None]] = None


def start() -> Any:
    """
    Install Twisted's asyncio reactor on the running asyncio loop (unless
    one is installed) and start it without blocking; return it.  Called by
    L{connect}, L{listen} and L{upnode}'s methods; call it first to use
    Twisted APIs yourself.  Must be called from a coroutine (or callback)
    running on the loop.

    @raise RuntimeError: with no running loop, when another reactor is
        installed, or on a second event loop in the same process.
    """
    global _loop, _keeper
    loop = asyncio.get_running_loop()
    if _loop is not None:
        if _loop is not loop:
            raise RuntimeError(
                "upnode.aio runs on the first event loop that used it, and Twisted's reactor cannot "
                "restart: use one asyncio.run() per process"
            )
        from twisted.internet import reactor

        return reactor
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor

        installReactor(_GuestReactor(loop))
    from twisted.internet import reactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise RuntimeError(
            f"upnode.aio needs Twisted's asyncio reactor, but {type(reactor).__name__} is installed: "
            "import upnode.aio and call it before anything imports twisted.internet.reactor"
        )
    if not reactor.running:
        reactor.startRunning(installSignalHandlers=False)  # asyncio handles signals
        _keeper = loop.create_task(_keepRunning(reactor, loop))
        # An asyncio program: coroutines run as asyncio tasks.  (A Twisted
        # program that already runs the asyncio reactor keeps Twisted's
        # coroutines, which await Deferreds.)
        _arity.asyncioLoop = loop
    _loop = loop
    return reactor


async def _keepRunning(reactor: Any, loop: asyncio.AbstractEventLoop) -> None:
    try:
        await loop.create_future()
    except asyncio.CancelledError:
        pass  # asyncio.run cancels the tasks left when main() returns
    if reactor.running and isinstance(reactor, _GuestReactor):
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        reactor.addSystemEventTrigger("after", "shutdown", finished)
        reactor.stop()
        await done


class Client:
    """
    An upnode client for asyncio tasks: L{upnode.UpnodeClientFactory}'s
    C{up()} and C{call} with asyncio futures instead of Deferreds.  Every
    other attribute (C{on}, C{once}, C{off}, C{status()}, C{queued},
    C{state}) is the client's own.

    @ivar client: the L{UpnodeClientFactory}.
    """

    def __init__(self, client: UpnodeClientFactory, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self._loop = loop

    @overload
    def __call__(self, *, timeout: Optional[float] = None) -> asyncio.Future[Any]: ...

    @overload
    def __call__(self, timeout: float, /) -> asyncio.Future[Any]: ...

    @overload
    def __call__(self, callback: Callable[..., Any], /) -> None: ...

    @overload
    def __call__(self, timeout: float, callback: Callable[..., Any], /) -> None: ...

    def __call__(self, *args: Any, timeout: Optional[float] = None) -> Optional[asyncio.Future[Any]]:
        """
        A transaction: C{await up()} or C{await up(timeout=5.0)} gives the
        remote once the link is up (or raises L{upnode.UpTimeout},
        L{upnode.Closed}); C{up(cb)} and C{up(seconds, cb)} are Node's forms.
        """
        result = self.client(*args, timeout=timeout)
        return None if result is None else result.asFuture(self._loop)

    def call(
        self,
        name: str,
        *args: Any,
        timeout: Optional[float] = None,
        retry: bool = False,
        errorFirst: bool = False,
        durable: bool = False,
    ) -> asyncio.Future[Any]:
        """
        L{UpnodeClientFactory.call}, as an asyncio future: what the remote
        method's callback receives (one value as is, several as a tuple).
        """
        d = self.client.call(name, *args, timeout=timeout, retry=retry, errorFirst=errorFirst, durable=durable)
        return d.asFuture(self._loop)

    def callMany(self, calls: Iterable[Sequence[Any]], *, durable: bool = False) -> List[asyncio.Future[Any]]:
        """
        L{UpnodeClientFactory.callMany}, as asyncio futures.
        """
        return [d.asFuture(self._loop) for d in self.client.callMany(calls, durable=durable)]

    def close(self) -> asyncio.Future[None]:
        """
        Stop reconnecting, end the link and fail the waiting transactions;
        done once the link is gone.
        """
        return self.client.close().asFuture(self._loop)

    end = close

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class Server:
    """
    One listening port of an L{Upnode}.

    @ivar port: the Twisted listening port (C{port.getHost().port} is the
        port number when listening on port 0).
    """

    def __init__(self, port: Any, upnode: Upnode) -> None:
        self.port = port
        self.upnode = upnode

    @property
    def connections(self) -> List[Any]:
        """
        The live connections of the L{Upnode} this port serves.
        """
        return self.upnode.connections

    def close(self) -> asyncio.Future[Any]:
        """
        Stop listening on this port; live connections stay.
        """
        return Deferred.fromCoroutine(_stopListening(self.port)).asFuture(asyncio.get_running_loop())

    def end(self) -> asyncio.Future[Any]:
        """
        Stop listening and drop every connection (L{Upnode.end}).
        """
        return self.upnode.end()


async def _stopListening(port: Any) -> None:
    await port.stopListening()


class Upnode:
    """
    Node's C{upnode(cons)} for asyncio programs: L{upnode.Upnode} with
    awaitable methods.  Arguments and options are those of
    L{upnode.Upnode.connect} and L{upnode.Upnode.listen}.
    """

    def __init__(self, cons: Cons = None) -> None:
        self.cons = cons
        self.upnode: Optional[_Upnode] = None

    def _started(self) -> _Upnode:
        reactor = start()
        if self.upnode is None:
            self.upnode = _Upnode(self.cons, reactor, loop=asyncio.get_running_loop())
        return self.upnode

    async def connect(self, *args: Any, **options: Any) -> Client:
        """
        Keep a link to a server, exposing C{cons} to it: the client, whose
        C{up()} and C{call()} are awaitable (see L{Client}).
        """
        return Client(self._started().connect(*args, **options), asyncio.get_running_loop())

    async def listen(self, *args: Any, **options: Any) -> Server:
        """
        Serve C{cons}; done once listening.
        """
        port = await self._started().listen(*args, **options).asFuture(asyncio.get_running_loop())
        return Server(port, self)

    @property
    def connections(self) -> List[Any]:
        """
        The live server-side connections.
        """
        return [] if self.upnode is None else self.upnode.connections

    def close(self) -> asyncio.Future[Any]:
        """
        Stop listening; live connections stay.
        """
        return self._started().close().asFuture(asyncio.get_running_loop())

    def end(self) -> asyncio.Future[Any]:
        """
        Stop listening, drop every connection and close every client made
        by L{connect}.
        """
        return self._started().end().asFuture(asyncio.get_running_loop())


def upnode(cons: Cons = None) -> Upnode:
    """
    Node's C{upnode(cons)} for asyncio programs (see L{Upnode}).
    """
    return Upnode(cons)


async def connect(*args: Any, **options: Any) -> Client:
    """
    Node's C{upnode.connect(...)} for asyncio programs: arguments and
    options as L{upnode.connect} (keywords: C{ping=0}, C{reconnect=0.2},
    ...).  Returns at once with the client (the link comes up in the
    background); C{await up()} waits for it.
    """
    return await Upnode({}).connect(*args, **options)


async def listen(*args: Any, **options: Any) -> Server:
    """
    Node's C{upnode.listen(...)} for asyncio programs: arguments and
    options as L{upnode.listen} (a class or a function taking C{(remote,
    conn)} is the cons).  Done once listening.
    """
    cons, rest = splitCons(args)
    return await Upnode(cons).listen(*rest, **options)


__all__ = ["Client", "Server", "Upnode", "connect", "listen", "start", "upnode"]
