"""
A seeded nemesis against durable and C{retry=True} calls: an upnode client
(namespace A, with an outbox) and server (namespace B) joined by the
packet-level link emulator, while a schedule drawn from the seed kills -9
or stops (SIGSTOP, then SIGCONT) either side and blackholes or freezes the
link. At the end the faults stop, the client stops calling, the outbox
drains, and the logs are checked.

    python bench/nemesis.py [--seed N] [--seconds 40]

The client calls C{store("d", i)} durably and C{store("r", j)} with
C{retry=True}, alternately, every 25 ms, numbering each kind from 1 across
restarts, and logs C{c i} once C{call(durable=True)} has returned (the
call is committed: acknowledged). The server logs every execution. The
report: acknowledged durable calls never executed (must be 0), duplicate
executions per kind and their rate, and first executions out of call order
per kind. The same seed replays the same schedule of faults (the
processes' timing is the kernel's).

Needs root (namespaces, TUN devices). This file is also the two peers
(C{server DIR}, C{client DIR FIRST_D FIRST_R}).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

from upnode.test.integration import netpath  # noqa: E402

PORT = 7000
OPTIONS = {"ping": 1, "timeout": 2, "reconnect": 0.2, "maxDelay": 1.0, "jitter": 0, "handshakeTimeout": 3}


def say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


# -- the peers ---------------------------------------------------------------


def server(folder: str) -> None:
    from twisted.internet import reactor

    import upnode

    netpath.watchParent()
    log = open(os.path.join(folder, "executed.log"), "a", buffering=1)

    def store(kind: str, i: int, cb: Any) -> None:
        log.write(f"{kind} {i}\n")
        cb(i)

    upnode.upnode({"store": store}).listen(PORT, "0.0.0.0", {"ping": OPTIONS["ping"], "timeout": OPTIONS["timeout"]}).addCallback(
        lambda _: say(ev="listening")
    )
    reactor.run()  # type: ignore[attr-defined]


def client(folder: str, firstD: int, firstR: int) -> None:
    from twisted.internet import reactor, task

    import upnode

    commits = open(os.path.join(folder, "committed.log"), "a", buffering=1)
    sent = open(os.path.join(folder, "retried.log"), "a", buffering=1)
    up = upnode.connect(PORT, netpath.ADDRESS_B, dict(OPTIONS, outbox=os.path.join(folder, "outbox.sqlite")))
    assert up.outbox is not None
    outbox = up.outbox
    say(ev="restored", restored=outbox.restored)
    up.on("error", lambda f: None)  # reported by the logs' checks instead
    state = {"d": firstD, "r": firstR, "retryPending": 0, "turn": 0}

    def settled(_: Any) -> None:
        state["retryPending"] -= 1

    def one() -> None:
        state["turn"] ^= 1
        if state["turn"]:
            i = state["d"]
            state["d"] += 1
            up.call("store", "d", i, durable=True).addErrback(lambda f: None)
            commits.write(f"c {i}\n")
        else:
            j = state["r"]
            state["r"] += 1
            state["retryPending"] += 1
            up.call("store", "r", j, retry=True).addErrback(lambda f: None).addBoth(settled)
            sent.write(f"r {j}\n")

    loop = task.LoopingCall(one)
    loop.start(0.025)

    def command(message: Dict[str, Any]) -> None:
        if message.get("stop"):
            reactor.callFromThread(loop.stop)  # type: ignore[attr-defined]

    netpath.watchParent(command)

    def report() -> None:
        say(ev="depth", depth=outbox.depth, retryPending=state["retryPending"], running=loop.running)

    task.LoopingCall(report).start(0.5)
    reactor.run()  # type: ignore[attr-defined]


# -- the harness -------------------------------------------------------------

FAULTS = ["kill-client", "kill-server", "stop-client", "stop-server", "blackhole", "freeze-release", "freeze-drop"]


def schedule(seed: int, seconds: float) -> List[Tuple[float, str, float]]:
    """
    (start, fault, duration) for a run of C{seconds}, from C{seed}.
    """
    rng = random.Random(seed)
    plan: List[Tuple[float, str, float]] = []
    at = 2.0
    while True:
        fault = rng.choice(FAULTS)
        duration = round(rng.uniform(0.3, 1.5) if fault.startswith("kill") else rng.uniform(1.0, 7.0), 2)
        if at + duration > seconds:
            return plan
        plan.append((round(at, 2), fault, duration))
        at += duration + rng.uniform(1.0, 4.0)


def _last(path: Path, prefix: str) -> int:
    if not path.exists():
        return 0
    numbers = [int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith(prefix + " ")]
    return max(numbers, default=0)


def analyse(folder: Path) -> Dict[str, Any]:
    committed = {int(line.split()[1]) for line in (folder / "committed.log").read_text().splitlines() if line}
    executions: Dict[str, List[int]] = {"d": [], "r": []}
    for line in (folder / "executed.log").read_text().splitlines():
        kind, text = line.split()
        executions[kind].append(int(text))
    result: Dict[str, Any] = {"committed": len(committed), "lost": sorted(committed - set(executions["d"]))[:20]}
    result["lostCount"] = len(committed - set(executions["d"]))
    for kind, runs in executions.items():
        seen: set[int] = set()
        highest = 0
        violations = 0
        for number in runs:
            if number in seen:
                continue
            seen.add(number)
            if number < highest:
                violations += 1
            highest = max(highest, number)
        result[kind] = {
            "executions": len(runs),
            "unique": len(seen),
            "duplicates": len(runs) - len(seen),
            "rate": (len(runs) - len(seen)) / len(seen) if seen else 0.0,
            "orderViolations": violations,
        }
    result["retriedSent"] = len((folder / "retried.log").read_text().splitlines())
    return result


class Nemesis:
    def __init__(self, net: netpath.NetPath, folder: Path) -> None:
        self.net = net
        self.folder = folder
        self.server: Optional[netpath.Peer] = None
        self.client: Optional[netpath.Peer] = None
        self.restored: List[int] = []

    def startServer(self) -> None:
        self.server = self.net.spawn("b", [str(HERE), "server", str(self.folder)])
        if self.server.until("ev", 20) is None:
            raise RuntimeError(f"the server did not start: {self.server.stderr}")

    def startClient(self) -> None:
        # A gap after the numbers logged: a call committed by a killed
        # client just before it logged it keeps a number of its own.
        firstD = _last(self.folder / "committed.log", "c") + 100
        firstR = _last(self.folder / "retried.log", "r") + 100
        self.client = self.net.spawn("a", [str(HERE), "client", str(self.folder), str(firstD), str(firstR)])
        restored = self.client.until("restored", 20)
        if restored is None:
            raise RuntimeError(f"the client did not start: {self.client.stderr}")
        self.restored.append(restored["restored"])

    def fault(self, name: str, duration: float) -> None:
        if name.startswith("kill"):
            peer = self.client if name == "kill-client" else self.server
            assert peer is not None
            peer.kill()
            time.sleep(duration)
            (self.startClient if name == "kill-client" else self.startServer)()
        elif name.startswith("stop"):
            peer = self.client if name == "stop-client" else self.server
            assert peer is not None
            peer.signal(signal.SIGSTOP)
            time.sleep(duration)
            peer.signal(signal.SIGCONT)
        elif name == "blackhole":
            self.net.set(blackhole=True)
            time.sleep(duration)
            self.net.set(blackhole=False)
        else:
            self.net.set(freeze=True)
            time.sleep(duration)
            self.net.set(freeze=False, drop=name == "freeze-drop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs and the outbox")
    args = parser.parse_args()
    reason = netpath.unavailable()
    if reason is not None:
        print(f"cannot emulate paths here: {reason}", file=sys.stderr)
        return 2
    plan = schedule(args.seed, args.seconds)
    print(f"seed {args.seed}: {len(plan)} faults: " + ", ".join(f"{a:g}s {f} {d:g}s" for a, f, d in plan), flush=True)
    folder = Path(tempfile.mkdtemp(prefix="upnode-nemesis-"))
    drained = False
    try:
        with netpath.NetPath(lifetime=args.seconds + 120, seed=args.seed) as net:
            net.set(delay=0.01, jitter=0.002)
            nemesis = Nemesis(net, folder)
            nemesis.startServer()
            nemesis.startClient()
            began = time.monotonic()
            for at, fault, duration in plan:
                time.sleep(max(0.0, began + at - time.monotonic()))
                nemesis.fault(fault, duration)
            time.sleep(max(0.0, began + args.seconds - time.monotonic()))
            assert nemesis.client is not None
            nemesis.client.send({"stop": True})
            end = time.monotonic() + 60
            while time.monotonic() < end:
                report = nemesis.client.until("depth", 5)
                if report and not report["running"] and not report["depth"] and not report["retryPending"]:
                    drained = True
                    break
            time.sleep(0.5)  # the last removals reach the disk
        result = analyse(folder)
    finally:
        if args.keep:
            print(f"logs in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    result["drained"] = drained
    result["restored"] = nemesis.restored
    d, r = result["d"], result["r"]
    print(f"durable calls acknowledged (committed): {result['committed']}; executed: {d['unique']}")
    print(f"acknowledged durable calls lost: {result['lostCount']} {result['lost'] or ''}")
    print(f"outbox drained at the end: {drained}; restored at each client start: {nemesis.restored}")
    for name, kind in (("durable", d), ("retry=True", r)):
        print(
            f"{name}: {kind['executions']} executions of {kind['unique']} calls, {kind['duplicates']} duplicates "
            f"({kind['rate']:.1%}), {kind['orderViolations']} first executions out of call order"
        )
    print(f"retry=True calls made: {result['retriedSent']} (those in a killed client's memory are lost by design)")
    return 1 if result["lostCount"] else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "server":
        server(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
