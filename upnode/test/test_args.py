"""
dnode-style arguments: the forms connect(), listen() and the command line
share, and the messages for the ones that cannot work.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from upnode._args import clientEndpoint, parseArguments, serverEndpoint
from upnode._cli import endpointArguments


class StringArgumentTests(SynchronousTestCase):
    def test_forms(self) -> None:
        cases = {
            "7000": (7000, None, None, None),
            "/tmp/up.sock": (None, None, "/tmp/up.sock", None),
            "localhost": (None, "localhost", None, None),
            "localhost:7000": (7000, "localhost", None, None),
            "[::1]:7000": (7000, "::1", None, None),
            "::1": (None, "::1", None, None),
            "tcp:127.0.0.1:7000": (None, None, None, "tcp:127.0.0.1:7000"),
            "tcp:7002:interface=127.0.0.1": (None, None, None, "tcp:7002:interface=127.0.0.1"),
            "tls:localhost:7001": (None, None, None, "tls:localhost:7001"),
            "unix:/tmp/s": (None, None, None, "unix:/tmp/s"),
        }
        for text, expected in cases.items():
            parsed = parseArguments([text], ())
            self.assertEqual((parsed.port, parsed.host, parsed.path, parsed.endpoint), expected, text)

    def test_descriptionsBecomeEndpoints(self) -> None:
        reactor = MemoryReactor()
        client = clientEndpoint(reactor, parseArguments(["tcp:127.0.0.1:7000"], ()))
        server = serverEndpoint(reactor, parseArguments(["tcp:7002:interface=127.0.0.1"], ()))
        client.connect(object())  # type: ignore[arg-type]
        server.listen(object())  # type: ignore[arg-type]
        self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 7000))
        self.assertEqual((reactor.tcpServers[0][0], reactor.tcpServers[0][3]), (7002, "127.0.0.1"))
        self.assertEqual(reactor.tcpServers[0][2], 1024)  # our backlog

    def test_incompleteDescriptionSaysWhatIsMissing(self) -> None:
        reactor = MemoryReactor()
        with self.assertRaises(ValueError) as caught:
            clientEndpoint(reactor, parseArguments([{"endpoint": "tcp:localhost"}], ("endpoint",)))
        message = str(caught.exception)
        self.assertIn("'tcp:localhost'", message)
        self.assertIn("for example 'tcp:host=localhost:port=7000'", message)
        self.assertNotIn("positional argument", message.split("(")[0])

    def test_commandLineSameForms(self) -> None:
        for target in ("7000", "localhost:7000", "tcp:127.0.0.1:7000", "/tmp/up.sock"):
            self.assertEqual(endpointArguments(target), [target])
        self.assertRaises(ValueError, endpointArguments, "nowhere")


class NodeHabitTests(SynchronousTestCase):
    """
    Node code ported as it is: milliseconds caught, one-argument callbacks
    and extra arguments handled as JavaScript would.
    """

    def test_millisecondsCaught(self) -> None:
        from twisted.internet.task import Clock

        import upnode
        from upnode.testing import FakeEndpoint

        clock = Clock()
        for options in ({"ping": 10000}, {"timeout": 5000}, {"reconnect": 1000}, {"handshakeTimeout": 30000}):
            with self.assertRaises(ValueError) as caught:
                upnode.upnode(reactor=clock).connect(FakeEndpoint(clock), options)
            name, value = next(iter(options.items()))
            self.assertIn(f"{name}={value} looks like milliseconds", str(caught.exception))
            self.assertIn(f"{name}={value / 1000:g}", str(caught.exception))
        up = upnode.upnode(reactor=clock).connect(FakeEndpoint(clock), {"ping": 0, "reconnect": 1000.0})
        self.assertEqual(up.initialDelay, 1000.0)  # a float is taken as meant
        self.assertRaises(ValueError, up, 1000, lambda remote: None)
        self.assertRaises(ValueError, up.call, "x", timeout=2000)
        self.assertRaises(ValueError, upnode.UpnodeServerFactory, {}, ping=10000)
        up.close()

    def test_positionalLimit(self) -> None:
        from functools import partial

        from upnode._arity import ANY, positionalLimit

        class Thing:
            def method(self, a: int, b: int = 2) -> None:
                pass

            def __call__(self, a: int) -> None:
                pass

        def star(*args: int) -> None:
            pass

        cases = [
            (lambda: None, 0),
            (lambda remote: None, 1),
            (lambda remote, conn=None: None, 2),
            (Thing().method, 2),
            (Thing(), 1),
            (star, ANY),
            (partial(lambda a, b: None, 1), 1),
            (print, ANY),
        ]
        for function, limit in cases:
            self.assertEqual(positionalLimit(function), limit, function)
