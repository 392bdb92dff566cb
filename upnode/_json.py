# -*- test-case-name: upnode.test.test_scrub -*-
"""
JSON lines as JavaScript writes and reads them.

orjson does the work (on dnode's messages it encodes about ten times and
decodes three times faster than the standard library); the standard library
handles what orjson refuses but JavaScript allows: strings holding a lone
surrogate and integers beyond 64 bits.  Errors always come from the
standard library, so their wording does not depend on which parser ran
first.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import orjson

from .errors import ProtocolError

# Call as fastDumps(value, option=JSON_OPTIONS).  A TypeError means "no
# plain JSON form": the caller takes the slow way.  With these options that
# includes datetimes, dataclasses and subclasses of the builtins, which orjson
# would otherwise write in forms of its own.  NaN and the infinities are
# written as null, as JavaScript writes them.
JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
LINE_OPTIONS = JSON_OPTIONS | orjson.OPT_APPEND_NEWLINE
fastDumps = orjson.dumps
_fastLoads = orjson.loads

_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
_dumpsAscii = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), allow_nan=False, check_circular=False
).encode


def _refuseConstant(name: str) -> Any:
    # JSON.parse in Node refuses NaN and Infinity; so do we.
    raise ValueError(f"{name} is not JSON")


_loads = json.JSONDecoder(parse_constant=_refuseConstant).decode


def encodeLine(message: Any) -> bytes:
    """
    Serialise an already-scrubbed message to one UTF-8 line with its
    delimiter.  A string holding a lone surrogate has no UTF-8 form; it goes
    out escaped, as Node's C{JSON.stringify} writes it.

    What orjson refuses (those strings, integers beyond 64 bits) is written
    by the standard library, with a space in front: JSON allows it, and it
    tells L{decodeLine} on the other end to parse the line with the standard
    library too, so that such integers arrive as themselves.  (orjson would
    read them as doubles, and only a scan of every line could tell.)
    """
    try:
        return fastDumps(message, option=LINE_OPTIONS)
    except TypeError:
        pass
    text = _dumps(message)
    try:
        return b" " + text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return b" " + _dumpsAscii(message).encode("ascii") + b"\n"


def decodeLine(line: bytes, maxDepth: int) -> Any:
    """
    Parse one line (no delimiter).

    @raise ProtocolError: the line is not UTF-8, not JSON, or nested deeper
        than C{maxDepth}.
    """
    # (nestsDeeper's first bound, here too: a call saved on every line.)
    if len(line) > 2 * maxDepth and nestsDeeper(line, maxDepth):
        raise ProtocolError(f"message nested deeper than {maxDepth}")
    # A line that starts with a space is one L{encodeLine} could not give
    # to orjson: it may hold integers beyond 64 bits, which orjson would
    # parse as doubles; the standard library keeps them.
    if line[:1] != b" ":
        try:
            return _fastLoads(line)
        except ValueError:
            pass
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"line is not valid UTF-8: {e}") from None
    try:
        return _loads(text)
    except RecursionError:
        raise ProtocolError("message nested too deeply to parse") from None
    except ValueError as e:
        raise ProtocolError(f"line is not JSON: {e}") from None


_STRINGS_AND_OTHERS = re.compile(r'"(?:[^"\\]|\\.)*"|[^\[\]{}"]+')
_STEPS = [0] * 256
_STEPS[ord("[")] = _STEPS[ord("{")] = 1
_STEPS[ord("]")] = _STEPS[ord("}")] = -1
_STEP = _STEPS.__getitem__


def nestsDeeper(data: bytes, maxDepth: int) -> bool:
    """
    Whether the JSON text C{data} nests containers deeper than C{maxDepth}.
    Cheap bounds come first, as nearly every line passes: each level takes
    two bytes, and the depth cannot exceed the number of openers (counting
    them costs a third of parsing a dnode call).
    """
    return (
        len(data) > 2 * maxDepth
        and data.count(b"[") + data.count(b"{") > maxDepth
        and depthExceeds(data.decode("utf-8", "replace"), maxDepth)
    )


def depthExceeds(text: str, maxDepth: int) -> bool:
    """
    Whether brackets outside strings nest deeper than C{maxDepth}.  Every loop
    here runs in C: strings and other characters are cut away, then the
    brackets' running sum is taken.
    """
    brackets = _STRINGS_AND_OTHERS.sub("", text).encode("ascii", "replace")
    return max(accumulate(map(_STEP, brackets)), default=0) > maxDepth
