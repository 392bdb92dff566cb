# -*- test-case-name: upnode.test.test_onloop -*-
"""
A Twisted program on Twisted's asyncio reactor: its links named by a port
or a unix path ride the loop's own transports (L{upnode._aiostream}), as an
asyncio program's do, so that on uvloop the reading and writing are done in
C instead of by Twisted's transports in Python on top of the loop.

Owns: the choice between the loop's endpoint and Twisted's, made when a
link is made (L{reactorEndpoint}, L{OnTheReactorsLoop}).

The loop is found the one public way, C{asyncio.get_running_loop()}, which
answers only while the loop runs.  A link asked for before then (a
program's set-up before C{reactor.run()}, C{task.react}'s C{main}, a
C{twistd} service starting: the reactor runs those before it starts its
loop) is made on the reactor's first turn.  Any other reactor gets
Twisted's endpoint as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.task import deferLater
from zope.interface import implementer

LoopEndpoint = Callable[[asyncio.AbstractEventLoop], Any]


def reactorEndpoint(reactor: Any, twisted: Any, onLoop: LoopEndpoint) -> Any:
    """
    C{twisted}, Twisted's endpoint for a port or a unix path, or, on
    Twisted's asyncio reactor, an endpoint that uses the one C{onLoop}
    makes for the reactor's loop.
    """
    if isinstance(reactor, AsyncioSelectorReactor):
        return OnTheReactorsLoop(reactor, twisted, onLoop)
    return twisted


@implementer(IStreamClientEndpoint, IStreamServerEndpoint)
class OnTheReactorsLoop:
    """
    Connects or listens through the loop's endpoint (made by C{onLoop}),
    once the loop runs; through C{twisted} if, on the reactor's first
    turn, no loop is running (a reactor that is not the asyncio one).
    """

    def __init__(self, reactor: Any, twisted: Any, onLoop: LoopEndpoint) -> None:
        self._reactor = reactor
        self._twisted = twisted
        self._onLoop = onLoop

    def __repr__(self) -> str:
        # What the client's messages name as where it connects: the same
        # place whichever transport carries the link.
        return repr(self._twisted)

    def connect(self, factory: Any) -> Deferred[Any]:
        return self._whenChosen(lambda endpoint: endpoint.connect(factory))

    def listen(self, factory: Any) -> Deferred[Any]:
        return self._whenChosen(lambda endpoint: endpoint.listen(factory))

    def _whenChosen(self, use: Callable[[Any], Deferred[Any]]) -> Deferred[Any]:
        endpoint = self._loopEndpoint()
        if endpoint is not None:
            return use(endpoint)
        # Cancelling this cancels the wait, or the attempt it leads to.
        return deferLater(self._reactor, 0, self._chosen).addCallback(use)

    def _chosen(self) -> Any:
        return self._loopEndpoint() or self._twisted

    def _loopEndpoint(self) -> Optional[Any]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._onLoop(loop)
