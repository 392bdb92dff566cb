# -*- test-case-name: upnode.test.test_client -*-
"""
The transaction queue behind C{up()}: FIFO, surviving any number of
reconnects, and firing each transaction exactly once.

A waiting transaction costs one slot of a deque when it has no timeout:
the slot holds the Node-style callback or the Deferred itself.  Only a
transaction with a timeout gets a small L{Transaction} record, so that its
timer can find and retire it.  Retired entries (timed out, cancelled) stay
in the deque as tombstones until the flush passes them, or until there are
more of them than live ones, when the deque is compacted.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._interfaces import LinkWaiter
from ._reactor import cancel
from .errors import QueueFull, UpTimeout

#: What waits: a callable (Node style), a Deferred, a Transaction, or a
#: L{LinkWaiter} (a call, the outbox).
Entry = Any


class Transaction:
    """
    A waiting transaction with a timeout.
    """

    __slots__ = ("waiter", "timer", "done")

    def __init__(self, waiter: Any) -> None:
        self.waiter = waiter
        self.timer: Optional[IDelayedCall] = None
        self.done = False


class TransactionQueue:
    """
    Waiting transactions, in order.

    @param fire: called as C{fire(waiter)} to deliver the remote to a
        callable or Deferred.
    @param end: called as C{end(waiter, error)} when one ends without a
        link (time-out, close).
    """

    def __init__(
        self,
        clock: IReactorTime,
        fire: Callable[[Any], None],
        end: Callable[[Any, Exception], None],
        maxQueue: Optional[int] = None,
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._end = end
        self.maxQueue = maxQueue
        self._entries: Deque[Entry] = deque()
        #: How many transactions wait (len(queue), without a method call).
        self.waiting = 0

    def __len__(self) -> int:
        return self.waiting

    def add(self, waiter: Any, timeout: Optional[float] = None) -> Entry:
        """
        Queue C{waiter} (a callable or a Deferred); with C{timeout}, it is
        ended with L{UpTimeout} after that many seconds unless fired before.

        @return: a handle for L{remove}.
        @raise QueueFull: C{maxQueue} transactions are already waiting.
        """
        if self.maxQueue is not None and self.waiting >= self.maxQueue:
            raise QueueFull(f"{self.waiting} transactions are already waiting (maxQueue)")
        entry: Entry = waiter
        if timeout:
            entry = Transaction(waiter)
            entry.timer = self._clock.callLater(timeout, self._timedOut, entry, timeout)
        self._entries.append(entry)
        self.waiting += 1
        return entry

    def prepend(self, waiters: Iterable[LinkWaiter]) -> None:
        """
        Put C{waiters} back at the head of the queue, in their order: calls
        sent on a link that was lost, to be sent again first.  They were
        admitted once, so C{maxQueue} does not apply to them: refusing them
        now would break the promise of C{retry}, and the connection-lost
        handler that puts them back has nobody to raise to.
        """
        waiters = list(waiters)
        self._entries.extendleft(reversed(waiters))
        self.waiting += len(waiters)

    def remove(self, entry: Entry) -> None:
        """
        Retire a waiting Deferred that was cancelled, or a L{LinkWaiter}
        that has ended on its own (its C{done} set first).
        """
        if type(entry) is Transaction:
            if entry.done:
                return
            entry.done = True
            cancel(entry.timer)
        self._retired()

    def _retired(self) -> None:
        self.waiting -= 1
        if len(self._entries) > 2 * self.waiting + 64:
            self._entries = deque(e for e in self._entries if not _isDead(e))

    def _timedOut(self, entry: Transaction, timeout: float) -> None:
        entry.timer = None
        if not entry.done:
            entry.done = True
            self._retired()
            self._end(entry.waiter, UpTimeout(f"no link within {timeout} seconds"))

    def flush(self, stillUp: Callable[[], bool]) -> None:
        """
        Fire waiting transactions in order while C{stillUp()}, including
        ones added meanwhile.  If the link goes while flushing, the rest
        stay queued, still in order.
        """
        while stillUp():
            waiter = self._next()
            if waiter is None:
                return
            self._fire(waiter)

    def endAll(self, error: Exception) -> None:
        """
        End every waiting transaction with C{error}, in order.
        """
        while True:
            waiter = self._next()
            if waiter is None:
                return
            self._end(waiter, error)

    def _next(self) -> Any:
        """
        Take the oldest live transaction out of the queue (its timer
        cancelled) and return its waiter; None when there is none.
        """
        entries = self._entries
        while entries:
            entry = entries.popleft()
            if _isDead(entry):
                continue
            self.waiting -= 1
            if type(entry) is Transaction:
                entry.done = True
                cancel(entry.timer)
                entry.timer = None
                return entry.waiter
            return entry
        return None


def _isDead(entry: Entry) -> bool:
    if type(entry) is Transaction:
        return entry.done
    # A cancelled Deferred has fired (with CancelledError) on its own.
    if isinstance(entry, Deferred):
        return entry.called
    return isinstance(entry, LinkWaiter) and entry.done


__all__ = ["Transaction", "TransactionQueue"]
