# -*- test-case-name: upnode.test.test_protocol -*-
"""
The private contracts between the objects of one connection, and its
public hook for observers: what each part may tell the one that owns it.
They are typing protocols, checked by mypy; nothing here runs.

The connection (L{upnode._protocol.DnodeProtocol}) owns the parts and
implements L{IFlowOwner} (for its L{upnode._outflow.OutputFlow}),
L{IFramerOwner} (for its L{upnode._framing.LineFramer}) and L{ILinkOwner}
(for its L{upnode._session.DnodeSession}); it tells the factory that built
it what an L{IConnectionHost} hears.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.python.failure import Failure

from .errors import ProtocolError, RejectedMessage


class IFlowOwner(Protocol):
    """
    What an output flow tells its connection.
    """

    #: Seconds a peer with output waiting may take none of it.  0: never.
    stallTimeout: float

    def flowDrained(self) -> None:
        """
        The transport resumed us and nothing is held: writers may go on.
        """

    def flowSent(self) -> None:
        """
        What was held when the connection asked to end has all been handed over.
        """

    def flowFailed(self, error: ProtocolError) -> None:
        """
        The peer left too much unread, or took nothing for too long: drop it.
        """

    def flowUnread(self, size: int) -> None:
        """
        We now hold C{size} bytes for the peer.
        """

    def flowLarge(self) -> None:
        """
        The peer has a megabyte or more handed over and not taken.
        """


class IFramerOwner(Protocol):
    """
    What a line framer tells its connection.
    """

    def lineLengthExceeded(self, line: bytes) -> Any:
        """
        A line (or the unfinished one) is longer than C{MAX_LENGTH}.
        """

    def framingViolation(self, error: ProtocolError) -> None:
        """
        The peer broke a framing limit (the message rate): close.
        """

    def readFull(self) -> None:
        """
        A read took (nearly) all the transport reads at once.
        """

    def largeLine(self) -> None:
        """
        An unfinished line has grown large.
        """


class ILinkOwner(Protocol):
    """
    What a dnode session tells its connection.
    """

    def remoteArrived(self) -> None:
        """
        The peer's C{methods} came: the session's remote has its members.
        """

    def violation(self, error: ProtocolError) -> None:
        """
        The peer broke the protocol or a limit: close.
        """

    def rejected(self, error: RejectedMessage) -> None:
        """
        The peer sent a message that was not dispatched; the link stays.
        """

    def localError(self, failure: Failure) -> None:
        """
        Our side's code raised while handling the peer's message.
        """

    def tooManyCallbacks(self, error: ProtocolError) -> None:
        """
        A server's peer would have us keep more of our callables than
        C{maxLocalCallbacks}: drop it.
        """


class IServerBudget(Protocol):
    """
    What a server's connection tells the guard of the whole server (see
    L{upnode._guard.ServerGuard}), and asks it.
    """

    def noteUnread(self, conn: Any, size: int) -> None:
        """
        C{conn} now holds C{size} bytes its peer has not read.
        """

    def noteLarge(self, conn: Any) -> None:
        """
        C{conn} made us build a lot at once.
        """

    def readShare(self, conn: Any, full: int) -> int:
        """
        C{conn} read all it could at once: how much it may read from now on.
        """

    def count(self, reason: str, conn: Any, message: str, **fields: Any) -> None:
        """
        Count (and maybe log) a drop of C{conn} for C{reason}.
        """

    def drop(self, conn: Any, reason: str, why: str) -> None:
        """
        Abort C{conn}, counted under C{reason}.
        """


class IConnectionObserver(Protocol):
    """
    Hooks for who watches a connection (metrics), called by it as things
    happen; set as the connection's C{observer} before it is connected.
    They must be quick, and must not raise.
    """

    def received(self, size: int) -> None:
        """
        C{size} bytes came from the peer.
        """

    def sent(self, size: int) -> None:
        """
        C{size} bytes were handed to the transport.
        """

    def called(self, exposed: bool) -> None:
        """
        The peer called one of our functions: an exposed method
        (C{exposed}), or a callback we handed it.
        """

    def dropped(self, reason: str) -> None:
        """
        The connection is closing for a limit it enforces itself (see
        L{upnode.errors.DropReason}); a server's guard counts its own drops.
        """

    def ended(self) -> None:
        """
        The connection is lost.
        """


class IConnectionHost(Protocol):
    """
    What a connection tells the factory that built it (a dnode or upnode
    factory, and through it its server's guard and heartbeats), set as the
    connection's C{connectionHost} as it is built: direct calls, before the
    connection's own events, rather than listeners and loss hooks that a
    server would keep on every connection (and that a handler's
    C{removeAllListeners} would take away).
    """

    def connectionLocal(self, local: Any, conn: Any) -> None:
        """
        C{conn} made C{local}, the object it exposes (its C{local} event
        follows).
        """

    def connectionRemote(self, conn: Any) -> None:
        """
        The peer's methods came (C{conn.remote}; the C{remote} event follows).
        """

    def connectionGone(self, conn: Any) -> None:
        """
        C{conn} is lost (after its C{end} event, before its loss hooks).
        """
