# -*- test-case-name: upnode.test.test_calls -*-
"""
What sending a call and reading its reply mean, shared by L{upnode._calls}
(C{up.call}) and L{upnode._outbox} (durable calls): finding the remote's
method, turning the values a callback got into one result, and Node's
error-first convention.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from .errors import RemoteError


def methodOf(remote: Any, name: str) -> Callable[..., Any]:
    """
    The remote's method C{name}.

    @raise AttributeError: the remote has none.
    """
    try:
        return remote[name]
    except (KeyError, TypeError, AttributeError):
        raise AttributeError(f"the remote has no method {name!r}") from None


def replyValue(values: Tuple[Any, ...]) -> Any:
    """
    What a reply's callback got, as one result: one value as is, several as
    a tuple, none as None.
    """
    return values[0] if len(values) == 1 else (values or None)


def errorFirst(values: Tuple[Any, ...]) -> Any:
    """
    A reply read as Node's C{(err, result...)}.

    @raise RemoteError: C{err} is not null.
    """
    error = values[0] if values else None
    if error is not None:
        raise RemoteError(error)
    return replyValue(values[1:])


__all__ = ["errorFirst", "methodOf", "replyValue"]
