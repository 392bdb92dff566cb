"""
Hypothesis as a fuzzer over the decoder and the dispatcher: whatever
arrives, nothing raises out of the protocol, nothing private is reached, and
the outcome is one of close, reject or ok.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from upnode import ProtocolError, RejectedMessage

from .test_protocol import Harness

names = st.sampled_from(["echo", "record", "boom", "answer", "_private", "__init__", "__class__", "methods", "cull", "nope"])
ids = st.integers(min_value=-3, max_value=12) | st.booleans() | st.none() | st.floats(allow_nan=False)
pathElements = st.integers(min_value=-2, max_value=4) | st.sampled_from(
    ["0", "1", "2", "a", "", "01", "-1", "-0", "x", "__proto__", "constructor", "prototype"]
)
paths = st.lists(pathElements, max_size=4) | st.text(max_size=3) | st.none()
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "method": names | ids,
        "arguments": st.lists(values | st.just("[Function]"), max_size=4) | values,
        "callbacks": st.dictionaries(st.sampled_from(["0", "1", "2", "7", "x", "-1", "01"]), paths, max_size=3) | values,
        "links": st.lists(st.fixed_dictionaries({}, optional={"from": paths, "to": paths}) | values, max_size=3)
        | values,
    },
)


class FuzzTests(SynchronousTestCase):
    def check(self, data: bytes) -> None:
        h = Harness()
        h.sent()
        h.proto.dataReceived(data)  # must never raise
        self.assertNotIn("_private", [c[0] for c in h.target.calls])
        for fail in h.fails:
            self.assertIsInstance(fail, (ProtocolError, RejectedMessage))
        if h.transport.disconnecting:
            self.assertIsInstance(h.fails[-1], ProtocolError)
        self.flushLoggedErrors()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(messages, min_size=1, max_size=4))
    def test_messages(self, batch: list) -> None:
        self.check(b"".join(json.dumps(m).encode() + b"\n" for m in batch))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_bytes(self, data: bytes) -> None:
        self.check(data + b"\n")

    @settings(max_examples=200, deadline=None)
    @given(values)
    def test_anyJsonLine(self, value: Any) -> None:
        self.check(json.dumps(value).encode() + b"\n")

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages)
    def test_lineWithLeadingSpace(self, message: Any) -> None:
        # The standard library's parser takes these lines.
        self.check(b" " + json.dumps(message).encode() + b"\n")

    def test_pathsOnNoArguments(self) -> None:
        """
        Negative, missing and created places on an empty arguments list,
        for callbacks and links: each is handled or rejected, none raises.
        """
        for path in ([-1], ["-1"], [0], ["0"], [1], ["0", "x"], [-1, 0], ["__proto__"]):
            for extra in (
                {"callbacks": {"0": path}},
                {"links": [{"from": path, "to": ["0"]}]},
                {"links": [{"from": [], "to": path}]},
            ):
                for arguments in ([], [{}], [[]]):
                    self.check(json.dumps(dict({"method": "record", "arguments": arguments}, **extra)).encode() + b"\n")
