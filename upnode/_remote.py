# -*- test-case-name: upnode.test.test_protocol -*-
"""
What the peer exposes, as Python objects: L{Remote}, the peer's exposed
object, and L{RemoteCallback}, one of its functions.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Sequence

from .errors import DeadRemoteError


class Sender:
    """
    How the proxies of one connection send a request: C{request(method,
    arguments)}, the connection's while it is open, one that raises
    L{DeadRemoteError} once it is gone (so no proxy a user still holds
    keeps the connection alive).
    """

    __slots__ = ("request",)

    def __init__(self, request: Callable[[Any, Sequence[Any]], None]) -> None:
        self.request = request

    def close(self) -> None:
        self.request = _gone


def _gone(method: Any, arguments: Sequence[Any]) -> None:
    raise DeadRemoteError(f"the dnode link is gone: {describe(method)} was not called")


def describe(method: Any) -> str:
    """
    A request's target, for error messages.
    """
    return f"callback {method}" if type(method) is int else f"method {method!r:.40}"


class RemoteCallback:
    """
    A function the peer handed us, by its id.  Calling it sends a request;
    when the last reference to it goes, the peer is told to forget the id
    (C{cull}), as Node's dnode does with its C{weak} module.
    """

    __slots__ = ("_sender", "id", "__weakref__")

    def __init__(self, sender: Sender, callbackId: int) -> None:
        self._sender = sender
        self.id = callbackId

    def __call__(self, *args: Any) -> None:
        # Raises DeadRemoteError once the link is gone.
        self._sender.request(self.id, args)

    def __repr__(self) -> str:
        return f"<RemoteCallback {self.id}>"


class Remote:
    """
    The peer's exposed object: C{remote.name(...)}, C{remote["name"]},
    C{"name" in remote}, C{dir(remote)}.  Data the peer sent are plain
    values.  A later C{methods} message from the peer replaces the members in
    place, as in Node.  Calls through a remote whose link is gone raise
    L{DeadRemoteError}.

    The members are the instance's own C{__dict__}, so C{remote.name} is a
    plain attribute lookup, with no C{__getattr__} on the way of a call.
    For the same reason this class has no methods of its own that a
    member's name could hide; see L{replaceMembers}.
    """

    def __getattr__(self, name: str) -> Any:
        # Only reached for a name that is not a member.
        raise AttributeError(f"the remote has no member {name!r}")

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __dir__(self) -> List[str]:
        return sorted(self.__dict__)

    def __repr__(self) -> str:
        return f"<Remote {sorted(self.__dict__)}>"


def replaceMembers(remote: Remote, members: Dict[str, Any]) -> None:
    """
    Make C{members} the members of C{remote}, in place (references to the
    remote see them).
    """
    object.__setattr__(remote, "__dict__", members)
