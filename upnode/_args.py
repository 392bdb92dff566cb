"""
dnode-style arguments, inferred by type in any order, and the endpoints
they name.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import attr
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from ._aiostream import LoopClientEndpoint, LoopServerEndpoint
from ._onloop import reactorEndpoint
from .tls import checkServerDescription, clientFromDescription


@attr.s(auto_attribs=True)
class Arguments:
    """
    What a C{connect(...)} or C{listen(...)} call said.
    """

    port: Optional[int] = None
    host: Optional[str] = None
    path: Optional[str] = None
    options: Dict[str, Any] = attr.Factory(dict)
    callback: Optional[Callable[..., Any]] = None
    endpoint: Any = None


def parseArguments(args: Sequence[Any], known: Sequence[str]) -> Arguments:
    """
    Infer each argument by its type, as dnode's C{parse_args} does: an int or
    a string of digits is the port, a string starting with C{/} a unix path,
    C{host:port} both, a Twisted endpoint description (C{tcp:...},
    C{tls:...}, C{unix:...}, ...) the endpoint, another string the host, a
    dict options, an endpoint object the endpoint, a callable the callback.
    Unlike dnode, anything else, and an option name not in C{known}, is an
    error rather than silently ignored.
    """
    parsed = Arguments()
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError(f"unexpected argument {arg!r}")
        if isinstance(arg, int):
            parsed.port = _port(arg)
        elif isinstance(arg, str):
            _parseString(arg, parsed)
        elif isinstance(arg, dict):
            unknown = sorted(set(arg) - set(known), key=str)
            if unknown:
                hint = ""
                if any(callable(arg[key]) for key in unknown):
                    hint = " (a dict of functions to serve is a cons: upnode.upnode(cons).listen(...))"
                raise TypeError(
                    f"unknown option(s) {', '.join(map(repr, unknown))}{hint}; the options are: "
                    + ", ".join(sorted(known))
                )
            for key, value in arg.items():
                if key == "port":
                    parsed.port = _port(int(value))
                elif key in ("host", "path"):
                    setattr(parsed, key, value)
                else:
                    parsed.options[key] = value
        elif IStreamClientEndpoint.providedBy(arg) or IStreamServerEndpoint.providedBy(arg):
            parsed.endpoint = arg
        elif callable(arg):
            parsed.callback = arg
        else:
            raise TypeError(f"unexpected argument {arg!r:.60}")
    return parsed


#: The listen backlog of our servers.  Twisted's default (50) overflows
#: when many clients connect at once (20,000 connect/close cycles saw a
#: connect p99 of one second: the kernel drops the SYN and the client
#: retries after 1 s); the kernel caps it at net.core.somaxconn anyway.
BACKLOG = 1024


def withBacklog(description: str) -> str:
    """
    A server endpoint description with our backlog, unless it names one
    (or is of a type that takes none).
    """
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={BACKLOG}"
    return description


#: Endpoint description types, as Twisted's endpoint plugins name them.
DESCRIPTION_TYPES = ("tcp", "tcp6", "ssl", "tls", "unix", "systemd", "onion", "stdio")


def _parseString(text: str, parsed: Arguments) -> None:
    kind, sep, rest = text.partition(":")
    if text.isdigit():
        parsed.port = _port(int(text))
    elif text.startswith("/"):
        parsed.path = text
    elif sep and kind in DESCRIPTION_TYPES:
        parsed.endpoint = text
    else:
        host, sep, port = text.rpartition(":")
        bare6 = ":" in host and not host.startswith("[")  # "::1" is a host, not ":" port 1
        if sep and port.isdigit() and host and not bare6:
            parsed.host, parsed.port = host.strip("[]"), _port(int(port))
        else:
            parsed.host = text


def _fromDescription(parse: Callable[[Any, str], Any], reactor: Any, description: str, example: str) -> Any:
    try:
        return parse(reactor, description)
    except (TypeError, ValueError, KeyError) as e:
        # Twisted's own message names a function's missing arguments.
        raise ValueError(
            f"cannot use the endpoint description {description!r} ({e}); for example {example!r}"
        ) from None


def serverFromDescription(reactor: Any, description: str) -> Any:
    """
    The server endpoint of a description, with our backlog; an C{ssl:}
    one's key and certificate checked now (see L{checkServerDescription}).
    """
    checkServerDescription(description)
    return _fromDescription(serverFromString, reactor, withBacklog(description), "tcp:7000:interface=127.0.0.1")


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} out of range")
    return value


def clientEndpoint(reactor: Any, parsed: Arguments, loop: Any = None) -> Any:
    """
    The client endpoint named by the arguments, in order of precedence: an
    endpoint object, an C{endpoint} option (object or description), a unix
    path, a port (on C{host}, default localhost).  With an asyncio C{loop},
    or on Twisted's asyncio reactor, a path or port is connected to through
    the loop's own transports (see L{upnode._onloop}).
    """
    endpoint = parsed.endpoint or parsed.options.get("endpoint")
    if isinstance(endpoint, str):
        # TLS descriptions get our fail-closed certificate check.
        return clientFromDescription(reactor, endpoint) or _fromDescription(
            clientFromString, reactor, endpoint, "tcp:host=localhost:port=7000"
        )
    if endpoint is not None:
        return endpoint
    host, port, path = parsed.host or "localhost", parsed.port, parsed.path
    if loop is not None and (path is not None or port is not None):
        return LoopClientEndpoint(loop, host, port, path)
    if path is not None:
        twisted: Any = UNIXClientEndpoint(reactor, path)
    elif port is not None:
        twisted = HostnameEndpoint(reactor, host, port)
    else:
        raise ValueError("no port, unix path or endpoint given")
    return reactorEndpoint(reactor, twisted, lambda running: LoopClientEndpoint(running, host, port, path))


def serverEndpoint(reactor: Any, parsed: Arguments, loop: Any = None) -> Any:
    """
    The server endpoint named by the arguments, with the same precedence as
    L{clientEndpoint}; a port listens on C{host} (default all interfaces).
    With an asyncio C{loop}, or on Twisted's asyncio reactor, a path or port
    is served through the loop's own transports (see L{upnode._onloop}).
    """
    endpoint = parsed.endpoint or parsed.options.get("endpoint")
    if isinstance(endpoint, str):
        return serverFromDescription(reactor, endpoint)
    if endpoint is not None:
        return endpoint
    port, path = parsed.port, parsed.path
    if loop is not None and (path is not None or port is not None):
        return LoopServerEndpoint(loop, port, parsed.host or "", path, backlog=BACKLOG)
    if path is not None:
        twisted: Any = UNIXServerEndpoint(reactor, path, backlog=BACKLOG)
    elif port is not None:
        twisted = TCP4ServerEndpoint(reactor, port, backlog=BACKLOG, interface=parsed.host or "")
    else:
        raise ValueError("no port, unix path or endpoint given")
    # (IPv4 only, as Twisted's TCP4ServerEndpoint listens.)
    interface = parsed.host or "0.0.0.0"
    return reactorEndpoint(
        reactor, twisted, lambda running: LoopServerEndpoint(running, port, interface, path, backlog=BACKLOG)
    )


def withOptions(args: Sequence[Any], options: Dict[str, Any]) -> Sequence[Any]:
    """
    The dnode-style C{args} with keyword C{options} as one more options
    dict (keywords win over a dict given among C{args}).
    """
    if not options:
        return args
    return (*args, options)
