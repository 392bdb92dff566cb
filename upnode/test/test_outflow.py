"""
L{upnode._outflow.OutputFlow} on its own: a clock, a fake probe, a list
for a transport.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode._outflow import (
    DROPPED,
    ENDING,
    FLOWING,
    HOLDING,
    READ_PAUSE,
    SAMPLE_EVERY,
    STALL_CHECK_EVERY,
    WRITE_SLICE,
    KernelProgress,
    OutputFlow,
    Role,
    TransportProgress,
)
from upnode.errors import ProtocolError


class Sink:
    """
    A transport that keeps each write, and whether it reads.
    """

    def __init__(self) -> None:
        self.writes: List[bytes] = []
        self.reading = True

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


class Owner:
    """
    An IFlowOwner that records what it is told.
    """

    stallTimeout = 5.0

    def __init__(self) -> None:
        self.told: List[Any] = []

    def flowDrained(self) -> None:
        self.told.append("drained")

    def flowSent(self) -> None:
        self.told.append("sent")

    def flowFailed(self, error: ProtocolError) -> None:
        self.told.append(("failed", str(error)))

    def flowUnread(self, size: int) -> None:
        pass

    def flowLarge(self) -> None:
        self.told.append("large")


def makeFlow(
    role: Role = Role.SERVER,
    probe: Optional[Any] = None,
    maxBuffered: int = 64 * 1024 * 1024,
    heard: Optional[List[int]] = None,
) -> Any:
    clock, sink, owner = Clock(), Sink(), Owner()
    counter = heard if heard is not None else [0]
    flow = OutputFlow(owner, sink, clock, probe, role, maxBuffered, None, lambda: counter[0])
    return flow, clock, sink, owner


class OutputFlowTests(SynchronousTestCase):
    def test_progressChosenOnce(self) -> None:
        """
        A probe gives kernel progress; none, the transport's.
        """
        self.assertIsInstance(makeFlow()[0].progress, TransportProgress)
        self.assertIsInstance(makeFlow(probe=lambda: 0)[0].progress, KernelProgress)

    def test_states(self) -> None:
        flow, clock, sink, owner = makeFlow()
        self.assertEqual(flow.state, FLOWING)
        flow.pauseProducing()
        flow.write(b"held")
        self.assertEqual((flow.state, sink.writes), (HOLDING, []))
        self.assertFalse(flow.endWhenSent())
        self.assertEqual(flow.state, ENDING)
        flow.resumeProducing()
        self.assertEqual((sink.writes, owner.told[0]), ([b"held"], "sent"))
        flow.detach()
        self.assertEqual(flow.state, DROPPED)
        flow.write(b"after")
        self.assertEqual(sink.writes, [b"held"])

    def test_slicesWhilePaused(self) -> None:
        """
        A large write goes a slice per resume; drain once all have gone.
        """
        flow, clock, sink, owner = makeFlow()
        flow.write(b"x" * (3 * WRITE_SLICE))
        self.assertEqual([len(w) for w in sink.writes], [WRITE_SLICE] * 3)
        flow.pauseProducing()
        sink.writes.clear()
        flow.write(b"y" * (2 * WRITE_SLICE + 1))
        self.assertEqual(sink.writes, [])
        flow.resumeProducing()
        self.assertEqual([len(w) for w in sink.writes], [WRITE_SLICE, WRITE_SLICE, 1])
        self.assertEqual(owner.told, ["drained"])

    def test_stopProducingDropsWhatIsHeld(self) -> None:
        """
        The producer contract on its own: once the transport says stop,
        what is held is gone and never written.
        """
        flow, clock, sink, owner = makeFlow()
        flow.pauseProducing()
        flow.write(b"never")
        flow.stopProducing()
        self.assertEqual(flow.heldBytes, 0)
        flow.resumeProducing()
        self.assertEqual(sink.writes, [])

    def test_maxBuffered(self) -> None:
        flow, clock, sink, owner = makeFlow(maxBuffered=10)
        flow.pauseProducing()
        flow.write(b"0123456789")
        self.assertEqual(owner.told, [])
        flow.write(b"!")
        self.assertEqual(owner.told, [("failed", "the peer left more than 10 bytes unread")])

    def test_stallByTransport(self) -> None:
        flow, clock, sink, owner = makeFlow()
        flow.pauseProducing()
        flow.write(b"z")
        clock.advance(owner.stallTimeout)
        self.assertIn("took none of our output for 5 seconds (1 bytes waiting)", owner.told[0][1])
        flow.detach()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_roleDecidesWhatCountsAsUnread(self) -> None:
        """
        Output waiting in the kernel stops a server reading its peer, not a
        client.
        """
        for role, reading in ((Role.SERVER, False), (Role.CLIENT, True)):
            flow, clock, sink, owner = makeFlow(role, probe=lambda: 0)
            flow.write(b"r" * (READ_PAUSE + SAMPLE_EVERY))
            self.assertEqual(sink.reading, reading, role)
            flow.detach()
            self.assertEqual(clock.getDelayedCalls(), [])

    def test_kernelStall(self) -> None:
        acked = [0]
        flow, clock, sink, owner = makeFlow(probe=lambda: acked[0])
        flow.write(b"a" * SAMPLE_EVERY)
        clock.pump([STALL_CHECK_EVERY] * 5)
        self.assertEqual(len(owner.told), 1)
        self.assertIn("took none of our output", owner.told[0][1])

    def test_clientNeverStopsReading(self) -> None:
        """
        A client holding megabytes of its own calls for a server that has
        stopped reading it reads on (the server's answers are what free
        the server to read again); a server in its place stops.
        """
        for role, reading in ((Role.SERVER, False), (Role.CLIENT, True)):
            flow, clock, sink, owner = makeFlow(role)
            flow.pauseProducing()
            flow.write(b"c" * (2 * READ_PAUSE))
            self.assertEqual(sink.reading, reading, role)
            flow.detach()

    def test_kernelStallNeedsBothDirectionsStill(self) -> None:
        """
        Nothing of ours acknowledged while the peer's own bytes keep
        arriving (its upload fills the path the other way): no stall, for
        as long as they do.  Once nothing arrives either, the stall timeout
        counts from then.
        """
        heard = [0]
        flow, clock, sink, owner = makeFlow(Role.CLIENT, probe=lambda: 0, heard=heard)
        flow.write(b"a" * SAMPLE_EVERY)
        for _ in range(60):
            clock.advance(STALL_CHECK_EVERY)
            heard[0] += 1
        self.assertEqual(owner.told, [])
        clock.pump([STALL_CHECK_EVERY] * 4)
        self.assertEqual(owner.told, [])
        clock.pump([STALL_CHECK_EVERY] * 2)
        self.assertEqual(len(owner.told), 1)
        self.assertIn("took none of our output", owner.told[0][1])

    def test_transportStallNeedsBothDirectionsStill(self) -> None:
        """
        The same where the transport's resume is the peer's progress.
        """
        heard = [0]
        flow, clock, sink, owner = makeFlow(heard=heard)
        flow.pauseProducing()
        flow.write(b"z")
        for _ in range(30):
            clock.advance(1.0)
            heard[0] += 1
        self.assertEqual(owner.told, [])
        clock.pump([1.0] * 10)
        self.assertEqual(len(owner.told), 1)
        self.assertIn("took none of our output", owner.told[0][1])
        flow.detach()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_hostileWriterStillDropped(self) -> None:
        """
        A peer that sends calls and reads none of the answers: once it has
        READ_PAUSE bytes left unread we stop reading it, nothing more
        arrives from it, and it is dropped the stall timeout later, as a
        peer that sends nothing is.
        """
        heard = [0]
        acked = [0]
        flow, clock, sink, owner = makeFlow(Role.SERVER, probe=lambda: acked[0], heard=heard)
        while sink.reading:
            heard[0] += 1  # a call, read
            flow.write(b"r" * SAMPLE_EVERY)  # its answer, never acknowledged
        paused = clock.seconds()
        # (Reading stopped: nothing of it arrives any more.)
        clock.pump([STALL_CHECK_EVERY] * 6)
        failed = [told for told in owner.told if told[0] == "failed"]
        self.assertEqual(len(failed), 1)
        self.assertIn("took none of our output", failed[0][1])
        self.assertLessEqual(clock.seconds() - paused, owner.stallTimeout + STALL_CHECK_EVERY)

    def test_peerProgress(self) -> None:
        """
        What the heartbeat asks: the kernel's acknowledged bytes; where the
        kernel does not tell, none.
        """
        acked = [0]
        flow, clock, sink, owner = makeFlow(probe=lambda: acked[0])
        self.assertEqual(flow.peerProgress(), 0)
        acked[0] = 100
        self.assertEqual(flow.peerProgress(), 100)
        acked[0] = 50  # (never backwards)
        self.assertEqual(flow.peerProgress(), 100)
        flow, clock, sink, owner = makeFlow()
        flow.pauseProducing()
        flow.resumeProducing()
        self.assertEqual(flow.peerProgress(), 0)
