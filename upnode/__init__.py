# -*- test-case-name: upnode.test.test_surface -*-
"""
upnode for Twisted: keep a dnode connection alive, re-establish state
between reconnects, and queue calls while the link is down; Node's upnode
0.6.0 and dnode 1.2.2, wire-compatible.

The public surface:
  - L{connect}, L{listen} and L{upnode} (an L{Upnode}): Node's
    C{upnode.connect(...)}, C{upnode.listen(...)} and C{upnode(cons)};
  - L{UpnodeClientFactory}: the client, which is the C{up()} transaction
    function (C{up(cb)}, C{await up()}, C{await up.call(name, *args)});
  - L{UpnodeServerFactory}: the server's factory; L{replies}: a server
    method that returns its answer;
  - L{DnodeProtocol}: one connection; L{Remote} and L{RemoteCallback}: the
    peer's objects and callbacks; L{Limits}: per-connection bounds;
  - the errors (L{UpnodeError} and its subclasses);
  - L{upnode.aio}: the same from an asyncio program (C{asyncio.run});
  - L{upnode.dnode}: the protocol layer alone, like Node's C{dnode};
    L{upnode.testing}: a client and a server in memory for tests;
    L{upnode.tls}, L{upnode.metrics}.
"""

import os as _os
import sys as _sys

from . import _speedups

# Before any other module of ours is imported: a compiled module that is
# stale, or unwanted (UPNODE_PURE), is replaced by its source.
_speedups.install(_sys.modules[__name__], _os.environ)

from ._calls import replies
from ._client import UpnodeClientFactory
from ._limits import Limits
from ._outbox import OutboxCall, OutboxCallFailed, OutboxError, OutboxFull
from ._protocol import DnodeProtocol
from ._remote import Remote, RemoteCallback
from ._server import UpnodeServerFactory
from ._upnode import Upnode, UpnodeClientService, connect, listen, upnode
from ._version import __version__
from .errors import (
    Closed,
    ConnectionLostError,
    DeadRemoteError,
    ProtocolError,
    QueueFull,
    RejectedMessage,
    RemoteError,
    UpnodeError,
    UpnodeWarning,
    UpTimeout,
)

__all__ = [
    "Closed",
    "ConnectionLostError",
    "DeadRemoteError",
    "DnodeProtocol",
    "Limits",
    "OutboxCall",
    "OutboxCallFailed",
    "OutboxError",
    "OutboxFull",
    "ProtocolError",
    "QueueFull",
    "RejectedMessage",
    "RemoteError",
    "Remote",
    "RemoteCallback",
    "UpnodeError",
    "UpnodeWarning",
    "UpTimeout",
    "Upnode",
    "UpnodeClientFactory",
    "UpnodeClientService",
    "UpnodeServerFactory",
    "__version__",
    "connect",
    "listen",
    "replies",
    "upnode",
]
