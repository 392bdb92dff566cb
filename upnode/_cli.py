# -*- test-case-name: upnode.test.test_args -*-
"""
C{upnode} / C{python -m upnode}: poke a running upnode or dnode server::

    upnode 7000                      list what the server exposes
    upnode 7000 time                 call time(cb), print what cb receives
    upnode localhost:7000 echo '{"a": [1, 2]}' hi
    upnode 'tls:example.com:7001' time
    upnode /tmp/upnode.sock time

Each argument is parsed as JSON, or taken as a plain string when it is not
JSON.  A callback is appended as the last argument; what it receives is
printed as one JSON array per call.

Exit status: 0 done, 1 timed out, 2 usage error, 3 could not connect,
4 no such method.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from . import dnode
from ._args import parseArguments
from ._reactor import cancel
from ._scrub import scrub
from ._speedups import running
from ._version import __version__

EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, EXIT_CONNECT, EXIT_NO_METHOD = 0, 1, 2, 3, 4


def endpointArguments(target: str) -> List[Any]:
    """
    dnode-style arguments for a command-line target: C{7000},
    C{host:7000}, a unix path, or an endpoint description; the same forms
    C{upnode.connect()} takes, parsed by the same code.
    """
    parsed = parseArguments([target], ())
    if parsed.endpoint is None and parsed.port is None and parsed.path is None:
        raise ValueError(f"{target!r} is not a port, host:port, unix path or endpoint description")
    return [target]


def parseArgument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def asJSON(values: Any) -> str:
    """
    What a callback received, as JSON: functions as "[Function]", cycles as
    "[Circular]", as dnode writes them.
    """
    plain, _, _ = scrub(list(values), lambda f: 0, 1000)
    return json.dumps(plain, ensure_ascii=False)


def describe(remote: Any) -> str:
    return json.dumps(
        {name: "[Function]" if callable(remote[name]) else remote[name] for name in sorted(remote)},
        ensure_ascii=False,
        indent=2,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="upnode",
        description="Call a method of a running upnode (or dnode) server and print what its callback receives.",
    )
    compiled = running()
    built = f"compiled: {', '.join(compiled)}" if compiled else "pure Python"
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__} ({built})")
    p.add_argument("target", nargs="?", help="7000, host:7000, /unix/path, or an endpoint description (tls:host:port:trustRoots=ca.pem)")
    p.add_argument("method", nargs="?", help="the method to call; without it, list what the server exposes")
    p.add_argument("args", nargs="*", help="arguments, each JSON or a plain string")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for everything (default 10)")
    p.add_argument("--calls", type=int, default=1, help="callback calls to wait for before exiting (default 1)")
    return p


async def run(reactor: Any, options: argparse.Namespace, out: Any) -> int:
    deadline = reactor.callLater(options.timeout, lambda: None)

    def remaining() -> float:
        return max(0.0, deadline.getTime() - reactor.seconds())

    async def withTimeout(d: Deferred[Any], what: str) -> Any:
        d.addTimeout(remaining(), reactor)
        try:
            return await d
        except Exception as e:
            from twisted.internet.defer import TimeoutError as DeferredTimeout

            if isinstance(e, DeferredTimeout):
                raise TimeoutError(f"{what}: no answer within {options.timeout} seconds") from None
            raise

    try:
        try:
            conn = await withTimeout(dnode.connect(*endpointArguments(options.target), reactor=reactor), "connect")
        except TimeoutError:
            raise
        except Exception as e:
            print(f"upnode: cannot connect to {options.target}: {e}", file=sys.stderr)
            return EXIT_CONNECT
        try:
            remote = conn.remote
            if options.method is None:
                print(describe(remote), file=out)
                return EXIT_OK
            method = remote[options.method] if options.method in remote else None
            if not callable(method):
                print(
                    f"upnode: the server has no method {options.method!r}; it has: "
                    + ", ".join(n for n in sorted(remote) if callable(remote[n])),
                    file=sys.stderr,
                )
                return EXIT_NO_METHOD
            calls = 0
            done: Deferred[None] = Deferred()

            def callback(*values: Any) -> None:
                nonlocal calls
                print(asJSON(values), file=out, flush=True)
                calls += 1
                if calls == options.calls and not done.called:
                    done.callback(None)

            method(*[parseArgument(a) for a in options.args], callback)
            await withTimeout(done, options.method)
            return EXIT_OK
        finally:
            conn.end()
    except TimeoutError as e:
        print(f"upnode: {e}", file=sys.stderr)
        return EXIT_TIMEOUT
    finally:
        cancel(deadline)


def main(argv: Optional[List[str]] = None) -> None:
    options = parser().parse_args(argv)
    if options.target is None:
        # (argparse would name "args" as required too, though it is optional.)
        parser().error("a target is required: 7000, host:7000, /unix/path or an endpoint description")
    try:
        endpointArguments(options.target)
    except ValueError as e:
        parser().error(str(e))
    status = []

    async def go(reactor: Any) -> None:
        status.append(await run(reactor, options, sys.stdout))

    try:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit as e:
        if e.code not in (0, None) or not status:
            raise
    sys.exit(status[0])
