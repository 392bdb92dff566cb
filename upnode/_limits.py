# -*- test-case-name: upnode.test.test_wire_fixes -*-
"""
The bounds put on what a peer may send; every one is an option.
"""

from __future__ import annotations

from typing import Any, Mapping

import attr

#: Node's integers are IEEE doubles: ids beyond this cannot round-trip.
MAX_SAFE_INTEGER = 2**53 - 1

#: An integer number of seconds this large or larger is surely Node's
#: milliseconds (upnode's Node options and up(t, cb) are in ms).
SURELY_MILLISECONDS = 1000


def seconds(name: str, value: Any) -> float:
    """
    C{value} checked as a number of seconds >= 0, for option C{name}.

    @raise ValueError: it is not one, or it is an integer of 1000 or more,
        which is surely milliseconds (a float such as C{1000.0} is taken
        as meant).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    if type(value) is int and value >= SURELY_MILLISECONDS:
        raise ValueError(
            f"{name}={value} looks like milliseconds, Node's unit; upnode for Twisted takes seconds: "
            f"{name}={value / 1000:g} (or {name}={value}.0 if you do mean {value} seconds)"
        )
    return float(value)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Limits:
    """
    Per-connection limits on hostile or broken input.

    @ivar maxLineLength: bytes in one line, delimiter excluded.  Longer: close.
    @ivar maxDepth: nesting of containers in a message.  Deeper: close.
    @ivar maxCallbacks: entries in one message's ``callbacks``.  More: reject.
    @ivar maxLinks: entries in one message's ``links``.  More: reject.
    @ivar maxPathLength: elements in one callback or link path.  More: reject.
    @ivar maxRate: messages a second from one peer (counted over one-second
        windows).  More: close.  The default is several times what one
        connection is served at (up to 200,000 pipelined calls a second
        on the benchmark machine), so only a flood reaches it; set it lower
        where peers are untrusted and their traffic is known.
    @ivar maxBuffered: bytes of our output the peer has left unread (held
        back while the transport's buffer is full).  More: close.  (A peer
        that takes none of it for the protocol's C{stallTimeout} is dropped
        too; see L{upnode._progress}.)
    @ivar maxRemoteCallbacks: the peer's callbacks our code holds proxies
        for at once (a method that keeps every callback it is given).
        More: close.  Each costs about 250 bytes.
    @ivar maxLocalCallbacks: on a server, our callables a peer holds at
        once (it never culls them, and a method hands it new ones).  More:
        close.
    """

    maxLineLength: int = 1024 * 1024
    maxDepth: int = 64
    maxCallbacks: int = 1024
    maxLinks: int = 1024
    maxPathLength: int = 64
    maxRate: int = 1_000_000
    maxBuffered: int = 64 * 1024 * 1024
    maxRemoteCallbacks: int = 100_000
    maxLocalCallbacks: int = 100_000

    @classmethod
    def fromOptions(cls, options: Mapping[str, Any]) -> Limits:
        """
        Pick the limit names out of an options dict, leaving the rest.
        """
        names = attr.fields_dict(cls)
        values = {}
        for name in names:
            if name in options:
                value = options[name]
                if type(value) is not int or value < 1:
                    raise ValueError(f"{name} must be a positive integer, not {value!r}")
                values[name] = value
        return cls(**values)
