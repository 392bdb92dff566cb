# -*- test-case-name: upnode.test.test_habits -*-
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


class UpTimeout(UpnodeError, TimeoutError):
    """
    A transaction or a call did not get a link (or a reply) in time.  A
    C{TimeoutError} too, so C{except TimeoutError} catches it.
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


class ConnectionLostError(UpnodeError, ConnectionError):
    """
    The link dropped before the reply to a call arrived.  A
    C{ConnectionError} too, so C{except ConnectionError} catches it.

    @ivar reason: what ended the link (a C{Failure}), or None if not known.
    """

    def __init__(self, message: str = "the link dropped before the reply", reason: Any = None) -> None:
        super().__init__(message)
        self.reason = reason


class UpnodeWarning(UserWarning):
    """
    Something upnode was given is most likely a mistake, though it runs:
    an integer of seconds that looks like Node's milliseconds, a server
    method whose return value goes nowhere.  A Python warning, so a plain
    script shows it on stderr once per place, and C{-W error::upnode.UpnodeWarning}
    (or C{warnings.simplefilter}) makes it an error.
    """


class DropReason:
    """
    Why a server drops a connection: the keys of its C{status()["dropped"]}
    and the C{reason} of L{upnode.metrics}' drop counts.
    """

    HOSTILE = "hostile input"
    HANDSHAKE = "handshake timeout"
    UNREAD = "unread output"
    BUDGET = "server output budget"
    CAPACITY = "connection cap"
    SLOW_LINE = "unfinished line"
    PING = "ping timeout"
    #: Every reason, in the order they are reported.
    ALL = (HOSTILE, HANDSHAKE, UNREAD, BUDGET, CAPACITY, SLOW_LINE, PING)
