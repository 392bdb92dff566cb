# -*- test-case-name: upnode.test.test_calls -*-
"""
An C{IConnector} over client endpoints, so that one reconnect loop
(C{ReconnectingClientFactory}'s) drives both C{reactor.connectTCP} and
endpoints.

Twisted's endpoints never call C{clientConnectionFailed} or
C{clientConnectionLost} on the factory they are given, so a
C{ReconnectingClientFactory} used with them would never retry.  This
connector makes those two calls itself: on the failure of the C{connect}
Deferred, and when the protocol it produced reports its loss.  It provides
L{IFailover}: it never moves to another endpoint by itself; the client
asks it to, after an attempt failed or timed out and after a link is lost.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import NotConnectingError
from twisted.internet.interfaces import IConnector, IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ._interfaces import IFailover

EndpointSource = Callable[[], IStreamClientEndpoint]


@implementer(IConnector, IFailover)
class EndpointConnector:
    """
    Connects C{factory} through endpoints, one attempt per C{connect()}.

    @param sources: each returns the endpoint for an attempt (a fixed
        endpoint, or C{createStream}, which makes a new one each time).
        Attempts stay on one source until the client calls L{failover}
        (after a failed or timed-out attempt, or a lost link).

    @ivar state: as C{IConnector}'s: C{"disconnected"} (no attempt, no
        connection: C{connect()} may be called), C{"connecting"} (from
        C{connect()} until the endpoint's Deferred fires; C{stopConnecting()}
        cancels it, and may be called from the factory's
        C{startedConnecting}, before the endpoint is asked), C{"connected"}
        (the protocol is connected, until it reports its loss).
    """

    def __init__(self, sources: Sequence[EndpointSource], factory: ClientFactory) -> None:
        if not sources:
            raise ValueError("no endpoint to connect to")
        self._sources: List[EndpointSource] = list(sources)
        self._current = 0
        self.factory = factory
        self.state = "disconnected"
        self._attempt: Optional[Deferred[Any]] = None
        self._protocol: Any = None
        self._endpoint: Any = None

    def connect(self) -> None:
        if self.state != "disconnected":
            raise RuntimeError(f"cannot connect while {self.state}")
        self.state = "connecting"
        self.factory.startedConnecting(self)
        if self.state != "connecting":
            return  # stopped from startedConnecting: no attempt is made
        try:
            self._endpoint = self._sources[self._current]()
            attempt = self._endpoint.connect(self.factory)
        except Exception:
            self._failed(Failure())
            return
        self._attempt = attempt
        attempt.addCallbacks(self._connected, self._failed)

    def _connected(self, protocol: Any) -> None:
        self._attempt = None
        self.state = "connected"
        self._protocol = protocol
        notify = getattr(protocol, "notifyOnLoss", None)
        if notify is None:
            raise TypeError(f"{protocol!r} cannot report its loss to the connector")
        notify(self._lost)

    def _lost(self, reason: Failure) -> None:
        self.state = "disconnected"
        self._protocol = None
        self.factory.clientConnectionLost(self, reason)

    def _failed(self, reason: Failure) -> None:
        self._attempt = None
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, reason)

    def failover(self) -> None:
        """
        L{IFailover}: make the next attempt on the next endpoint source.
        """
        self._current = (self._current + 1) % len(self._sources)

    def stopConnecting(self) -> None:
        if self.state != "connecting":
            raise NotConnectingError()
        if self._attempt is None:
            # Called from startedConnecting: the attempt is not made.
            self.state = "disconnected"
            self.factory.clientConnectionFailed(self, Failure(CancelledError()))
            return
        self._attempt.cancel()

    def disconnect(self) -> None:
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected" and self._protocol is not None:
            self._protocol.end()

    def getDestination(self) -> Any:
        return self._endpoint
