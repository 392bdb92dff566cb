"""
Exceptions raised or delivered by upnode.
"""

from __future__ import annotations

from typing import Any


class UpnodeError(Exception):
    """
    Base class of every error upnode raises or delivers.
    """


class ProtocolError(UpnodeError):
    """
    The peer sent something that breaks the framing or the JSON layer; the
    connection is closed.
    """


class RejectedMessage(UpnodeError):
    """
    The peer sent a well-formed line whose message is invalid; nothing was
    dispatched and the connection stays open.
    """


class DeadRemoteError(UpnodeError):
    """
    A method of a remote object was called after its link was lost.
    """


class UpTimeout(UpnodeError):
    """
    A transaction or a call did not get a link (or a reply) in time.
    """


class Closed(UpnodeError):
    """
    The upnode client was closed while the transaction was waiting.
    """


class QueueFull(UpnodeError):
    """
    The transaction queue is at its ``maxQueue`` bound.
    """


class RemoteError(UpnodeError):
    """
    The peer answered a call with an error (the first argument of an
    error-first callback); C{args[0]} is what it sent.
    """


class ConnectionLostError(UpnodeError):
    """
    The link dropped before the reply to a call arrived.

    @ivar reason: what ended the link (a C{Failure}), or None if not known.
    """

    def __init__(self, message: str = "the link dropped before the reply", reason: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
