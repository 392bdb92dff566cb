"""
A differential test of our encoder and decoder against Node's
dnode-protocol 0.2.2 (upnode/test/interop/scrubdiff.js).

Random values (a seeded generator: nested data, unicode with astral
characters and lone surrogates, -0, NaN, the infinities, big and negative
integers, empty containers, callables at several depths and the same one
several times, cycles through lists, dicts and tuples, shared references)
are described by a spec that both sides build.  Each is encoded by Node's
scrubber and by L{encodeRequest}, and the two lines are compared after
parsing.  Only the differences in L{BENIGN} are allowed:

 - C{number text}: the same double written differently (C{1e+21} and
   C{1e21}, C{1.0} and C{1}, C{0.0} for -0 where Node writes C{0}, or the
   exact digits of an integer beyond 2**53 where Node writes the double
   nearest to it);
 - C{string escaping}: the same string escaped differently (we escape every
   non-ASCII character of a line holding a lone surrogate);
 - C{leading space}: a line the standard library wrote starts with a space,
   which tells our reader to parse it exactly (see L{upnode._json});
 - C{key order}: JavaScript lists integer-like keys first, and the links
   and callback ids follow the order of the walk;
 - C{callback id numbering}: the same places, numbered in another order;
 - C{function id and link}: the same function met twice in one message is
   one id and a link for us, two ids for Node;
 - C{shared reference as link}: a container met twice (not a cycle) sent
   as a link where Node copies it, so that a shared structure is never
   expanded (both lines decode to values that unfold to the same trees).

The reverse runs too: Node's line is decoded by us and encoded again, and
Node decodes both its own line and ours, which must give the same value
graph.

Set C{UPNODE_DIFF_SEED} to replay a run, C{UPNODE_DIFF_CASES} for more cases.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.trial.unittest import TestCase

from upnode._json import decodeLine
from upnode._limits import Limits
from upnode._scrub import encodeRequest, unscrub

from .nodepeer import HERE, requireNode

CASES = int(os.environ.get("UPNODE_DIFF_CASES", "2500"))

BENIGN = (
    "number text",
    "string escaping",
    "leading space",
    "key order",
    "callback id numbering",
    "function id and link",
    "shared reference as link",
)

_ALPHABET = (
    ["a", "b", "z", "0", "1", "42", "$", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f"]
    + ["é", "ß", "Ω", "中", "\u2028", "\u2029", "\ufeff", "\uffff"]
    + ["😀", "\U0001f600", "𝄞", "\U0010ffff"]
    + ["\ud800", "\udbff", "\udc00", "\udfff"]
)
_KEYS = [
    "a",
    "b",
    "id",
    "_id",
    "1",
    "0",
    "10",
    "2",
    "-1",
    "01",
    "$",
    "",
    "é",
    "😀",
    "\ud83d",
    "constructor",
    "length",
]


class Generator:
    """
    Random argument specs (see scrubdiff.js for the form).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def case(self) -> Tuple[Any, Dict[str, Any]]:
        self.nextId = 0
        self.functions = self.rng.randint(0, 3)
        self.built: List[Tuple[int, str]] = []  # containers made so far
        self.ancestors: List[Tuple[int, str]] = []
        method = self.method()
        kind = self.rng.choice(["list", "list", "tuple"])
        args = self.container(kind, 0, self.rng.randint(0, 4))
        return method, args

    def method(self) -> Any:
        r = self.rng.random()
        if r < 0.2:
            return self.rng.randint(0, 2**31)
        if r < 0.3:
            return self.string()
        return self.rng.choice(["echo", "methods", "m", "é", "\ud800x", "😀"])

    def string(self) -> str:
        return "".join(self.rng.choice(_ALPHABET) for _ in range(self.rng.randint(0, 6)))

    def number(self) -> Any:
        r = self.rng.random()
        if r < 0.1:
            return {"$": self.rng.choice(["nan", "inf", "-inf", "-0"])}
        if r < 0.35:
            return self.rng.choice([0, 1, -1, 7, -(2**31), 2**31, 2**53 - 1, -(2**53) + 1])
        if r < 0.55:
            exponent = self.rng.choice([54, 60, 63, 64, 65, 80, 200, 1000, 1023, 1024, 1100])
            value = self.rng.randint(2 ** (exponent - 1), 2**exponent)
            return value if self.rng.random() < 0.5 else -value
        if r < 0.65:
            return self.rng.choice(
                [0.0, 1.0, -1.0, 0.5, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
            )
        return self.rng.uniform(-1e6, 1e6) * 10 ** self.rng.randint(-30, 30)

    def scalar(self) -> Any:
        r = self.rng.random()
        if r < 0.35:
            return self.string()
        if r < 0.75:
            return self.number()
        return self.rng.choice([True, False, None])

    def value(self, depth: int) -> Any:
        r = self.rng.random()
        if self.functions and r < 0.12:
            return {"$": "fn", "id": self.rng.randrange(self.functions)}
        if r < 0.2 and self.built:
            # A cycle (an ancestor) or a shared reference (any other).
            pool = self.ancestors if self.ancestors and self.rng.random() < 0.7 else self.built
            candidates = [c for c in pool if c[1] != "tuple"]
            if candidates:
                return {"$": "ref", "id": self.rng.choice(candidates)[0]}
        if depth < 5 and r < 0.5:
            return self.container(
                self.rng.choice(["list", "dict", "tuple"]), depth + 1, self.rng.randint(0, 4)
            )
        return self.scalar()

    def container(self, kind: str, depth: int, size: int) -> Dict[str, Any]:
        cid = self.nextId
        self.nextId += 1
        self.built.append((cid, kind))
        self.ancestors.append((cid, kind))
        if kind == "dict":
            # Pairs, so that both sides build them in this order (a
            # JavaScript object lists integer-like keys first).
            items: Any = []
            keys = set()
            for _ in range(size):
                key = self.rng.choice(_KEYS) if self.rng.random() < 0.8 else self.string()
                if key not in keys and key != "__proto__":
                    keys.add(key)
                    items.append([key, self.value(depth)])
        else:
            items = [self.value(depth) for _ in range(size)]
        self.ancestors.pop()
        return {"$": kind, "id": cid, "items": items}


def build(spec: Any) -> Any:
    """
    The Python value a spec describes.
    """
    containers: Dict[int, Any] = {}
    functions: Dict[int, Callable[..., None]] = {}

    def go(s: Any) -> Any:
        if not isinstance(s, dict):
            return s
        kind = s["$"]
        if kind == "nan":
            return math.nan
        if kind in ("inf", "-inf"):
            return math.inf if kind == "inf" else -math.inf
        if kind == "-0":
            return -0.0
        if kind == "fn":
            return functions.setdefault(s["id"], _function(s["id"]))
        if kind == "ref":
            return containers[s["id"]]
        if kind == "list":
            xs: List[Any] = []
            containers[s["id"]] = xs
            xs.extend(go(item) for item in s["items"])
            return xs
        if kind == "dict":
            d: Dict[str, Any] = {}
            containers[s["id"]] = d
            for k, v in s["items"]:
                d[k] = go(v)
            return d
        # A tuple can't be a ref's target: built from its items.
        return tuple(go(item) for item in s["items"])

    return go(spec)


def _function(n: int) -> Callable[..., None]:
    def f(*args: Any) -> None:
        pass

    f.__name__ = f"f{n}"
    return f


def _proxies() -> Callable[[int], Any]:
    """
    A function for each callback id, the same one for the same id.
    """
    made: Dict[int, Any] = {}
    return lambda cid: made.setdefault(cid, _function(cid))


def _ids() -> Callable[[Any], int]:
    table: Dict[int, int] = {}
    keep: List[Any] = []

    def callbackId(f: Any) -> int:
        keep.append(f)
        return table.setdefault(id(f), len(table))

    return callbackId


def classify(ours: bytes, theirs: str) -> Tuple[Optional[str], List[str]]:
    """
    Compare our line with Node's: (what differs beyond the benign, or None;
    the benign differences found).
    """
    found: List[str] = []
    if ours.rstrip(b"\n") == theirs.encode("utf-8", "surrogatepass"):
        return None, found
    if ours.startswith(b" "):
        found.append("leading space")
    a = json.loads(ours)
    b = json.loads(theirs)
    if a.get("method") != b.get("method"):
        return f"method {a.get('method')!r} against {b.get('method')!r}", found
    # Our links whose source is a function's place are that function again.
    ourCallbacks = {tuple(p): k for k, p in a["callbacks"].items()}
    ourLinks = []
    for link in a["links"]:
        if tuple(link["from"]) in ourCallbacks:
            found.append("function id and link")
            ourCallbacks[tuple(link["to"])] = "again"
        else:
            ourLinks.append(link)
    theirCallbacks = {tuple(p): k for k, p in b["callbacks"].items()}
    if set(ourCallbacks) != set(theirCallbacks):
        # A function inside a shared container: Node copies the container
        # and gives the function a place in each copy.
        if _sameGraph(*_decodeBoth(a, b), [], []):
            found.append("shared reference as link")
            return None, found
        return f"callback places {sorted(ourCallbacks)} against {sorted(theirCallbacks)}", found
    if {p: k for p, k in ourCallbacks.items() if k != "again"} != {
        p: k for p, k in theirCallbacks.items() if p in ourCallbacks and ourCallbacks[p] != "again"
    }:
        found.append("callback id numbering")
    ourPairs = [(tuple(x["from"]), tuple(x["to"])) for x in ourLinks]
    theirPairs = [(tuple(x["from"]), tuple(x["to"])) for x in b["links"]]
    if sorted(ourPairs) != sorted(theirPairs):
        # We link a shared container where Node copies it (and copies the
        # links inside it): the same graph, if both decode to values that
        # unfold to the same trees, with the same cycles.
        if _sameGraph(*_decodeBoth(a, b), [], []):
            found.append("shared reference as link")
            return None, found
        return f"links {ourPairs} against {theirPairs}", found
    elif ourPairs != theirPairs:
        found.append("key order")
    why = _compare(a["arguments"], b["arguments"], "", found)
    if why:
        return why, found
    if (
        not found
        or found == ["leading space"]
        and ours[1:].rstrip(b"\n") != theirs.encode("utf-8", "surrogatepass")
    ):
        found.append("string escaping")
    return None, found


_FUNCTION = object()


def _anyFunction(callbackId: int) -> Any:
    return _FUNCTION  # ids may differ; where the functions are is compared


def _decodeBoth(a: Dict[str, Any], b: Dict[str, Any]) -> Tuple[Any, Any]:
    limits = Limits(maxLinks=10_000, maxCallbacks=10_000)
    return unscrub(a, _anyFunction, limits), unscrub(b, _anyFunction, limits)


def _sameGraph(a: Any, b: Any, aboveA: List[Any], aboveB: List[Any]) -> bool:
    """
    Whether two decoded values unfold to the same tree: shared containers
    are compared at each place, cycles by which ancestor they return to.
    """
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        # (A dict that holds callbacks decodes to a dict subclass.)
        if isinstance(a, dict) != isinstance(b, dict) or isinstance(a, list) != isinstance(b, list):
            return False
        upA = next((i for i, x in enumerate(reversed(aboveA)) if x is a), None)
        upB = next((i for i, x in enumerate(reversed(aboveB)) if x is b), None)
        if upA is not None or upB is not None:
            return upA == upB
        aboveA.append(a)
        aboveB.append(b)
        try:
            if isinstance(a, dict):
                return set(a) == set(b) and all(_sameGraph(a[k], b[k], aboveA, aboveB) for k in a)
            return len(a) == len(b) and all(
                _sameGraph(x, y, aboveA, aboveB) for x, y in zip(a, b, strict=True)
            )
        finally:
            aboveA.pop()
            aboveB.pop()
    return _compare(a, b, "", []) is None


def _compare(a: Any, b: Any, path: str, found: List[str]) -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} against {sorted(b)}"
        if list(a) != list(b):
            found.append("key order")
        for k in a:
            why = _compare(a[k], b[k], f"{path}/{k}", found)
            if why:
                return why
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            why = _compare(x, y, f"{path}/{i}", found)
            if why:
                return why
        return None
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and type(a) is not bool and type(b) is not bool:
        if a == b and type(a) is type(b):
            return None
        try:
            if float(a) == float(b):
                found.append("number text")
                return None
        except OverflowError:
            pass
        return f"{path}: number {a!r:.40} against {b!r:.40}"
    if type(a) is type(b) and a == b:
        return None
    return f"{path}: {a!r:.60} against {b!r:.60}"


class DifferentialTests(TestCase):
    timeout = 120

    def test_againstDnodeProtocol(self) -> None:
        modules = requireNode()
        seed = int(os.environ.get("UPNODE_DIFF_SEED") or random.SystemRandom().randrange(2**32))
        started = time.monotonic()
        rng = random.Random(seed)
        generator = Generator(rng)
        cases = [generator.case() for _ in range(CASES)]

        # Node's lines.
        theirs = self._node(
            modules, [{"op": "scrub", "case": i, "method": m, "spec": s} for i, (m, s) in enumerate(cases)]
        )
        problems: List[str] = []
        benign: Counter[str] = Counter()
        checks = []
        limits = Limits()
        for i, (method, spec) in enumerate(cases):
            answer = theirs[i]
            if "error" in answer:
                problems.append(f"case {i}: Node failed: {answer['error'][:300]}")
                continue
            try:
                ours = encodeRequest(method, build(spec), _ids(), limits.maxDepth)
            except Exception as e:
                problems.append(f"case {i}: we failed to encode: {e!r}")
                continue
            why, found = classify(ours, answer["line"])
            benign.update(set(found))
            if why:
                problems.append(
                    f"case {i}: {why}\n  spec {json.dumps(spec)[:400]}\n  ours {ours[:400]!r}\n  Node {answer['line'][:400]}"
                )
            # The reverse: Node's line through our decoder and encoder.
            try:
                message = decodeLine(answer["line"].encode("utf-8"), limits.maxDepth)
                arguments = unscrub(message, _proxies(), limits)
                again = encodeRequest(message["method"], arguments, _ids(), limits.maxDepth)
            except Exception as e:
                problems.append(f"case {i}: we failed on Node's line {answer['line'][:300]}: {e!r}")
                continue
            checks.append(
                {"op": "check", "case": i, "method": method, "spec": spec, "line": again.decode("utf-8")}
            )
        for answer in self._node(modules, checks).values():
            if not answer.get("ok"):
                problems.append(
                    f"case {answer['case']}: Node decodes our re-encoding differently: {answer.get('why') or answer.get('error')}"
                )
        elapsed = time.monotonic() - started
        report = ", ".join(f"{name}: {benign[name]}" for name in BENIGN)
        print(
            f"\ndifferential: {len(cases)} cases, {len(checks)} reverse checks, seed {seed}, {elapsed:.1f} s; benign: {report}"
        )
        if problems:
            self.fail(
                f"seed {seed} (UPNODE_DIFF_SEED={seed} replays it): {len(problems)} cases differ:\n"
                + "\n".join(problems[:15])
            )

    def _node(self, modules: Any, requests: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
        text = "".join(json.dumps(r) + "\n" for r in requests)
        done = subprocess.run(
            [shutil.which("node") or "node", str(HERE / "scrubdiff.js")],
            input=text.encode("ascii"),
            capture_output=True,
            env=dict(os.environ, NODE_PATH=str(modules)),
            timeout=100,
            check=False,
        )
        if done.returncode:
            self.fail(f"scrubdiff.js failed: {done.stderr.decode()[-2000:]}")
        answers = [json.loads(line) for line in done.stdout.decode("utf-8").split("\n") if line]
        return {a["case"]: a for a in answers}
