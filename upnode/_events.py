"""
Node-style events on pyee, made safe for a protocol's bookkeeping.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from pyee import EventEmitter as _PyeeEmitter
from twisted.logger import Logger
from twisted.python.failure import Failure


class EventEmitter(_PyeeEmitter):
    """
    pyee's emitter (C{on}, C{once}, C{remove_listener}, C{emit}) with two
    changes: a handler that raises is logged instead of unwinding into the
    code that emitted (which is usually in the middle of a state change), and
    an C{error} nobody listens for is logged (as a critical failure) instead
    of raised.
    """

    _log = Logger()

    def _emit_run(self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        try:
            f(*args, **kwargs)
        except Exception:
            self._log.failure("An event handler {handler!r} raised", handler=f)

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
        Node's C{removeListener}.
        """
        self.remove_listener(event, handler)
