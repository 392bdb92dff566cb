# -*- test-case-name: upnode.test.test_guard -*-
"""
Server-wide budgets: what every connection of one server costs together,
so that N hostile peers do not cost N times a per-connection limit.

One L{ServerGuard} per server factory admits each new connection, gives it
C{handshakeTimeout} seconds to send its C{methods} (a TLS handshake
included), caps live connections (evicting the oldest that has not finished
its handshake first), budgets the output that peers leave unread across all
connections (shedding the connection holding the most), drops
connections whose unfinished line makes no progress, and splits each turn
of the reactor's reads between the connections that are busy at once (see
L{upnode._readshare}).  Every drop is counted by reason and logged once per
reason and period (see L{upnode._droplog}).
"""

from __future__ import annotations

import resource
from typing import Any, Dict, Mapping, Optional, Set, Tuple

import attr
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ._droplog import DropLog
from ._framing import LARGE_LINE
from ._limits import seconds
from ._memory import releaseFreedMemory
from ._outflow import LARGE
from ._reactor import cancel, resolve
from ._readshare import BUSY_WINDOW, MIN_READ, START_READ, TURN_READ, BusyWindow, readShare
from .errors import DropReason

#: Descriptors kept back from the connection cap: for listening sockets,
#: log files and the process's own use, and for a burst of accepts.  A
#: listening port accepts up to a hundred connections or more in one go
#: (Twisted raises the number as long as they keep coming), and the
#: connections each newcomer evicts close only on the reactor's next turn,
#: so the descriptors in use can pass the cap by one burst for a moment.
DESCRIPTOR_RESERVE = 256

#: A connection holding LARGE bytes of output or more for its peer, or a
#: line LARGE_LINE long, is large: when it goes, freed memory is handed
#: back to the system.
#: Why connections are dropped: the keys of C{status()["dropped"]}.
HOSTILE = DropReason.HOSTILE
HANDSHAKE = DropReason.HANDSHAKE
UNREAD = DropReason.UNREAD
BUDGET = DropReason.BUDGET
CAPACITY = DropReason.CAPACITY
SLOW_LINE = DropReason.SLOW_LINE
PING = DropReason.PING
REASONS = DropReason.ALL

__all__ = [
    "BUSY_WINDOW",
    "LARGE",
    "LARGE_LINE",
    "MIN_READ",
    "START_READ",
    "TURN_READ",
    "REASONS",
    "ServerGuard",
    "ServerLimits",
]


def descriptorCap() -> int:
    """
    The most connections this process can hold: its descriptor limit, less
    a reserve.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - DESCRIPTOR_RESERVE)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class ServerLimits:
    """
    Limits across all the connections of one server.

    @ivar maxConnections: live connections at most; None is the process's
        descriptor limit less L{DESCRIPTOR_RESERVE}.  A new connection past
        it evicts the oldest one that has not finished its handshake, or is
        itself refused when every connection has.
    @ivar handshakeTimeout: seconds from accepting a connection to its peer's
        C{methods} message (for TLS, the handshake and then C{methods}).
        Ten seconds: a real client sends C{methods} within one round trip
        of connecting (Node's dnode, and ours, send it at once), so even a
        slow mobile link with TLS is done in one or two seconds, while an
        idle attacker holds a descriptor for no longer than that.  0: never.
    @ivar maxBufferedTotal: bytes of output all peers together may leave
        unread (counted as each connection's C{maxBuffered} is).  Past it,
        the connection holding the most is dropped, and so on until the
        total is under the budget again.
    @ivar lineTimeout: seconds a line may take from its first byte to its
        delimiter (a slowloris peer sends one byte now and then), not
        counting the time during which we stopped reading the peer.  0: never.
    """

    maxConnections: Optional[int] = None
    handshakeTimeout: float = 10.0
    maxBufferedTotal: int = 256 * 1024 * 1024
    lineTimeout: float = 30.0

    def connectionCap(self) -> int:
        return self.maxConnections if self.maxConnections is not None else descriptorCap()

    @classmethod
    def fromOptions(cls, options: Mapping[str, Any]) -> ServerLimits:
        """
        Pick these limits' names out of an options dict, checked.
        """
        values: Dict[str, Any] = {}
        for name in ("maxConnections", "maxBufferedTotal"):
            if name in options:
                value = options[name]
                if type(value) is not int or value < 1:
                    raise ValueError(f"{name} must be a positive integer, not {value!r}")
                values[name] = value
        for name in ("handshakeTimeout", "lineTimeout"):
            if name in options:
                values[name] = seconds(name, options[name])
        return cls(**values)


class ServerGuard:
    """
    Admits, times and sheds the connections of one server.

    @ivar dropped: connections dropped so far, by reason (see L{REASONS}).
    """

    _log = Logger()

    def __init__(self, limits: Optional[ServerLimits] = None, clock: Optional[IReactorTime] = None) -> None:
        self.limits = limits or ServerLimits()
        self.clock = clock
        self.cap = self.limits.connectionCap()
        # Live connections in the order they came: a dict keeps it, and
        # the oldest that has not finished its handshake is found first.
        self._live: Dict[Any, None] = {}
        # Those that have not finished their handshake, with their deadlines
        # (seconds); in the order they came, which is their deadlines'
        # order, so one timer, for the oldest, serves them all.
        self._handshaking: Dict[Any, float] = {}
        self._handshakeTimer: Optional[IDelayedCall] = None
        self._unread: Dict[Any, int] = {}
        self.unreadTotal = 0
        self.accepted = 0
        self._drops = DropLog(self._callLater, 10.0)
        self.dropped = self._drops.dropped
        self._sweep: Optional[LoopingCall] = None
        self._lineWatch: Dict[Any, Tuple[int, float]] = {}
        # Connections that held LARGE bytes or more: when one goes, freed
        # memory is handed back to the system (see _memory).
        self._large: Set[Any] = set()
        self._release: Optional[IDelayedCall] = None
        self._stopped = self._drops.stopped = False
        self._busy = BusyWindow()

    @property
    def logPeriod(self) -> float:
        """
        Seconds between the summaries of repeated drops for one reason.
        """
        return self._drops.period

    @logPeriod.setter
    def logPeriod(self, period: float) -> None:
        self._drops.period = period

    def _clock(self) -> IReactorTime:
        self.clock = resolve(self.clock)
        return self.clock  # type: ignore[return-value]

    def _callLater(self, delay: float, f: Any, *args: Any) -> IDelayedCall:
        return self._clock().callLater(delay, f, *args)

    # -- Admission and handshake ------------------------------------------------

    def admit(self, conn: Any) -> bool:
        """
        A connection was just accepted (its protocol built, not yet
        connected).  Returns False when it must be refused: the server is
        full of connections that have all finished their handshake.  One
        admitted is then followed by L{handshaken} when its peer's
        C{methods} come, and L{lost} when it goes (its factory says).
        """
        self.accepted += 1
        if len(self._live) >= self.cap:
            victim = next(iter(self._handshaking), None)
            if victim is None:
                self.count(CAPACITY, conn, "the server is at its cap of {cap} connections", cap=self.cap)
                return False
            self.drop(victim, CAPACITY, f"evicted: the server is at its cap of {self.cap} connections")
        self._live[conn] = None
        # Kept even with no timeout: the cap evicts the oldest of these.
        timeout = self.limits.handshakeTimeout
        if timeout:
            clock = self._clock()
            deadline = self._handshaking[conn] = clock.seconds() + timeout
            if self._handshakeTimer is None:
                self._handshakeTimer = clock.callLater(timeout, self._handshakesExpired, deadline)
        else:
            self._handshaking[conn] = 0.0
        if self.limits.lineTimeout and self._sweep is None:
            self._sweep = LoopingCall(self._sweepLines)
            self._sweep.clock = self._clock()
            self._sweep.start(self.limits.lineTimeout / 4, now=False)
        return True

    def handshaken(self, conn: Any) -> None:
        """
        The peer of C{conn}, which L{admit} admitted, sent its C{methods}.
        """
        self._handshaking.pop(conn, None)
        if not self._handshaking:
            self._stopHandshakeTimer()

    def _handshakesExpired(self, due: float) -> None:
        # Due at the deadline of what was the oldest connection then (it
        # may have gone since): drop every one whose deadline has come, and
        # wait for the next.
        self._handshakeTimer = None
        clock = self._clock()
        now = max(clock.seconds(), due)
        timeout = self.limits.handshakeTimeout
        while self._handshaking:
            conn, deadline = next(iter(self._handshaking.items()))
            if deadline > now:
                self._handshakeTimer = clock.callLater(deadline - now, self._handshakesExpired, deadline)
                return
            del self._handshaking[conn]
            self.drop(conn, HANDSHAKE, f"no methods within {timeout} seconds of connecting")

    def _stopHandshakeTimer(self) -> None:
        cancel(self._handshakeTimer)
        self._handshakeTimer = None

    def lost(self, conn: Any) -> None:
        """
        C{conn}, which L{admit} admitted, is lost.
        """
        self._live.pop(conn, None)
        self._handshaking.pop(conn, None)
        if not self._handshaking:
            self._stopHandshakeTimer()
        self.noteUnread(conn, 0)
        if conn in self._large:
            self._large.discard(conn)
            self._releaseSoon()
        if not self._live and self._sweep is not None and self._sweep.running:
            self._sweep.stop()
            self._sweep = None

    # -- Output budget ------------------------------------------------------------

    def noteUnread(self, conn: Any, size: int) -> None:
        """
        C{conn} now holds C{size} bytes of output its peer has not read;
        past the server's budget, the connections holding the most go.
        """
        old = self._unread.pop(conn, 0)
        if size and conn in self._live:
            self._unread[conn] = size
            if size >= LARGE:
                self._large.add(conn)
        self.unreadTotal += self._unread.get(conn, 0) - old
        budget = self.limits.maxBufferedTotal
        while self.unreadTotal > budget and self._unread:
            worst = max(self._unread, key=self._unread.__getitem__)
            held = self._unread.pop(worst)
            self.unreadTotal -= held
            self.drop(worst, BUDGET, f"it held the most unread output ({held} bytes) when all peers passed {budget}")

    def noteLarge(self, conn: Any) -> None:
        """
        C{conn} made us build a lot at once (a line of LARGE_LINE bytes or
        more, or LARGE bytes of output handed to the transport and not yet
        taken): when it goes, hand freed memory back to the system.
        """
        if conn in self._live:
            self._large.add(conn)

    def _releaseSoon(self) -> None:
        # At most once a second, however many go at once; at once when the
        # server has stopped (no timer may outlive it).
        if self._stopped:
            releaseFreedMemory()
        elif self._release is None:
            self._release = self._clock().callLater(1.0, self._releaseNow)

    def _releaseNow(self) -> None:
        self._release = None
        releaseFreedMemory()

    # -- Reads: a share of each turn ---------------------------------------------

    def readShare(self, conn: Any, full: int) -> int:
        """
        C{conn} just read (nearly) all it could at once: its peer sends
        faster than we serve it.  Return how much it may read at once from
        now on: its share of L{TURN_READ}, split between the connections
        that did the same within the last L{BUSY_WINDOW}, and never more
        than C{full}, what it reads when alone.

        The reactor reads once from every ready connection in a turn, so a
        turn lasts as long as all their reads take to handle, and any one
        peer's call waits about a turn: fifty peers each sending as fast
        as they can would make everyone's calls wait for fifty full reads.
        Split, a turn stays short however many are busy, and a peer with
        calls to spare waits longer for each read instead.
        """
        busy = self._busy.note(id(conn), self._clock().seconds())
        return readShare(busy, full)

    # -- Slow lines -------------------------------------------------------------

    def _sweepLines(self) -> None:
        # A connection whose unfinished line was there at the last sweep,
        # with no line completed since, has been on one line since then.
        limit = self.limits.lineTimeout
        now = self._clock().seconds()
        watch, self._lineWatch = self._lineWatch, {}
        for conn in list(self._live):
            if not conn.hasPartialLine():
                continue
            if conn.readingPaused:
                # We stopped reading it (it leaves our output unread): the
                # line cannot go on meanwhile, and its time starts again
                # once we read on.  (A peer that reads nothing at all is
                # the stall timeout's.)
                self._lineWatch[conn] = (conn.linesReceived, now)
                continue
            seen = watch.get(conn)
            if seen is None or seen[0] != conn.linesReceived:
                self._lineWatch[conn] = (conn.linesReceived, now)
            elif now - seen[1] > limit:
                self.drop(conn, SLOW_LINE, f"a line unfinished for more than {limit} seconds")
            else:
                self._lineWatch[conn] = seen

    # -- Drops ------------------------------------------------------------------

    def drop(self, conn: Any, reason: str, why: str) -> None:
        """
        Abort C{conn}, counted (and logged, see L{count}) under C{reason}.
        """
        self.count(reason, conn, "{why}", why=why)
        conn.abort()

    def count(self, reason: str, conn: Any, message: str, **fields: Any) -> None:
        """
        Count a drop; the first for a reason in each period is logged with
        its peer, the rest are summed up once when the period ends.
        """
        self._drops.count(reason, conn, message, **fields)

    def status(self) -> Dict[str, Any]:
        """
        A snapshot for humans and monitoring.
        """
        return {
            "connections": len(self._live),
            "handshaking": len(self._handshaking),
            "cap": self.cap,
            "accepted": self.accepted,
            "unread": self.unreadTotal,
            "dropped": dict(self.dropped),
        }

    def start(self) -> None:
        """
        The server listens (again).
        """
        self._stopped = self._drops.stopped = False

    def stop(self) -> None:
        """
        Cancel every timer (the server is going); what is still to be
        said or released is, now.
        """
        self._stopped = self._drops.stopped = True
        if self._release is not None:
            cancel(self._release)
            releaseFreedMemory()
        self._drops.summarize()
        self._release = None
        self._stopHandshakeTimer()
        self._handshaking.clear()
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None

