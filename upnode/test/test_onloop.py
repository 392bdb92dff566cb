"""
Tests for L{upnode._onloop}: on Twisted's asyncio reactor, the endpoint of
a link named by a port or a unix path is the loop's, chosen when the loop
runs; on any other reactor it is Twisted's.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode._aiostream import LoopClientEndpoint, LoopServerEndpoint
from upnode._args import Arguments, clientEndpoint, serverEndpoint
from upnode._onloop import OnTheReactorsLoop, reactorEndpoint


class Recording:
    """
    An endpoint that records what it was asked, and answers at once.
    """

    def __init__(self, name: str, log: List[Tuple[str, str, Any]]) -> None:
        self.name = name
        self.log = log

    def connect(self, factory: Any) -> Deferred[Any]:
        self.log.append((self.name, "connect", factory))
        return succeed(f"{self.name} protocol")

    def listen(self, factory: Any) -> Deferred[Any]:
        self.log.append((self.name, "listen", factory))
        return succeed(f"{self.name} port")


class OnTheReactorsLoopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log: List[Tuple[str, str, Any]] = []
        self.loops: List[Any] = []
        self.clock = Clock()

        def onLoop(loop: Any) -> Recording:
            self.loops.append(loop)
            return Recording("loop", self.log)

        self.endpoint = OnTheReactorsLoop(self.clock, Recording("twisted", self.log), onLoop)

    def inRunningLoop(self, call: Any) -> Any:
        """
        C{call()}'s result, called while an asyncio loop runs.
        """

        async def main() -> Any:
            return call(), asyncio.get_running_loop()

        result, loop = asyncio.run(main())
        return result, loop

    def test_runningLoopChosenAtOnce(self) -> None:
        """
        Asked while the loop runs, the endpoint is the running loop's.
        """
        d, loop = self.inRunningLoop(lambda: self.endpoint.connect("factory"))
        self.assertEqual(self.successResultOf(d), "loop protocol")
        self.assertEqual(self.log, [("loop", "connect", "factory")])
        self.assertEqual(self.loops, [loop])

    def test_listenOnTheRunningLoop(self) -> None:
        d, loop = self.inRunningLoop(lambda: self.endpoint.listen("factory"))
        self.assertEqual(self.successResultOf(d), "loop port")
        self.assertEqual(self.log, [("loop", "listen", "factory")])

    def test_beforeTheLoopRunsChosenOnTheFirstTurn(self) -> None:
        """
        Asked before the loop runs (a program's set-up), the choice waits
        for the reactor's first turn, when the loop runs.
        """
        d = self.endpoint.listen("factory")
        self.assertNoResult(d)
        self.assertEqual(self.log, [])
        _, loop = self.inRunningLoop(lambda: self.clock.advance(0))
        self.assertEqual(self.successResultOf(d), "loop port")
        self.assertEqual(self.log, [("loop", "listen", "factory")])
        self.assertEqual(self.loops, [loop])

    def test_noLoopOnTheFirstTurn(self) -> None:
        """
        If no loop runs on the reactor's first turn either, Twisted's
        endpoint is used.
        """
        d = self.endpoint.connect("factory")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), "twisted protocol")
        self.assertEqual(self.log, [("twisted", "connect", "factory")])

    def test_namedAsTwistedsEndpoint(self) -> None:
        """
        It is named as the place it connects to (the client's messages say
        where), whichever transport carries the link.
        """
        self.assertEqual(repr(self.endpoint), repr(self.endpoint._twisted))

    def test_cancelledWhileWaiting(self) -> None:
        """
        An attempt cancelled before the first turn (a handshake timeout)
        is never made.
        """
        d = self.endpoint.connect("factory")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.clock.advance(0)
        self.assertEqual(self.log, [])


class ReactorEndpointTests(SynchronousTestCase):
    def test_otherReactorsGetTwistedsEndpoint(self) -> None:
        """
        On any reactor but the asyncio one, Twisted's endpoint is used as
        it is.
        """
        twisted = object()
        self.assertIs(reactorEndpoint(Clock(), twisted, lambda loop: None), twisted)
        parsed = Arguments(port=7000, host="127.0.0.1")
        self.assertNotIsInstance(clientEndpoint(Clock(), parsed), OnTheReactorsLoop)
        self.assertNotIsInstance(serverEndpoint(Clock(), parsed), OnTheReactorsLoop)

    def test_asyncioReactor(self) -> None:
        """
        On Twisted's asyncio reactor, a port or a unix path gets the
        choice, and the loop's endpoint is made for the same place (a
        server on all interfaces listens on IPv4's, as Twisted's does).
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        reactor = AsyncioSelectorReactor(loop)
        self.addCleanup(reactor.removeAll)
        made: List[Any] = []

        def capture(endpoint: Any) -> Any:
            self.assertIsInstance(endpoint, OnTheReactorsLoop)
            made.append(endpoint._onLoop(loop))
            return endpoint

        capture(clientEndpoint(reactor, Arguments(port=7000, host="127.0.0.1")))
        capture(clientEndpoint(reactor, Arguments(path="/tmp/x.sock")))
        capture(serverEndpoint(reactor, Arguments(port=7000)))
        capture(serverEndpoint(reactor, Arguments(port=7000, host="127.0.0.1")))
        self.assertIsInstance(made[0], LoopClientEndpoint)
        self.assertEqual((made[0]._host, made[0]._port, made[0]._path), ("127.0.0.1", 7000, None))
        self.assertEqual(made[1]._path, "/tmp/x.sock")
        self.assertIsInstance(made[2], LoopServerEndpoint)
        self.assertEqual((made[2]._interface, made[2]._port), ("0.0.0.0", 7000))
        self.assertEqual(made[3]._interface, "127.0.0.1")
        # An endpoint description stays on Twisted's transports.
        self.assertNotIsInstance(clientEndpoint(reactor, Arguments(endpoint="tcp:host=127.0.0.1:port=7000")), OnTheReactorsLoop)
