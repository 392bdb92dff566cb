# -*- test-case-name: upnode.test.test_habits -*-
"""
Calling Python functions the way JavaScript calls functions, the one rule
for every function the library calls: arguments beyond what a function
takes are left off (C{up(lambda remote: ...)}, while upnode passes
C{remote, conn}; an event handler that ignores what the event carries), and,
where a Node habit relies on JavaScript's C{undefined}, the required
arguments it is not given are C{None} (C{up(t, cb)}'s C{cb()} on timeout,
an error-first callback answered C{cb(err)}).  Coroutine functions are run
(see L{runCoroutine}).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import warnings
from types import (
    BuiltinFunctionType,
    ClassMethodDescriptorType,
    CoroutineType,
    FunctionType,
    MethodDescriptorType,
    MethodType,
    MethodWrapperType,
    WrapperDescriptorType,
)
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import UpnodeWarning

#: A function that takes any number of positional arguments.
ANY = -1

_Value = TypeVar("_Value")

# A code object's id -> (how many positional arguments it takes or ANY, how
# many of them have no default); and a bound method's function -> the same
# for the method (one argument less).  Code objects are few (every closure
# made by one def shares one), methods' functions too (they are the
# class's), but a bound keeps exec'd code from piling up.  Code goes by its
# id, held alive in _codes so that no later object is given that id while
# it is cached, and methods by their function: a function hashes by
# identity, where a code object hashes its contents at every lookup (twice
# on every up(cb) with a fresh callback).
_byCode: Dict[int, Tuple[int, int]] = {}
_codes: List[Any] = []
_byMethod: Dict[Any, Tuple[int, int]] = {}
# A function written in C (print, a bound list.append, a slot wrapper) ->
# the same: inspect reads its answer from the text signature the C code
# declares and from whether it is bound (its first parameter is then left
# off), so those two are the key, and a fresh bound builtin (results.append
# made anew for every call) costs a dict lookup, not inspect's parsing
# (about 70 us for a bound list.append, 130 for print).
_byTextSignature: Dict[Tuple[Any, Optional[str], bool], Tuple[int, int]] = {}
_BUILT_IN = frozenset(
    (BuiltinFunctionType, MethodWrapperType, WrapperDescriptorType, MethodDescriptorType, ClassMethodDescriptorType)
)
_partial = functools.partial
# (id of the function's code, bound, arguments held, keywords' names) -> the
# arity of a partial with keywords, and the code (see _keywordPartial).
_byKeywordPartial: Dict[Tuple[int, bool, int, frozenset], Tuple[int, int, Any]] = {}
_CACHE_BOUND = 4096

_log = Logger()


def positionalArity(function: Callable[..., Any]) -> Tuple[int, int]:
    """
    How many positional arguments C{function} takes (or L{ANY}), and how
    many of them it requires (those without a default).
    """
    # Every callback handed to the peer and every up(cb) asks: a function's
    # and a bound method's answers come from a dict, before anything else.
    kind = type(function)
    if kind is FunctionType:
        arity = _byCode.get(id(function.__code__))  # type: ignore[attr-defined]
        if arity is not None:
            return arity
    elif kind is MethodType:
        func = function.__func__  # type: ignore[attr-defined]
        cached = type(func) is FunctionType
        arity = _byMethod.get(func) if cached else None
        if arity is None:
            arity = _lessSelf(positionalArity(func))
            if cached:
                _remember(_byMethod, func, arity)
        return arity
    elif kind in _BUILT_IN:
        key = (kind, getattr(function, "__text_signature__", None), getattr(function, "__self__", None) is not None)
        arity = _byTextSignature.get(key)
        if arity is None:
            arity = _remember(_byTextSignature, key, _fromSignature(function))
        return arity
    elif kind is _partial:
        # A partial made for each call (functools.partial(store, key)).
        if not function.keywords:  # type: ignore[attr-defined]
            # What its function takes, less the arguments it holds.
            limit, required = positionalArity(function.func)  # type: ignore[attr-defined]
            given = len(function.args)  # type: ignore[attr-defined]
            if limit == ANY:
                return ANY, max(0, required - given)
            if given <= limit:
                return limit - given, max(0, required - given)
        else:
            arity = _keywordPartial(function)
            if arity is not None:
                return arity
    code = getattr(function, "__code__", None)
    if code is not None:
        arity = _byCode.get(id(code))
        if arity is None:
            if kind is FunctionType and _signatureElsewhere(function):
                return _declaredElsewhere(function)
            count = code.co_argcount
            defaults = getattr(function, "__defaults__", None)
            required = count - (len(defaults) if defaults else 0)
            arity = (ANY if code.co_flags & inspect.CO_VARARGS else count, required)
            if len(_byCode) >= _CACHE_BOUND:
                _byCode.clear()
                _codes.clear()
            _codes.append(code)
            _byCode[id(code)] = arity
        return arity
    call = kind.__call__  # (every class has one: a type's, if not its own)
    if (
        type(call) is FunctionType
        and not isinstance(function, type)
        and getattr(function, "__signature__", None) is None
        and getattr(function, "__wrapped__", None) is None
    ):
        # An instance of a class that defines __call__ (one made for each
        # call, too): its __call__'s arity, less self, as inspect has it.
        return _lessSelf(positionalArity(call))
    return _fromSignature(function)


def _signatureElsewhere(function: Any) -> bool:
    # Whether inspect reads a Python function's signature from somewhere
    # other than its code: from the function functools.wraps put under it
    # (__wrapped__), or from the __signature__ it declares.
    attributes = function.__dict__
    return "__wrapped__" in attributes or "__signature__" in attributes


def _declaredElsewhere(function: Any) -> Tuple[int, int]:
    # A function that functools.wraps made (or one that declares its
    # __signature__): inspect reads its signature from the function it
    # wraps, and so do we, so that a decorated callback takes what the
    # function under the decorator takes.  Never cached under the
    # wrapper's code, which every function one decorator wraps shares; the
    # function under it usually has its own code, whose answer is cached.
    # (A function without __wrapped__ that shares a wrapper's code and was
    # seen first would cache the wrapper's answer for that code: a
    # decorator that only sometimes calls functools.wraps.)
    try:
        # Where inspect stops: at a declared signature, or at a bound
        # method (whose own __wrapped__ would be its function's, self and
        # all).
        target = inspect.unwrap(function, stop=lambda f: hasattr(f, "__signature__") or type(f) is MethodType)
    except ValueError:  # a chain of __wrapped__ that comes back on itself
        return ANY, 0
    if target is function or hasattr(target, "__signature__"):
        return _fromSignature(function)
    return positionalArity(target)


def _lessSelf(arity: Tuple[int, int]) -> Tuple[int, int]:
    # A function's arity as a method bound to an object has it.
    limit, required = arity
    return (limit if limit == ANY else max(0, limit - 1)), max(0, required - 1)


def _keywordPartial(function: Any) -> Optional[Tuple[int, int]]:
    # A partial with keywords: a keyword naming a positional parameter
    # makes it and every one after it keyword-only, as inspect has it.
    # Its answer follows from its function's code (a bound method's: one
    # argument less), how many arguments it holds and its keywords' names,
    # so those are the key, and the entry holds the code (its id is not
    # reused while cached).  None for a function not written in Python, or
    # one whose signature inspect takes from elsewhere (functools.wraps'
    # __wrapped__: every function one decorator wraps shares its code).
    func = function.func
    method = type(func) is MethodType
    target = func.__func__ if method else func
    if type(target) is not FunctionType or _signatureElsewhere(target):
        return None
    code = target.__code__
    key = (id(code), method, len(function.args), frozenset(function.keywords))
    entry = _byKeywordPartial.get(key)
    if entry is None:
        entry = _remember(_byKeywordPartial, key, (*_fromSignature(function), code))
    return entry[0], entry[1]


def _fromSignature(function: Callable[..., Any]) -> Tuple[int, int]:
    # What inspect says, for the callables the caches above do not hold.
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ANY, 0  # a builtin that will not say: give it everything, fill nothing
    count = required = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return ANY, required
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
            if parameter.default is parameter.empty:
                required += 1
    return count, required


def _remember(cache: Dict[Any, _Value], key: Any, value: _Value) -> _Value:
    if len(cache) >= _CACHE_BOUND:
        cache.clear()
    cache[key] = value
    return value


def positionalLimit(function: Callable[..., Any]) -> int:
    """
    How many positional arguments C{function} takes, or L{ANY}.
    """
    return positionalArity(function)[0]


def fitArguments(limit: int, required: int, arguments: Sequence[Any]) -> Sequence[Any]:
    """
    C{arguments} fitted to a function of L{positionalArity} C{(limit,
    required)}: those beyond C{limit} left off, and C{None} for each
    required one not given (JavaScript's C{undefined}).
    """
    given = len(arguments)
    if 0 <= limit < given:
        return arguments[:limit]
    if given < required:
        return (*arguments, *(None,) * (required - given))
    return arguments


def callLikeJavaScript(
    function: Callable[..., Any],
    arguments: Sequence[Any],
    onError: Optional[Callable[[Failure], Any]] = None,
) -> Any:
    """
    Call a Node-style callback: C{function(*arguments)}, leaving off the
    arguments it does not take and giving C{None} for required ones it is
    not given (see L{fitArguments}).  A coroutine function is run (see
    L{runCoroutine}); its failure goes to C{onError}, or is logged.
    """
    limit, required = positionalArity(function)
    given = len(arguments)
    # fitArguments, inline too.
    if 0 <= limit < given:
        result = function(*arguments[:limit])
    elif given < required:
        result = function(*arguments, *(None,) * (required - given))
    else:
        result = function(*arguments)
    if type(result) is CoroutineType:
        return whenDone(runCoroutine(result), onError, function)
    return result


def callTruncated(function: Callable[..., Any], arguments: Sequence[Any]) -> Any:
    """
    C{function(*arguments)}, leaving off the arguments it does not take (a
    missing one is still a C{TypeError}: see the module docstring).  A
    coroutine function's coroutine is returned as is.
    """
    limit = positionalArity(function)[0]
    if 0 <= limit < len(arguments):
        return function(*arguments[:limit])
    return function(*arguments)


def whenDone(
    d: Deferred[Any], onError: Optional[Callable[[Failure], Any]], function: Any = None
) -> Deferred[Any]:
    """
    Send C{d}'s failure to C{onError}, or log it as a failure naming
    C{function}; C{d} then fires with None.
    """
    if onError is None:

        def logIt(failure: Failure) -> None:
            _log.failure("The callback {callback!r} failed", failure, callback=function)

        return d.addErrback(logIt)
    return d.addErrback(onError)


#: The event loop that coroutines run on as asyncio tasks: set by
#: L{upnode.aio} for a program run by C{asyncio.run}; None in a Twisted
#: program.
asyncioLoop: Optional[asyncio.AbstractEventLoop] = None


def runCoroutine(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    """
    Run a coroutine that a callback or a method returned, and return a
    Deferred of its result.  In a Twisted program (any reactor, started by
    C{reactor.run} or C{task.react}) it runs as Twisted runs coroutines
    (C{Deferred.fromCoroutine}: it may await Deferreds); in an asyncio
    program started through L{upnode.aio}, as an asyncio task (it may await
    anything asyncio code awaits; a Deferred with C{d.asFuture(loop)}).
    """
    loop = asyncioLoop
    if loop is not None:
        return Deferred.fromFuture(loop.create_task(coroutine))
    return Deferred.fromCoroutine(coroutine)


# The functions whose dropped return value was pointed out: once each.
_warnedDropped: Dict[Any, None] = {}


def droppedResult(result: Any, method: Any) -> None:
    """
    An exposed method the peer called returned (or its Deferred or
    coroutine fired with) C{result}, not None, which dnode sends nowhere:
    the caller gets an answer only through a callback.  It is most likely
    meant as the answer, so say once per method how to send it.
    """
    key = getattr(method, "__func__", method)
    try:
        if key in _warnedDropped:
            return
        if len(_warnedDropped) >= _CACHE_BOUND:
            _warnedDropped.clear()
        _warnedDropped[key] = None
    except TypeError:
        pass  # unhashable: say it every time
    name = getattr(method, "__qualname__", None) or repr(method)
    message = (
        f"{name}() returned {repr(result)[:60]}, which is not sent to the caller: decorate it with "
        "@upnode.replies to answer with what it returns (the caller reads it with "
        "up.call(..., errorFirst=True)), or call the callback it was passed (said once per method)"
    )
    code = getattr(getattr(method, "__func__", method), "__code__", None)
    if code is None:
        warnings.warn(message, UpnodeWarning, stacklevel=2)
    else:
        # Pointing at the method, wherever the call came from.
        warnings.warn_explicit(
            message,
            UpnodeWarning,
            code.co_filename,
            code.co_firstlineno,
            getattr(method, "__module__", None) or "upnode",
        )
