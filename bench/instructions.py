"""
Instructions a call at each end of a lockstep pair, counted by callgrind
on the real path: the reactor, the sockets and the other process as they
are, with one process of the pair under valgrind.  Ours beside the
ceiling's (bench/ceiling.py).  Unlike a rate, a count does not drift with
the host, so it is the figure to watch while changing what one message
costs at one end (bench/cpu.py counts our protocol alone, in one process).

    python bench/instructions.py [--calls=N1,N2] [--ends=server,client]

The server end: our server and the ceiling's, each under callgrind and
driven by the ceiling's client.  The client end: our client and the
ceiling's, each under callgrind, against our server.  A call costs the
difference between a run of N2 calls and one of N1 (2,000 and 6,000 by
default), divided by N2 - N1, so that what starting, importing and
connecting cost cancels out.  User-space instructions only: the kernel's
part of a call (the same at both ends: one poll, read and send, and the
write's two registrations) is not counted.

Needs valgrind.  Prints one table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.run import Proc, command, freePort  # noqa: E402

ENDS = ("server", "client")
IMPLS = ("ours", "ceiling")
#: Under valgrind a process starts and runs some fifty times slower.
SLOW = 600.0


def counted(argv: List[str], out: Path) -> List[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]


def totalOf(out: Path) -> int:
    """
    The instructions a callgrind profile counted in all.
    """
    with open(out) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"{out}: no totals (did the process end before writing its profile?)")


def stopped(proc: Proc) -> None:
    """
    End a server as an operator would (SIGTERM: the reactor stops and the
    process exits, so that callgrind writes its profile), or kill it.
    """
    if proc.p.poll() is None:
        proc.p.send_signal(signal.SIGTERM)
        try:
            proc.p.wait(SLOW)
        except subprocess.TimeoutExpired:
            proc.stop()
            raise


def count(end: str, impl: str, calls: int, env: Dict[str, str], work: Path) -> int:
    """
    The instructions of C{impl}'s C{end} over a whole run of C{calls}
    lockstep calls, start-up included.
    """
    out = work / f"{end}-{impl}-{calls}.callgrind"
    port = freePort()
    if end == "server":
        serverArgv, clientArgv = counted(command(impl, "server", port), out), command("ceiling", "lockstep", port, calls, 0)
    else:
        serverArgv, clientArgv = command("ours", "server", port), counted(command(impl, "lockstep", port, calls, 0), out)
    server = Proc(serverArgv, env)
    try:
        server.until("listening")
        client = Proc(clientArgv, env)
        try:
            code = client.p.wait(SLOW)
        finally:
            client.stop()
    finally:
        stopped(server)
    if code != 0:
        raise RuntimeError(f"{' '.join(clientArgv)}: exited with {code}")
    return totalOf(out)


def perCall(end: str, impl: str, sizes: Tuple[int, int], env: Dict[str, str], work: Path) -> float:
    first, second = sizes
    return (count(end, impl, second, env, work) - count(end, impl, first, env, work)) / (second - first)


def table(rows: Dict[str, Dict[str, float]], sizes: Tuple[int, int]) -> str:
    lines = [
        f"Instructions a lockstep call, user space ({sizes[1]:,} less {sizes[0]:,} calls, callgrind):",
        f"  {'end':<10}{'ours':>12}{'ceiling':>12}{'ours/ceiling':>14}",
    ]
    for end, values in rows.items():
        lines.append(f"  {end:<10}{values['ours']:>12,.0f}{values['ceiling']:>12,.0f}{values['ours'] / values['ceiling']:>14.2f}")
    if len(rows) == 2:
        ours = sum(values["ours"] for values in rows.values())
        ceiling = sum(values["ceiling"] for values in rows.values())
        lines.append(f"  {'round trip':<10}{ours:>12,.0f}{ceiling:>12,.0f}{ours / ceiling:>14.2f}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", default="2000,6000", help="two run sizes, fewer first (default 2000,6000)")
    parser.add_argument("--ends", default=",".join(ENDS), help="server, client or both (default both)")
    options = parser.parse_args(argv)
    try:
        first, second = (int(n) for n in options.calls.split(","))
    except ValueError:
        parser.error(f"--calls takes two numbers of calls, fewer first, as 2000,6000; not {options.calls!r}")
    if not 0 < first < second:
        parser.error(f"--calls takes two numbers of calls, fewer first, as 2000,6000; not {options.calls!r}")
    ends = [end.strip() for end in options.ends.split(",")]
    if not ends or any(end not in ENDS for end in ends):
        parser.error(f"--ends takes server, client or both, as server,client; not {options.ends!r}")
    if shutil.which("valgrind") is None:
        raise SystemExit("bench/instructions.py counts with valgrind, which is not installed (apt install valgrind)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rows: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="upnode-instructions-") as work:
        for end in ends:
            rows[end] = {}
            for impl in IMPLS:
                print(f"  {end}: {impl}", file=sys.stderr, flush=True)
                rows[end][impl] = perCall(end, impl, (first, second), env, Path(work))
    print(table(rows, (first, second)))


if __name__ == "__main__":
    main()
