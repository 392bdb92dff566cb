"""
TLS that fails closed, with certificates the tests make: every certificate
that cannot be verified for the host name ends the connection before a
dnode byte is written either way, and reaches the client as an error event.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from OpenSSL.SSL import Error as SSLError
from service_identity import CertificateError, VerificationError
from twisted.trial.unittest import SkipTest, TestCase

import upnode
from upnode._progress import ackedBytesProbe

from ..certs import makeCertificates
from .helpers import call, first, until
from .nodepeer import NodePeer


class TLSTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certs = makeCertificates(Path(self.mktemp()))
        self.served: List[Any] = []
        self.clientsMade: List[Any] = []

    async def tlsServer(self, case: str) -> int:
        """
        Our upnode server over TLS with the certificate of C{case}; records
        every connection whose exposed object was built (which is what
        writes the first dnode byte).
        """

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            self.served.append(conn)
            return {"echo": lambda value, cb: cb(value)}

        server = upnode.upnode(cons)
        self.addCleanup(server.end)
        key, cert = self.certs[case + ".key"], self.certs[case]
        port = await server.listen(
            {"endpoint": f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", "ping": 0}
        )
        return port.getHost().port

    def tlsClient(self, port: int, host: str = "localhost") -> Any:
        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            self.clientsMade.append(conn)
            return {}

        up = upnode.upnode(cons).connect(
            {
                "endpoint": f"tls:{host}:{port}:trustRoots={self.certs['ca']}",
                "reconnect": 0.05,
                "jitter": 0,
                "ping": 0.2,
                "timeout": 1.0,
            }
        )
        self.addCleanup(up.close)
        return up

    async def test_good(self) -> None:
        """
        A certificate valid for the name: calls, queue and heartbeat work as
        over TCP, by name and by IP address.
        """
        port = await self.tlsServer("good")
        for host in ("localhost", "127.0.0.1"):
            up = self.tlsClient(port, host)
            remote = await up()
            self.assertEqual(await call(remote.echo, {"é": [1, None]}), {"é": [1, None]})
            await first("ping", up)
            if sys.platform.startswith("linux"):
                # What the peer takes is read from the TCP socket under TLS.
                probe = ackedBytesProbe(self.served[-1].transport)
                self.assertIsNotNone(probe)
                self.assertGreater(probe(), 0)  # type: ignore[misc]
            await up.close()

    async def assertFailsClosed(self, case: str, *errors: type) -> None:
        port = await self.tlsServer(case)
        up = self.tlsClient(port)
        failures: List[Any] = []
        up.on("error", failures.append)
        await until(lambda: len(failures) >= 2)  # and it keeps backing off
        self.assertTrue(failures[0].check(*errors), failures[0])
        self.assertIsNone(up.remote)
        self.assertGreaterEqual(up.status()["attempts"], 2)
        self.assertEqual(self.served, [])
        self.assertEqual(self.clientsMade, [])

    async def test_wrongName(self) -> None:
        await self.assertFailsClosed("wrongname", VerificationError)

    async def test_noSubjectAltName(self) -> None:
        """
        The case stock Twisted lets through with a logged traceback.
        (service-identity 23.1 reports it as a name mismatch; later
        releases as a certificate error.)
        """
        await self.assertFailsClosed("nosan", CertificateError, VerificationError)

    async def test_verificationTurnedOffOnAProtocolSubclass(self) -> None:
        """
        A client that deliberately does not hold its server to the name, as
        the README says: its own TLS endpoint (here a stock Twisted one,
        which lets a certificate with no subjectAltName through), and a
        protocol subclass with C{verifyServerIdentity = False} set as the
        client's protocol before the reactor connects.  The server that
        fails closed in the test below is then served.
        """
        from twisted.internet import reactor
        from twisted.internet.endpoints import clientFromString

        class Unverified(upnode.DnodeProtocol):
            verifyServerIdentity = False

        port = await self.tlsServer("nosan")
        endpoint = clientFromString(reactor, f"tls:localhost:{port}:trustRoots={self.certs['ca'].parent}")
        up = upnode.connect(endpoint, {"reconnect": 0.05, "jitter": 0, "ping": 0})
        self.addCleanup(up.close)
        up.protocol = Unverified
        remote = await up(timeout=10.0)
        self.assertEqual(await call(remote.echo, "unchecked"), "unchecked")
        self.assertIsInstance(up.conn, Unverified)
        self.flushLoggedErrors()

    async def test_stockEndpointFailsClosedToo(self) -> None:
        """
        A user's own stock Twisted TLS endpoint object, which lets a
        certificate with no subjectAltName through (with a logged
        traceback): our client still ends the link before it writes a
        dnode byte, and says why.
        """
        from twisted.internet import reactor
        from twisted.internet.endpoints import clientFromString

        port = await self.tlsServer("nosan")
        # (Twisted's trustRoots is a folder of PEM files.)
        endpoint = clientFromString(reactor, f"tls:localhost:{port}:trustRoots={self.certs['ca'].parent}")

        def cons(remote: Any, conn: Any) -> Dict[str, Any]:
            self.clientsMade.append(conn)
            return {}

        up = upnode.upnode(cons).connect(endpoint, {"reconnect": 0.05, "jitter": 0, "ping": 0})
        self.addCleanup(up.close)
        failures: List[Any] = []
        up.on("error", failures.append)
        await until(lambda: len(failures) >= 2)
        self.assertIn("TLS certificate is not valid", failures[0].getErrorMessage())
        self.assertIsNone(up.remote)
        self.assertEqual(self.clientsMade, [])
        self.flushLoggedErrors()

    async def test_smallKeyOneClearError(self) -> None:
        """
        A server key this OpenSSL refuses (Node's example uses RSA 1024) is
        one clear error when listening, not tracebacks per connection.
        """
        from OpenSSL.SSL import TLS_METHOD, Context

        from ..certs import makeSmallRSA

        small = makeSmallRSA(Path(self.mktemp()))
        try:
            context = Context(TLS_METHOD)
            context.use_certificate_chain_file(str(small["small"]))
            context.use_privatekey_file(str(small["small.key"]))
        except SSLError:
            pass
        else:
            raise SkipTest("this OpenSSL accepts 1024-bit RSA keys: there is no error to show")
        server = upnode.upnode({})
        with self.assertRaises(ValueError) as caught:
            await server.listen(
                {"endpoint": f"ssl:0:interface=127.0.0.1:privateKey={small['small.key']}:certKey={small['small']}"}
            )
        message = str(caught.exception)
        self.assertIn("too small", message)
        self.assertIn("openssl req -x509 -newkey rsa:2048", message)
        self.assertIn("subjectAltName=DNS:localhost", message)

    async def test_suggestedCommandMakesAUsableCertificate(self) -> None:
        """
        The openssl command the refused-key error suggests makes a key and
        certificate that a server listens with and our own client accepts
        (subjectAltName included), run as a user would copy it.
        """
        import shlex
        import shutil
        import subprocess

        from upnode.tls import SELF_SIGNED_COMMAND

        if shutil.which("openssl") is None:
            raise SkipTest("no openssl command")
        folder = Path(self.mktemp())
        folder.mkdir(parents=True)
        made = subprocess.run(shlex.split(SELF_SIGNED_COMMAND), cwd=folder, capture_output=True, timeout=60)
        self.assertEqual(made.returncode, 0, made.stderr)
        key, cert = folder / "key.pem", folder / "cert.pem"
        server = upnode.upnode({"echo": lambda v, cb: cb(v)})
        self.addCleanup(server.end)
        port = await server.listen(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", ping=0)
        up = upnode.connect(f"tls:localhost:{port.getHost().port}:trustRoots={cert}", ping=0)
        self.addCleanup(up.close)
        failures: List[Any] = []
        up.on("error", failures.append)
        self.assertEqual(await up.call("echo", "over TLS", timeout=10), "over TLS")
        self.assertEqual(failures, [])

    async def test_expired(self) -> None:
        await self.assertFailsClosed("expired", SSLError)

    async def test_untrusted(self) -> None:
        await self.assertFailsClosed("untrusted", SSLError)

    async def test_plaintextClientToTLSServer(self) -> None:
        """
        The TLS server never builds a session for a plaintext client.
        """
        port = await self.tlsServer("good")
        up = upnode.connect(port, "127.0.0.1", {"reconnect": 0.05, "jitter": 0, "ping": 0})
        self.addCleanup(up.close)
        await until(lambda: up.status()["attempts"] >= 3)
        self.assertIsNone(up.remote)
        self.assertEqual(self.served, [])

    async def test_tlsClientToPlaintextServer(self) -> None:
        """
        A TLS client never builds a session over a plaintext server, reports
        the failure, and the server dispatches nothing it sent.
        """
        dispatched: List[Any] = []
        server = upnode.upnode(lambda remote, conn: {"echo": lambda *a: dispatched.append(a)})
        self.addCleanup(server.end)
        port = (await server.listen(0, "127.0.0.1", {"ping": 0})).getHost().port
        up = self.tlsClient(port)
        failures: List[Any] = []
        up.on("error", failures.append)
        await until(lambda: failures)
        self.assertTrue(failures[0].check(SSLError), failures[0])
        self.assertEqual(self.clientsMade, [])
        self.assertEqual(dispatched, [])


class TLSInteropTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.certs = makeCertificates(Path(self.mktemp()))

    async def test_nodeClientOurServer(self) -> None:
        """
        A Node upnode client using createStream with tls.connect.
        """
        server = upnode.upnode(lambda remote, conn: {"time": lambda cb: cb("tls time")})
        self.addCleanup(server.end)
        key, cert = self.certs["good.key"], self.certs["good"]
        port = await server.listen(
            {"endpoint": f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"}
        )
        peer = NodePeer.spawn(
            "upnode-client", str(port.getHost().port), "50", "plain", "tls", str(self.certs["ca"])
        )
        self.addCleanup(peer.stop)
        await peer.next("up")
        self.assertEqual((await peer.next("result"))["value"], "tls time")
        await peer.next("ping")

    async def test_ourClientNodeServer(self) -> None:
        peer = NodePeer.spawn("upnode-server", "0", str(self.certs["good.key"]), str(self.certs["good"]))
        self.addCleanup(peer.stop)
        port = (await peer.next("listening"))["port"]
        up = upnode.connect(
            {"endpoint": f"tls:localhost:{port}:trustRoots={self.certs['ca']}", "ping": 0.2, "timeout": 1.0}
        )
        self.addCleanup(up.close)
        remote = await up()
        self.assertIn("GMT", await call(remote.time))
        await first("ping", up)
