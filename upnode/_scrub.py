# -*- test-case-name: upnode.test.test_scrub -*-
"""
Taking callables out of outgoing arguments (scrub) and putting the peer's
callbacks and shared references back into incoming ones (unscrub), as
dnode-protocol 0.2.2 does.

Paths are written as Node writes them: every element a string, array indices
included.  Incoming paths are checked element by element; nothing is created
on the way, unlike Node's C{traverse.set}: only the last element, in a
container that exists.
"""

from __future__ import annotations

import re
import uuid
from enum import Enum
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from ._json import JSON_OPTIONS, LINE_OPTIONS, encodeLine, nestsDeeper
from ._json import fastDumps as _fastDumps
from ._limits import MAX_SAFE_INTEGER, Limits
from .errors import RejectedMessage

FUNCTION = "[Function]"
CIRCULAR = "[Circular]"

Path = List[str]
Scrubbed = Tuple[List[Any], Dict[str, Path], List[Dict[str, Path]]]

_PROTOTYPE_NAMES = frozenset({"__proto__", "constructor", "prototype"})
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,15}")
_SCALARS = frozenset({str, bool, type(None)})
# The integers a double holds: from 2**1024 - 2**970 on, JavaScript's
# Number() rounds to Infinity, which its JSON writes as null.
_DOUBLE_LIMIT = 2**1024 - 2**970
# Path elements "0" to "63" and their indices, to skip the general walk.
_SMALL_INDEX = {str(i): i for i in range(64)}


def scrub(arguments: Any, callbackId: Callable[[Callable[..., Any]], int], maxDepth: int) -> Scrubbed:
    """
    Copy C{arguments} to plain JSON data, as dnode-protocol's scrubber does.

    Each callable becomes C{"[Function]"} and is listed under the id
    C{callbackId} gives it; the same callable met again in one message
    becomes a link to its first place.  A container met again inside itself
    (a cycle) becomes C{"[Circular]"} and a link to its first place; one
    met again elsewhere (shared) becomes C{null} and a link to its first
    place too, where Node's traverse copies it: a copy of a shared
    structure can be exponentially larger than the structure (a peer that
    sends a list holding the same list twice, twenty levels deep, and has
    it echoed).  Non-finite floats
    become C{None}, as in JavaScript, and so do integers a double cannot
    hold (a JavaScript peer would read them as Infinity); -0.0 becomes 0.0
    (JavaScript writes C{0}); dict keys that are numbers, booleans
    or None become strings, as Python's json writes them.

    @raise TypeError: a value has no JSON form.
    @raise ValueError: the message line would nest deeper than C{maxDepth}
        (the message object and the arguments list count as two levels).
    """
    callbacks: Dict[str, Path] = {}
    links: List[Dict[str, Path]] = []
    ancestors: Dict[int, Path] = {}
    # Every container's first place (and the container, so that its id is
    # not reused while we walk).
    placed: Dict[int, Tuple[Path, Any]] = {}

    def walk(value: Any, path: Path, depth: int) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is int:
            return value if -_DOUBLE_LIMIT < value < _DOUBLE_LIMIT else None
        if kind is float:
            # NaN and the infinities are null in JavaScript's JSON, and
            # -0 is written 0.
            if value:
                return value if value - value == 0 else None
            return 0.0
        if isinstance(value, (dict, list, tuple)):
            prior = ancestors.get(id(value))
            if prior is not None:
                links.append({"from": prior, "to": path})
                return CIRCULAR
            first = placed.get(id(value))
            if first is not None:
                links.append({"from": first[0], "to": path})
                return None
            if depth > maxDepth:
                raise ValueError(f"the message would nest deeper than {maxDepth}")
            placed[id(value)] = (path, value)
            ancestors[id(value)] = path
            # The members of an exposed object stand for it: a member that
            # holds the object is a cycle to them, as in Node.
            source = value.source if type(value) is Members else None
            if source is not None:
                ancestors[id(source)] = path
            try:
                if isinstance(value, dict):
                    return {_key(k): walk(v, path + [_key(k)], depth + 1) for k, v in value.items()}
                return [walk(item, path + [str(i)], depth + 1) for i, item in enumerate(value)]
            finally:
                del ancestors[id(value)]
                if source is not None:
                    ancestors.pop(id(source), None)
        if callable(value):
            key = str(callbackId(value))
            prior = callbacks.get(key)
            if prior is not None:
                links.append({"from": prior, "to": path})
            else:
                callbacks[key] = path
            return FUNCTION
        # What orjson writes on the fast path is written the same way here.
        if isinstance(value, Enum):
            return walk(value.value, path, depth)
        if isinstance(value, uuid.UUID):
            return str(value)
        raise TypeError(f"{kind.__name__} value {value!r:.60} has no JSON form")

    if not isinstance(arguments, (list, tuple)):
        raise TypeError("arguments must be a list or tuple")
    # The message object and its arguments list are the first two levels.
    try:
        return walk(arguments, [], 2), callbacks, links
    finally:
        # walk refers to itself (through its closure): a cycle that only
        # the collector would free, with every value it still holds.
        walk = None  # type: ignore[assignment]


class Members(Dict[str, Any]):
    """
    The members shown of an exposed object (see L{exposedMembers}), which
    stand for the object itself (C{source}) when L{scrub} meets it inside
    them.
    """

    __slots__ = ("source",)

    def __init__(self, source: Any, members: Any) -> None:
        dict.__init__(self, members)
        self.source = source


def _key(key: Any) -> str:
    if type(key) is str:
        return key
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float) and key - key == 0:
        return float.__repr__(key)
    raise TypeError(f"dict key {key!r:.60} has no JSON form")


_CONTAINERS = (dict, list, tuple)
# What a message with nothing to unscrub carries (or leaves out); a value
# of the wrong type, even an empty one, takes the checking path.
_NO_CALLBACKS: Tuple[Any, ...] = (None, {})
_NO_LINKS: Tuple[Any, ...] = (None, [])
_REPLY = b'{"method":%d,"arguments":%s,"callbacks":{},"links":[]}\n'
_ONE_CALLBACK = b'{"method":%s,"arguments":%s,"callbacks":{"%d":["%d"]},"links":[]}\n'
_ONE_CALLBACK_BY_ID = b'{"method":%d,"arguments":%s,"callbacks":{"%d":["%d"]},"links":[]}\n'


def encodeRequest(
    method: Any, arguments: Sequence[Any], callbackId: Callable[[Callable[..., Any]], int], maxDepth: int
) -> bytes:
    """
    One dnode request line, as Node writes it.

    The common cases, plain data with no callbacks (every reply) or with
    callbacks only at the top level, are encoded by orjson (it writes NaN
    and the infinities as null, as JavaScript does); anything else (nested
    callables, cycles, keys that are not strings, other types) goes through
    L{scrub}.

    @raise TypeError: a value has no JSON form; no id has been given out.
    @raise ValueError: the message would nest deeper than C{maxDepth}.
    """
    # One pass over the arguments finds the first top-level callable, and
    # what orjson may not be given (see _orjsonSafe): that is scrubbed.
    first = -1
    index = 0
    seen: Set[int] = set()  # containers met: one met again is shared
    for value in arguments:
        kind = type(value)
        if kind is dict or kind is list:
            if id(value) in seen:
                break
            seen.add(id(value))
            # The first level inline: no call for it on most messages.
            for item in value.values() if kind is dict else value:
                kind = type(item)
                if kind is dict:
                    if not _orjsonSafe(item, item.values(), maxDepth, seen):
                        break
                elif kind is list:
                    if not _orjsonSafe(item, item, maxDepth, seen):
                        break
                elif kind is tuple or (kind is float and not item):
                    break
            else:
                index += 1
                continue
            break
        if kind is tuple or (kind is float and not value):
            break
        # Scalars are never callable; a callable container is sent as data.
        if first < 0 and callable(value) and not isinstance(value, _CONTAINERS):
            first = index
        index += 1
    else:
        if first >= 0:
            line = _withTopLevelCallbacks(method, arguments, first, callbackId, maxDepth)
            if line:
                return line
        else:
            # No callable at the top level.  A reply (to a callback id) is
            # its arguments in a template; anything else is one orjson call
            # for the whole message, cheaper than building it from pieces
            # (see docs/benchmarks.md).
            try:
                if type(method) is int:
                    encoded = _fastDumps(arguments, option=JSON_OPTIONS)
                    # (_refuseDeeper's first bound inline: every reply.)
                    if len(encoded) > 2 * (maxDepth - 1):
                        _refuseDeeper(encoded, 1, maxDepth)
                    return _REPLY % (method, encoded)
                line = _fastDumps(
                    {"method": method, "arguments": arguments, "callbacks": {}, "links": []}, option=LINE_OPTIONS
                )
                _refuseDeeper(line, 0, maxDepth)
                return line
            except TypeError:
                pass  # not plain JSON for orjson: scrubbed below
    scrubbed, found, links = scrub(arguments, callbackId, maxDepth)
    return encodeLine({"method": method, "arguments": scrubbed, "callbacks": found, "links": links})


def _orjsonSafe(container: Any, values: Any, depth: int, seen: Set[int]) -> bool:
    """
    Whether orjson may be given C{container}, whose members are C{values}:
    met for the first time in the message (see C{seen}, the ids of those
    met), and no tuple, no zero float, no container met before, inside it,
    nor any nested deeper than C{depth}.

    orjson counts the depth of lists and dicts but does not check it at
    tuples (3.9.0 to 3.13.0 at least): a tuple nested a few thousand deep,
    or a cycle through one, overflows its stack and kills the process.  A
    zero float may be -0.0, which orjson writes as such and JavaScript as
    0 (0.0 is rare enough to be scrubbed with it).  orjson copies a
    container at each place it is met; L{scrub} links them.  What is
    refused goes through L{scrub}, which bounds the depth.  (A subclass of
    a builtin is not walked into: orjson refuses it, so it is scrubbed
    anyway.)
    """
    if id(container) in seen:
        return False
    seen.add(id(container))
    for value in values:
        kind = type(value)
        if kind is dict:
            if not depth or not _orjsonSafe(value, value.values(), depth - 1, seen):
                return False
        elif kind is list:
            if not depth or not _orjsonSafe(value, value, depth - 1, seen):
                return False
        elif kind is tuple or (kind is float and not value):
            return False
    return True


def _refuseDeeper(encoded: bytes, outside: int, maxDepth: int) -> None:
    """
    Raise ValueError if C{encoded}, inside C{outside} levels of the message
    around it, would nest deeper than C{maxDepth}.
    """
    # (nestsDeeper's first bound, here too: no call for most messages.)
    if len(encoded) > 2 * (maxDepth - outside) and nestsDeeper(encoded, maxDepth - outside):
        raise ValueError(f"the message would nest deeper than {maxDepth}")


def _withTopLevelCallbacks(
    method: Any, arguments: Sequence[Any], first: int, callbackId: Callable[[Callable[..., Any]], int], maxDepth: int
) -> bytes:
    """
    A message whose callables are all top-level arguments, the first at
    C{first}; empty when orjson can't encode the rest (nested callables
    among it).  Ids are handed out only once nothing can fail any more.
    """
    top = list(arguments)
    top[first] = FUNCTION
    positions = [first]
    if first + 1 < len(top):  # (most often the callback comes last)
        for index in range(first + 1, len(top)):
            value = top[index]
            if callable(value) and not isinstance(value, _CONTAINERS):
                top[index] = FUNCTION
                positions.append(index)
    try:
        encoded = _fastDumps(top, option=JSON_OPTIONS)
    except TypeError:
        return b""
    if len(encoded) > 2 * (maxDepth - 1):
        _refuseDeeper(encoded, 1, maxDepth)
    # Ids and paths are digits: no escaping needed.
    if type(method) is int:
        if len(positions) == 1:  # (a call by id with one callback: the head in the template)
            return _ONE_CALLBACK_BY_ID % (method, encoded, callbackId(arguments[first]), first)
        head = b"%d" % method
    else:
        try:
            head = _fastDumps(method)
        except TypeError:
            return b""  # a lone surrogate in the name: written escaped below
    if len(positions) == 1:
        return _ONE_CALLBACK % (head, encoded, callbackId(arguments[first]), first)
    byId: Dict[int, int] = {}
    links: List[bytes] = []
    for index in positions:
        cid = callbackId(arguments[index])
        if cid in byId:
            links.append(b'{"from":["%d"],"to":["%d"]}' % (byId[cid], index))
        else:
            byId[cid] = index
    entries = b",".join(b'"%d":["%d"]' % item for item in byId.items())
    return b'{"method":%s,"arguments":%s,"callbacks":{%s},"links":[%s]}\n' % (
        head,
        encoded,
        entries,
        b",".join(links),
    )


def unscrub(message: Dict[str, Any], makeCallback: Callable[[int], Any], limits: Limits) -> List[Any]:
    """
    Return the arguments of a received message with callbacks and links put
    in place.

    @raise RejectedMessage: the message's C{arguments}, C{callbacks} or
        C{links} are malformed or exceed C{limits}.
    """
    arguments = message.get("arguments", [])
    if type(arguments) is not list:
        raise RejectedMessage("arguments must be a list")
    callbacks = message.get("callbacks")
    links = message.get("links")
    if callbacks in _NO_CALLBACKS and links in _NO_LINKS:
        # Plain data (every reply): nothing to put back.
        return arguments
    if links and callbacks:
        # Links are checked before any callback proxy is made: a message
        # rejected for its links must leave nothing of the peer's behind.
        _checkLinks(arguments, links, callbacks, limits)
    if callbacks:
        if type(callbacks) is not dict:
            raise RejectedMessage("callbacks must be an object")
        if len(callbacks) == 1:
            # Most requests carry one callback: no list of places to build.
            ((key, path),) = callbacks.items()
            callbackId = _callbackIdOf(key)
            # (_place's first case inline: a top-level argument, ["1"].)
            if type(path) is list and len(path) == 1 and type(path[0]) is str:
                slot = _SMALL_INDEX.get(path[0], MAX_SAFE_INTEGER)
                if slot < len(arguments):
                    container: Any = arguments
                else:
                    container, slot = _place(arguments, path, limits, True)
            else:
                container, slot = _place(arguments, path, limits, True)
            try:
                container[slot] = makeCallback(callbackId)
            except IndexError:  # the element just past a list's end
                container.append(makeCallback(callbackId))
            if container is not arguments:
                _objectsAlong(arguments, path)
        else:
            if len(callbacks) > limits.maxCallbacks:
                raise RejectedMessage(f"{len(callbacks)} callbacks in one message (limit {limits.maxCallbacks})")
            # Validate every entry before creating any callback proxy.
            for callbackId, (container, slot) in _places(arguments, callbacks, limits):
                _put(container, slot, makeCallback(callbackId))
            for path in callbacks.values():
                if len(path) > 1:
                    _objectsAlong(arguments, path)
    elif callbacks is not None and type(callbacks) is not dict:
        raise RejectedMessage("callbacks must be an object")
    if links:
        if type(links) is not list:
            raise RejectedMessage("links must be a list")
        if len(links) > limits.maxLinks:
            raise RejectedMessage(f"{len(links)} links in one message (limit {limits.maxLinks})")
        for link in links:
            if type(link) is not dict or "from" not in link or "to" not in link:
                raise RejectedMessage(f"malformed link {link!r:.60}")
            source = link["from"]
            # An empty "from" is the arguments list itself (a cycle to the root).
            if source == []:
                value: Any = arguments
            else:
                container, slot = _place(arguments, source, limits, False)
                value = container[slot]
            target, targetSlot = _place(arguments, link["to"], limits, True)
            _put(target, targetSlot, value)
    elif links is not None and type(links) is not list:
        raise RejectedMessage("links must be a list")
    return arguments


def _checkLinks(arguments: List[Any], links: Any, callbacks: Any, limits: Limits) -> None:
    """
    Check C{links} against the arguments as they came, before the
    callbacks are put in place: a link's source may be a callback's place
    (which may be the element just past a list's end), and a place a link
    sets is never walked through by another (as dnode makes them).

    @raise RejectedMessage: as L{unscrub} would for these links.
    """
    if type(links) is not list:
        raise RejectedMessage("links must be a list")
    if len(links) > limits.maxLinks:
        raise RejectedMessage(f"{len(links)} links in one message (limit {limits.maxLinks})")
    placed = list(callbacks.values()) if type(callbacks) is dict else []
    for link in links:
        if type(link) is not dict or "from" not in link or "to" not in link:
            raise RejectedMessage(f"malformed link {link!r:.60}")
        source = link["from"]
        if source != []:
            _place(arguments, source, limits, source in placed)
        _place(arguments, link["to"], limits, True)


class RemoteObject(Dict[str, Any]):
    """
    A dict the peer sent that holds callbacks (at any depth): its keys are
    also attributes, as on the remote (C{session.beep(cb)}, as in Node),
    and it is still a dict.  Plain data stays plain dicts: no conversion on
    the path every reply takes.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the peer's object has no key {name!r}") from None


def _objectsAlong(arguments: List[Any], path: List[Any]) -> None:
    """
    Make each dict on C{path} (to a callback just placed; the path has been
    checked) a L{RemoteObject}, in its container.
    """
    container: Any = arguments
    for element in path[:-1]:
        slot = int(element) if type(container) is list else element
        value = container[slot]
        if type(value) is dict:
            value = container[slot] = RemoteObject(value)
        container = value


def _places(arguments: List[Any], callbacks: Dict[str, Any], limits: Limits) -> List[Tuple[int, Tuple[Any, Any]]]:
    """
    Every entry of C{callbacks} as its id and place, all checked.  (A
    function of its own: a comprehension over C{arguments} inside
    L{unscrub} would make that a closure variable, slower on every path.)
    """
    return [(_callbackIdOf(key), _place(arguments, path, limits, True)) for key, path in callbacks.items()]


def _put(container: Any, slot: Any, value: Any) -> None:
    """
    Set C{container[slot]}; a list's slot may be the one just past its end
    (L{_place} allows no other).
    """
    if type(container) is list and slot == len(container):
        container.append(value)
    else:
        container[slot] = value


def _callbackIdOf(key: str) -> int:
    """
    The callback id a C{callbacks} key names: a decimal integer as
    JavaScript writes it (no sign, spaces, leading zeros or other digits),
    that a double holds exactly.
    """
    if len(key) <= 16:
        try:
            callbackId = int(key)
        except ValueError:
            callbackId = -1
        # str() gives the canonical form back only for canonical input.
        if 0 <= callbackId <= MAX_SAFE_INTEGER and str(callbackId) == key:
            return callbackId
    raise RejectedMessage(f"callback id {key!r:.40} is not a decimal integer")


def _place(arguments: List[Any], path: Any, limits: Limits, create: bool) -> Tuple[Any, Any]:
    """
    Resolve C{path} to the container holding its last element and the key or
    index there.  Every element must already exist, except that with
    C{create} the last may be new, as Node's C{traverse.set} makes it: a key
    not yet in a dict (but never C{__proto__}, C{constructor} or
    C{prototype}, the names through which a JavaScript peer's prototypes are
    reached), or the index just past the end of a list.  Nothing is created
    here; the caller sets the element.
    """
    if type(path) is list and len(path) == 1 and type(path[0]) is str:
        # Most paths name a top-level argument, ["1"]: no walk needed.
        index = _SMALL_INDEX.get(path[0], MAX_SAFE_INTEGER)
        if index < len(arguments):
            return arguments, index
    if type(path) is not list or not path:
        raise RejectedMessage(f"path {path!r:.60} must be a non-empty list")
    if len(path) > limits.maxPathLength:
        raise RejectedMessage(f"path longer than {limits.maxPathLength}")
    container: Any = arguments
    last = len(path) - 1
    for position, element in enumerate(path):
        if type(container) is list:
            if type(element) is int and element >= 0:
                index = element
            elif type(element) is str and _DECIMAL.fullmatch(element):
                index = int(element)
            else:
                raise RejectedMessage(f"path element {element!r:.40} is not an index")
            if index >= len(container) and not (create and position == last and index == len(container)):
                raise RejectedMessage(f"path index {index} out of range")
            slot: Any = index
        elif type(container) is dict or type(container) is RemoteObject:
            if type(element) is not str:
                raise RejectedMessage(f"path element {element!r:.40} is not a key")
            if element not in container and not (create and position == last and element not in _PROTOTYPE_NAMES):
                raise RejectedMessage(f"path key {element!r:.40} does not exist")
            slot = element
        else:
            raise RejectedMessage("path goes through a value that is not a container")
        if position == last:
            return container, slot
        container = container[slot]
    raise AssertionError("unreachable")  # pragma: no cover
