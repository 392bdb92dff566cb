# -*- test-case-name: upnode.test.test_tap -*-
"""
``twistd upnode-server``: serve a cons over upnode on one or more endpoints.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
from typing import Any, Callable, List, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    InvalidLogLevelError,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.reflect import namedAny

from ._args import serverFromDescription
from ._guard import ServerLimits
from ._limits import Limits, seconds
from ._server import UpnodeServerFactory
from ._version import __version__

DEFAULT_SERVICE = "upnode.demo.DemoService"
#: Loopback only: the demo answers auth moo/hax, which no open port should.
DEFAULT_PORT = "tcp:7000:interface=127.0.0.1"


def _seconds(value: str) -> float:
    # The one rule for seconds (see upnode._limits.seconds): "10000" is an
    # integer, and so surely Node's milliseconds; "10000.0" is meant.
    try:
        number: float = int(value)
    except ValueError:
        number = float(value)
    return seconds("the value", number)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value!r} is not a positive integer")
    return number


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve a cons (a dict, an object, or a callable(remote, conn)) over "
        "upnode. With no options it serves a demo service (time, echo, auth) "
        "on tcp port 7000 of the loopback interface."
    )
    optParameters = [
        ["service", "s", DEFAULT_SERVICE, "Dotted name of the cons to serve."],
        ["ping", None, 10.0, "Seconds between pings to each client (0: none).", _seconds],
        ["timeout", None, 5.0, "Seconds a client may take to answer a ping.", _seconds],
        ["max-line-length", None, Limits().maxLineLength, "Longest line a peer may send, in bytes.", _positive],
        [
            "max-connections",
            None,
            None,
            "Live connections at most (default: the descriptor limit less 256); past it a newcomer evicts "
            "the oldest connection still in its handshake.",
            _positive,
        ],
        [
            "handshake-timeout",
            None,
            ServerLimits().handshakeTimeout,
            "Seconds a new connection has to send its methods (TLS handshake included; 0: no limit).",
            _seconds,
        ],
        [
            "max-buffered-total",
            None,
            ServerLimits().maxBufferedTotal,
            "Bytes of output all peers together may leave unread; past it the worst is dropped.",
            _positive,
        ],
        [
            "line-timeout",
            None,
            ServerLimits().lineTimeout,
            "Seconds a line may take to arrive whole (0: no limit).",
            _seconds,
        ],
        [
            "metrics",
            None,
            None,
            "An endpoint description to serve Prometheus metrics on at /metrics, e.g. "
            "tcp:9100:interface=127.0.0.1 (needs upnode[metrics]; default: no metrics).",
        ],
        [
            "log-level",
            None,
            "info",
            "The least severe events logged: debug, info, warn, error or critical (debug shows every "
            "state change; twistd's own --logger or --syslog, when given, decides instead).",
        ],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["ports"] = []

    def opt_port(self, description: str) -> None:
        """
        An endpoint description to listen on, e.g. tcp:7000, unix:/tmp/up.sock,
        ssl:7001:privateKey=key.pem:certKey=cert.pem (repeatable; default
        tcp:7000:interface=127.0.0.1, loopback only; tcp:7000 listens on all
        interfaces).
        """
        try:
            from twisted.internet import reactor

            serverFromDescription(reactor, description)
        except Exception as e:
            raise usage.UsageError(f"bad --port {description!r}: {e}") from None
        self["ports"].append(description)

    opt_p = opt_port

    def opt_version(self) -> None:
        """
        Print upnode's version (and Twisted's) and exit.
        """
        from twisted import __version__ as twistedVersion

        print(f"upnode {__version__} (Twisted {twistedVersion})")
        sys.exit(0)

    def postOptions(self) -> None:
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        self["cons"] = loadService(self["service"])
        try:
            level = LogLevel.levelWithName(self["log-level"])
        except InvalidLogLevelError:
            raise usage.UsageError(
                f"--log-level must be one of debug, info, warn, error, critical, not {self['log-level']!r}"
            ) from None
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger") and not parent.get("syslog"):
            # twistd logs every level to its file or stdout; the same
            # destination, filtered.  twistd imports "logger" by its dotted
            # name once every option is parsed.
            global twistdLogger
            twistdLogger = levelFiltered(level, parent.get("logfile"), bool(parent.get("nodaemon")))
            parent["logger"] = f"{__name__}.twistdLogger"
        if self["metrics"] is not None:
            try:
                import prometheus_client  # noqa: F401
            except ImportError:
                raise usage.UsageError("--metrics needs prometheus_client: pip install 'upnode[metrics]'") from None


#: The log observer factory C{Options} gives twistd (see C{--log-level}).
twistdLogger: Optional[Callable[[], ILogObserver]] = None


def levelFiltered(level: LogLevel, logfile: Optional[str], nodaemon: bool) -> Callable[[], ILogObserver]:
    """
    A twistd C{--logger} factory: the observer twistd would make (stdout
    with C{-n} and no C{--logfile} or C{--logfile -}, else the log file,
    C{twistd.log} by default, rotated on SIGUSR1 as twistd does), passing
    only events at C{level} or above.
    """

    def factory() -> ILogObserver:
        from twisted.python.logfile import LogFile

        if logfile == "-" or (nodaemon and not logfile):
            target: Any = sys.stdout
        else:
            target = LogFile.fromFullPath(logfile or "twistd.log")
            if not signal.getsignal(signal.SIGUSR1):

                def rotate(number: int, frame: Any) -> None:
                    from twisted.internet import reactor

                    reactor.callFromThread(target.rotate)  # type: ignore[attr-defined]

                signal.signal(signal.SIGUSR1, rotate)
        return FilteringLogObserver(
            textFileLogObserver(target), [LogLevelFilterPredicate(defaultLogLevel=level)]
        )

    return factory


def loadService(name: str) -> Any:
    """
    The object C{--service} names, or a usage error that says why it
    cannot be loaded: a module that is not on C{sys.path} (twistd does not
    put the current folder there), a module that raised while importing,
    or a name the module does not have.
    """
    try:
        return namedAny(name)
    except Exception as e:
        raise usage.UsageError(f"cannot load --service {name!r}: {_whyNotLoaded(name, e)}") from None


def _whyNotLoaded(name: str, error: Exception) -> str:
    parts = name.split(".")
    top = parts[0]
    if len(parts) < 2:
        return "it must be a dotted name, module.Object (for example myservice.Service)"
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        here = os.getcwd()
        besideUs = os.path.exists(os.path.join(here, top + ".py")) or os.path.exists(
            os.path.join(here, top, "__init__.py")
        )
        if besideUs and here not in [os.path.abspath(p or ".") for p in sys.path]:
            return (
                f"the module {top!r} cannot be imported: it is in the current folder, which is not on "
                f"sys.path (twistd does not add it); run PYTHONPATH=. twistd ... --service {name}"
            )
        return f"there is no module {top!r} on sys.path (install it, or put its folder on PYTHONPATH)"
    for end in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:end])
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # not a module: a shorter prefix is
            return f"importing {module!r} failed: {type(e).__name__}: {e}"
        except Exception as e:
            return f"importing {module!r} raised {type(e).__name__}: {e}"
        missing = ".".join(parts[end:])
        names = ", ".join(n for n in sorted(vars(found)) if not n.startswith("_"))
        return f"the module {module!r} has no {missing!r}; it has: {names}"
    return str(error)


class _ExitCleanly(Service):
    """
    SIGTERM and SIGINT stop the reactor like a normal shutdown, so twistd
    exits with status 0 instead of re-raising the signal (which stock
    twistd does, leaving a "killed by signal" status for supervisors).
    """

    _log = Logger()

    def startService(self) -> None:
        Service.startService(self)
        from twisted.internet import reactor

        # After the reactor has installed its own handlers.
        reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._stop)

    def _stop(self, number: int, frame: Any) -> None:
        from twisted.internet import reactor

        self._log.info("Received {signal}, shutting down", signal=signal.Signals(number).name)
        reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]


class _DropConnections(Service):
    """
    On shutdown, after the listeners have stopped, end every live
    connection and wait for them to go.
    """

    def __init__(self, factory: UpnodeServerFactory) -> None:
        self.factory = factory

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        waiting: List[Deferred[Any]] = []
        for conn in list(self.factory.connections):
            waiting.append(conn.whenLost())
            conn.end()
        return DeferredList(waiting)


def serverFactory(options: Options) -> UpnodeServerFactory:
    """
    The server factory the parsed C{options} describe.
    """
    from twisted.internet import reactor

    return UpnodeServerFactory(
        options["cons"],
        ping=options["ping"],
        timeout=options["timeout"],
        limits=Limits(maxLineLength=options["max-line-length"]),
        serverLimits=ServerLimits(
            maxConnections=options["max-connections"],
            handshakeTimeout=options["handshake-timeout"],
            maxBufferedTotal=options["max-buffered-total"],
            lineTimeout=options["line-timeout"],
        ),
        clock=reactor,
    )


def makeService(options: Options) -> MultiService:
    from twisted.internet import reactor

    factory = serverFactory(options)
    top = MultiService()
    _ExitCleanly().setServiceParent(top)
    # Services stop in reverse order: listeners first, then connections.
    _DropConnections(factory).setServiceParent(top)
    for description in options["ports"]:
        endpoint = serverFromDescription(reactor, description)
        StreamServerEndpointService(endpoint, factory).setServiceParent(top)
    if options["metrics"] is not None:
        from .metrics import Metrics, site

        metrics = Metrics()
        metrics.watchServer(factory)
        endpoint = serverFromDescription(reactor, options["metrics"])
        StreamServerEndpointService(endpoint, site(metrics)).setServiceParent(top)
    return top
