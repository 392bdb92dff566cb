# -*- test-case-name: upnode.test.test_habits -*-
"""
Node-style events on pyee, made safe for a protocol's bookkeeping, with
Node's method names and JavaScript's rule for a handler's arguments.
"""

from __future__ import annotations

from inspect import iscoroutine
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyee import EventEmitter as _PyeeEmitter
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._arity import callTruncated, runCoroutine


class _Once:
    """
    A C{once} handler as pyee holds it: called with the arguments it takes,
    and equal to the handler itself, so that C{off(event, handler)} still
    finds it.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            return self.handler(*args, **kwargs)
        return callTruncated(self.handler, args)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Once):
            other = other.handler
        return bool(self.handler == other)

    def __hash__(self) -> int:
        return hash(self.handler)


class EventEmitter(_PyeeEmitter):
    """
    pyee's emitter (C{on}, C{once}, C{remove_listener}, C{emit}) with
    Node's names (C{addListener}, C{prependListener}, C{removeListener},
    C{off}, C{removeAllListeners}, C{listenerCount}) and these changes:

      - a handler gets the arguments it takes, as in JavaScript:
        C{on("remote", lambda remote: ...)} for an event that carries
        C{(remote, conn)}; unlike a callback (see L{upnode._arity}), a
        handler that names more than the event carries is a C{TypeError},
        logged: an event's arguments are fixed, so that is a mistake;
      - an C{async def} handler is run, and its failure treated as a
        handler that raised;
      - a handler that raises (or whose coroutine fails) is logged as a
        failure instead of unwinding into the code that emitted, which is
        usually in the middle of a state change;
      - an C{error} nobody listens for is logged (as a critical failure)
        instead of raised.
    """

    _log = Logger()

    def _emit_run(self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        try:
            if kwargs:
                result = f(*args, **kwargs)
            else:
                result = callTruncated(f, args)
        except Exception:
            self._handlerFailed(Failure(), f)
            return
        if iscoroutine(result):
            runCoroutine(result).addErrback(self._handlerFailed, f)

    def once(self, event: str, f: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
        """
        Run C{f} the next time C{event} is emitted only (also as a
        decorator, C{@emitter.once(event)}); returns C{f}.
        """
        if f is None:
            return lambda handler: self.once(event, handler)
        # pyee's once calls its handler with every argument: ours takes
        # what it takes, as on() does.
        super().once(event, _Once(f))
        return f

    def listeners(self, event: str) -> List[Callable[..., Any]]:
        """
        The handlers of C{event}, in order.
        """
        return [each.handler if isinstance(each, _Once) else each for each in super().listeners(event)]

    def _handlerFailed(self, failure: Failure, handler: Any) -> None:
        self._log.failure("An event handler {handler!r} raised", failure, handler=handler)

    def _emit_handle_potential_error(self, event: str, error: Any) -> None:
        # An error nobody listens for is unexpected: a critical failure, as
        # Twisted logs those, which it prints to stderr even before any log
        # observer has started (a plain script shows it).
        if event == "error":
            if isinstance(error, Failure):
                self._log.failure("Unhandled upnode error (nobody listens for 'error')", error)
            else:
                self._log.critical("Unhandled upnode error (nobody listens for 'error'): {error}", error=error)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """
        Node's C{removeListener}: C{handler} no longer runs on C{event}.
        """
        self.remove_listener(event, handler)

    def addListener(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """
        Node's name for C{on(event, handler)}; returns C{handler}.
        """
        return self.add_listener(event, handler)

    removeListener = off

    def prependListener(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """
        Node's C{prependListener}: like C{on}, but C{handler} runs before
        the handlers C{event} has; returns C{handler}.
        """
        rest = super().listeners(event)
        self.remove_all_listeners(event)
        self.on(event, handler)
        for each in rest:
            if isinstance(each, _Once):
                super().once(event, each)  # still once
            else:
                self.on(event, each)
        return handler

    def removeAllListeners(self, event: Optional[str] = None) -> None:
        """
        Remove every handler of C{event}, or of every event.
        """
        self.remove_all_listeners(event)

    def listenerCount(self, event: str) -> int:
        """
        How many handlers C{event} has.
        """
        return len(self.listeners(event))
