"""
Attacks on a live ``twistd -n upnode-server``, one at a time, each against
a fresh server on 127.0.0.1: what each costs the server (RSS and open
descriptors: baseline, peak, after), when the server dropped the
attackers, and how a canary client calling ``echo`` every 50 ms fared
meanwhile.  The attackers are in bench/attackers.py.

    python bench/attack.py              the full run (about three minutes)
    python bench/attack.py --quick      short versions (under two minutes)
    python bench/attack.py --only flood,idle --json out.json
    python bench/attack.py --loop uvloop   the server as an asyncio program on uvloop

The quick run also shortens the server's handshake and line timeouts
(3 and 4 seconds) so that its idle and slowloris peers are dropped soon;
the targets follow the timeouts in force.  A server whose RSS grows more
than --rss-cap MB (2,000) over its baseline is killed, and shown so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import attackers  # noqa: E402

PY = sys.executable
Targets = List[Tuple[str, bool, str]]


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """
    A ``twistd -n upnode-server`` of our own, logging to a file.
    """

    def __init__(self, folder: Path, args: List[str], nofile: Optional[int] = None, loop: str = "twisted") -> None:
        self.port = freePort()
        self.log = folder / f"twistd-{self.port}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        if loop == "twisted":
            command = [PY, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", f"--logfile={self.log}"]
            command += ["upnode-server"]
        else:  # the same server as an asyncio program, on the loop's own transports
            command = [PY, str(HERE / "aioserver.py"), loop]
        command += ["--port", f"tcp:{self.port}:interface=127.0.0.1", *args]
        self.process = subprocess.Popen(
            command, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit
        )
        self.pid = self.process.pid
        attackers.waitForPort(self.port, 30, lambda: self.process.poll() is None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def plan(args: argparse.Namespace, folder: Path) -> List[Dict[str, Any]]:
    """
    The attacks to run: name, server arguments, attack, sizes, targets.
    """
    handshake = 3.0 if args.quick else 10.0
    lineTimeout = 4.0 if args.quick else 30.0
    common = ["--handshake-timeout", str(handshake), "--line-timeout", str(lineTimeout)]
    runs: List[Dict[str, Any]] = []

    def add(key: str, name: str, attack: str, sizes: Dict[str, Any], targets: Callable[[Dict[str, Any]], Targets], **extra: Any) -> None:
        runs.append(dict(key=key, name=name, attack=attack, sizes=sizes, targets=targets, **extra))

    def canaryOk(r: Dict[str, Any], p99: Optional[float] = None, worst: Optional[float] = None) -> Targets:
        c = r["canary"]
        out: Targets = [("canary never fails", c["failures"] == 0 and c["calls"] > 0, f"{c['failures']} failures in {c['calls'] + c['failures']}")]
        if p99 is not None:
            out.append((f"canary p99 < {p99:g} ms", c["p99"] is not None and c["p99"] < p99, f"p99 {fmt(c['p99'])} ms"))
        if worst is not None:
            ok = c["max"] is not None and c["max"] < worst and c["failures"] == 0
            out.append((f"canary worst < {worst:g} ms", ok, f"max {fmt(c['max'])} ms, {c['failures']} timed out"))
        return out

    def growth(r: Dict[str, Any], limit: float) -> Tuple[str, bool, str]:
        grown = r["rssPeak"] - r["rssBase"]
        return (f"peak RSS growth < {limit:g} MB", grown < limit, f"+{grown:.0f} MB")

    def alive(r: Dict[str, Any]) -> Tuple[str, bool, str]:
        why = "alive" if r["serverAlive"] else ("killed by the bench at its RSS cap" if r["killedAtCap"] else "GONE")
        return ("server lives", r["serverAlive"], why)

    def allDropped(r: Dict[str, Any], within: Optional[float] = None, held: bool = False) -> Targets:
        out: Targets = [("every attacker dropped", r["dropped"] == r["peers"] and r["peers"] > 0, f"{r['dropped']}/{r['peers']}")]
        if within is not None:
            value = r["heldMax"] if held else r["drops"]["last"]
            label = "each dropped within %g s of its connect" if held else "all dropped within %g s"
            out.append((label % within, value is not None and value <= within, f"{fmt(value, 1)} s"))
        return out

    if "dag" in args.only:
        for levels in args.dag_levels:
            add(
                f"dag{levels}",
                f"1 doubling DAG L={levels}",
                "dag",
                {"levels": levels},
                lambda r: [alive(r), growth(r, 300), *canaryOk(r, worst=1000)],
            )
    if "flood" in args.only:
        add(
            "flood",
            f"2 {args.flooders} flooders, no reads",
            "flood",
            {"count": args.flooders, "seconds": 40.0},
            lambda r: [growth(r, 300), *allDropped(r, 10.0), *canaryOk(r, p99=50)],
        )
    if "pipeline" in args.only:
        after = 10.0 if args.quick else 30.0
        add(
            "pipeline",
            f"3 {args.pipeliners} x 1 MiB lines, no reads",
            "pipeline",
            {"count": args.pipeliners},
            lambda r: [
                growth(r, 300),
                *allDropped(r),
                (
                    f"RSS {r['afterSeconds'] - r['drops']['last']:.0f} s after the last drop within 50 MB of baseline"
                    if r["drops"]["last"] is not None
                    else "RSS after the drop within 50 MB of baseline",
                    abs(r["rssAfter"] - r["rssBase"]) <= 50,
                    f"{r['rssAfter'] - r['rssBase']:+.0f} MB",
                ),
            ],
            afterDrop=after,
        )
    if "idle" in args.only:
        add(
            "idle",
            f"4a {args.idle} idle TCP peers",
            "idle",
            {"count": args.idle, "wait": handshake + 15},
            lambda r: [*allDropped(r, handshake + 2, held=True), *canaryOk(r)],
        )
        add(
            "tls",
            f"4b {args.tls_idle} TLS, no ClientHello",
            "idle",
            {"count": args.tls_idle, "wait": handshake + 15},
            lambda r: [*allDropped(r, handshake + 2, held=True), *canaryOk(r)],
            tls=True,
        )
    if "fdlimit" in args.only:
        add(
            "fdlimit",
            f"5 {args.fd_attackers} idle at 1024 fds",
            "fdlimit",
            {"count": args.fd_attackers, "legitWithin": handshake + 10},
            lambda r: [
                (
                    f"new client served within {handshake + 5:g} s",
                    r["legitSeconds"] is not None and r["legitSeconds"] <= handshake + 5,
                    f"{fmt(r['legitSeconds'], 2)} s, {r['legitAttempts']} attempt(s)",
                ),
                alive(r),
            ],
            nofile=1024,
        )
    if "cycles" in args.only:
        add(
            "cycles",
            f"6 {args.cycles} connect/close",
            "cycles",
            {"count": args.cycles, "concurrency": 50},
            lambda r: [
                ("connect p99 < 50 ms", r["connectP99"] is not None and r["connectP99"] < 50, f"p99 {fmt(r['connectP99'])} ms"),
                ("every cycle served", r["failures"] == 0 and r["cycles"] == args.cycles, f"{r['cycles']} ok, {r['failures']} failed"),
                *canaryOk(r),
            ],
        )
    if "slowloris" in args.only:
        interval = 1.0 if args.quick else 2.0
        add(
            "slowloris",
            f"7 {args.slowloris} slowloris, 1 B/{interval:g} s",
            "slowloris",
            {"count": args.slowloris, "interval": interval, "seconds": lineTimeout * 1.5 + 20},
            lambda r: [
                *allDropped(r),
                (
                    f"dropped after the line timeout ({lineTimeout:g} s) from the first byte, by {lineTimeout * 1.5 + 2:g} s",
                    r["drops"]["first"] is not None
                    and r["drops"]["first"] - r["firstByte"] >= lineTimeout
                    and r["drops"]["last"] - r["firstByte"] <= lineTimeout * 1.5 + 2,
                    f"{fmt(r['drops']['first'] and r['drops']['first'] - r['firstByte'], 1)}"
                    f"..{fmt(r['drops']['last'] and r['drops']['last'] - r['firstByte'], 1)} s",
                ),
                *canaryOk(r),
            ],
        )
    if "partial" in args.only:
        add(
            "partial",
            f"8 {args.partial} partial lines of {args.partial_size // 1000} KB",
            "partial",
            {"count": args.partial, "size": args.partial_size},
            lambda r: [
                ("RSS per byte held <= 2", r["rssPerByte"] is not None and r["rssPerByte"] <= 2.0, f"{fmt(r['rssPerByte'], 2)}"),
                ("all peers still up when measured", r["upWhenMeasured"] == r["peers"], f"{r['upWhenMeasured']}/{r['peers']}"),
                *canaryOk(r),
            ],
            passRss=True,
        )
    if "callbacks" in args.only:
        add(
            "callbacks",
            f"9 {args.callbacks:,} kept callbacks",
            "callbacks",
            {"count": args.callbacks},
            lambda r: [
                ("closed past maxRemoteCallbacks (100,000)", r["dropped"] == 1 and 100_000 < r["callbacksSent"] < args.callbacks, f"sent {r['callbacksSent']:,}, dropped {r['dropped']}"),
                growth(r, 300),
                *canaryOk(r),
            ],
            service="bench.attackers.KEEPS",
        )
    for run in runs:
        run["serverArgs"] = list(common)
        run["rssCap"] = args.rss_cap
        run["loop"] = args.loop
        if run.get("service"):
            run["serverArgs"] += ["--service", run["service"]]
    return runs


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "nan"
    return f"{value:.{digits}f}"


def runOne(run: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    args = list(run["serverArgs"])
    attackPort = None
    if run.get("tls"):
        from upnode.test.certs import makeCertificates

        certs = makeCertificates(folder / "certs")
        attackPort = freePort()
        args += ["--port", f"ssl:{attackPort}:interface=127.0.0.1:privateKey={folder / 'certs' / 'good.key'}:certKey={certs['good']}"]
    server = Server(folder, args, run.get("nofile"), run["loop"])
    try:
        if attackPort is not None:
            attackers.waitForPort(attackPort, 30)
        attack = attackers.ATTACKS[run["attack"]]
        port = attackPort or server.port
        kwargs: Dict[str, Any] = dict(run["sizes"])
        if attackPort is not None:
            # The canary speaks plain TCP; the attack goes to the TLS port.
            def attack(canaryPort: int, _f: Any = attack, **kw: Any) -> Dict[str, Any]:  # noqa: F811
                return _f(port, **kw)

        result = attackers.measure(
            server.pid,
            server.port,
            attack,
            settle=2.0,
            afterDrop=run.get("afterDrop"),
            passRss=run.get("passRss", False),
            rssCap=run["rssCap"],
            **kwargs,
        )
    finally:
        server.stop()
    return result


def table(rows: List[Tuple[Dict[str, Any], Dict[str, Any]]]) -> str:
    header = (
        f"{'attack':<34} {'RSS MB base/peak/after':>22} {'fds peak/after':>14} {'dropped':>10} "
        f"{'drop s first/med/last':>22} {'canary ms p50/p99/max':>22} {'fail':>5}  notes"
    )
    lines = [header, "-" * len(header)]
    for run, r in rows:
        c = r.get("canary") or {}
        dropped = f"{r['dropped']}/{r['peers']}" if "dropped" in r else "-"
        drops = r.get("drops") or {}
        lines.append(
            f"{run['name']:<34} {fmt(r['rssBase']) + '/' + fmt(r['rssPeak']) + '/' + fmt(r['rssAfter']):>22} "
            f"{str(r['fdsPeak']) + '/' + str(r['fdsAfter']):>14} {dropped:>10} "
            f"{fmt(drops.get('first'), 1) + '/' + fmt(drops.get('median'), 1) + '/' + fmt(drops.get('last'), 1):>22} "
            f"{fmt(c.get('p50'), 1) + '/' + fmt(c.get('p99'), 1) + '/' + fmt(c.get('max'), 1):>22} "
            f"{c.get('failures', '-'):>5}  {notes(run, r)}"
        )
    return "\n".join(lines)


def notes(run: Dict[str, Any], r: Dict[str, Any]) -> str:
    key = run["attack"]
    if key == "dag":
        reply = "no reply" if r["replyBytes"] is None else f"reply {r['replyBytes']:,} B"
        fate = "alive" if r["serverAlive"] else ("server KILLED at the RSS cap" if r["killedAtCap"] else "SERVER GONE")
        return f"{reply}; {'closed' if r['closedByServer'] else 'kept open'}; {fate}"
    if key in ("flood", "pipeline"):
        extra = f"; after = {r['afterSeconds'] - r['drops']['last']:.0f} s after last drop" if run.get("afterDrop") and r["drops"]["last"] else ""
        return f"sent {r['bytesSent'] / 1e6:,.0f} MB{extra}"
    if key == "idle":
        return f"longest held {fmt(r['heldMax'], 1)} s from its connect; attacker fd limit {r['fileLimit']}"
    if key == "fdlimit":
        return f"new client served in {fmt(r['legitSeconds'], 2)} s ({r['legitAttempts']} attempt(s))"
    if key == "cycles":
        return f"connect p50/p99/max {fmt(r['connectP50'], 1)}/{fmt(r['connectP99'], 1)}/{fmt(r['connectMax'], 1)} ms; {r['failures']} failed"
    if key == "slowloris":
        return f"first byte at {r['firstByte']:.1f} s"
    if key == "partial":
        return f"{fmt(r['rssPerByte'], 2)} B of RSS per byte held ({r['heldBytes'] / 1e6:.1f} MB held)"
    if key == "callbacks":
        return f"{r['callbacksSent']:,} callbacks sent before the drop"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short versions of every attack")
    parser.add_argument("--only", default="dag,flood,pipeline,idle,fdlimit,cycles,slowloris,partial,callbacks")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument(
        "--loop",
        choices=("twisted", "asyncio", "uvloop"),
        default="twisted",
        help="the server as twistd runs it (default), or as an asyncio program on asyncio's or uvloop's loop",
    )
    parser.add_argument(
        "--rss-cap", type=float, default=2000.0, help="MB of growth at which a server is killed (the machine's safety)"
    )
    parser.add_argument("--dag-levels", default="24,40")
    parser.add_argument("--flooders", type=int)
    parser.add_argument("--pipeliners", type=int)
    parser.add_argument("--idle", type=int)
    parser.add_argument("--tls-idle", type=int)
    parser.add_argument("--fd-attackers", type=int)
    parser.add_argument("--cycles", type=int)
    parser.add_argument("--slowloris", type=int)
    parser.add_argument("--partial", type=int)
    parser.add_argument("--partial-size", type=int, default=136_000)
    parser.add_argument("--callbacks", type=int)
    args = parser.parse_args()
    full = dict(flooders=50, pipeliners=20, idle=2000, tls_idle=500, fd_attackers=1100, cycles=20000, slowloris=500, partial=200, callbacks=3_000_000)
    quick = dict(flooders=10, pipeliners=5, idle=200, tls_idle=50, fd_attackers=1100, cycles=2000, slowloris=50, partial=50, callbacks=300_000)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = set(args.only.split(","))
    args.dag_levels = [int(v) for v in args.dag_levels.split(",")]
    soft = attackers.raiseFileLimit(max(args.idle, args.fd_attackers, args.slowloris) + 256)
    scaled = []
    for name in ("idle", "tls_idle", "fd_attackers", "slowloris", "partial"):
        if getattr(args, name) > soft - 128:
            setattr(args, name, soft - 128)
            scaled.append(name)
    folder = Path(tempfile.mkdtemp(prefix="upnode-attack-"))
    rows: List[Tuple[Dict[str, Any], Dict[str, Any]]] = []
    verdicts: List[Tuple[str, Targets]] = []
    began = time.monotonic()
    try:
        for run in plan(args, folder):
            t = time.monotonic()
            print(f"... {run['name']}", file=sys.stderr, flush=True)
            result = runOne(run, folder)
            result["seconds"] = time.monotonic() - t
            rows.append((run, result))
            verdicts.append((run["name"], run["targets"](result)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    mode = "quick" if args.quick else "full"
    where = "twistd upnode-server" if args.loop == "twisted" else f"upnode-server as an asyncio program on {args.loop}"
    print(f"Attacks on {where} ({mode} run, {time.monotonic() - began:.0f} s; Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    if scaled:
        print(f"Scaled down to the descriptor limit ({soft}): {', '.join(scaled)}")
    print(table(rows))
    print()
    print("Targets:")
    met = failed = 0
    for name, targets in verdicts:
        for label, ok, value in targets:
            met, failed = met + ok, failed + (not ok)
            print(f"  {'met    ' if ok else 'NOT MET'}  {name}: {label} ({value})")
    print(f"{met} met, {failed} not met")
    if args.json:
        raw = [{"name": run["name"], "serverArgs": run["serverArgs"], "result": result} for run, result in rows]
        with open(args.json, "w") as f:
            json.dump({"mode": mode, "attacks": raw}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
