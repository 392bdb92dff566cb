"""
The test runner: its summary counts tests, not error entries, and the
whole suite's two processes run every test module once.
"""

from __future__ import annotations

from typing import Any, Iterator
from unittest import TestSuite

from twisted.python.failure import Failure
from twisted.trial.reporter import TestResult
from twisted.trial.runner import TestLoader
from twisted.trial.unittest import SynchronousTestCase

from upnode.test.__main__ import WAITING, combine, integrationTests, summarize, unitTests


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


class SplitTests(SynchronousTestCase):
    """
    The whole suite's two processes.
    """

    def test_everyModuleOnce(self) -> None:
        """
        The two processes run, between them, every test module trial finds
        in the package, and none twice.
        """
        found = set()
        for test in _flatten(TestLoader().loadByName("upnode", recurse=True)):
            found.add(test.id().rsplit(".", 2)[0])
        split = unitTests() + integrationTests() + list(WAITING)
        self.assertEqual(len(split), len(set(split)))
        self.assertEqual(set(split), found)

    def test_combine(self) -> None:
        """
        The counts add up; a second process that failed, or that printed no
        summary (it was killed), fails the run.
        """
        text = b"...\nPASSED (successes=3)\n\n3 passed, 0 failed, 1 skipped\n"
        self.assertEqual(combine(True, (10, 0, 2), 0, text), (True, (13, 0, 3)))
        failing = b"FAILED\n\n2 passed, 1 failed, 0 skipped\n"
        self.assertEqual(combine(True, (10, 0, 2), 1, failing), (False, (12, 1, 2)))
        self.assertEqual(combine(False, (9, 1, 2), 0, text), (False, (12, 1, 3)))
        self.assertEqual(combine(True, (10, 0, 2), -9, b"killed halfway"), (False, (10, 0, 2)))


def _flatten(suite: Any) -> Iterator[Any]:
    for each in suite:
        if isinstance(each, TestSuite):
            yield from _flatten(each)
        else:
            yield each
