"""
Real-time helpers for the integration tests.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure


async def freePort() -> int:
    """
    A loopback TCP port that was free a moment ago.
    """
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Factory

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory())
    number: int = port.getHost().port
    await port.stopListening()
    return number


def spawnTwistd(testCase: Any, *args: str, loop: str = "twisted") -> Any:
    """
    A real C{twistd -n upnode-server ARGS} process, killed (and waited for)
    at the test's cleanup if still running; with C{loop} C{"asyncio"} or
    C{"uvloop"}, the same server as an asyncio program on that loop
    (C{bench/aioserver.py}).
    """
    import signal
    import sys

    from .test_twistd_cli import ENV, ROOT, Twistd

    process = Twistd()
    if loop == "twisted":
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "upnode-server", *args]
    else:
        argv = [sys.executable, str(ROOT / "bench" / "aioserver.py"), loop, *args]
    reactor.spawnProcess(process, sys.executable, argv, env=ENV, path=str(ROOT))

    def cleanup() -> Any:
        if not process.ended.called:
            process.transport.signalProcess(signal.SIGCONT)
            process.transport.signalProcess("KILL")
        return process.ended

    testCase.addCleanup(cleanup)
    return process


class Collect(ProcessProtocol):
    """
    A child process's output: C{done} fires with its exit code, stdout and
    stderr once it has ended.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.done: Deferred[Tuple[int, str, str]] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = reason.value.exitCode  # type: ignore[attr-defined]
        self.done.callback((code, self.out.decode(), self.err.decode()))


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def until(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> None:
    """
    Wait until C{condition()} is true, failing after C{timeout} seconds.
    """
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} seconds")
        await sleep(step)
        waited += step


def call(method: Any, *args: Any) -> Deferred[Any]:
    """
    Call a remote method with a final callback; fire with what it gets (one
    value as is, several as a tuple).
    """
    d: Deferred[Any] = Deferred()
    method(*args, lambda *values: d.callback(values[0] if len(values) == 1 else values))
    return d


def first(event: str, emitter: Any) -> Deferred[Any]:
    """
    Fire with the arguments of the next C{event}.
    """
    d: Deferred[Any] = Deferred()
    emitter.once(event, lambda *args: d.callback(args))
    return d


__all__ = ["call", "first", "freePort", "sleep", "spawnTwistd", "until"]


def onceOnTheDefaultReactor(why: str) -> None:
    """
    For a test whose work is done by other processes (on their own default
    reactor) while the test process only waits: skip it in the asyncio
    reactor's run of the suite, which would repeat it unchanged (tox's
    C{asyncio} environment), saying C{why}.
    """
    from twisted.internet import reactor
    from twisted.trial.unittest import SkipTest

    if type(reactor).__module__ == "twisted.internet.asyncioreactor":
        raise SkipTest(f"runs once, on the default reactor (tox -e tests): {why}")
