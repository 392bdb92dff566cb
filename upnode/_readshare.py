# -*- test-case-name: upnode.test.test_guard -*-
"""
How much each busy connection of a server reads at once: each turn of the
reactor's reads split between the connections that are busy together
(L{BusyWindow}, L{readShare}).

The reactor reads once from every ready connection in a turn, so a turn
lasts as long as all their reads take to handle, and any one peer's call
waits about a turn: many peers each sending as fast as they can would make
everyone's calls wait for as many full reads.  Split, a turn stays short
however many are busy, and a peer with calls to spare waits longer for
each read instead.
"""

from __future__ import annotations

from typing import Set

#: Bytes read by all the connections that are busy together, in one turn
#: of the reactor: a few milliseconds of calls to handle, so that a call
#: from anyone else waits a few of those at most.  Up to 8 busy
#: connections each still read all of their own readSize (16 KiB).
TURN_READ = 128 * 1024
#: The least any connection reads at once, however many are busy.
MIN_READ = 2 * 1024
#: What a new connection reads at once until it shows it is busy: many
#: peers that connect together and then each send as fast as they can
#: would otherwise make their first turn as many full reads long.
START_READ = 4 * 1024
#: Seconds over which the busy connections are counted.
BUSY_WINDOW = 0.1


def readShare(busy: int, full: int) -> int:
    """
    What one of C{busy} connections may read at once: its share of
    L{TURN_READ}, never less than L{MIN_READ}, never more than C{full}
    (what it reads when alone).
    """
    return max(MIN_READ, min(full, TURN_READ // busy))


class BusyWindow:
    """
    The connections that read all they could at once, in this window of
    L{BUSY_WINDOW} seconds and (how many) in the one before.
    """

    def __init__(self) -> None:
        self._busy: Set[int] = set()
        self._before = 0
        self._since = 0.0

    def note(self, key: int, now: float) -> int:
        """
        The connection C{key} was busy at C{now}: how many are busy now.
        """
        age = now - self._since
        if age >= BUSY_WINDOW:
            self._before = len(self._busy) if age < 2 * BUSY_WINDOW else 0
            self._busy = set()
            self._since = now
        self._busy.add(key)
        return max(len(self._busy), self._before)
