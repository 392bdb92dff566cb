# -*- test-case-name: upnode.test.test_guard -*-
"""
L{DropLog}: a server's drops, counted by reason, and logged once per
reason and period (the rest summed up when the period ends), so that a
flood of attackers does not become a flood of log lines.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from ._reactor import cancel
from .errors import DropReason


def peerName(conn: Any, unknown: str = "a peer") -> str:
    """
    Who is at the other end of C{conn}, for a log line.
    """
    try:
        return str(conn.transport.getPeer())
    except Exception:
        return unknown


class DropLog:
    """
    @ivar dropped: connections dropped so far, by reason (see
        L{DropReason.ALL}).
    """

    _log = Logger()

    def __init__(self, callLater: Callable[..., IDelayedCall], period: float) -> None:
        self._callLater = callLater
        self.period = period
        self.dropped: Dict[str, int] = {reason: 0 for reason in DropReason.ALL}
        self._unlogged: Dict[str, int] = {}
        self._summary: Optional[IDelayedCall] = None
        self.stopped = False

    def count(self, reason: str, conn: Any, message: str, **fields: Any) -> None:
        """
        Count a drop; the first for a reason in each period is logged with
        its peer, the rest are summed up once when the period ends.
        """
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if reason in self._unlogged:
            self._unlogged[reason] += 1
            return
        self._unlogged[reason] = 0
        self._log.warn(
            "Dropping the connection from {peer} ({reason}): " + message,
            peer=peerName(conn),
            reason=reason,
            **fields,
        )
        if self._summary is None and not self.stopped:
            self._summary = self._callLater(self.period, self.summarize)

    def summarize(self) -> None:
        """
        Log the drops not logged yet, one line per reason.
        """
        cancel(self._summary)
        self._summary = None
        counts, self._unlogged = self._unlogged, {}
        for reason, count in counts.items():
            if count:
                self._log.warn(
                    "Dropped {count} more connections ({reason}) in the last {period} seconds",
                    count=count,
                    reason=reason,
                    period=self.period,
                )
