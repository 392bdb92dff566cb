"""
Defects found by the differential run against Node's dnode-protocol 0.2.2:
each test here failed before its fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Dict, List

from twisted.trial.unittest import SynchronousTestCase

from upnode._scrub import encodeRequest

ROOT_DEPTH = 64


def _counter() -> Callable[[Any], int]:
    ids: Dict[int, int] = {}

    def callbackId(f: Any) -> int:
        return ids.setdefault(id(f), len(ids))

    return callbackId


def _encode(method: Any, arguments: Any, maxDepth: int = ROOT_DEPTH) -> Dict[str, Any]:
    return json.loads(encodeRequest(method, arguments, _counter(), maxDepth))


def _inChild(code: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{code} in a fresh interpreter: a crash there must not take the
    test run down with it.
    """
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


class TupleRecursionTests(SynchronousTestCase):
    """
    orjson keeps no count of tuples: a value nesting through tuples must
    never reach it.
    """

    CASES = {
        "cycle through a tuple": "v = []; v.append((v,)); args = (v,)",
        "cycle through a tuple, a callback beside": "v = []; v.append((v,)); args = (v, lambda: None)",
        "cycle through a tuple in a dict": "v = {}; v['a'] = (v,); args = [v]",
        "tuple 100,000 deep": "v = ()\nfor i in range(100000): v = (v,)\nargs = (v,)",
        "tuple 100,000 deep, a callback beside": "v = ()\nfor i in range(100000): v = (v,)\nargs = (v, print)",
        "tuple 100,000 deep as a reply": "v = ()\nfor i in range(100000): v = (v,)\nargs = (v,); method = 3",
    }

    def test_neverCrashes(self) -> None:
        for name, setup in self.CASES.items():
            code = (
                "import json\n"
                "from upnode._scrub import encodeRequest\n"
                "method = 'echo'\n"
                f"{setup}\n"
                "try:\n"
                "    line = encodeRequest(method, args, lambda f: 0, 64)\n"
                "    print('sent', line[:200])\n"
                "except ValueError as e:\n"
                "    print('ValueError', e)\n"
            )
            done = _inChild(code)
            self.assertEqual(done.returncode, 0, f"{name}: {done.returncode} {done.stderr[-500:]}")
            if "deep" in name:
                self.assertIn("ValueError", done.stdout, name)

    def test_cycleThroughTupleIsALink(self) -> None:
        v: List[Any] = []
        v.append((v,))
        message = _encode("echo", (v,))
        self.assertEqual(message["arguments"], [[["[Circular]"]]])
        self.assertEqual(message["links"], [{"from": ["0"], "to": ["0", "0", "0"]}])

    def test_shallowTuplesStillSent(self) -> None:
        message = _encode("echo", ((1, (2, 3)), [(4,)], {"a": (5,)}))
        self.assertEqual(message["arguments"], [[1, [2, 3]], [[4]], {"a": [5]}])


class SurrogateMethodTests(SynchronousTestCase):
    """
    A method name with a lone surrogate is sent escaped, as JSON.stringify
    writes it, wherever the callbacks are.
    """

    def test_topLevelCallback(self) -> None:
        line = encodeRequest("m\ud800", [1, print], _counter(), ROOT_DEPTH)
        message = json.loads(line)
        self.assertEqual(message["method"], "m\ud800")
        self.assertEqual(message["callbacks"], {"0": ["1"]})

    def test_twoTopLevelCallbacks(self) -> None:
        message = json.loads(encodeRequest("\udfff", [print, len], _counter(), ROOT_DEPTH))
        self.assertEqual(message["method"], "\udfff")
        self.assertEqual(message["callbacks"], {"0": ["0"], "1": ["1"]})


class NumberTextTests(SynchronousTestCase):
    """
    Numbers are written as JavaScript writes them where the text would
    otherwise mean something else to a JS peer.
    """

    def test_negativeZero(self) -> None:
        for method in ("echo", 3):
            for arguments in ([-0.0], [{"a": [-0.0]}], [-0.0, print], [{"x": -0.0, "f": print}]):
                line = encodeRequest(method, arguments, _counter(), ROOT_DEPTH)
                self.assertNotIn(b"-0", line, (method, arguments))
        # Other numbers that merely start like it are untouched.
        self.assertIn(b"-0.05", encodeRequest("echo", [-0.05], _counter(), ROOT_DEPTH))

    def test_integerBeyondDouble(self) -> None:
        huge = 10**400
        for arguments in ([huge], [-huge, print], [{"a": huge, "f": print}]):
            message = _encode("echo", arguments)
            self.assertNotIn(str(huge)[:20], json.dumps(message))
        self.assertEqual(_encode("echo", [huge, -huge])["arguments"], [None, None])
        # The last integer a double holds (rounded) is still sent as digits.
        self.assertEqual(_encode("echo", [2**1024 - 2**970 - 1])["arguments"], [2**1024 - 2**970 - 1])
        self.assertEqual(_encode("echo", [2**1024 - 2**970])["arguments"], [None])


class BigIntegerTests(SynchronousTestCase):
    """
    Integers beyond 64 bits, and below them, come back as the same integers
    (orjson would parse them as doubles).
    """

    def test_roundTrip(self) -> None:
        from upnode._json import decodeLine

        for value in (2**64 + 1, 2**64, -(2**63) - 1, 10**300, -(10**300), 2**64 - 1, -(2**63)):
            line = encodeRequest("echo", [value, {"x": [value]}], _counter(), ROOT_DEPTH)
            message = decodeLine(line.rstrip(b"\n"), ROOT_DEPTH)
            self.assertEqual(message["arguments"], [value, {"x": [value]}], value)
            self.assertIs(type(message["arguments"][0]), int, value)

    def test_digitsInStringsAndFloats(self) -> None:
        from upnode._json import decodeLine

        text = b'{"method":"m","arguments":["12345678901234567890123",0.30000000000000004,1.5e300]}'
        self.assertEqual(
            decodeLine(text, ROOT_DEPTH)["arguments"],
            ["12345678901234567890123", 0.30000000000000004, 1.5e300],
        )


def _unscrub(message: Dict[str, Any]) -> List[Any]:
    from upnode._limits import Limits
    from upnode._scrub import unscrub

    return unscrub(message, lambda callbackId: ("cb", callbackId), Limits())


class NegativeIndexTests(SynchronousTestCase):
    """
    A path index is a non-negative integer: -1 is not the last element.
    """

    def test_callbackPath(self) -> None:
        from upnode.errors import RejectedMessage

        for arguments in ([1, 2], []):
            for path in ([-1], ["-1"], [0, -1]):
                message = {
                    "method": "m",
                    "arguments": [list(arguments)] if len(path) > 1 else list(arguments),
                }
                message["callbacks"] = {"0": path}
                self.assertRaises(RejectedMessage, _unscrub, message)

    def test_linkPath(self) -> None:
        from upnode.errors import RejectedMessage

        for link in ({"from": [-1], "to": ["0"]}, {"from": ["0"], "to": [-1]}, {"from": [], "to": [-1]}):
            message = {"method": "m", "arguments": [1, 2], "links": [link]}
            self.assertRaises(RejectedMessage, _unscrub, message)
        self.assertRaises(
            RejectedMessage, _unscrub, {"method": "m", "arguments": [], "links": [{"from": [], "to": [-1]}]}
        )


class CreatedElementTests(SynchronousTestCase):
    """
    As Node's traverse.set does, a callback or link may create the last
    element of its path, in a container that exists; nothing more.
    """

    def test_protocolMarkdownLinks(self) -> None:
        # doc/protocol.markdown: a link from [0] to [0,"b",1].
        message = {
            "method": 12,
            "arguments": [{"a": 5, "b": [{"c": 5}]}],
            "callbacks": {},
            "links": [{"from": ["0"], "to": ["0", "b", "1"]}],
        }
        arguments = _unscrub(message)
        self.assertIs(arguments[0]["b"][1], arguments[0])

    def test_callbackLeftUndefined(self) -> None:
        self.assertEqual(_unscrub({"method": "m", "arguments": [], "callbacks": {"3": ["0"]}}), [("cb", 3)])
        self.assertEqual(
            _unscrub({"method": "m", "arguments": [{}], "callbacks": {"3": ["0", "f"]}}), [{"f": ("cb", 3)}]
        )
        self.assertEqual(
            _unscrub({"method": "m", "arguments": [1, {}], "callbacks": {"3": ["2"], "4": ["1", "g"]}}),
            [1, {"g": ("cb", 4)}, ("cb", 3)],
        )
        # Every place is checked before any is set: the second callback's
        # place does not exist yet when the first is checked.
        from upnode.errors import RejectedMessage

        self.assertRaises(
            RejectedMessage,
            _unscrub,
            {"method": "m", "arguments": [1], "callbacks": {"3": ["1"], "4": ["2"]}},
        )

    def test_skipSet(self) -> None:
        # dnode-protocol's test/scrub.js, "skip set".
        message = {
            "method": 0,
            "arguments": [{"x": 33}, "[Function]"],
            "callbacks": {"0": ["1"]},
            "links": [{"from": ["0", "x"], "to": ["2"]}],
        }
        self.assertEqual(_unscrub(message)[2], 33)

    def test_stillBounded(self) -> None:
        from upnode.errors import RejectedMessage

        refused = [
            {"arguments": [], "callbacks": {"0": ["1"]}},  # past the end
            {"arguments": [], "callbacks": {"0": ["0", "x"]}},  # inside what does not exist
            {"arguments": [{}], "callbacks": {"0": ["0", "a", "b"]}},
            {"arguments": [1], "callbacks": {"0": ["0", "0"]}},  # inside a scalar
            {"arguments": [{}], "callbacks": {"0": ["0", "__proto__"]}},
            {"arguments": [{}], "callbacks": {"0": ["0", "constructor"]}},
            {"arguments": [{}], "links": [{"from": ["0"], "to": ["0", "prototype"]}]},
            {"arguments": [{}], "links": [{"from": ["0", "x"], "to": ["1"]}]},  # a source that does not exist
            {"arguments": [[]], "links": [{"from": ["0"], "to": ["0", "1"]}]},
        ]
        for message in refused:
            self.assertRaises(RejectedMessage, _unscrub, dict(message, method="m"))


def _sentBy(cons: Any, before: Callable[[Any], None] = lambda proto: None) -> List[Any]:
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from upnode._protocol import DnodeProtocol

    proto = DnodeProtocol(cons, clock=Clock())
    before(proto)
    transport = StringTransport()
    proto.makeConnection(transport)
    return [json.loads(x) for x in transport.value().splitlines()]


class ExposedObjectTests(SynchronousTestCase):
    def test_selfReference(self) -> None:
        """
        An exposed dict that holds itself is sent as Node sends it: the
        member is C{"[Circular]"}, with a link from the object itself.
        """
        me: Dict[str, Any] = {"n": 1}
        me["me"] = me
        (methods,) = _sentBy(me)
        self.assertEqual(methods["arguments"], [{"n": 1, "me": "[Circular]"}])
        self.assertEqual(methods["links"], [{"from": ["0"], "to": ["0", "me"]}])

    def test_selfReferenceDeeper(self) -> None:
        me: Dict[str, Any] = {"f": print}
        me["inner"] = {"up": me}
        (methods,) = _sentBy(me)
        self.assertEqual(methods["arguments"], [{"f": "[Function]", "inner": {"up": "[Circular]"}}])
        self.assertEqual(methods["links"], [{"from": ["0"], "to": ["0", "inner", "up"]}])
        self.assertEqual(methods["callbacks"], {"0": ["0", "f"]})

    def test_underscoreKeysOfADict(self) -> None:
        """
        A dict's keys are all shown, C{_}-prefixed ones too (dnode's
        C{_id.js}); an object's private names are not.
        """
        from upnode._expose import exposedMembers

        self.assertEqual(exposedMembers({"_id": 1337, "x": 1, 5: "no"}), {"_id": 1337, "x": 1})

        class Obj:
            def __init__(self) -> None:
                self._id = 5
                self.x = 1

            def _hidden(self) -> None:
                pass

        self.assertEqual(exposedMembers(Obj()), {"x": 1})
        (methods,) = _sentBy({"_id": 1337})
        self.assertEqual(methods["arguments"][0]["_id"], 1337)


class ConnectionTests(SynchronousTestCase):
    def test_everyConnectionHasAnId(self) -> None:
        from upnode._protocol import DnodeProtocol

        ids = {DnodeProtocol().id for _ in range(100)}
        self.assertEqual(len(ids), 100)
        for connId in ids:
            self.assertIsInstance(connId, str)
            self.assertTrue(connId)

    def test_localBeforeMethods(self) -> None:
        """
        C{local} fires before C{methods} is sent, with the object and the
        connection, so a handler may add members (dnode's middleware.js).
        """
        heard: List[Any] = []

        def onLocal(local: Any, conn: Any) -> None:
            heard.append(conn)
            local["moo"] = True

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            return {"baz": 42}

        holder: List[Any] = []
        (methods,) = _sentBy(cons, lambda proto: (holder.append(proto), proto.on("local", onLocal)))
        self.assertEqual(methods["arguments"], [{"baz": 42, "moo": True}])
        self.assertEqual(heard, holder)

    def test_factoryHearsLocal(self) -> None:
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from upnode.dnode import DnodeFactory

        factory = DnodeFactory(lambda remote, conn: {"baz": 42})
        heard: List[Any] = []
        factory.on("local", lambda local, conn: (heard.append(conn), local.__setitem__("zing", 1)))
        conn = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        conn.makeConnection(transport)
        self.assertEqual(heard, [conn])
        self.assertEqual(json.loads(transport.value().splitlines()[0])["arguments"], [{"baz": 42, "zing": 1}])
