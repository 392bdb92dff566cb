"""
Scrubbing callables out of outgoing arguments and unscrubbing incoming ones.
"""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from typing import Any, Callable, Dict, List

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from upnode import Limits, ProtocolError, RejectedMessage
from upnode._json import decodeLine, encodeLine
from upnode._scrub import encodeRequest, scrub, unscrub


class Ids:
    """
    A callback id table like the protocol's.
    """

    def __init__(self) -> None:
        self.byId: Dict[int, Any] = {}
        self.ids: Dict[Any, int] = {}

    def __call__(self, fn: Callable[..., Any]) -> int:
        if fn not in self.ids:
            self.ids[fn] = len(self.ids)
            self.byId[self.ids[fn]] = fn
        return self.ids[fn]


def roundTrip(arguments: List[Any], limits: Limits = Limits()) -> List[Any]:
    """
    Scrub, encode, decode and unscrub, with callbacks coming back as
    ("cb", id) tuples.
    """
    args, callbacks, links = scrub(arguments, Ids(), limits.maxDepth)
    line = encodeLine({"method": 0, "arguments": args, "callbacks": callbacks, "links": links})
    message = decodeLine(line[:-1], limits.maxDepth)
    return unscrub(message, lambda i: ("cb", i), limits)


class SharedReferenceTests(SynchronousTestCase):
    def test_doublingDagStaysSmall(self) -> None:
        """
        A list holding the same list twice, 40 levels deep (2**40 leaves
        as a tree), is encoded in lines linear in the levels, plain data or
        with callbacks, and decodes back to the same shared structure.
        """
        value: Any = ["leaf"]
        for _ in range(40):
            value = [value, value]
        for arguments in ([value], [value, lambda: None]):
            line = encodeRequest(1 if len(arguments) == 1 else "m", arguments, Ids(), 64)
            self.assertLess(len(line), 10_000)
            message = json.loads(line)
            back = unscrub(message, lambda i: i, Limits(maxLinks=100))
            node = back[0]
            for _ in range(40):
                self.assertIs(node[0], node[1])
                node = node[0]
            self.assertEqual(node, ["leaf"])


class ScrubTests(SynchronousTestCase):
    def test_nodeShape(self) -> None:
        """
        Paths are strings, as Node's traverse writes them, functions are
        placeholders, and every field is present.
        """

        def f() -> None:
            pass

        args, callbacks, links = scrub([1, {"a": f}, [f]], Ids(), 64)
        self.assertEqual(args, [1, {"a": "[Function]"}, ["[Function]"]])
        self.assertEqual(callbacks, {"0": ["1", "a"]})
        self.assertEqual(links, [{"from": ["1", "a"], "to": ["2", "0"]}])

    def test_sameIdAcrossMessages(self) -> None:
        """
        A function sent again keeps its first id.
        """
        ids = Ids()

        def f() -> None:
            pass

        self.assertEqual(scrub([f], ids, 64)[1], {"0": ["0"]})
        self.assertEqual(scrub([1, f], ids, 64)[1], {"0": ["1"]})

    def test_cycleBecomesLink(self) -> None:
        """
        A cyclic argument is sent as a link, never recursed into forever,
        and comes back as a real cycle.
        """
        a: Dict[str, Any] = {"name": "a"}
        a["self"] = a
        args, _, links = scrub([a], Ids(), 64)
        self.assertEqual(args, [{"name": "a", "self": "[Circular]"}])
        self.assertEqual(links, [{"from": ["0"], "to": ["0", "self"]}])
        back = roundTrip([a])
        self.assertIs(back[0]["self"], back[0])

    def test_sharedReference(self) -> None:
        """
        A list referenced twice (not a cycle) is sent once, with a link to
        its other place (Node's traverse copies it: a copy can be
        exponentially larger than a shared structure); a link for a shared
        reference that a peer sends arrives as one object.
        """
        shared = [1, 2]
        args, _, links = scrub([shared, {"x": shared}], Ids(), 64)
        self.assertEqual((args, links), ([[1, 2], {"x": None}], [{"from": ["0"], "to": ["1", "x"]}]))
        line = encodeRequest("m", [shared, {"x": shared}], Ids(), 64)
        self.assertEqual(json.loads(line)["links"], [{"from": ["0"], "to": ["1", "x"]}])
        message = {"arguments": [[1, 2], {"x": "[Circular]"}], "links": [{"from": ["0"], "to": ["1", "x"]}]}
        back = unscrub(message, lambda i: i, Limits())
        self.assertIs(back[0], back[1]["x"])

    def test_nonFiniteFloatsAreNull(self) -> None:
        """
        NaN and the infinities go out as null, never as bare NaN.
        """
        line = encodeLine({"arguments": scrub([math.nan, math.inf, -math.inf, 1.5], Ids(), 64)[0]})
        self.assertEqual(line, b'{"arguments":[null,null,null,1.5]}\n')

    def test_noJsonForm(self) -> None:
        """
        bytes, sets, arbitrary objects and non-string keys raise TypeError.
        """
        for value in [b"x", {1, 2}, object(), {(1, 2): "a"}]:
            self.assertRaises(TypeError, scrub, [value], Ids(), 64)
            self.assertRaises(TypeError, encodeRequest, 0, [value], Ids(), 64)

    def test_keysAsPythonJsonWritesThem(self) -> None:
        args = scrub([{2: "a", True: "b", None: "c", 1.5: "d"}], Ids(), 64)[0]
        self.assertEqual(args, [{"2": "a", "true": "b", "null": "c", "1.5": "d"}])

    def test_depthLimit(self) -> None:
        """
        The message object and its arguments list count as two levels; a
        line exactly maxDepth deep is sent and read, one level more raises.
        """
        nested: Any = []
        for _ in range(61):
            nested = [nested]
        for withCallback in (False, True):  # the C fast path, then the scrub path
            extra = [{"f": len}] if withCallback else []
            line = encodeRequest(0, [nested] + extra, Ids(), 64)  # 2 + 62 levels
            self.assertEqual(decodeLine(line[:-1], 64)["method"], 0)
            self.assertRaises(ValueError, encodeRequest, 0, [[nested]] + extra, Ids(), 64)
            self.assertRaises(ProtocolError, decodeLine, line[:-1], 63)

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate goes out escaped, as Node writes it, and comes back.
        """
        line = encodeLine(["\ud800é"])
        self.assertEqual(line, b' ["\\ud800\\u00e9"]\n')
        self.assertEqual(decodeLine(line[:-1], 64), ["\ud800é"])
        self.assertEqual(encodeLine(["é"]), '["é"]\n'.encode())

    def test_integersBeyond64Bits(self) -> None:
        """
        Integers too big for orjson are still written exactly, on a line
        marked with a leading space, and read back exactly; in a line
        without the mark (as a JavaScript peer writes), they become floats,
        as JavaScript reads them.
        """
        self.assertEqual(encodeLine([2**70, -(2**64)]), b" [1180591620717411303424,-18446744073709551616]\n")
        self.assertEqual(decodeLine(encodeLine([2**70, -(2**64)])[:-1], 64), [2**70, -(2**64)])
        self.assertEqual(encodeRequest(0, [2**70], Ids(), 64)[:51], b' {"method":0,"arguments":[1180591620717411303424],"')
        self.assertEqual(decodeLine(b"[1180591620717411303424,18446744073709551615]", 64), [2.0**70, 2**64 - 1])

    def test_enumsAndUuidsBothWays(self) -> None:
        """
        Enum members go out as their values and UUIDs as strings, the same on
        the one-call path as through scrub (a nested callable forces the
        latter); datetimes and other objects have no JSON form on either.
        """

        class Colour(enum.Enum):
            RED = "red"

        ident = uuid.UUID(int=1)
        fast = json.loads(encodeRequest(0, [Colour.RED, ident], Ids(), 64))
        slow = json.loads(encodeRequest(0, [Colour.RED, ident, {"fn": len}], Ids(), 64))
        self.assertEqual(fast["arguments"], ["red", str(ident)])
        self.assertEqual(slow["arguments"][:2], ["red", str(ident)])
        for value in [datetime.datetime(2026, 1, 1), object()]:
            self.assertRaises(TypeError, encodeRequest, 0, [value], Ids(), 64)
            self.assertRaises(TypeError, encodeRequest, 0, [value, {"fn": len}], Ids(), 64)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


class RoundTripProperties(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(json_values, max_size=5))
    def test_data(self, arguments: List[Any]) -> None:
        """
        Plain data survives the round trip unchanged.
        """
        self.assertEqual(roundTrip(arguments), arguments)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(json_values | st.just(len) | st.just(print) | st.floats(), max_size=6))
    def test_fastPathMatchesScrub(self, arguments: List[Any]) -> None:
        """
        The one-C-call encoding of plain data with top-level callbacks says
        exactly what the general scrub path says.
        """
        fast = json.loads(encodeRequest(3, arguments, Ids(), 64))
        args, callbacks, links = scrub(arguments, Ids(), 64)
        slow = json.loads(encodeLine({"method": 3, "arguments": args, "callbacks": callbacks, "links": links}))
        self.assertEqual(fast, slow)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(json_values, max_size=4), st.data())
    def test_callbacksAndCycles(self, arguments: List[Any], data: st.DataObject) -> None:
        """
        Callables placed anywhere come back as callbacks at the same places,
        and a cycle added anywhere comes back as a cycle.
        """

        def fn() -> None:
            pass

        arguments.append({"fn": fn, "again": fn, "items": [fn]})
        holder: Dict[str, Any] = {"data": arguments}
        holder["loop"] = holder
        arguments.append(holder)
        back = roundTrip(arguments)
        self.assertEqual(back[-2]["fn"], ("cb", 0))
        self.assertIs(back[-2]["again"], back[-2]["fn"])
        self.assertEqual(back[-2]["items"], [("cb", 0)])
        self.assertIs(back[-1]["loop"], back[-1])
        self.assertIs(back[-1]["data"], back)
        self.assertEqual(back[:-2], arguments[:-2])


class UnscrubRejectionTests(SynchronousTestCase):
    """
    Every malformed part of a message is rejected before anything is built.
    """

    def assertRejected(self, message: Dict[str, Any], limits: Limits = Limits()) -> None:
        made: List[int] = []
        self.assertRaises(RejectedMessage, unscrub, message, made.append, limits)

    def test_argumentsNotList(self) -> None:
        self.assertRejected({"arguments": {"0": 1}})

    def test_callbacksNotObject(self) -> None:
        self.assertRejected({"arguments": [1], "callbacks": [["0"]]})

    def test_callbackIdNotDecimal(self) -> None:
        for key in ["x", "-1", "01", "1.0", "1e3", " 1", "12abc", "99999999999999999"]:
            self.assertRejected({"arguments": ["[Function]"], "callbacks": {key: ["0"]}})

    def test_paths(self) -> None:
        for path in [[], "0", ["2"], ["0", "a"], ["x"], [True], [None], ["0", "0", "0"]]:
            self.assertRejected({"arguments": ["[Function]"], "callbacks": {"0": path}})

    def test_pathThroughNonContainer(self) -> None:
        self.assertRejected({"arguments": [5], "callbacks": {"0": ["0", "0"]}})

    def test_pathLengthLimit(self) -> None:
        limits = Limits(maxPathLength=3)
        nested = [[["[Function]"]]]
        unscrub({"arguments": nested, "callbacks": {"0": ["0", "0", "0"]}}, lambda i: i, limits)
        self.assertRejected({"arguments": [nested], "callbacks": {"0": ["0", "0", "0", "0"]}}, limits)

    def test_callbackCountLimit(self) -> None:
        limits = Limits(maxCallbacks=2)
        ok = {"arguments": ["f", "f"], "callbacks": {"0": ["0"], "1": ["1"]}}
        self.assertEqual(unscrub(ok, lambda i: i, limits), [0, 1])
        self.assertRejected(
            {"arguments": ["f"] * 3, "callbacks": {"0": ["0"], "1": ["1"], "2": ["2"]}}, limits
        )

    def test_links(self) -> None:
        for links in [
            "x",
            [1],
            [{"from": ["0"]}],
            [{"from": ["5"], "to": ["0"]}],
            [{"from": ["0"], "to": ["9"]}],
            [{"from": ["0"], "to": []}],
            [{"from": "0", "to": ["1"]}],
        ]:
            self.assertRejected({"arguments": [1, 2], "links": links})

    def test_linkCountLimit(self) -> None:
        limits = Limits(maxLinks=1)
        link = {"from": ["0"], "to": ["1"]}
        self.assertEqual(unscrub({"arguments": [1, 2], "links": [link]}, id, limits), [1, 1])
        self.assertRejected({"arguments": [1, 2], "links": [link, link]}, limits)

    def test_nothingBuiltOnRejection(self) -> None:
        """
        A message with one bad callback creates no callback at all.
        """
        made: List[int] = []
        message = {"arguments": ["f", "g"], "callbacks": {"0": ["0"], "1": ["7"]}}
        self.assertRaises(RejectedMessage, unscrub, message, made.append, Limits())
        self.assertEqual(made, [])

    def test_nothingBuiltForBadLinks(self) -> None:
        """
        Nor does a message whose links are bad: they are checked before any
        callback is put in place.
        """
        for links in [
            "x",
            [{"from": ["9"], "to": ["1", "x"]}],
            [{"from": ["1"], "to": ["0", "y"]}],  # through the callback's place
            [{"from": ["1"], "to": ["7", "x"]}],
        ]:
            made: List[int] = []
            message = {"arguments": ["[Function]", {}], "callbacks": {"3": ["0"]}, "links": links}
            self.assertRaises(RejectedMessage, unscrub, message, made.append, Limits())
            self.assertEqual(made, [], links)

    def test_linkFromACallbackPastTheEnd(self) -> None:
        """
        A link may copy a callback put just past the end of the arguments.
        """
        message = {"arguments": [{}], "callbacks": {"3": ["1"]}, "links": [{"from": ["1"], "to": ["0", "f"]}]}
        self.assertEqual(unscrub(message, lambda i: f"cb{i}", Limits()), [{"f": "cb3"}, "cb3"])


class RemoteObjectTests(SynchronousTestCase):
    def test_objectsHoldingCallbacksAllowAttributes(self) -> None:
        """
        A dict that holds a callback, at any depth, allows obj.name for its
        keys and is still a dict; plain data stays plain.
        """
        message = {
            "arguments": [None, {"beep": "[Function]", "sub": {"deep": "[Function]"}, "n": 1}, {"plain": 2}],
            "callbacks": {"0": ["1", "beep"], "1": ["1", "sub", "deep"]},
        }
        session = unscrub(message, lambda i: ("cb", i), Limits())[1]
        self.assertEqual(session.beep, ("cb", 0))
        self.assertEqual(session.sub.deep, ("cb", 1))
        self.assertEqual(session["n"], 1)
        self.assertIsInstance(session, dict)
        self.assertRaises(AttributeError, getattr, session, "nope")
        one = unscrub({"arguments": [{"beep": "[Function]"}], "callbacks": {"0": ["0", "beep"]}}, lambda i: i, Limits())
        self.assertEqual(one[0].beep, 0)
        plain = unscrub({"arguments": [{"plain": 2}], "callbacks": {}, "links": []}, lambda i: i, Limits())
        self.assertIs(type(plain[0]), dict)
