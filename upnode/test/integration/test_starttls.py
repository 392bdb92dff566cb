"""
A link that starts TLS in mid-session (C{ITLSTransport.startTLS}, public
Twisted API) sends everything after it encrypted: no write of ours may go
around the transport's own C{write()}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from upnode import DnodeProtocol
from upnode.dnode import DnodeFactory

from ..certs import makeCertificates
from .helpers import call, sleep, until


class StartTLSTests(TestCase):
    timeout = 30

    async def test_repliesAfterStartTLSAreEncrypted(self) -> None:
        certs = makeCertificates(Path(self.mktemp()))
        serverCert = PrivateCertificate.loadPEM(certs["good"].read_bytes() + certs["good.key"].read_bytes())
        trust = Certificate.loadPEM(certs["ca"].read_bytes())
        upgraded: List[Any] = []

        def serverCons(remote: Any, conn: DnodeProtocol) -> Any:
            def upgrade(cb: Any) -> None:
                cb()  # answered in plaintext, then the link turns to TLS
                reactor.callLater(0, conn.transport.startTLS, serverCert.options())
                upgraded.append(conn)

            return {"upgrade": upgrade, "echo": lambda value, cb: cb(value)}

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(DnodeFactory(serverCons))
        self.addCleanup(port.stopListening)
        client = DnodeProtocol()
        fails: List[Any] = []
        client.on("fail", fails.append)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        self.addCleanup(_closed, client)
        await until(lambda: client.remoteReady)
        await call(client.remote.upgrade)
        client.transport.startTLS(optionsForClientTLS("localhost", trust))
        # Many calls in one chunk (their replies batched), then calls one at
        # a time, each answered in a reactor turn of its own, when nothing
        # of the TLS layer's is waiting to be written: the case a write
        # around the transport's write() would send in plaintext.
        self.assertEqual(await answers(client, range(100)), [f"secret {i}" for i in range(100)])
        await sleep(0.2)
        for i in range(5):
            self.assertEqual(await answers(client, [i]), [f"secret {i}"])
            await sleep(0.05)
        self.assertEqual(fails, [])
        self.assertEqual(len(upgraded), 1)
        self.assertIsNotNone(client.transport.getPeerCertificate())


def answers(client: DnodeProtocol, numbers: Any) -> Any:
    from twisted.internet.defer import gatherResults

    calls = gatherResults([call(client.remote.echo, f"secret {i}") for i in numbers])
    return calls.addTimeout(10, reactor)


def _closed(conn: DnodeProtocol) -> Any:
    lost = conn.whenLost()
    conn.end()
    return lost
