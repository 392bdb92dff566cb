# -*- test-case-name: upnode.test.test_lifecycle -*-
"""
The reactor or clock to use: the one given, else the global reactor,
imported only when first needed, so library code never installs one at
import time and tests can inject a task.Clock.  And cancelling its delayed
calls.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime


def cancel(call: Optional[IDelayedCall]) -> None:
    """
    Cancel C{call} if it is still pending (None, fired or cancelled: nothing).
    """
    if call is not None and call.active():
        call.cancel()


def resolve(given: Any) -> Any:
    if given is not None:
        return given
    from twisted.internet import reactor

    return reactor


class LazyClock:
    """
    The given clock, or the global reactor, found when first needed
    (library code never installs a reactor at import or construction).
    """

    def __init__(self, clock: Optional[IReactorTime]) -> None:
        self._clock = clock

    def resolve(self) -> IReactorTime:
        self._clock = clock = resolve(self._clock)
        return clock  # type: ignore[no-any-return]

    # (The clock is looked up once; after that, one call to it: a busy
    # connection asks the time at every received chunk's end.)

    def seconds(self) -> float:
        clock = self._clock
        return (clock if clock is not None else self.resolve()).seconds()

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> IDelayedCall:
        clock = self._clock
        return (clock if clock is not None else self.resolve()).callLater(delay, f, *args)
