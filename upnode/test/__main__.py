"""
Run the whole trial suite and end with a plain summary line:

    python -m upnode.test [trial options]                   the whole suite
    python -m upnode.test --unit [trial options]            the unit tests alone
    python -m upnode.test [trial options] TEST [TEST ...]   the tests named

The last line reads C{N passed, N failed, N skipped}, counting tests as
trial does (a test with two errors, say a failure and an unclean reactor,
is one failed test); the exit status is non-zero when anything failed or
errored, or when no test ran.

The whole suite runs in two processes at once: the integration tests on
emulated network paths (L{WAITING}) in a second trial process, beside the
rest.  They spend most of their three minutes waiting on the emulated
link's delays, outages and retransmissions, using a tenth of a core, in
network namespaces of their own (no port of theirs can meet another
test's), so the whole run takes about the time of the rest alone.  That
process's report is printed after this one's, and the summary counts
both; docs/decisions.md says why these tests and no others.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set, Tuple

from twisted.scripts import trial

HERE = Path(__file__).resolve().parent

#: The integration test modules that run in the second process.
WAITING = tuple(f"upnode.test.integration.{name}" for name in ("test_realpaths", "test_netpath", "test_attempts"))

_SUMMARY = re.compile(rb"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.M)


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
    return [f"upnode.test.{path.stem}" for path in sorted(HERE.glob("test_*.py"))]


def integrationTests() -> List[str]:
    """
    The integration test modules, but for L{WAITING}.
    """
    every = (f"upnode.test.integration.{path.stem}" for path in sorted((HERE / "integration").glob("test_*.py")))
    return [name for name in every if name not in WAITING]


def runTrial(config: trial.Options) -> Tuple[bool, Tuple[int, int, int]]:
    """
    Run the tests C{config} names, in this process; whether everything
    passed (and anything ran), and the counts.
    """
    # trial's own steps, as its run() takes them, so that its options
    # (--reactor, --jobs is not supported here) apply and we keep the result.
    trial._initialDebugSetup(config)
    runner = trial._makeRunner(config)
    suite = trial._getSuite(config)
    result = runner.run(suite)
    return bool(result.wasSuccessful() and result.testsRun), summarize(result)


def main(argv: List[str]) -> int:
    options = [arg for arg in argv if arg != "--unit"]
    config = trial.Options()
    config.parseOptions(options)  # once: a --reactor option installs it
    if "--unit" in argv:
        config["tests"].extend(unitTests())
    if config["tests"]:
        return report(*runTrial(config))
    # The whole suite: WAITING in a second process, started first.
    config["tests"].extend(unitTests() + integrationTests())
    with tempfile.TemporaryFile() as output:
        second: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            [sys.executable, "-m", "upnode.test", *options, *WAITING], stdout=output, stderr=subprocess.STDOUT
        )
        try:
            ok, counts = runTrial(config)
            code = second.wait()
            second = None
        finally:
            if second is not None:  # this process failed or was interrupted
                second.terminate()
                second.wait()
        output.seek(0)
        text = output.read()
    print(f"\n{'=' * 72}\nand beside it, in a second process: {' '.join(WAITING)}\n{'=' * 72}", flush=True)
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    if not _SUMMARY.search(text):
        print("\nthe second process ended without its summary line")
    return report(*combine(ok, counts, code, text))


def combine(ok: bool, counts: Tuple[int, int, int], code: int, text: bytes) -> Tuple[bool, Tuple[int, int, int]]:
    """
    This process's outcome and counts, with those of the second process,
    which exited with C{code} after printing C{text}: a second process that
    failed, or that ended without its summary line (killed, say), fails the
    run.
    """
    found = _SUMMARY.findall(text)
    if not found:
        return False, counts
    passed, failed, skipped = (int(n) for n in found[-1])
    return ok and code == 0, (counts[0] + passed, counts[1] + failed, counts[2] + skipped)


def report(ok: bool, counts: Tuple[int, int, int]) -> int:
    passed, failed, skipped = counts
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok and passed + failed + skipped else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
