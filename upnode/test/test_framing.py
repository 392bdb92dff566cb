"""
L{upnode._framing.LineFramer} on its own: no transport, no session.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode._framing import LineFramer
from upnode.errors import ProtocolError


class Recorder:
    """
    The framer's owner and receiver at once: records what it is told.
    """

    def __init__(self) -> None:
        self.events: List[Any] = []

    def beginChunk(self) -> None:
        self.events.append("begin")

    def endChunk(self) -> None:
        self.events.append("end")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.events.append(("too long", len(line)))

    def framingViolation(self, error: ProtocolError) -> None:
        self.events.append(("violation", str(error)))

    def readFull(self) -> None:
        self.events.append("full")

    def largeLine(self) -> None:
        self.events.append("large")


def framer(maxLength: int = 100, maxRate: int = 1000) -> Any:
    recorder, lines = Recorder(), []
    clock = Clock()
    f = LineFramer(recorder, recorder, lines.append, maxLength, maxRate, clock)
    return f, recorder, lines, clock


class LineFramerTests(SynchronousTestCase):
    def test_everyCut(self) -> None:
        """
        The same bytes give the same lines however they are cut; the
        unfinished line stays.
        """
        data = b"one\ntwo\r\n\nthree\nfour"
        for size in range(1, len(data) + 1):
            f, recorder, lines, clock = framer()
            for start in range(0, len(data), size):
                f.feed(data[start : start + size])
            self.assertEqual(lines, [b"one", b"two\r", b"", b"three"], size)
            self.assertTrue(f.hasPartialLine())
            self.assertEqual(f.linesReceived, 4)
            self.assertEqual(f.takePartial(), b"four")

    def test_eachChunkBracketed(self) -> None:
        f, recorder, lines, clock = framer()
        f.feed(b"a\nb")
        f.feed(b"c")
        self.assertEqual(recorder.events, ["begin", "end", "begin", "end"])

    def test_tooLong(self) -> None:
        f, recorder, lines, clock = framer(maxLength=5)
        f.feed(b"12345\n123456\n")
        self.assertEqual(lines, [b"12345"])
        self.assertEqual(recorder.events[1], ("too long", 6))

    def test_oneLineChunks(self) -> None:
        """
        A chunk that is one whole line (a call made one at a time) is
        bounded, counted and joined to what came before it as any other;
        an empty chunk is no line.
        """
        f, recorder, lines, clock = framer(maxLength=5)
        for chunk in [b"12345\n", b"", b"123456\n", b"\n", b"12", b"3\n", b"last\n"]:
            f.feed(chunk)
        self.assertEqual(lines, [b"12345", b"", b"123", b"last"])
        self.assertIn(("too long", 6), recorder.events)
        self.assertEqual(f.linesReceived, 5)
        f, recorder, lines, clock = framer(maxRate=2)
        clock.advance(10)
        for chunk in [b"1\n", b"2\n", b"3\n", b"4\n", b"5\n"]:
            f.feed(chunk)
        self.assertEqual(lines, [b"1", b"2", b"3", b"4"])
        self.assertEqual(recorder.events[-2], ("violation", "more than 2 messages a second"))

    def test_rate(self) -> None:
        f, recorder, lines, clock = framer(maxRate=3)
        clock.advance(10)
        f.feed(b"a\nb\nc\nd\n")  # counted whole, before any line is handed on
        self.assertEqual(lines, [])
        self.assertEqual(recorder.events[-2], ("violation", "more than 3 messages a second"))

    def test_stopped(self) -> None:
        f, recorder, lines, clock = framer()
        f.feed(b"a\npart")
        f.stop()
        f.feed(b"b\n")
        self.assertEqual((lines, f.hasPartialLine()), ([b"a"], False))

    def test_fullRead(self) -> None:
        f, recorder, lines, clock = framer()
        f.fullRead = 4
        f.feed(b"abc")
        f.feed(b"defg")
        self.assertEqual(recorder.events.count("full"), 1)
