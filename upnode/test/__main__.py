"""
Run the whole trial suite and end with a plain summary line:

    python -m upnode.test [trial arguments]
    python -m upnode.test --unit [trial arguments]    the unit tests alone

The last line reads C{N passed, N failed, N skipped}, counting tests as
trial does (a test with two errors, say a failure and an unclean reactor,
is one failed test); the exit status is non-zero when anything failed or
errored, or when no test ran.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, List, Set, Tuple

from twisted.scripts import trial


def _ids(entries: Iterable[Any]) -> Set[str]:
    ids = set()
    for entry in entries:
        test = entry[0] if isinstance(entry, tuple) else entry
        ids.add(test.id() if hasattr(test, "id") else repr(test))
    return ids


def summarize(result: Any) -> Tuple[int, int, int]:
    """
    (passed, failed, skipped) tests of a trial result.
    """
    failed = _ids(result.failures) | _ids(result.errors) | _ids(result.unexpectedSuccesses)
    skipped = (_ids(result.skips) | _ids(result.expectedFailures)) - failed
    return result.testsRun - len(failed) - len(skipped), len(failed), len(skipped)


def unitTests() -> List[str]:
    """
    The unit test modules: every C{test_*.py} beside this file (the
    integration tests, with real sockets and processes, are a package of
    their own).
    """
    here = Path(__file__).resolve().parent
    return [f"upnode.test.{path.stem}" for path in sorted(here.glob("test_*.py"))]


def main(argv: list[str]) -> int:
    if "--unit" in argv:
        argv = [arg for arg in argv if arg != "--unit"] + unitTests()
    # trial's own steps, as its run() takes them, so that its options
    # (--reactor, --jobs is not supported here) apply and we keep the result.
    config = trial.Options()
    config.parseOptions(argv or ["upnode"])
    trial._initialDebugSetup(config)
    runner = trial._makeRunner(config)
    suite = trial._getSuite(config)
    result = runner.run(suite)
    passed, failed, skipped = summarize(result)
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if result.wasSuccessful() and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
