"""
Node habits, ported literally: the one rule for calling user functions
(extra arguments left off, JavaScript's C{undefined} as None where a Node
habit relies on it, coroutine functions run), Node's emitter names, options
as keywords, dnode's C{listen(cons, port)}, and the error types a Python
user catches.  Deterministic, in memory, with task.Clock.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import itertools
from types import MethodType
from typing import Any, Callable, Dict, Iterator, List

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

import upnode
from upnode import ConnectionLostError, UpnodeServerFactory, UpTimeout, _arity, replies
from upnode._arity import ANY, callLikeJavaScript, fitArguments, positionalArity
from upnode._events import EventEmitter
from upnode._upnode import isCons
from upnode.errors import UpnodeWarning
from upnode.testing import FakeEndpoint, MemoryLink


def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
    """
    C{function} under a decorator that C{functools.wraps} it and takes
    anything.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def decorateFirst(function: Callable[..., Any]) -> Callable[..., Any]:
    """
    C{function} under a decorator that C{functools.wraps} it and takes a
    first argument and any more.
    """

    @functools.wraps(function)
    def wrapper(first: Any, *args: Any) -> Any:
        return function(first, *args)

    return wrapper


def declared(function: Callable[..., Any]) -> Callable[..., Any]:
    """
    C{function} under a wrapper that declares its own C{__signature__}:
    one positional-only parameter.
    """
    wrapper = decorate(function)
    wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("only", inspect.Parameter.POSITIONAL_ONLY)]
    )
    return wrapper


class ArityTests(SynchronousTestCase):
    def test_positionalArity(self) -> None:
        class Thing:
            def method(self, a: int, b: int = 2) -> None:
                pass

            def alone(self) -> None:
                pass

        class Callable:
            def __call__(self, bound: Any, a: int) -> None:
                pass

        def star(a: int, *rest: int) -> None:
            pass

        cases = [
            (lambda: None, (0, 0)),
            (lambda remote: None, (1, 1)),
            (lambda err, res=None: None, (2, 1)),
            (Thing().method, (2, 1)),
            (Thing().alone, (0, 0)),
            (star, (ANY, 1)),
            (MethodType(star, "bound"), (ANY, 0)),
            (MethodType(Callable(), "bound"), (1, 1)),
            (print, (ANY, 0)),
            ([].append, (1, 1)),
        ]
        # Twice: worked out, then (functions and methods) from the cache.
        for function, arity in cases + cases:
            self.assertEqual(positionalArity(function), arity, function)

    def test_positionalArityOfCallablesWithoutCode(self) -> None:
        """
        A callable with no C{__code__} of its own (a function written in
        C, bound or not; a C{functools.partial}; an instance of a class
        with C{__call__}) gets inspect's answer, the first time and from
        the caches after, whether the same object comes back or a fresh
        one is made for each call.
        """

        def three(a: int, b: int, c: int = 3) -> None:
            pass

        def star(a: int, *rest: int) -> None:
            pass

        def keywords(a: int, b: int, **rest: int) -> None:
            pass

        class Thing:
            def method(self, a: int, b: int = 2) -> None:
                pass

        class Call:
            def __call__(self, a: int, b: int = 2) -> None:
                pass

        class CallStar:
            def __call__(self, *args: int) -> None:
                pass

        class Declared:
            __signature__ = inspect.Signature([inspect.Parameter("only", inspect.Parameter.POSITIONAL_ONLY)])

            def __call__(self, *args: int) -> None:
                pass

        class Meta(type):
            def __call__(cls, a: int) -> Any:
                return super().__call__()

        class Made(metaclass=Meta):
            pass

        values: List[int] = []
        makers: List[tuple[Callable[[], Any], tuple[int, int]]] = [
            (lambda: print, (ANY, 0)),
            (lambda: values.append, (1, 1)),
            (lambda: (1).__add__, (1, 1)),
            (lambda: "".join, (1, 1)),
            (lambda: str.join, (2, 2)),
            (lambda: dict.fromkeys, (2, 1)),
            (lambda: dict.__dict__["fromkeys"], (3, 2)),
            (lambda: object.__init__, (ANY, 1)),
            (lambda: functools.partial(three), (3, 2)),
            (lambda: functools.partial(three, 1), (2, 1)),
            (lambda: functools.partial(three, 1, 2, 3), (0, 0)),
            (lambda: functools.partial(three, 1, c=4), (1, 1)),
            (lambda: functools.partial(three, c=4), (2, 2)),
            (lambda: functools.partial(three, b=2), (1, 1)),
            (lambda: functools.partial(three, a=1), (0, 0)),
            (lambda: functools.partial(three, d=1), (ANY, 0)),
            (lambda: functools.partial(star, a=1), (0, 0)),
            (lambda: functools.partial(keywords, z=1), (2, 2)),
            (lambda: functools.partial(keywords, b=1, z=1), (1, 1)),
            (lambda: functools.partial(Thing().method, b=5), (1, 1)),
            (lambda: functools.partial(print, sep=""), (ANY, 0)),
            (lambda: functools.partial(three, 1, 2, 3, 4), (ANY, 0)),
            (lambda: functools.partial(star, 1, 2), (ANY, 0)),
            (lambda: functools.partial(Thing().method), (2, 1)),
            (lambda: functools.partial(Thing().method, 1), (1, 0)),
            (lambda: functools.partial(print, "x"), (ANY, 0)),
            (lambda: functools.partial(values.append), (1, 1)),
            (lambda: Call(), (2, 1)),
            (lambda: CallStar(), (ANY, 0)),
            (lambda: Declared(), (1, 1)),
            (lambda: Made, (1, 1)),
        ]
        # Three rounds, each with fresh objects: worked out, then cached.
        for _ in range(3):
            for make, arity in makers:
                function = make()
                self.assertEqual(positionalArity(function), arity, function)
                self.assertEqual(_arity._fromSignature(function), arity, function)

    def test_positionalArityOfEveryBuiltin(self) -> None:
        """
        Every function of the builtins module and every method of the
        common built-in types, bound and unbound, twice: the cache keyed
        by a C function's text signature gives inspect's answer for each,
        so that no two with different signatures share an entry.
        """

        def callables() -> Iterator[Any]:
            for name in dir(builtins):
                value = getattr(builtins, name)
                if callable(value) and not isinstance(value, type):
                    yield value
            for kind, instance in (
                (list, [1]),
                (dict, {1: 2}),
                (str, "x"),
                (bytes, b"x"),
                (int, 1),
                (float, 1.0),
                (set, {1}),
                (tuple, (1,)),
                (bytearray, bytearray(b"x")),
            ):
                for name in dir(kind):
                    unbound = getattr(kind, name)
                    if callable(unbound) and not isinstance(unbound, type):
                        yield unbound
                        yield getattr(instance, name)

        every = list(callables())
        self.assertGreater(len(every), 500)
        for _ in range(2):
            for function in every:
                self.assertEqual(positionalArity(function), _arity._fromSignature(function), function)

    def test_keywordPartialOfWrappedFunctions(self) -> None:
        """
        Functions one decorator wrapped share the wrapper's code, and
        inspect reads each one's signature through C{__wrapped__}: their
        partials with keywords are not cached under that code, so each
        gets its own answer.
        """

        @decorate
        def two(a: int, b: int, last: int = 0) -> None:
            pass

        @decorate
        def four(a: int, b: int, c: int, d: int, last: int = 0) -> None:
            pass

        for _ in range(2):
            self.assertEqual(positionalArity(functools.partial(two, last=1)), (2, 2))
            self.assertEqual(positionalArity(functools.partial(four, last=1)), (4, 4))

    def test_positionalArityOfDecoratedFunctions(self) -> None:
        """
        A function that C{functools.wraps} made takes what the function
        under it takes, as inspect has it, decorator after decorator and
        through a bound method; a wrapper that declares its own
        C{__signature__} takes that.  Each is worked out afresh for every
        function one decorator wraps (they all share its code), three
        rounds of fresh functions, against fixed answers and inspect's.
        """

        class Thing:
            def method(self, a: int, b: int = 2) -> None:
                pass

            @decorate
            def decorated(self, a: int) -> None:
                pass

        def makers() -> Iterator[tuple[Callable[..., Any], tuple[int, int]]]:
            def one(remote: Any) -> Any:
                return remote

            def two(err: Any, result: Any = None) -> None:
                pass

            def star(a: int, *rest: int) -> None:
                pass

            yield decorate(one), (1, 1)
            yield decorate(two), (2, 1)
            yield decorate(decorate(one)), (1, 1)
            yield decorate(star), (ANY, 1)
            yield decorate(Thing().method), (2, 1)
            yield Thing().decorated, (1, 1)
            yield decorate(Thing().decorated), (1, 1)
            yield decorate(functools.partial(two, 1)), (1, 0)
            yield decorate(print), (ANY, 0)
            yield declared(two), (1, 1)
            yield decorate(declared(two)), (1, 1)

        for _ in range(3):
            for function, arity in makers():
                self.assertEqual(positionalArity(function), arity, function)
                self.assertEqual(_arity._fromSignature(function), arity, function)
        # What it is for: a decorated Node-style callback is given only
        # the arguments it takes, as an undecorated one is.
        received: List[Any] = []
        callLikeJavaScript(decorate(lambda remote: received.append(remote)), ("remote", "conn"))
        self.assertEqual(received, ["remote"])

    def test_inlineCallbacksTransaction(self) -> None:
        """
        A transaction written with Twisted's C{inlineCallbacks} (which
        C{functools.wraps} its generator function) and taking only the
        remote is called with the remote alone, as an undecorated one is.
        """
        received: List[Any] = []

        @inlineCallbacks
        def transaction(remote: Any) -> Any:
            received.append((yield succeed(remote)))

        self.assertEqual(positionalArity(transaction), (1, 1))
        d = callLikeJavaScript(transaction, ("remote", "conn"))
        self.assertEqual(received, ["remote"])
        self.successResultOf(d)

    def test_positionalArityOfCompositions(self) -> None:
        """
        Every composition, up to three deep, of two C{functools.wraps}
        decorators (one taking anything, one a first argument and the
        rest), a wrapper that declares its C{__signature__}, partials (with
        an argument, without, with a keyword), binding as a method and
        serving as a class's C{__call__}, over ten functions (Python and
        C, with defaults, C{*args}, keyword-only parameters, C{async}):
        each has inspect's answer, worked out and then from the caches.
        Compositions that cannot be made (C{dict.get} bound to another
        class) or that inspect cannot read (a function with no parameters
        bound as a method) are left out: no call to them can succeed.
        """

        def bind(function: Callable[..., Any]) -> Callable[..., Any]:
            holder = type("Holder", (), {"method": function})
            return holder().method  # type: ignore[no-any-return]

        def callable_(function: Callable[..., Any]) -> Callable[..., Any]:
            return type("Callable", (), {"__call__": function})()  # type: ignore[no-any-return]

        def none() -> None:
            pass

        def one(a: int) -> None:
            pass

        def defaults(a: int, b: int = 1) -> None:
            pass

        def rest(a: int, b: int, c: int = 3, *more: int) -> None:
            pass

        def keywordOnly(a: int, *, k: int = 1) -> None:
            pass

        async def coroutine(a: int, b: int) -> None:
            pass

        def method(self: Any, a: int, b: int = 2) -> None:
            pass

        transforms: List[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
            decorate,
            decorateFirst,
            declared,
            lambda f: functools.partial(f, 1),
            lambda f: functools.partial(f),
            lambda f: functools.partial(f, b=2),
            bind,
            callable_,
        ]
        bases: List[Callable[..., Any]] = [none, one, defaults, rest, keywordOnly, coroutine, method, print, [].append, dict.get]
        checked = 0
        for base in bases:
            for depth in range(4):
                for combination in itertools.product(transforms, repeat=depth):
                    function = base
                    try:
                        for transform in combination:
                            function = transform(function)
                        inspect.signature(function)
                    except (TypeError, ValueError):
                        continue
                    expected = _arity._fromSignature(function)
                    for _ in range(2):
                        self.assertEqual(positionalArity(function), expected, (base, combination))
                    checked += 1
        self.assertGreater(checked, 3000)

    def test_positionalArityOfAWrappedCycle(self) -> None:
        """
        A chain of C{__wrapped__} that comes back on itself, which inspect
        will not follow, takes anything.
        """

        def loop(a: int) -> None:
            pass

        loop.__wrapped__ = loop  # type: ignore[attr-defined]
        self.assertEqual(positionalArity(loop), (ANY, 0))

    def test_repliesTakesEveryArgument(self) -> None:
        """
        A method decorated with L{replies} is called with all the peer's
        arguments and the callback after them, though the method under it
        takes one fewer: the wrapper does not point at the method as
        C{functools.wraps} would, so its arity is its own.
        """

        @replies
        def add(a: int, b: int) -> int:
            return a + b

        answers: List[Any] = []
        self.assertEqual(positionalArity(add), (ANY, 0))
        callLikeJavaScript(add, (1, 2, lambda *args: answers.append(args)))
        self.assertEqual(answers, [(None, 3)])
        self.assertEqual(add.__name__, "add")

    def test_keywordPartialCacheIsBounded(self) -> None:
        """
        Partials with keywords over code made at run time are cached up to
        the bound and then forgotten, each answer right: an entry holds
        its code, so no later code takes the id it is cached under.
        """
        for count in range(_arity._CACHE_BOUND + 10):
            names = ", ".join(f"a{i}" for i in range(count % 5))
            scope: Dict[str, Any] = {}
            exec(f"def made({names}{', ' if names else ''}last=0): pass", scope)
            made = functools.partial(scope["made"], last=1)
            self.assertEqual(positionalArity(made), (count % 5, count % 5))
            self.assertLessEqual(len(_arity._byKeywordPartial), _arity._CACHE_BOUND)
        self.assertTrue(all(type(entry[2]) is type(made.func.__code__) for entry in _arity._byKeywordPartial.values()))

    def test_positionalArityCacheIsBounded(self) -> None:
        """
        Code made at run time (exec'd, one code object each) is cached up
        to a bound and then forgotten, and every answer stays right: a
        code object's id is never reused while it is cached, since the
        cache holds the code object.
        """
        for count in range(_arity._CACHE_BOUND + 10):
            names = ", ".join(f"a{i}" for i in range(count % 5))
            scope: Dict[str, Any] = {}
            exec(f"def made({names}): pass", scope)
            self.assertEqual(positionalArity(scope["made"]), (count % 5, count % 5))
            self.assertLessEqual(len(_arity._byCode), _arity._CACHE_BOUND)
            self.assertEqual(len(_arity._codes), len(_arity._byCode))

    def test_fitArguments(self) -> None:
        self.assertEqual(fitArguments(1, 1, ("a", "b")), ("a",))
        self.assertEqual(fitArguments(2, 2, ("ACCESS DENIED",)), ("ACCESS DENIED", None))
        self.assertEqual(fitArguments(2, 1, ("x",)), ("x",))
        self.assertEqual(fitArguments(ANY, 0, (1, 2, 3)), (1, 2, 3))

    def test_callLikeJavaScriptFillsNone(self) -> None:
        seen: List[Any] = []
        callLikeJavaScript(lambda remote: seen.append(remote), ())
        callLikeJavaScript(lambda err, res: seen.append((err, res)), ("no",))
        self.assertEqual(seen, [None, ("no", None)])

    def test_callLikeJavaScriptRunsCoroutines(self) -> None:
        seen: List[Any] = []
        failures: List[Failure] = []
        gate: Deferred[str] = Deferred()

        async def cb(remote: Any) -> None:
            seen.append(await gate + remote)
            raise ValueError("after")

        callLikeJavaScript(cb, ("!",), failures.append)
        self.assertEqual(seen, [])
        gate.callback("done")
        self.assertEqual(seen, ["done!"])
        self.assertEqual([f.type for f in failures], [ValueError])


class EmitterTests(SynchronousTestCase):
    def test_handlersGetTheArgumentsTheyTake(self) -> None:
        emitter = EventEmitter()
        seen: List[Any] = []
        emitter.on("remote", lambda: seen.append("none"))
        emitter.on("remote", lambda remote: seen.append(remote))
        emitter.once("remote", lambda remote, conn: seen.append((remote, conn)))
        emitter.emit("remote", "R", "C")
        emitter.emit("remote", "R2", "C2")
        self.assertEqual(seen, ["none", "R", ("R", "C"), "none", "R2"])

    def test_onceTakesWhatItTakes(self) -> None:
        emitter = EventEmitter()
        seen: List[Any] = []
        emitter.once("x", lambda: seen.append("none"))
        emitter.once("x", lambda a: seen.append(a))
        dropped = emitter.once("x", lambda a, b: seen.append("never"))
        self.assertEqual(emitter.listenerCount("x"), 3)
        self.assertIs(emitter.listeners("x")[2], dropped)
        emitter.off("x", dropped)
        emitter.emit("x", 1, 2)
        emitter.emit("x", 3, 4)
        self.assertEqual(seen, ["none", 1])
        self.assertEqual(emitter.listenerCount("x"), 0)

        @emitter.once("y")
        def decorated(value: Any) -> None:
            seen.append(value)

        emitter.emit("y", "v", "extra")
        self.assertEqual(seen[-1], "v")

    def test_prependListener(self) -> None:
        emitter = EventEmitter()
        seen: List[Any] = []
        emitter.on("x", lambda: seen.append("on"))
        emitter.once("x", lambda: seen.append("once"))
        first = emitter.prependListener("x", lambda v: seen.append(("first", v)))
        emitter.emit("x", 1)
        emitter.emit("x", 2)
        self.assertEqual(seen, [("first", 1), "on", "once", ("first", 2), "on"])
        self.assertEqual(emitter.listeners("x")[0], first)

    def test_asyncHandler(self) -> None:
        emitter = EventEmitter()
        gate: Deferred[None] = Deferred()
        seen: List[Any] = []

        async def handler(value: Any) -> None:
            await gate
            seen.append(value)
            raise ValueError("logged")

        emitter.on("up", handler)
        emitter.emit("up", 1)
        self.assertEqual(seen, [])
        gate.callback(None)
        self.assertEqual(seen, [1])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_nodeNames(self) -> None:
        emitter = EventEmitter()
        seen: List[Any] = []
        handler = emitter.addListener("x", seen.append)
        other = emitter.addListener("x", lambda v: seen.append(-v))
        self.assertEqual(emitter.listenerCount("x"), 2)
        emitter.emit("x", 1)
        emitter.removeListener("x", handler)
        emitter.emit("x", 2)
        self.assertEqual(emitter.listenerCount("x"), 1)
        emitter.removeAllListeners("x")
        emitter.emit("x", 3)
        self.assertEqual(seen, [1, -1, -2])
        self.assertEqual(emitter.listenerCount("x"), 0)
        self.assertTrue(callable(other))
        emitter.on("y", print)
        emitter.removeAllListeners()
        self.assertEqual(emitter.listenerCount("y"), 0)


class LinkedTestCase(SynchronousTestCase):
    """
    A client and a server in memory.
    """

    def link(self, cons: Any, connectArgs: Any = (), **options: Any) -> Any:
        self.clock = Clock()
        self.endpoint = FakeEndpoint(self.clock)
        self.server = UpnodeServerFactory(cons, ping=0, clock=self.clock)
        up = upnode.upnode(reactor=self.clock).connect(self.endpoint, *connectArgs, ping=0, jitter=0, **options)
        self.addCleanup(self.close, up)
        return up

    def close(self, up: Any) -> None:
        up.close()
        for link in getattr(self, "links", []):
            link.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def accept(self) -> MemoryLink:
        link = self.endpoint.accept(self.server)
        link.flush()
        self.links = getattr(self, "links", []) + [link]
        return link


class SeedTests(LinkedTestCase):
    def test_upTimeoutCallbackNamingRemote(self) -> None:
        """
        The seed's C{up(timeout, cb)} with C{def cb(remote): if not remote:}
        sees None, JavaScript's undefined, when it times out.
        """
        up = self.link({})
        seen: List[Any] = []

        def cb(remote: Any) -> None:
            if not remote:
                seen.append("resource timed out")

        up(2.0, cb)
        self.clock.advance(2.0)
        self.assertEqual(seen, ["resource timed out"])

    def test_authErrorFirstCallback(self) -> None:
        """
        The seed's auth client: C{def authed(err, res)} answered
        C{cb("ACCESS DENIED")} gets C{res=None}.
        """

        def auth(user: str, password: str, cb: Any) -> None:
            if password == "hax":
                cb(None, {"beep": lambda cb: cb("boop")})
            else:
                cb("ACCESS DENIED")

        seen: List[Any] = []

        def onRemote(remote: Any, conn: Any) -> None:
            def authed(err: Any, res: Any) -> None:
                seen.append((err, res))

            remote.auth("moo", "wrong", authed)

        self.link({"auth": auth}, (onRemote,))
        self.accept().flush()
        self.assertEqual(seen, [("ACCESS DENIED", None)])

    def test_exposedMethodMissingArgumentsStillFails(self) -> None:
        """
        A method the peer calls by name with too few arguments is the
        caller's mistake: a TypeError, logged (not a None that fails later).
        """
        up = self.link({"two": lambda a, cb: cb(a)})
        self.accept()
        up(lambda remote: remote.two())
        self.links[0].flush()
        self.assertTrue(self.flushLoggedErrors(TypeError))

    def test_eventHandlersTakeWhatTheyTake(self) -> None:
        """
        Every event of client and connection, with handlers taking fewer
        arguments than the event carries.
        """
        seen: List[Any] = []

        def cons(remote: Any, conn: Any) -> dict:
            conn.on("local", lambda ref: seen.append("local"))
            conn.on("remote", lambda remote: seen.append("conn remote"))
            return {"x": 1}

        up = self.link(cons)
        up.on("up", lambda: seen.append("up"))
        up.on("remote", lambda remote: seen.append("remote"))
        up.once("up", lambda remote: seen.append("once up"))
        self.accept().flush()
        self.assertEqual(sorted(seen), sorted(["local", "conn remote", "remote", "up", "once up"]))

    def test_asyncCallbacks(self) -> None:
        """
        C{async def} callbacks to up(), up.on() and over the wire run.
        """
        gate: Deferred[None] = Deferred()
        seen: List[Any] = []
        up = self.link({"echo": lambda v, cb: cb(v)})

        async def transaction(remote: Any) -> None:
            await gate
            async def answered(value: Any) -> None:
                await gate
                seen.append(("wire", value))

            remote.echo("hi", answered)

        async def onUp(remote: Any) -> None:
            await gate
            seen.append("up")

        up.on("up", onUp)
        up(transaction)
        self.accept()
        self.assertEqual(seen, [])
        gate.callback(None)
        self.links[0].flush()
        self.assertEqual(sorted(map(str, seen)), sorted(map(str, ["up", ("wire", "hi")])))

    def test_asyncTransactionFailureIsAnError(self) -> None:
        up = self.link({})
        errors: List[Failure] = []
        up.on("error", errors.append)

        async def transaction(remote: Any) -> None:
            raise KeyError("in a coroutine")

        up(transaction)
        self.accept()
        self.assertEqual([f.type for f in errors], [KeyError])


class OptionTests(SynchronousTestCase):
    def test_keywordOptions(self) -> None:
        clock = Clock()
        up = upnode.upnode(reactor=clock).connect(FakeEndpoint(clock), reconnect=0.2, ping=0, maxQueue=3)
        self.assertEqual((up.initialDelay, up.ping), (0.2, 0))
        up.close()
        up = upnode.connect(FakeEndpoint(clock), {"ping": 5}, ping=0, reactor=clock)
        self.assertEqual(up.ping, 0)  # a keyword wins over the dict
        up.close()

    def test_dnodeKeywordOptions(self) -> None:
        from upnode import dnode

        endpoint = RecordingEndpoint()
        dnode.listen({}, endpoint, maxLineLength=4096, reactor=Clock())
        self.assertEqual(endpoint.factories[0].limits.maxLineLength, 4096)
        e = self.assertRaises(TypeError, dnode.connect, 7000, pingg=1, reactor=Clock())
        self.assertIn("'pingg'", str(e))

    def test_unknownKeywordNamesTheValidOnes(self) -> None:
        clock = Clock()
        e = self.assertRaises(TypeError, upnode.upnode(reactor=clock).connect, 7000, pong=0)
        self.assertIn("'pong'", str(e))
        self.assertIn("reconnect", str(e))
        e = self.assertRaises(TypeError, upnode.listen, 7000, reconnect=1, reactor=clock)
        self.assertIn("maxConnections", str(e))


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    def __init__(self) -> None:
        self.factories: List[Any] = []

    def listen(self, factory: Any) -> Deferred[Any]:
        self.factories.append(factory)
        return succeed(object())


class ListenConsTests(SynchronousTestCase):
    def test_isCons(self) -> None:
        class Clock2:
            def __init__(self, remote: Any, conn: Any) -> None:
                pass

        self.assertTrue(isCons(Clock2))
        self.assertTrue(isCons(lambda remote, conn: {}))
        self.assertFalse(isCons(lambda: None))
        self.assertFalse(isCons(print))
        self.assertFalse(isCons({"a": 1}))

    def test_listenClassIsTheCons(self) -> None:
        """
        dnode's C{listen(cons, port)}: a class is served, and the listening
        callback (no arguments) is still called.
        """

        class Service:
            def __init__(self, remote: Any, conn: Any) -> None:
                pass

        endpoint = RecordingEndpoint()
        called: List[int] = []
        upnode.listen(Service, endpoint, lambda: called.append(1), ping=0, reactor=Clock())
        self.assertIs(endpoint.factories[0].cons, Service)
        self.assertEqual(called, [1])
        upnode.upnode({"a": 1}, reactor=Clock()).listen(endpoint, ping=0)
        self.assertEqual(endpoint.factories[1].cons, {"a": 1})


class ReturnTests(LinkedTestCase):
    def test_returnWithoutRepliesIsSaid(self) -> None:
        """
        A method that returns its answer instead of calling back is pointed
        out once, as an UpnodeWarning at the method, with the way to answer.
        """

        class Service:
            def __init__(self, remote: Any, conn: Any) -> None:
                pass

            def add(self, a: int, b: int, cb: Any) -> int:
                return a + b

        up = self.link(Service)
        d = up.call("add", 1, 2, timeout=5)
        self.accept()
        d2 = up.call("add", 3, 4, timeout=5)
        self.links[0].flush()
        said = self.flushWarnings()
        self.assertEqual([w["category"] for w in said], [UpnodeWarning])
        self.assertIn("Service.add() returned 3", said[0]["message"])
        self.assertIn("@upnode.replies", said[0]["message"])
        self.assertEqual(said[0]["filename"], __file__.replace(".pyc", ".py"))
        self.clock.advance(5)
        self.failureResultOf(d, UpTimeout)
        self.failureResultOf(d2, UpTimeout)

    def test_callbackReturnIsNotSaid(self) -> None:
        """
        A callback we passed (not an exposed method) may return anything.
        """
        up = self.link({"echo": lambda v, cb: cb(v)})
        self.accept()
        seen: List[Any] = []
        up(lambda remote: remote.echo(1, lambda v: seen.append(v) or v))
        self.links[0].flush()
        self.assertEqual(seen, [1])
        self.assertEqual(self.flushWarnings(), [])

    def test_repliesReadErrorFirst(self) -> None:
        """
        @replies speaks Node's error-first convention; up.call reads it with
        errorFirst=True (the decision: the wire cannot tell it apart from a
        Node method's cb(null, 3)).
        """

        @replies
        def three() -> int:
            return 3

        up = self.link({"three": three})
        raw = up.call("three")
        read = up.call("three", errorFirst=True)
        self.accept().flush()
        self.assertEqual(self.successResultOf(raw), (None, 3))
        self.assertEqual(self.successResultOf(read), 3)


class MillisecondsTests(SynchronousTestCase):
    def test_integerThatLooksLikeMilliseconds(self) -> None:
        """
        Node's C{reconnect: 100} (ms) would wait 100 s here: a warning at
        the caller's line says so; a float, or a small integer, is seconds
        said plainly.
        """
        clock = Clock()
        up = upnode.upnode(reactor=clock).connect(FakeEndpoint(clock), {"reconnect": 100}, ping=0)
        up.close()
        said = self.flushWarnings()
        self.assertEqual([w["category"] for w in said], [UpnodeWarning])
        self.assertIn("reconnect=100 is taken as 100 seconds", said[0]["message"])
        self.assertIn("write 0.1", said[0]["message"])
        self.assertEqual(said[0]["filename"], __file__.replace(".pyc", ".py"))
        for fine in ({"reconnect": 100.0}, {"reconnect": 5}, {"timeout": 99}):
            upnode.upnode(reactor=clock).connect(FakeEndpoint(clock), fine, ping=0).close()
        self.assertEqual(self.flushWarnings(), [])
        upnode.listen(RecordingEndpoint(), ping=500, reactor=clock)
        self.assertEqual(len(self.flushWarnings()), 1)
        self.assertRaises(ValueError, upnode.connect, FakeEndpoint(clock), reconnect=1000, reactor=clock)


class ErrorTypeTests(SynchronousTestCase):
    def test_bases(self) -> None:
        self.assertTrue(issubclass(UpTimeout, TimeoutError))
        self.assertTrue(issubclass(UpTimeout, upnode.UpnodeError))
        self.assertTrue(issubclass(ConnectionLostError, ConnectionError))
        self.assertTrue(issubclass(ConnectionLostError, upnode.UpnodeError))
        self.assertEqual(str(UpTimeout("no reply")), "no reply")
