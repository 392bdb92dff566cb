# -*- test-case-name: upnode.test.test_server -*-
"""
Turning a cons (dict, object or callable) into the members shown to a peer.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict

from ._scrub import Members

Cons = Any
_DATA = (str, int, float, bool, type(None), list, dict, tuple)


def construct(cons: Cons, remote: Any, conn: Any) -> Any:
    """
    The object to expose on one connection: C{cons(remote, conn)} when cons
    is callable (a class is), otherwise cons itself.  C{None} exposes nothing.
    """
    if callable(cons) and not isinstance(cons, dict):
        made = cons(remote, conn)
        return {} if made is None else made
    return {} if cons is None else cons


def exposedMembers(obj: Any) -> Dict[str, Any]:
    """
    The members of C{obj} shown to the peer: every string key of a dict
    (its keys are the user's explicit choice, as in Node, where C{_id} is
    shown too), or an object's public methods and public instance
    attributes; an object's names starting with C{_} are never shown, so a
    peer can never reach them, and properties are not run.  They stand for
    C{obj} where it is met inside them (a self-reference is a cycle).
    """
    if isinstance(obj, dict):
        return Members(obj, {k: v for k, v in obj.items() if type(k) is str})
    members: Dict[str, Any] = Members(obj, ())
    methods = set()
    for klass in type(obj).__mro__[:-1]:  # object itself exposes nothing
        for name, value in vars(klass).items():
            if not name.startswith("_") and (
                inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod))
            ):
                methods.add(name)
    for name in sorted(methods):
        members[name] = getattr(obj, name)
    for name, value in getattr(obj, "__dict__", {}).items():
        # Plain data and callables only: an attribute such as the remote a
        # constructor kept for itself is not for the peer.
        if type(name) is str and not name.startswith("_") and (isinstance(value, _DATA) or callable(value)):
            members[name] = value
    return members


def withPing(members: Dict[str, Any]) -> Dict[str, Any]:
    """
    Add upnode's C{ping(cb)} when the exposed object has none, so that Node
    upnode clients can heartbeat us.
    """
    if "ping" not in members:
        members["ping"] = _ping
    return members


def _ping(cb: Callable[[], Any] = None) -> None:  # type: ignore[assignment]
    if callable(cb):
        cb()
