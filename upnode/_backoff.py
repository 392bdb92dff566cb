# -*- test-case-name: upnode.test.test_client -*-
"""
The reconnect schedule as a pure policy: the delay before a retry, from how
many retries came before it.  The client owns the timer; this only counts.
"""

from __future__ import annotations

from typing import Callable


def backoffPolicy(
    initialDelay: float, maxDelay: float, factor: float, jitter: float, random: Callable[[], float]
) -> Callable[[int], float]:
    """
    A policy C{attempt -> seconds}, C{attempt} counting from 0 for the first
    retry after a failure: C{initialDelay * factor ** attempt}, capped at
    C{maxDelay}, then spread uniformly over C{[1 - jitter, 1 + jitter]}
    times that (after the cap, so that clients at the cap still spread).

    @param random: returns a float in C{[0, 1)}, such as
        C{random.Random().random}; injected so that tests can pin it.
    """

    def policy(attempt: int) -> float:
        try:
            base = initialDelay * factor**attempt
        except OverflowError:  # a long outage with a large factor
            base = maxDelay
        base = min(base, maxDelay)
        return base * (1 - jitter + 2 * jitter * random())

    return policy
