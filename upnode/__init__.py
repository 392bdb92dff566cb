"""
upnode for Twisted: keep a dnode connection alive, re-establish state
between reconnects, and queue calls while the link is down.
"""

from ._calls import replies
from ._client import UpnodeClientFactory
from ._limits import Limits
from ._protocol import DnodeProtocol
from ._remote import Remote, RemoteCallback
from ._server import UpnodeServerFactory
from ._upnode import Upnode, connect, listen, upnode
from .errors import (
    Closed,
    ConnectionLostError,
    DeadRemoteError,
    ProtocolError,
    QueueFull,
    RejectedMessage,
    RemoteError,
    UpnodeError,
    UpTimeout,
)

__all__ = [
    "Closed",
    "ConnectionLostError",
    "DeadRemoteError",
    "DnodeProtocol",
    "Limits",
    "ProtocolError",
    "QueueFull",
    "RejectedMessage",
    "RemoteError",
    "Remote",
    "RemoteCallback",
    "UpnodeError",
    "UpTimeout",
    "Upnode",
    "UpnodeClientFactory",
    "UpnodeServerFactory",
    "connect",
    "listen",
    "replies",
    "upnode",
]
