"""
Run the whole trial suite and end with a plain summary line:

    python -m upnode.test [trial arguments]

The last line reads C{N passed, N failed, N skipped}; the exit status is
non-zero when anything failed or errored.
"""

from __future__ import annotations

import sys

from twisted.scripts import trial


def main(argv: list[str]) -> int:
    config = trial.Options()
    config.parseOptions(argv or ["upnode"])
    trial._initialDebugSetup(config)
    runner = trial._makeRunner(config)
    suite = trial._getSuite(config)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skips) + len(result.expectedFailures)
    passed = result.testsRun - failed - skipped
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if result.wasSuccessful() and result.testsRun else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
