"""
The reactor or clock to use: the one given, else the global reactor,
imported only when first needed, so library code never installs one at
import time and tests can inject a task.Clock.
"""

from __future__ import annotations

from typing import Any


def resolve(given: Any) -> Any:
    if given is not None:
        return given
    from twisted.internet import reactor

    return reactor
