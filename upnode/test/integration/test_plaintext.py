"""
No byte of a call leaves in plaintext over TLS, nor after C{startTLS},
whichever way the transport is made to send (the fast path that sends a
chunk's answers at once, see L{upnode._tuning.sendNowFor}, included): a
relay between client and server records every byte on the wire, and the
calls' secret never appears in it, while every call is answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

import upnode
from upnode import DnodeProtocol
from upnode.dnode import DnodeFactory

from ..certs import makeCertificates
from .helpers import call, until

SECRET = "top-secret-payload-7f3a"


class _Back(Protocol):
    """
    The relay's connection to the server: what it receives is recorded and
    passed on to the client.
    """

    def __init__(self, front: _Front) -> None:
        self.front = front

    def dataReceived(self, data: bytes) -> None:
        self.front.wire.append(data)
        self.front.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.front.transport.loseConnection()


class _Front(Protocol):
    """
    The relay's connection from the client: not read until the one to the
    server is made; what it receives is recorded and passed on.
    """

    def __init__(self, target: int, wire: List[bytes]) -> None:
        self.target = target
        self.wire = wire
        self.back = _Back(self)

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        connected = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.target), self.back)
        connected.addCallback(lambda _: self.transport.resumeProducing())

    def dataReceived(self, data: bytes) -> None:
        self.wire.append(data)
        self.back.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.back.transport is not None:
            self.back.transport.loseConnection()


async def relay(testCase: TestCase, target: int) -> tuple[int, List[bytes]]:
    """
    A TCP relay to C{target} on loopback: its port, and every byte that
    crossed it, either way.
    """
    wire: List[bytes] = []
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(lambda: _Front(target, wire))
    )
    testCase.addCleanup(port.stopListening)
    return port.getHost().port, wire


class NoPlaintextTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certs = makeCertificates(Path(self.mktemp()))

    async def test_tls(self) -> None:
        """
        Over TLS, calls one at a time (each answered in a chunk of its own,
        sent at once) and many at a time: answered, and never in the clear.
        """
        server = upnode.upnode({"echo": lambda value, cb: cb(value)})
        self.addCleanup(server.end)
        key, cert = self.certs["good.key"], self.certs["good"]
        port = await server.listen({"endpoint": f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", "ping": 0})
        relayed, wire = await relay(self, port.getHost().port)
        up = upnode.connect({"endpoint": f"tls:localhost:{relayed}:trustRoots={self.certs['ca']}", "ping": 0})
        self.addCleanup(up.close)
        for i in range(20):
            self.assertEqual(await up.call("echo", f"{SECRET} {i}", timeout=10), f"{SECRET} {i}")
        answers = await gatherResults([up.call("echo", f"{SECRET} {i}", timeout=10) for i in range(200)])
        self.assertEqual(answers, [f"{SECRET} {i}" for i in range(200)])
        self.assertNotIn(SECRET.encode(), b"".join(wire))
        self.assertGreater(len(b"".join(wire)), 200 * len(SECRET))

    async def test_startTLS(self) -> None:
        """
        A link that turns to TLS in mid-session: what was said before is on
        the wire in the clear (the relay does see plaintext), nothing after.
        """
        serverCert = PrivateCertificate.loadPEM(self.certs["good"].read_bytes() + self.certs["good.key"].read_bytes())
        trust = Certificate.loadPEM(self.certs["ca"].read_bytes())

        def serverCons(remote: Any, conn: DnodeProtocol) -> Dict[str, Any]:
            def upgrade(cb: Any) -> None:
                cb("before")
                reactor.callLater(0, conn.transport.startTLS, serverCert.options())

            return {"upgrade": upgrade, "echo": lambda value, cb: cb(value)}

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(DnodeFactory(serverCons))
        self.addCleanup(port.stopListening)
        relayed, wire = await relay(self, port.getHost().port)
        client = DnodeProtocol()
        client.isClient = True
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", relayed), client)
        self.addCleanup(_closed, client)
        await until(lambda: client.remoteReady)
        self.assertEqual(await call(client.remote.upgrade), "before")
        self.assertIn(b"before", b"".join(wire))
        client.transport.startTLS(optionsForClientTLS("localhost", trust))
        for i in range(20):
            self.assertEqual(await call(client.remote.echo, f"{SECRET} {i}"), f"{SECRET} {i}")
        answers = await gatherResults([call(client.remote.echo, f"{SECRET} {i}") for i in range(200)])
        self.assertEqual(answers, [f"{SECRET} {i}" for i in range(200)])
        self.assertNotIn(SECRET.encode(), b"".join(wire))


def _closed(conn: DnodeProtocol) -> Any:
    lost = conn.whenLost()
    conn.end()
    return lost
