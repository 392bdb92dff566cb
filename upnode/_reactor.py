"""
The reactor or clock to use: the one given, else the global reactor,
imported only when first needed, so library code never installs one at
import time and tests can inject a task.Clock.  And cancelling its delayed
calls.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IDelayedCall


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
