"""
What the peer exposes, as Python objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List

from .errors import DeadRemoteError

if TYPE_CHECKING:
    from ._protocol import DnodeProtocol


class RemoteCallback:
    """
    A function the peer handed us, by its id.  Calling it sends a request;
    when the last reference to it goes, the peer is told to forget the id
    (C{cull}), as Node's dnode does with its C{weak} module.
    """

    __slots__ = ("_protocol", "id", "__weakref__")

    def __init__(self, protocol: DnodeProtocol, callbackId: int) -> None:
        self._protocol = protocol
        self.id = callbackId

    def __call__(self, *args: Any) -> None:
        protocol = self._protocol
        if not protocol.connected:
            raise DeadRemoteError(f"the link that gave callback {self.id} is gone")
        protocol.request(self.id, args)

    def __del__(self) -> None:
        self._protocol._forgetRemoteCallback(self)

    def __repr__(self) -> str:
        return f"<RemoteCallback {self.id}>"


class Remote:
    """
    The peer's exposed object: C{remote.name(...)}, C{remote["name"]},
    C{"name" in remote}, C{dir(remote)}.  Data the peer sent are plain
    values.  A later C{methods} message from the peer replaces the members in
    place, as in Node.  Calls through a remote whose link is gone raise
    L{DeadRemoteError}.
    """

    __slots__ = ("_members",)

    def __init__(self) -> None:
        object.__setattr__(self, "_members", {})

    def _replace(self, members: Dict[str, Any]) -> None:
        object.__setattr__(self, "_members", members)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._members[name]
        except KeyError:
            raise AttributeError(f"the remote has no member {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._members[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._members[name]

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __dir__(self) -> List[str]:
        return sorted(self._members)

    def __repr__(self) -> str:
        return f"<Remote {sorted(self._members)}>"
