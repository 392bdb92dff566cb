"""
A golden transcript: the bytes each side writes in a scripted session, and
where each write breaks, pinned so that moving code inside the connection
cannot change them unseen.

Two orderings carry weight and are checked by name as well: the culls a
received chunk's replies cause wait for a batch or the delay, not for the
replies' write; and one write per received chunk, but for a mid-chunk flush
past C{readSize} and the slices of a large reply written while the
transport has us paused.

To print a new transcript after a deliberate wire change::

    UPNODE_GOLDEN=print python -m upnode.test upnode.test.test_golden
"""

from __future__ import annotations

import gc
import hashlib
import os
import pprint
from typing import Any, Callable, List, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode._guard import ServerGuard
from upnode._limits import Limits
from upnode._protocol import CULL_BATCH, CULL_DELAY, WRITE_SLICE, DnodeProtocol
from upnode.dnode import DnodeFactory
from upnode.testing import MemoryLink, MemoryTransport

#: Writes longer than this are pinned by length and digest.
SHOWN = 600

Entry = Tuple[Any, ...]


class RecordingTransport(MemoryTransport):
    """
    A memory transport that logs each C{write} call it is given, and its
    closing, in a log shared by both sides.
    """

    def __init__(self, protocol: Any, host: Any, peer: Any, side: str, log: List[Entry]) -> None:
        MemoryTransport.__init__(self, protocol, host, peer)
        self.side = side
        self.log = log

    def write(self, data: bytes) -> None:
        if not self.disconnecting and data:
            if len(data) <= SHOWN:
                self.log.append((self.side, data.decode()))
            else:
                self.log.append((self.side, len(data), hashlib.sha256(data).hexdigest()[:16]))
        MemoryTransport.write(self, data)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.log.append((self.side, "loseConnection"))
        MemoryTransport.loseConnection(self)


def recordedLink(server: Any, client: Any, clock: Clock, log: List[Entry]) -> MemoryLink:
    link = MemoryLink(server, client, clock)
    here, there = IPv4Address("TCP", "127.0.0.1", 7000), IPv4Address("TCP", "127.0.0.1", 50000)
    link.serverTransport = RecordingTransport(server, here, there, "S", log)
    link.clientTransport = RecordingTransport(client, there, here, "C", log)
    link.connect()
    return link


def session() -> List[Entry]:
    """
    The scripted session; returns the log of writes, with a marker before
    each step.
    """
    log: List[Entry] = []
    clock = Clock()
    kept: List[Any] = []
    conns: List[Any] = []

    def nest(data: Any, first: Any, again: Any, holder: Any) -> None:
        first(data["n"], lambda x: kept.append(("reply", x)))
        again(2)
        holder["f"](3)

    def spray(cb: Any) -> None:
        for i in range(50):
            cb(i, "y" * 500)

    def bye(cb: Any) -> None:
        cb("z" * 300_000)
        conns[0].end()

    def cons(remote: Any, conn: Any) -> Any:
        conns.append(conn)
        return {
            "echo": lambda value, cb: cb(value),
            "nest": nest,
            "keep": kept.append,
            "big": lambda cb: cb("x" * (2 * 1024 * 1024)),
            "spray": spray,
            "bye": bye,
        }

    factory = DnodeFactory(cons, clock=clock, guard=ServerGuard(clock=clock))
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    got: List[Any] = []
    client = DnodeProtocol({"hello": lambda cb: cb("hi")}, Limits(maxLineLength=4 * 1024 * 1024), clock)
    link = recordedLink(server, client, clock, log)

    def step(name: str, action: Callable[[], Any] = lambda: None) -> None:
        log.append(("--", name))
        action()
        link.flush()

    step("methods")
    remote = client.remote
    step("echo", lambda: remote.echo({"a": [1, 2]}, got.append))
    shared = got.append
    data: Any = {"n": 1}
    data["me"] = data
    step("nested, shared callbacks and a cycle", lambda: remote.nest(data, lambda n, reply: reply(n * 10), shared, {"f": shared}))
    step("pipelined calls in one chunk", lambda: [remote.echo(i, lambda v: got.append(v)) for i in range(5)])
    step("a callback kept", lambda: remote.keep(lambda *a: got.append(a)))
    step("a proxy dropped outside a chunk: a timed cull", lambda: kept.clear())
    step("the cull's delay", lambda: clock.advance(CULL_DELAY))
    step("many callbacks kept", lambda: [remote.keep(lambda *a: None) for _ in range(CULL_BATCH + 3)])
    step("a batch of culls", lambda: kept.clear())
    step("the rest of the culls", lambda: clock.advance(CULL_DELAY))
    step("replies past readSize within one chunk", lambda: remote.spray(lambda *a: None))
    step("a 2 MiB reply, the transport pausing us", lambda: remote.big(lambda s: got.append(len(s))))
    step("end with output held", lambda: remote.bye(lambda s: got.append(len(s))))
    log.append(("--", "got", repr(got[:1]), len(got), got[-2:]))
    return log


class GoldenTranscriptTests(SynchronousTestCase):
    def record(self) -> List[Entry]:
        wasEnabled = gc.isenabled()
        gc.disable()  # culls follow references alone, not the collector's passes
        try:
            return session()
        finally:
            if wasEnabled:
                gc.enable()

    def test_transcript(self) -> None:
        """
        Every write of the scripted session, each side's, in order, is the
        pinned one.
        """
        log = self.record()
        if os.environ.get("UPNODE_GOLDEN") == "print":
            pprint.pprint(log, width=200)
        self.assertEqual(log, GOLDEN)

    def test_cullsWaitForABatchOrTheDelay(self) -> None:
        """
        The culls caused by a chunk's replies do not leave with them: they
        wait, and go in one message with the culls of the chunks after it
        (the peer decodes one message, not one per chunk): here when a
        proxy our code dropped is culled, after the delay.
        """
        log = self.record()
        start = log.index(("--", "pipelined calls in one chunk"))
        delay = log.index(("--", "the cull's delay"))
        writes = [e for e in log[start:delay] if e[0] == "S"]
        self.assertEqual(len(writes), 1)
        lines = writes[0][1].splitlines()
        self.assertEqual(len(lines), 5)
        self.assertTrue(all('"cull"' not in x for x in lines))
        after = [e for e in log[delay:] if e[0] == "S"][0][1]
        self.assertEqual(after, '{"method":"cull","arguments":[1,2,3,4,5,6,7,8]}\n')

    def test_writeBoundaries(self) -> None:
        """
        Past readSize (16 KiB) of replies within one chunk, they are handed
        over mid-chunk; a reply larger than a slice leaves a slice per write.
        """
        log = self.record()
        spray = log.index(("--", "replies past readSize within one chunk"))
        big = log.index(("--", "a 2 MiB reply, the transport pausing us"))
        sprayWrites = [e for e in log[spray:big] if e[0] == "S"]
        self.assertEqual(len(sprayWrites), 2)
        bye = log.index(("--", "end with output held"))
        bigWrites = [e for e in log[big:bye] if e[0] == "S"]
        sliced = [e[1] for e in bigWrites if type(e[1]) is int]
        self.assertEqual(sliced, [WRITE_SLICE] * (2 * 1024 * 1024 // WRITE_SLICE))
        self.assertEqual(log[-2], ("S", "loseConnection"))


GOLDEN: List[Entry] = [('S',
  '{"method":"methods","arguments":[{"echo":"[Function]","nest":"[Function]","keep":"[Function]","big":"[Function]","spray":"[Function]","bye":"[Function]"}],"callbacks":{"0":["0","echo"],"1":["0","nest"],"2":["0","keep"],"3":["0","big"],"4":["0","spray"],"5":["0","bye"]},"links":[]}\n'),
 ('C', '{"method":"methods","arguments":[{"hello":"[Function]"}],"callbacks":{"0":["0","hello"]},"links":[]}\n'),
 ('--', 'methods'),
 ('--', 'echo'),
 ('C', '{"method":0,"arguments":[{"a":[1,2]},"[Function]"],"callbacks":{"1":["1"]},"links":[]}\n'),
 ('S', '{"method":1,"arguments":[{"a":[1,2]}],"callbacks":{},"links":[]}\n'),
 ('--', 'nested, shared callbacks and a cycle'),
 ('C',
  '{"method":1,"arguments":[{"n":1,"me":"[Circular]"},"[Function]","[Function]",{"f":"[Function]"}],"callbacks":{"2":["1"],"1":["2"]},"links":[{"from":["0"],"to":["0","me"]},{"from":["2"],"to":["3","f"]}]}\n'),
 ('S',
  '{"method":2,"arguments":[1,"[Function]"],"callbacks":{"6":["1"]},"links":[]}\n{"method":1,"arguments":[2],"callbacks":{},"links":[]}\n{"method":1,"arguments":[3],"callbacks":{},"links":[]}\n'),
 ('C', '{"method":6,"arguments":[10],"callbacks":{},"links":[]}\n'),
 ('--', 'pipelined calls in one chunk'),
 ('C', '{"method":0,"arguments":[0,"[Function]"],"callbacks":{"3":["1"]},"links":[]}\n'),
 ('C', '{"method":0,"arguments":[1,"[Function]"],"callbacks":{"4":["1"]},"links":[]}\n'),
 ('C', '{"method":0,"arguments":[2,"[Function]"],"callbacks":{"5":["1"]},"links":[]}\n'),
 ('C', '{"method":0,"arguments":[3,"[Function]"],"callbacks":{"6":["1"]},"links":[]}\n'),
 ('C', '{"method":0,"arguments":[4,"[Function]"],"callbacks":{"7":["1"]},"links":[]}\n'),
 ('S',
  '{"method":3,"arguments":[0],"callbacks":{},"links":[]}\n'
  '{"method":4,"arguments":[1],"callbacks":{},"links":[]}\n'
  '{"method":5,"arguments":[2],"callbacks":{},"links":[]}\n'
  '{"method":6,"arguments":[3],"callbacks":{},"links":[]}\n'
  '{"method":7,"arguments":[4],"callbacks":{},"links":[]}\n'),
 ('--', 'a callback kept'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"8":["0"]},"links":[]}\n'),
 ('--', 'a proxy dropped outside a chunk: a timed cull'),
 ('--', "the cull's delay"),
 ('S', '{"method":"cull","arguments":[1,2,3,4,5,6,7,8]}\n'),
 ('C', '{"method":"cull","arguments":[6]}\n'),
 ('--', 'many callbacks kept'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"9":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"10":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"11":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"12":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"13":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"14":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"15":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"16":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"17":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"18":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"19":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"20":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"21":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"22":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"23":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"24":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"25":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"26":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"27":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"28":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"29":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"30":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"31":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"32":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"33":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"34":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"35":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"36":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"37":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"38":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"39":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"40":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"41":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"42":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"43":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"44":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"45":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"46":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"47":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"48":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"49":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"50":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"51":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"52":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"53":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"54":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"55":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"56":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"57":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"58":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"59":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"60":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"61":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"62":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"63":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"64":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"65":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"66":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"67":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"68":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"69":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"70":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"71":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"72":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"73":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"74":["0"]},"links":[]}\n'),
 ('C', '{"method":2,"arguments":["[Function]"],"callbacks":{"75":["0"]},"links":[]}\n'),
 ('--', 'a batch of culls'),
 ('S',
  '{"method":"cull","arguments":[75,74,73,72,71,70,69,68,67,66,65,64,63,62,61,60,59,58,57,56,55,54,53,52,51,50,49,48,47,46,45,44,43,42,41,40,39,38,37,36,35,34,33,32,31,30,29,28,27,26,25,24,23,22,21,20,19,18,17,16,15,14,13,12]}\n'),
 ('--', 'the rest of the culls'),
 ('S', '{"method":"cull","arguments":[11,10,9]}\n'),
 ('--', 'replies past readSize within one chunk'),
 ('C', '{"method":4,"arguments":["[Function]"],"callbacks":{"76":["0"]},"links":[]}\n'),
 ('S', 16790, 'f7ed83d6a68f8c87'),
 ('S', 11235, '56d383885d47b357'),
 ('--', 'a 2 MiB reply, the transport pausing us'),
 ('C', '{"method":3,"arguments":["[Function]"],"callbacks":{"77":["0"]},"links":[]}\n'),
 ('S', 65536, '1296756f77366136'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 65536, '1f8745f0d2d1387e'),
 ('S', 'xxxxxxxxxxxxxxxxxxxxxxxxxxx"],"callbacks":{},"links":[]}\n'),
 ('--', 'end with output held'),
 ('C', '{"method":5,"arguments":["[Function]"],"callbacks":{"78":["0"]},"links":[]}\n'),
 ('S', 65536, '30124c719e2cddaf'),
 ('S', 65536, 'd809b75df5a9b674'),
 ('S', 65536, 'd809b75df5a9b674'),
 ('S', 65536, 'd809b75df5a9b674'),
 ('S', 37913, 'ecf5f4ff759a6dbc'),
 ('S', 'loseConnection'),
 ('--', 'got', "[{'a': [1, 2]}]", 10, [2097152, 300000])]
