# -*- test-case-name: upnode.test.test_outbox -*-
"""
The durable outbox's sending side: its unanswered calls go out in order on
every link the client brings up, following the connection's
back-pressure as the C{up()} queue does: while the transport takes them,
at most L{WINDOW_CALLS} calls (or L{WINDOW_BYTES} bytes) unanswered on the
link at once, the rest on the connection's C{drain} event and as replies
come.  A lost link puts every unanswered call back in line for the next.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Optional, Tuple

from twisted.logger import Logger

from ._interfaces import ILinkSource, LinkWaiter
from ._sending import methodOf
from .errors import DeadRemoteError

if TYPE_CHECKING:  # (the outbox imports this module)
    from ._outbox import Outbox, _Pending

#: The most calls unanswered on one link: the rest wait for replies.
WINDOW_CALLS = 1000
#: The most bytes of calls (as encoded) unanswered on one link (one call
#: always goes, whatever its size).
WINDOW_BYTES = 256 * 1024


class _LinkWait(LinkWaiter):
    """
    The window's place in the client's queue: one wait at a time.
    """

    __slots__ = ("window",)

    def __init__(self, window: SendingWindow) -> None:
        super().__init__()
        self.window = window

    def linkUp(self, remote: Any, link: Any) -> None:
        self.done = True
        self.window._linkReady(remote, link.conn)

    def linkNever(self, error: Exception) -> None:
        self.done = True
        self.window._notReady()

    def linkLost(self, error: Exception) -> None:
        pass  # never in flight


class SendingWindow:
    """
    Sends an outbox's unanswered calls on the client's links.

    It owns the link side of the outbox: the wait for a link, the link and
    remote in use, the calls not yet sent on it (in order) and what is
    unanswered on it.  The L{Outbox} owns the calls themselves (its
    C{pending} calls, their file, their Deferreds and events); the window
    tells it of each reply (L{Outbox.answered}), of a call that cannot be
    sent (L{Outbox.cannotSend}) and of a link lost while its oldest call
    was on it (L{Outbox.lostWhileOldest}).
    """

    _log = Logger()

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._client: Optional[ILinkSource] = None
        self._waiting: Optional[_LinkWait] = None
        #: The connection the calls go out on, and its remote.
        self.link: Any = None
        self._remote: Any = None
        #: Unanswered calls not yet sent on the current link, in order.
        self._unsent: Deque[_Pending] = deque(outbox.pending.values())
        #: Calls, and their bytes, sent on the current link and unanswered.
        self._inflight = 0
        self._inflightBytes = 0
        self._sending = False

    def attach(self, client: ILinkSource) -> None:
        self._client = client
        client.on("down", self._down)
        self.wake()

    def queue(self, entry: _Pending) -> None:
        """
        C{entry} is a new call: last in line.
        """
        self._unsent.append(entry)

    def wake(self) -> None:
        """
        Something is unsent: send on the current link, or ask the client
        for one unless we already have.
        """
        client = self._client
        if client is None or self._waiting is not None or self._outbox.closed:
            return
        if self.link is not None and self.link is client.conn:
            self._send()
            return
        # Set first: when the link is up, it is called at once.
        waiting = self._waiting = _LinkWait(self)
        client.whenUp(waiting)

    def freed(self) -> None:
        """
        A call left the window without a reply (dropped): its place is free.
        """
        if self._unsent:
            self.wake()

    def isSent(self, entry: _Pending) -> bool:
        """
        Whether C{entry} is on the current link, waiting for its reply.
        """
        return self.link is not None and entry.link is self.link

    def release(self, entry: _Pending) -> None:
        """
        C{entry} is no longer unanswered on the current link.
        """
        if self.isSent(entry):
            self._inflight -= 1
            self._inflightBytes -= entry.size
        entry.link = None

    def stop(self) -> None:
        """
        The outbox is closed: a wait for a link leaves the client's queue.
        """
        waiting, self._waiting = self._waiting, None
        client = self._client
        if waiting is not None and waiting.queued and client is not None:
            waiting.done = True
            waiting.queued = False
            client.stopWaiting(waiting)

    def _notReady(self) -> None:
        self._waiting = None  # the client was closed, or gave up

    def _linkReady(self, remote: Any, conn: Any) -> None:
        self._waiting = None
        self.link = conn
        self._remote = remote
        self._inflight = self._inflightBytes = 0
        # What the transport could not take goes out once it has drained.
        conn.on("drain", lambda: self._drained(conn))
        self._send()

    def _drained(self, conn: Any) -> None:
        if conn is self.link and self._unsent:
            self._send()

    def _send(self) -> None:
        if self._sending:
            return  # a reply arrived while sending: the loop goes on
        self._sending = True
        try:
            self._sendWindow()
        finally:
            self._sending = False

    def _sendWindow(self) -> None:
        """
        Send unsent calls, in order, while the transport takes them and the
        window is open; replies and the C{drain} event send more.
        """
        outbox = self._outbox
        link = self.link
        remote = self._remote
        client = self._client
        unsent = self._unsent
        pending = outbox.pending
        maxLine = outbox.limits.maxLineLength
        while unsent:
            if outbox.closed or client is None or client.conn is not link:
                return
            if link.paused or self._inflight >= WINDOW_CALLS or self._inflightBytes >= WINDOW_BYTES:
                return
            entry = unsent.popleft()
            if entry.link is link or pending.get(entry.id) is not entry:
                continue
            if entry.size > maxLine:
                # Committed before its size was checked, or under larger limits.
                outbox.cannotSend(
                    entry,
                    ValueError(
                        f"durable {entry.method}() (call {entry.id}) would be a line of {entry.size:,} bytes, "
                        f"past maxLineLength ({maxLine:,}): it left the outbox unsent"
                    ),
                )
                continue
            try:
                method = methodOf(remote, entry.method)
            except AttributeError as e:
                outbox.cannotSend(entry, e)
                continue
            entry.link = link
            self._inflight += 1
            self._inflightBytes += entry.size
            try:
                method(*entry.args, lambda *values, entry=entry, link=link: self._reply(entry, link, values))
            except DeadRemoteError:
                self.release(entry)
                unsent.appendleft(entry)  # the link is going: the next one
                return
            except Exception as e:
                self.release(entry)
                self._log.failure("A durable call to {method}() could not be sent", method=entry.method)
                outbox.cannotSend(entry, e)

    def _reply(self, entry: _Pending, link: Any, values: Tuple[Any, ...]) -> None:
        if self._outbox.pending.get(entry.id) is not entry or entry.link is not link:
            return  # answered already
        self.release(entry)
        self._outbox.answered(entry, values)
        if self._unsent and self.link is link:
            self._send()

    def _down(self) -> None:
        lost = self.link
        self.link = self._remote = None
        self._inflight = self._inflightBytes = 0
        pending = self._outbox.pending
        oldest = next(iter(pending.values()), None)
        if oldest is not None and lost is not None and oldest.link is lost:
            self._outbox.lostWhileOldest(oldest)
        for entry in pending.values():
            entry.link = None
        # Everything unanswered goes again, in order, on the next link.
        self._unsent = deque(pending.values())
        if pending:
            self.wake()


__all__ = ["WINDOW_BYTES", "WINDOW_CALLS", "SendingWindow"]
