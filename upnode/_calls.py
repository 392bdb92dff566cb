"""
Calls that return Deferreds: C{up.call(name, *args)} on the client, and
C{@replies} for server methods that return (or await) their answer.
"""

from __future__ import annotations

import functools
from inspect import iscoroutine
from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from ._arity import runCoroutine
from ._reactor import cancel
from .errors import Closed, ConnectionLostError, RemoteError, UpTimeout

if TYPE_CHECKING:
    from ._client import UpnodeClientFactory


class Call:
    """
    One C{up.call}: waits for a link, sends, and fires once with the reply,
    a timeout, or the loss of the link (or, with C{retry}, sends again on
    the next link).
    """

    def __init__(
        self,
        client: UpnodeClientFactory,
        name: str,
        args: tuple,
        timeout: Optional[float],
        retry: bool,
        errorFirst: bool,
    ) -> None:
        self.client = client
        self.name = name
        self.args = args
        self.retry = retry
        self.errorFirst = errorFirst
        self.conn: Any = None
        self.result: Deferred[Any] = Deferred(lambda d: self._finish())
        self._waiting: Optional[Deferred[Any]] = None
        self._timer: Optional[IDelayedCall] = None
        if timeout:
            self._timer = client._clock().callLater(timeout, self._expired, timeout)

    def start(self) -> None:
        waiting = self.client()
        assert waiting is not None
        self._waiting = waiting
        waiting.addCallbacks(self._send, self._fail)

    def _send(self, remote: Any) -> None:
        self._waiting = None
        if self.result.called:
            return
        try:
            method = remote[self.name]
        except (KeyError, TypeError, AttributeError):
            self._fail(Failure(AttributeError(f"the remote has no method {self.name!r}")))
            return
        self.conn = self.client.conn
        self.client._calls.add(self)
        try:
            method(*self.args, self._reply)
        except Exception:
            self._fail(Failure())

    def _reply(self, *values: Any) -> None:
        if self.result.called:
            return  # a reply after a timeout is dropped
        self._finish()
        if self.errorFirst:
            error = values[0] if values else None
            if error is not None:
                self.result.errback(Failure(RemoteError(error)))
                return
            values = values[1:]
        self.result.callback(values[0] if len(values) == 1 else (values or None))

    def linkLost(self) -> None:
        """
        The link this call was sent on is gone before the reply.
        """
        self.client._calls.discard(self)
        self.conn = None
        if self.result.called:
            return
        if self.client.closed:
            self._fail(Failure(Closed("the upnode client was closed before the reply")))
        elif self.retry:
            self.start()
        else:
            self._fail(Failure(ConnectionLostError(f"the link dropped before {self.name}() replied")))

    def _expired(self, timeout: float) -> None:
        self._timer = None
        self._fail(Failure(UpTimeout(f"{self.name}() got no reply within {timeout} seconds")))

    def _fail(self, failure: Failure) -> None:
        if self.result.called:
            return
        self._finish()
        self.result.errback(failure)

    def _finish(self) -> None:
        self.client._calls.discard(self)
        cancel(self._timer)
        self._timer = None
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.called:
            waiting.addErrback(lambda f: None)
            waiting.cancel()


def replies(method: Callable[..., Any]) -> Callable[..., Any]:
    """
    Decorate a server method that returns its answer (a value, a Deferred,
    or a coroutine: C{async def}) instead of calling a callback.  The
    caller's last argument is its callback; it gets C{cb(None, result)}, or
    C{cb({"error": ..., "message": ...})} when the method fails: Node's
    error-first convention, which C{up.call(..., errorFirst=True)} reads.
    """

    @functools.wraps(method)
    def wrapper(*args: Any) -> Deferred[Any]:
        if not args or not callable(args[-1]):
            raise TypeError(f"{method.__name__}() needs a callback as its last argument")
        *given, cb = args

        def call() -> Any:
            result = method(*given)
            return runCoroutine(result) if iscoroutine(result) else result

        d = maybeDeferred(call)
        d.addCallbacks(
            lambda result: cb(None, result),
            lambda failure: cb({"error": type(failure.value).__name__, "message": str(failure.value)}),
        )
        return d

    return wrapper


__all__ = ["Call", "replies"]
