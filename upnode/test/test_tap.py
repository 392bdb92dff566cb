"""
The twistd plugin's options and service.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upnode import tap
from upnode._args import withBacklog
from upnode._guard import ServerLimits
from upnode.demo import DemoService


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


SHARED = {"answer": 42}


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(
            {k: options[k] for k in ("ports", "service", "ping", "timeout", "max-line-length", "cons")},
            {
                "ports": ["tcp:7000:interface=127.0.0.1"],
                "service": "upnode.demo.DemoService",
                "ping": 10.0,
                "timeout": 5.0,
                "max-line-length": 1048576,
                "cons": DemoService,
            },
        )

    def test_everything(self) -> None:
        options = parse(
            "--port", "tcp:7100:interface=127.0.0.1",
            "-p", "unix:/tmp/upnode-test.sock",
            "--service", "upnode.test.test_tap.SHARED",
            "--ping", "2.5",
            "--timeout", "1",
            "--max-line-length", "4096",
            "--max-connections", "500",
            "--handshake-timeout", "3",
            "--max-buffered-total", "1000000",
            "--line-timeout", "0",
        )  # fmt: skip
        self.assertEqual(options["ports"], ["tcp:7100:interface=127.0.0.1", "unix:/tmp/upnode-test.sock"])
        self.assertIs(options["cons"], SHARED)
        self.assertEqual((options["ping"], options["timeout"], options["max-line-length"]), (2.5, 1.0, 4096))
        self.assertEqual(
            [options[k] for k in ("max-connections", "handshake-timeout", "max-buffered-total", "line-timeout")],
            [500, 3.0, 1000000, 0.0],
        )

    def test_badValues(self) -> None:
        for argv in [
            ["--ping", "-1"],
            ["--ping", "soon"],
            ["--timeout", "nan"],
            ["--max-line-length", "0"],
            ["--port", "nonsense:1"],
            ["--port", "tcp:notaport"],
            ["--service", "upnode.no.such.thing"],
            ["--bogus"],
        ]:
            self.assertRaises(usage.UsageError, parse, *argv)

    def test_millisecondsRefused(self) -> None:
        """
        Every seconds flag follows the library's one rule: an integer of
        1000 or more is surely Node's milliseconds and is refused, saying
        so; the same number written as a float is taken as meant.
        """
        for flag in ("--ping", "--timeout", "--handshake-timeout", "--line-timeout"):
            error = self.assertRaises(usage.UsageError, parse, flag, "10000")
            self.assertIn("milliseconds", str(error))
            self.assertEqual(parse(flag, "10000.0")[flag[2:]], 10000.0)


class ServiceTests(SynchronousTestCase):
    def test_makeService(self) -> None:
        service = tap.makeService(parse("--port", "tcp:0", "--port", "tcp:0", "--ping", "3"))
        listeners = [s for s in service if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(listeners), 2)
        factory: Any = listeners[0].factory
        self.assertIs(factory, listeners[1].factory)
        self.assertEqual((factory.cons, factory.ping, factory.timeout), (DemoService, 3.0, 5.0))
        self.assertEqual(factory.guard.limits, ServerLimits())

    def test_backlog(self) -> None:
        """
        Our servers listen with a backlog of 1024 unless told otherwise.
        """
        self.assertEqual(withBacklog("tcp:7000"), "tcp:7000:backlog=1024")
        self.assertEqual(withBacklog("ssl:7001:privateKey=k.pem"), "ssl:7001:privateKey=k.pem:backlog=1024")
        self.assertEqual(withBacklog("tcp:7000:backlog=10"), "tcp:7000:backlog=10")
        self.assertEqual(withBacklog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")

    def test_pluginFile(self) -> None:
        """
        twisted/plugins/upnode_plugin.py names upnode.tap; that twistd finds
        it is shown by the integration test that runs twistd.
        """
        import runpy
        from pathlib import Path

        from twisted.application.service import IServiceMaker

        path = Path(__file__).resolve().parents[2] / "twisted" / "plugins" / "upnode_plugin.py"
        maker = runpy.run_path(str(path))["upnodeServer"]
        self.assertTrue(IServiceMaker.providedBy(maker))
        self.assertEqual((maker.tapname, maker.module), ("upnode-server", "upnode.tap"))
        self.assertIs(maker.options, tap.Options)
