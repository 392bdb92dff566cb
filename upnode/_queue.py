"""
The transaction queue behind C{up()}: FIFO, surviving any number of
reconnects, and firing each transaction exactly once.
"""

from __future__ import annotations

from itertools import count
from typing import Any, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .errors import QueueFull, UpTimeout


class Transaction:
    """
    One waiting C{up()}: a Deferred, or a Node-style callback, and its timer.
    """

    __slots__ = ("serial", "deferred", "callback", "timer")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.deferred: Optional[Deferred[Any]] = None
        self.callback: Optional[Callable[..., Any]] = None
        self.timer: Optional[IDelayedCall] = None


class TransactionQueue:
    """
    Waiting transactions, in order.  A dict keyed by serial gives O(1)
    removal when one times out or is cancelled, and keeps insertion order.

    @param fire: called as C{fire(transaction)} to deliver the remote.
    @param end: called as C{end(transaction, error)} when one ends without a
        link (time-out, close).
    """

    def __init__(
        self,
        clock: IReactorTime,
        fire: Callable[[Transaction], None],
        end: Callable[[Transaction, Exception], None],
        maxQueue: Optional[int] = None,
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._end = end
        self.maxQueue = maxQueue
        self._waiting: Dict[int, Transaction] = {}
        self._serials = count()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, timeout: Optional[float]) -> Transaction:
        """
        Queue a new transaction; it leaves the queue (and ends with
        L{UpTimeout}) after C{timeout} seconds unless fired before.

        @raise QueueFull: C{maxQueue} transactions are already waiting.
        """
        if self.maxQueue is not None and len(self._waiting) >= self.maxQueue:
            raise QueueFull(f"{len(self._waiting)} transactions are already waiting (maxQueue)")
        txn = Transaction(next(self._serials))
        if timeout:
            txn.timer = self._clock.callLater(timeout, self._timedOut, txn, timeout)
        self._waiting[txn.serial] = txn
        return txn

    def remove(self, txn: Transaction) -> bool:
        """
        Take C{txn} out without firing it; whether it was waiting.
        """
        if self._waiting.pop(txn.serial, None) is None:
            return False
        if txn.timer is not None and txn.timer.active():
            txn.timer.cancel()
        return True

    def _timedOut(self, txn: Transaction, timeout: float) -> None:
        txn.timer = None
        if self._waiting.pop(txn.serial, None) is not None:
            self._end(txn, UpTimeout(f"no link within {timeout} seconds"))

    def flush(self, stillUp: Callable[[], bool]) -> None:
        """
        Fire every waiting transaction in order while C{stillUp()}; ones
        added meanwhile are fired after them.  If the link goes while
        flushing, the rest stay queued, still in order.
        """
        while self._waiting and stillUp():
            batch: List[Transaction] = list(self._waiting.values())
            self._waiting = {}
            for index, txn in enumerate(batch):
                if not stillUp():
                    rest = {t.serial: t for t in batch[index:]}
                    rest.update(self._waiting)
                    self._waiting = rest
                    return
                if txn.timer is not None:
                    if txn.timer.active():
                        txn.timer.cancel()
                    txn.timer = None
                self._fire(txn)

    def endAll(self, error: Exception) -> None:
        """
        End every waiting transaction with C{error}, in order.
        """
        while self._waiting:
            batch = list(self._waiting.values())
            self._waiting = {}
            for txn in batch:
                if txn.timer is not None and txn.timer.active():
                    txn.timer.cancel()
                txn.timer = None
                self._end(txn, error)


__all__ = ["QueueFull", "Transaction", "TransactionQueue"]
