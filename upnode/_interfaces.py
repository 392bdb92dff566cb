# -*- test-case-name: upnode.test.test_lifecycle -*-
"""
Private wiring contracts of the client: what a call or the outbox needs
from the link's owner (L{ILinkSource}), what the owner needs from something
waiting for a link (L{LinkWaiter}), and what a connector that can move to
another endpoint offers (L{IFailover}).

They exist so that L{upnode._calls} and L{upnode._outbox} depend on a
contract, not on the client class, and so that the client asks a connector
whether it can fail over instead of guessing with C{getattr}.  Nothing here
imports from the rest of upnode.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface


class IFailover(Interface):
    """
    A connector that knows several endpoints and can make its next attempt
    on the next one (L{upnode._connector.EndpointConnector}).

    The contract: the connector stays on one endpoint until told; the
    client (L{upnode._lifecycle.ClientMachine}) calls L{failover} once for
    each attempt that failed, each attempt that C{handshakeTimeout} ended
    (in the TCP connect or in the handshake), and each link that was lost
    or dropped, whether or not it had come up.  A connector without it
    (C{reactor.connectTCP}'s) has one destination.
    """

    def failover() -> None:
        """
        Make the next attempt on the next endpoint (wrapping round); called
        between attempts, never while one is under way.
        """


class LinkWaiter:
    """
    Something waiting for a link that is not a plain transaction: a call,
    or the outbox.  The client's queue holds it in order with the
    transactions and tells it what became of its wait.

    @ivar done: it has fired and must be skipped if still queued.
    @ivar queued: it sits in the client's queue (set and cleared by the
        client, read by the waiter to know whether it must be taken out).
    @ivar retry: it wants to be sent again when its link is lost (see
        L{linkLost}).
    """

    # In slots, with no instance dict: every up.call makes one of these
    # (L{upnode._calls.Call}).
    __slots__ = ("done", "queued", "retry")

    def __init__(self, retry: bool = False) -> None:
        self.done = False
        self.queued = False
        self.retry = retry

    def linkUp(self, remote: Any, link: Any) -> None:
        """
        The link is up: C{remote} is what the connect callback emitted, and
        C{link} the client's record of that link (its C{conn}, and its
        C{inflight} calls in the order they were sent).
        """
        raise NotImplementedError()

    def requeued(self) -> None:
        """
        Its link was lost and, as it has C{retry}, it is back in the queue.
        """
        self.queued = True

    def linkNever(self, error: Exception) -> None:
        """
        The wait ended without a link: the client was closed or gave up.
        """
        raise NotImplementedError()

    def linkLost(self, error: Exception) -> None:
        """
        The link this waiter was sent on is gone before its answer, and it
        is not sent again: C{error} says why.
        """
        raise NotImplementedError()


class ILinkSource(Protocol):
    """
    What L{upnode._calls.Call} and L{upnode._outbox.Outbox} need from the
    client that owns the link.
    """

    @property
    def clock(self) -> IReactorTime:
        """
        The clock for their timers.
        """

    @property
    def conn(self) -> Any:
        """
        The connection of the link that is up, or None.
        """

    def whenUp(self, waiter: LinkWaiter) -> None:
        """
        Call C{waiter.linkUp(remote, link)} now if the link is up and nobody
        waits ahead of it, else queue it (C{waiter.queued} is then true).

        @raise upnode.errors.QueueFull: the queue is at its bound.
        """

    def stopWaiting(self, waiter: LinkWaiter) -> None:
        """
        Take a queued C{waiter} out of the queue (it has ended on its own).
        """

    def on(self, event: str, handler: Callable[..., Any]) -> Any:
        """
        Listen for one of the client's events.
        """

    def emit(self, event: str, *args: Any) -> Any:
        """
        Emit one of the client's events.
        """

    def listeners(self, event: str) -> Any:
        """
        Who listens for C{event}.
        """


class LiveMirror(Protocol):
    """
    Where the client's machine writes the link that is up, for the hot path
    of C{up()} to read without entering the machine: set on entering the
    C{Up} state (once its queue is flushed), cleared on leaving it.
    """

    _live: Optional[Any]


__all__ = ["IFailover", "ILinkSource", "LinkWaiter", "LiveMirror"]
