"""
L{upnode._heartbeat.Heartbeat} on its own: a clock, a ping that answers
when told, and a counter standing for what is heard from the peer.
"""

from __future__ import annotations

from typing import Any, Callable, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upnode._heartbeat import Heartbeat


class Signs:
    """
    A peer's signs of life, as the test sets them: chunks heard, our bytes
    written and acknowledged.
    """

    def __init__(self) -> None:
        self.chunks = 0
        self.wrote = 0
        self.acked = 0

    def written(self) -> int:
        return self.wrote

    def heard(self, upTo: int) -> int:
        return self.chunks + min(self.acked, upTo)


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.answers: List[Callable[..., None]] = []
        self.roundTrips: List[float] = []
        self.expired: List[float] = []
        self.signs = Signs()
        self.heartbeat = Heartbeat(
            self.answers.append, 10.0, 5.0, self.clock, self.roundTrips.append, self.expire, self.signs
        )
        self.heartbeat.start()
        self.addCleanup(self.heartbeat.stop)

    def expire(self) -> None:
        self.expired.append(self.clock.seconds())

    def hearEvery(self, seconds: float, until: float) -> None:
        while self.clock.seconds() + seconds <= until:
            self.clock.advance(seconds)
            self.signs.chunks += 1

    def test_silentPeerDroppedAtPingPlusTimeout(self) -> None:
        """
        Nothing heard at all: the link is given up on C{timeout} seconds
        after the ping went out, and the heartbeat stops.
        """
        self.clock.advance(10.0)
        self.clock.advance(4.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [15.0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_heardBeforeThePingDoesNotCount(self) -> None:
        """
        What was heard before the ping went out says nothing of the peer since.
        """
        self.hearEvery(1.0, 9.0)
        self.clock.advance(1.0)
        self.clock.advance(5.0)
        self.assertEqual(self.expired, [15.0])

    def test_busyPeerKept(self) -> None:
        """
        Answers held back (behind a megabyte of replies, say) while the
        peer's bytes keep coming: the link is kept for as long as they do,
        and given up on once the peer has been silent for C{timeout} (or
        up to twice that: the peer is asked about once per C{timeout}).
        """
        self.hearEvery(0.5, 60.0)
        self.assertEqual(self.expired, [])
        self.assertEqual(len(self.answers), 6)  # pings still go out
        for _ in range(20):
            self.clock.advance(0.5)
        self.assertEqual(len(self.expired), 1)
        self.assertTrue(65.0 <= self.expired[0] <= 70.0, self.expired)

    def test_ourOutputTakenBeforeThePing(self) -> None:
        """
        The peer has nothing to say, but its TCP stack keeps acknowledging
        the megabyte we wrote before the ping (which has not reached it
        yet): alive.  Once all of it is acknowledged and the ping too, more
        acknowledgements are no sign (a stopped process's kernel, or a
        proxy's, acknowledges them): the link goes a timeout later.
        """
        self.signs.wrote = 1_000_000
        self.clock.advance(10.0)  # the ping goes out behind that megabyte
        for _ in range(10):
            self.clock.advance(1.0)
            self.signs.acked += 100_000
        self.assertEqual(self.expired, [])
        for _ in range(10):
            self.clock.advance(1.0)
            self.signs.acked += 100_000  # what follows the ping
        self.assertEqual(len(self.expired), 1)
        self.assertLessEqual(self.expired[0], 20.0 + 2 * 5.0)

    def test_lateAnswersStillTimed(self) -> None:
        """
        Answers come back in order and each one's round trip is reported;
        after an answer the next outstanding ping is timed from when it went
        out.
        """
        self.hearEvery(0.5, 20.0)  # two pings out, at 10 and 20
        self.answers[0]()
        self.assertEqual(self.roundTrips, [10.0])
        self.clock.advance(4.9)  # the ping of 20 s: due at 25
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, [25.0])

    def test_answeredInTime(self) -> None:
        self.clock.advance(10.0)
        self.clock.advance(0.25)
        self.answers[0]()
        self.assertEqual(self.roundTrips, [0.25])
        for _ in range(3):
            self.clock.advance(10.0)
            self.answers[-1]()
        self.assertEqual(len(self.answers), 4)
        self.assertEqual(self.expired, [])
        self.answers[0]()  # an answer nobody waits for
        self.assertEqual(len(self.roundTrips), 4)

    def test_noTimeout(self) -> None:
        self.heartbeat.stop()
        heartbeat = Heartbeat(self.answers.append, 1.0, 0.0, self.clock, self.roundTrips.append, self.expire)
        heartbeat.start()
        self.clock.pump([1.0] * 100)
        self.assertEqual(len(self.answers), 100)
        self.assertEqual(self.expired, [])
        heartbeat.stop()

    def test_lateBeatSkipsMissedPings(self) -> None:
        """
        Pings go out every C{interval} from the start; a reactor held up
        for several intervals sends one ping late, not one for each it
        missed, and the next is due on the same grid.
        """
        self.heartbeat.stop()
        heartbeat = Heartbeat(self.answers.append, 10.0, 0.0, self.clock, self.roundTrips.append, self.expire)
        heartbeat.start()
        self.addCleanup(heartbeat.stop)
        self.clock.advance(35.0)
        self.assertEqual(len(self.answers), 1)
        self.clock.advance(4.9)
        self.assertEqual(len(self.answers), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.answers), 2)
        self.clock.advance(10.0)
        self.assertEqual(len(self.answers), 3)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [60.0])

    def test_stopDuringPing(self) -> None:
        """
        A link lost while its ping is written (which stops the heartbeat)
        leaves no timer behind.
        """
        self.heartbeat.stop()

        def ping(cb: Callable[..., None]) -> None:
            heartbeat.stop()
            raise ConnectionError("gone")

        heartbeat = Heartbeat(ping, 10.0, 5.0, self.clock, self.roundTrips.append, self.expire)
        heartbeat.start()
        self.clock.advance(10.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopLetsGo(self) -> None:
        """
        A stopped heartbeat holds no timer and nothing of its link.
        """
        held: List[Any] = [self.answers, self.expire]
        self.clock.advance(10.0)
        self.heartbeat.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn(self.heartbeat._ping, held)
        self.assertNotEqual(self.heartbeat._expired, self.expire)
