"""
dnode 1.2.2's own test files (node_modules/dnode/test/), run by Node with
our dnode in the middle (upnode/test/interop/dnodetests.js).

Where a file joins two dnode instances in one process, each is connected to
us instead: our side facing the file's server speaks as its client would,
and our side facing its client serves what its server exposes; every
message crosses our decoder and encoder, and the file's own assertions,
on both of its sides, must hold.  Where a file listens on a port or a unix
socket and connects to it, its client connects to us and we connect to its
server as a dnode client, over the real socket.  Each file also runs as it
is (Node to Node), so that a failure is ours.

Not applicable, and so not run in the middle: C{server/port0.js} (it
listens on port 0 and checks the port it got; no dnode traffic at all).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, UNIXClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.trial.unittest import TestCase

from upnode._protocol import DnodeProtocol

from .nodepeer import HERE, requireNode

#: Files that do not apply, with the reason.
NOT_APPLICABLE = {
    "server/port0.js": "listens on port 0 and checks the port it got; no dnode traffic",
}


class Middle(DnodeProtocol):
    """
    Our dnode between two of the file's: it waits for its peer's methods and
    its partner's, then exposes the partner's.
    """

    partner: Optional[Middle] = None
    released = False
    members: Any = None
    accepting = False
    bridge: Bridge

    def connectionMade(self) -> None:
        DnodeProtocol.connectionMade(self)
        if self.accepting:
            self.bridge.accepted(self)

    def _start(self) -> None:
        if self.released:
            DnodeProtocol._start(self)

    def methodsCame(self, remote: Any) -> None:
        self.members = dict(vars(remote))
        self.bridge.ready(self)

    def connectionLost(self, reason: Any = None) -> None:
        DnodeProtocol.connectionLost(self, reason)
        if self.partner is not None and self.partner.connected:
            self.partner.end()

    def release(self) -> None:
        assert self.partner is not None
        self.cons = self.partner.members
        self.released = True
        DnodeProtocol._start(self)


class Bridge:
    """
    Our two listening ports and the connections on them, joined in pairs as
    the Node side announces them.
    """

    def __init__(self, testCase: TestCase) -> None:
        self.testCase = testCase
        self.byPort: Dict[int, Middle] = {}
        self.announced: Dict[int, Dict[str, Any]] = {}
        self.pipes: Dict[int, Dict[str, Middle]] = {}
        self.errors: List[str] = []

    async def listen(self) -> Tuple[int, int]:
        ports = []
        for _ in range(2):
            factory = Factory.forProtocol(lambda: self.makeProtocol(accepting=True))
            port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            self.testCase.addCleanup(port.stopListening)
            ports.append(port.getHost().port)
        return ports[0], ports[1]

    def makeProtocol(self, accepting: bool = False) -> Middle:
        proto = Middle()
        proto.on("remote", lambda remote, conn: conn.methodsCame(remote))
        proto.bridge = self
        proto.accepting = accepting
        return proto

    def accepted(self, proto: Middle) -> None:
        peer = proto.transport.getPeer().port  # type: ignore[union-attr]
        self.byPort[peer] = proto
        self.match(peer)

    def announce(self, announce: Dict[str, Any]) -> None:
        self.announced[announce["port"]] = announce
        self.match(announce["port"])

    def match(self, port: int) -> None:
        proto, announce = self.byPort.get(port), self.announced.get(port)
        if proto is None or announce is None:
            return
        kind = announce["kind"]
        if kind in ("pipe-up", "pipe-down"):
            pair = self.pipes.setdefault(announce["seq"], {})
            pair[kind] = proto
            if len(pair) == 2:
                self.join(pair["pipe-up"], pair["pipe-down"])
        else:
            # The file's client connected to us: we connect to its server.
            if kind == "unix":
                endpoint: Any = UNIXClientEndpoint(reactor, announce["path"])
            else:
                endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", announce["target"])
            client = self.makeProtocol()
            connecting = endpoint.connect(Factory.forProtocol(lambda: client))
            connecting.addCallbacks(
                lambda _: self.join(client, proto),
                lambda failure: (
                    self.errors.append(f"connecting to {announce}: {failure.value}"),
                    proto.end(),
                ),
            )

    def join(self, a: Middle, b: Middle) -> None:
        a.partner, b.partner = b, a
        self.ready(a)

    def ready(self, proto: Middle) -> None:
        partner = proto.partner
        if partner is None or proto.members is None or partner.members is None or proto.released:
            return
        proto.release()
        partner.release()


class Runner(ProcessProtocol):
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.buffer = b""
        self.stderr = b""
        self.result: Optional[Dict[str, Any]] = None
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "announce" in message:
                self.bridge.announce(message["announce"])
            elif "result" in message:
                self.result = message["result"]

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class DnodeSuite(TestCase):
    timeout = 30

    async def run_file(self, name: str, middle: bool) -> Dict[str, Any]:
        modules = requireNode()
        bridge = Bridge(self)
        args = ["direct"]
        if middle:
            up, down = await bridge.listen()
            args = [str(up), str(down)]
        runner = Runner(bridge)
        reactor.spawnProcess(
            runner,
            shutil.which("node") or "node",
            ["node", str(HERE / "dnodetests.js"), str(modules / "dnode" / "test" / name), *args],
            env=dict(os.environ, NODE_PATH=str(modules)),
        )
        await runner.ended
        for proto in list(bridge.byPort.values()):
            # As in dnode, every connection of ours has an id (the files
            # check conn.id on theirs).
            if not proto.id:
                bridge.errors.append(f"a connection without an id: {proto!r}")
            if proto.connected:
                proto.end()
        result = runner.result or {"failures": ["no result: " + runner.stderr.decode()[-1500:]], "passed": 0}
        result["errors"] = bridge.errors
        return result

    async def run_retrying(self, name: str, middle: bool) -> Dict[str, Any]:
        # Some of dnode's files listen on a random port of their own
        # (server/unicode.js: 10000 + random * 40000), which another
        # process may hold: such a run is tried again, once.
        result = await self.run_file(name, middle)
        if any("EADDRINUSE" in str(failure) for failure in result["failures"]):
            result = await self.run_file(name, middle)
        return result

    async def check(self, name: str) -> None:
        if name in NOT_APPLICABLE:
            result = await self.run_retrying(name, middle=False)
            self.assertEqual(result["failures"], [], f"{name} fails Node to Node")
            return
        for middle in (False, True):
            result = await self.run_retrying(name, middle)
            where = "with us in the middle" if middle else "Node to Node"
            planned = result.get("planned")
            print(
                f"\n{name} ({where}): {result['passed']} passed of {planned}, failures {result['failures']}"
            )
            self.assertEqual(result["failures"], [], f"{name} {where}")
            self.assertEqual(result["errors"], [], f"{name} {where}")
            if planned is not None:
                self.assertEqual(result["passed"], planned, f"{name} {where}")
            self.assertTrue(result.get("ended"), f"{name} {where}: never ended")


def _addTests() -> None:
    # One test a file, so that the table of results is trial's own.
    names = [
        "_id.js", "args.js", "bidirectional.js", "broadcast.js", "circular.js", "double.js", "emit.js",
        "middleware.js", "nested.js", "null.js", "obj.js", "refs.js", "self-referential.js", "simple.js",
        "stream.js", "server/null.js", "server/port0.js", "server/stream.js", "server/tcp.js",
        "server/unicode.js", "server/unix.js", "server/zero.js",
    ]  # fmt: skip
    for name in names:
        method = "test_" + name.replace("/", "_").replace("-", "_").replace(".js", "")

        async def test(self: DnodeSuite, name: str = name) -> None:
            await self.check(name)

        test.__name__ = method
        test.__doc__ = f"dnode's test/{name}"
        setattr(DnodeSuite, method, test)


_addTests()


_MIDDLEWARE_CLIENT = """
var dnode = require('dnode');
var d = dnode.connect(Number(process.argv[1]), '127.0.0.1');
d.on('remote', function (remote, conn) {
    process.stdout.write(JSON.stringify({ baz: remote.baz, moo: remote.moo, id: !!conn.id }) + '\\n');
    conn.end();
});
"""


class OurServer(TestCase):
    """
    middleware.js with its server played by ours, its client by Node's.
    """

    timeout = 30

    async def test_middleware(self) -> None:
        from upnode.dnode import DnodeFactory

        seen: List[Any] = []

        def cons(client: Any, conn: Any) -> Dict[str, Any]:
            seen.append(("cons", getattr(conn, "zing", False), "moo" in client, bool(conn.id)))
            local = {"baz": 42}
            conn.on("remote", lambda remote, conn: seen.append(("remote", conn.zing, local.get("moo"))))
            return local

        factory = DnodeFactory(cons)
        factory.on("local", lambda local, conn: setattr(conn, "zing", True))
        factory.on("local", lambda local, conn: local.__setitem__("moo", True))
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        modules = requireNode()
        runner = Runner(Bridge(self))
        out: List[bytes] = []
        runner.outReceived = out.append  # type: ignore[method-assign]
        reactor.spawnProcess(
            runner,
            shutil.which("node") or "node",
            ["node", "-e", _MIDDLEWARE_CLIENT, str(port.getHost().port)],
            env=dict(os.environ, NODE_PATH=str(modules)),
        )
        await runner.ended
        self.assertEqual(json.loads(b"".join(out)), {"baz": 42, "moo": True, "id": True}, runner.stderr)
        self.assertEqual(seen, [("cons", False, False, True), ("remote", True, True)])
