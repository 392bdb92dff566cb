"""
The test runner's summary counts tests, not error entries.
"""

from __future__ import annotations

from twisted.python.failure import Failure
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from upnode.test.__main__ import summarize


def _sample() -> type:
    # Made in a function, so that trial does not collect it as a test.
    class Sample(SynchronousTestCase):
        def test_ok(self) -> None:
            pass

        def test_fails(self) -> None:
            self.fail("no")

        def test_skips(self) -> None:
            raise self.skipTest("not here")

    return Sample


class SummaryTests(SynchronousTestCase):
    def test_testsNotEntries(self) -> None:
        Sample = _sample()
        result = TestResult()
        for name in ("test_ok", "test_fails", "test_skips"):
            Sample(name).run(result)
        # A second error against a test that already failed, as an unclean
        # reactor adds at cleanup, is still one failed test.
        failing = Sample("test_fails")
        result.addError(failing, Failure(Exception("dirty reactor")))
        # A test that passed and then erred in its cleanup failed.
        ok = Sample("test_ok")
        result.addError(ok, Failure(Exception("dirty reactor")))
        self.assertEqual(summarize(result), (0, 2, 1))

    def test_allPass(self) -> None:
        Sample = _sample()
        result = TestResult()
        Sample("test_ok").run(result)
        Sample("test_skips").run(result)
        self.assertEqual(summarize(result), (1, 0, 1))
