# -*- test-case-name: upnode.test.test_calls -*-
"""
Calls that return Deferreds: C{up.call(name, *args)} on the client, and
C{@replies} for server methods that return (or await) their answer.
"""

from __future__ import annotations

import functools
from inspect import iscoroutine
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from ._arity import runCoroutine
from ._interfaces import ILinkSource, LinkWaiter
from ._reactor import cancel
from ._remote import Remote
from ._sending import errorFirst, methodOf
from .errors import ConnectionLostError, UpTimeout


class Call(LinkWaiter):
    """
    One C{up.call}: waits for a link, sends, and fires once with the reply,
    a timeout, or the loss of the link (or, with C{retry}, is sent again on
    the next link: the client puts it back at the head of its queue).

    While sent and unanswered it is in its link's C{inflight}, which the
    client goes through, in the order of sending, when the link is lost.
    """

    __slots__ = ("source", "name", "args", "errorFirst", "result", "_link", "_timer")

    def __init__(
        self,
        source: ILinkSource,
        name: str,
        args: tuple,
        timeout: Optional[float],
        retry: bool,
        errorFirst: bool,
    ) -> None:
        # (LinkWaiter's fields set here: one Python call less an up.call.)
        self.done = self.queued = False
        self.retry = retry
        self.source = source
        self.name = name
        self.args = args
        self.errorFirst = errorFirst
        self._link: Any = None
        # The call is its result's canceller (L{__call__}): no bound method
        # to make for every call.
        self.result: Deferred[Any] = Deferred(self)
        self._timer: Optional[IDelayedCall] = None
        if timeout:
            self._timer = source.clock.callLater(timeout, self._expired, timeout)

    def start(self) -> None:
        """
        Wait for the link (or send now).

        @raise upnode.errors.QueueFull: the client's queue is full; the
            call is over (no timer left).
        """
        try:
            self.source.whenUp(self)
        except BaseException:
            self.done = True
            cancel(self._timer)
            self._timer = None
            raise

    def linkUp(self, remote: Any, link: Any) -> None:
        if self.done:
            return
        # (methodOf's common case inline: the peer's own remote, whose
        # members are its __dict__.)
        method = remote.__dict__.get(self.name) if type(remote) is Remote else None
        if method is None:
            try:
                method = methodOf(remote, self.name)
            except AttributeError as e:
                self._fail(Failure(e))
                return
        self._link = link
        link.inflight[self] = None
        try:
            method(*self.args, self._reply)
        except Exception:
            self._fail(Failure())

    def requeued(self) -> None:
        self._link = None
        self.queued = True

    def linkNever(self, error: Exception) -> None:
        self._fail(Failure(error))

    def linkLost(self, error: Exception) -> None:
        self._link = None
        if isinstance(error, ConnectionLostError) and error.reason is not None:
            error = ConnectionLostError(
                f"the link dropped before {self.name}() replied: {error.reason.getErrorMessage()}", error.reason
            )
        self._fail(Failure(error))

    def _reply(self, *values: Any) -> None:
        if self.done:
            return  # a reply after a timeout is dropped
        self._finish()
        if self.errorFirst:
            try:
                value = errorFirst(values)
            except Exception:
                self.result.errback(Failure())
                return
        else:
            # (replyValue, inline: every call's answer.)
            value = values[0] if len(values) == 1 else (values or None)
        self.result.callback(value)

    def __call__(self, result: Deferred[Any]) -> None:
        # The result was cancelled.
        self._finish()

    def _expired(self, timeout: float) -> None:
        self._timer = None
        self._fail(Failure(UpTimeout(f"{self.name}() got no reply within {timeout} seconds")))

    def _fail(self, failure: Failure) -> None:
        if self.done:
            return
        self._finish()
        self.result.errback(failure)

    def _finish(self) -> None:
        # Called once: on the answer, the failure, or the result's cancel.
        if self.done:
            return
        self.done = True
        if self._timer is not None:
            cancel(self._timer)
            self._timer = None
        link, self._link = self._link, None
        if link is not None:
            link.inflight.pop(self, None)
        if self.queued:
            self.queued = False
            self.source.stopWaiting(self)


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

    # The wrapper takes what the method takes and a callback after it, so
    # it must be called with every argument the peer sends: without
    # __wrapped__, its arity is its own (anything), not the method's.
    del wrapper.__wrapped__
    return wrapper


__all__ = ["Call", "replies"]
