"""
Node-style events on pyee, made safe for a protocol's bookkeeping.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from pyee import EventEmitter as _PyeeEmitter
from twisted.logger import Logger


class EventEmitter(_PyeeEmitter):
    """
    pyee's emitter (C{on}, C{once}, C{remove_listener}, C{emit}) with two
    changes: a handler that raises is logged instead of unwinding into the
    code that emitted (which is usually in the middle of a state change), and
    an C{error} nobody listens for is logged instead of raised.
    """

    _log = Logger()

    def _emit_run(self, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        try:
            f(*args, **kwargs)
        except Exception:
            self._log.failure("An event handler {handler!r} raised", handler=f)

    def _emit_handle_potential_error(self, event: str, error: Any) -> None:
        if event == "error":
            self._log.error("Unhandled upnode error: {error}", error=error)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """
        Node's C{removeListener}.
        """
        self.remove_listener(event, handler)
