"""
Calling Python functions the way JavaScript calls functions: arguments
beyond what a function takes are left off, so that Node habits such as
C{up(lambda remote: ...)} (upnode passes C{remote, conn}) or a callback that
ignores the peer's extra arguments work as they do in Node.
"""

from __future__ import annotations

import inspect
from types import MethodType
from typing import Any, Callable, Dict, Sequence

#: A function that takes any number of positional arguments.
ANY = -1

# Code object -> how many positional arguments it takes, or ANY.  Code
# objects are few (every closure made by one def shares one), but a bound
# keeps exec'd code from piling up.
_byCode: Dict[Any, int] = {}
_CACHE_BOUND = 4096


def positionalLimit(function: Callable[..., Any]) -> int:
    """
    How many positional arguments C{function} takes, or L{ANY}.
    """
    code = getattr(function, "__code__", None)
    if code is not None:
        limit = _byCode.get(code)
        if limit is None:
            limit = ANY if code.co_flags & inspect.CO_VARARGS else code.co_argcount
            if len(_byCode) >= _CACHE_BOUND:
                _byCode.clear()
            _byCode[code] = limit
        if limit != ANY and type(function) is MethodType:
            limit -= 1
        return limit
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ANY  # a builtin that will not say: give it everything
    count = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return ANY
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def callLikeJavaScript(function: Callable[..., Any], arguments: Sequence[Any]) -> Any:
    """
    C{function(*arguments)}, leaving off the arguments it does not take.
    """
    limit = positionalLimit(function)
    if limit != ANY and limit < len(arguments):
        return function(*arguments[:limit])
    return function(*arguments)
