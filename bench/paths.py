"""
Real network paths: an upnode server in one network namespace, an upnode
client in another, joined by the packet-level link emulator of the
integration tests (delay, rate with a tail-drop queue, loss, silent
blackholes), so that both kernels' TCP stacks react as on a real network.
Each scenario prints what the link promises and what it did.

    python bench/paths.py                       # every scenario, about 4 minutes
    python bench/paths.py --scenario partition  # one of: SCENARIOS below
    python bench/paths.py --json out.json       # the raw events too

Needs root (namespaces, TUN devices). The same file is the two peers the
scenarios spawn into the namespaces (C{server SPEC}, C{client SPEC}); they
print JSON lines, stamped with the monotonic clock all processes share.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from upnode.test.integration import netpath  # noqa: E402

PORT = 7000
KIB = 1024


def say(**message: Any) -> None:
    message["t"] = time.monotonic()
    print(json.dumps(message), flush=True)


# -- the peers, inside the namespaces ---------------------------------------


def _logToStdout() -> None:
    """
    upnode's own log lines (drops, pings, links up and down) as events.
    """
    from twisted.logger import LogLevel, formatEvent, globalLogBeginner

    def observe(event: Dict[str, Any]) -> None:
        level = event.get("log_level")
        namespace = event.get("log_namespace", "")
        if level is None or level < LogLevel.info:
            return
        if level < LogLevel.warn and not namespace.startswith("upnode"):
            return
        say(ev="log", level=level.name, ns=namespace, msg=formatEvent(event))

    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)  # type: ignore[list-item]


def server(spec: Dict[str, Any]) -> None:
    from twisted.internet import defer, reactor

    import upnode

    netpath.watchParent()
    _logToStdout()

    def cons(remote: Any, conn: Any) -> Any:
        say(ev="link", port=conn.transport.getHost().port)

        def big(n: int, cb: Any) -> None:
            cb("x" * n)

        def upload(data: str, cb: Any) -> None:
            say(ev="uploaded", size=len(data))
            cb(len(data))

        def tick(i: int, cb: Any) -> None:
            cb(i)

        return {"big": big, "upload": upload, "tick": tick}

    options = dict(spec.get("options", {}))
    if "tls" in spec:
        options["endpoint"] = f"ssl:{PORT}:privateKey={spec['tls']['key']}:certKey={spec['tls']['cert']}"
        d = upnode.upnode(cons).listen(options)
    else:
        served = upnode.upnode(cons)
        d = defer.gatherResults([served.listen(port, "0.0.0.0", options) for port in spec.get("ports", [PORT])])
    d.addCallback(lambda _: say(ev="listening"))
    d.addErrback(lambda f: say(ev="error", msg=f.getErrorMessage()))
    reactor.callLater(spec.get("lifetime", 120), reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def client(spec: Dict[str, Any]) -> None:
    """
    Connect, make the calls the spec asks for (C{big}: [size, count]
    concurrent replies of C{size} characters; C{upload}: one call carrying
    C{upload} characters; C{ticks}: calls a second, for ever) and report
    every event.
    """
    from twisted.internet import reactor, task

    import upnode

    netpath.watchParent()
    _logToStdout()
    options = dict(spec.get("options", {}))
    if "endpoint" in spec:
        up = upnode.connect(dict(options, endpoint=spec["endpoint"]))
    elif "endpoints" in spec:
        up = upnode.connect(dict(options, endpoints=spec["endpoints"]))
    else:
        up = upnode.connect(PORT, netpath.ADDRESS_B, options)
    # The first attempt goes out as the reactor starts: its SYN's clock.
    reactor.callWhenRunning(say, ev="started")  # type: ignore[attr-defined]
    up.on("up", lambda remote: say(ev="up"))
    up.on("down", lambda: say(ev="down"))
    up.on("reconnect", lambda: say(ev="reconnect"))
    up.on("ping", lambda rtt: say(ev="ping", rtt=rtt))
    up.on("error", lambda f: say(ev="error", msg=getattr(f, "getErrorMessage", lambda: str(f))()))
    pending = {"n": 0}

    def settled(_: Any) -> None:
        pending["n"] -= 1
        if not pending["n"]:
            say(ev="settled")

    def track(what: str, i: int, d: Any, size: Callable[[Any], int]) -> None:
        pending["n"] += 1
        d.addCallbacks(
            lambda v: say(ev="reply", what=what, i=i, size=size(v)),
            lambda f: say(ev="fail", what=what, i=i, err=f.type.__name__, msg=f.getErrorMessage()),
        )
        d.addBoth(settled)

    if "big" in spec:
        n, count = spec["big"]
        for i in range(count):
            track("big", i, up.call("big", n), len)
    if "upload" in spec:
        track("upload", 0, up.call("upload", "u" * spec["upload"]), int)
    if "ticks" in spec:
        counter = {"i": 0}

        def tick() -> None:
            i = counter["i"] = counter["i"] + 1
            sent = time.monotonic()
            up.call("tick", i).addCallbacks(
                lambda _: say(ev="tick", i=i, sent=sent),
                lambda f: say(ev="fail", what="tick", i=i, sent=sent, err=f.type.__name__),
            )

        task.LoopingCall(tick).start(1.0 / spec["ticks"])
    reactor.callLater(spec.get("lifetime", 120), reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


# -- the harness -------------------------------------------------------------


class Run:
    """
    One scenario's path, server and client, and the events they report.
    """

    def __init__(self, net: netpath.NetPath) -> None:
        self.net = net
        self.server: Optional[netpath.Peer] = None
        self.client: Optional[netpath.Peer] = None
        self.events: List[Dict[str, Any]] = []

    def startServer(self, spec: Dict[str, Any]) -> None:
        self.server = self.net.spawn("b", [str(HERE), "server", json.dumps(spec)])
        end = time.monotonic() + 20
        while True:
            event = self.server.until("ev", end - time.monotonic())
            if event is None or event["ev"] == "error":
                raise RuntimeError(f"the server did not start: {self.server.seen} {self.server.stderr}")
            if event["ev"] == "listening":
                return

    def startClient(self, spec: Dict[str, Any]) -> float:
        self.client = self.net.spawn("a", [str(HERE), "client", json.dumps(spec)])
        return time.monotonic()

    def watch(self, seconds: float, stop: Callable[[Dict[str, Any]], bool] = lambda e: False) -> bool:
        """
        Collect the client's events for C{seconds} at most; C{True} if
        C{stop} said so first.
        """
        assert self.client is not None
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            event = self.client.read(min(left, 0.5))
            if event is None:
                if self.client.process.poll() is not None:
                    return False
                continue
            event.setdefault("side", "client")
            self.events.append(event)
            if stop(event):
                return True

    def serverEvents(self) -> List[Dict[str, Any]]:
        assert self.server is not None
        events: List[Dict[str, Any]] = []
        while True:
            event = self.server.read(0.05)
            if event is None:
                return events
            event.setdefault("side", "server")
            events.append(event)

    def of(self, kind: str, **match: Any) -> List[Dict[str, Any]]:
        return [e for e in self.events if e.get("ev") == kind and all(e.get(k) == v for k, v in match.items())]


def _drops(events: List[Dict[str, Any]], since: float) -> List[str]:
    """
    The drop and link-down messages among the log events, with their time.
    """
    found = []
    for e in events:
        if e.get("ev") != "log":
            continue
        msg = e["msg"]
        if any(w in msg for w in ("Dropping", "No ping answer", "link down", "took none", "lost before")):
            found.append(f"{e['side']} {e['t'] - since:.1f}s: {msg[:150]}")
    return found


def _firstUp(run: Run, timeout: float) -> Optional[float]:
    if run.watch(timeout, lambda e: e.get("ev") == "up"):
        return float(run.of("up")[0]["t"])
    return None


def scenarioBig(net: netpath.NetPath, upload: bool) -> Dict[str, Any]:
    net.set(delay=0.3, rate=1_000_000, queue=64 * KIB)
    run = Run(net)
    options = {"ping": 0} if upload else {}
    run.startServer({"options": options})
    spec: Dict[str, Any] = {"options": options, "big": [512 * KIB, 4]}
    if upload:
        spec["upload"] = 640 * KIB
    started = run.startClient(spec)
    up = _firstUp(run, 20)
    if up is None:
        return {"measured": "never up", "run": run}
    run.watch(60, lambda e: e.get("ev") == "settled")
    serverEvents = run.serverEvents()
    replies = run.of("reply", what="big")
    fails = run.of("fail")
    downs = run.of("down")
    parts = [f"{len(replies)}/4 replies"]
    if upload:
        parts.append("upload " + ("answered" if run.of("reply", what="upload") else "failed"))
    if replies:
        parts.append(f"last reply at {max(e['t'] for e in replies) - up:.1f}s")
    parts.append(f"link dropped at {downs[0]['t'] - up:.1f}s" if downs else "link never dropped")
    if fails:
        parts.append(f"{len(fails)} calls failed ({fails[0]['err']})")
    drops = _drops(run.events + serverEvents, up)
    return {
        "measured": "; ".join(parts),
        "drops": drops,
        "ok": len(replies) == 4 and not downs and not fails,
        "events": run.events + serverEvents,
        "started": started,
    }


#: Seconds from a path clearing to calls answered again, after an outage
#: the link does not ride out: the reconnect delay (1 s) and a connect and
#: handshake of a few round trips.
BACK_WITHIN = 3.0


def scenarioPartition(
    net: netpath.NetPath, outage: float, delay: float = 0.025, ridden: bool = True, options: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """
    A silent outage of C{outage} seconds on a path of C{delay} seconds each
    way, with C{options} on both sides.  C{ridden}: the promise is that the
    link rides it out (no drop, no failed call); else, that calls are
    answered again within L{BACK_WITHIN} seconds of the path clearing.
    """
    net.set(delay=delay)
    run = Run(net)
    run.startServer({"options": options or {}})
    run.startClient({"ticks": 20, "options": options or {}})
    up = _firstUp(run, 20)
    if up is None:
        return {"measured": "never up"}
    # The worst phase: the client's first ping (10 s after up) leaves
    # 0.1 s into the outage, the server's about then too.
    run.watch(up + 9.9 - time.monotonic())
    start = time.monotonic()
    net.set(blackhole=True)
    run.watch(outage)
    net.set(blackhole=False)
    cleared = time.monotonic()

    def resumedFor(seconds: float) -> Callable[[Dict[str, Any]], bool]:
        def check(e: Dict[str, Any]) -> bool:
            ticks = [t for t in run.of("tick") if t["t"] > cleared]
            return bool(ticks) and e["t"] - ticks[0]["t"] >= seconds

        return check

    run.watch(30, resumedFor(2.0))
    serverEvents = run.serverEvents()
    ticks = [t for t in run.of("tick") if t["t"] > start]
    resumed = next((t["t"] for t in ticks if t["t"] > cleared), None)
    fails = [f for f in run.of("fail") if f["t"] > start]
    downs = [d for d in run.of("down") if d["t"] > start]
    parts = [f"link dropped at {downs[0]['t'] - start:.1f}s" if downs else "link survived"]
    if resumed is not None:
        parts.append(f"first reply {resumed - start:.1f}s after the outage began ({resumed - cleared:.1f}s after it ended)")
    else:
        parts.append("no reply after the outage")
    kinds = sorted({f["err"] for f in fails})
    parts.append(f"{len(fails)} calls failed" + (f" ({', '.join(kinds)})" if kinds else ""))
    # An outage the link does not ride out rebuilds it, and the traffic
    # must be back soon after the path clears.
    return {
        "measured": "; ".join(parts),
        "drops": _drops(run.events + serverEvents, start),
        "ok": (not downs and not fails) if ridden else resumed is not None and resumed - cleared <= BACK_WITHIN,
        "events": run.events + serverEvents,
    }


def scenarioDeadHost(net: netpath.NetPath, endpointString: bool) -> Dict[str, Any]:
    net.set(delay=0.025)
    run = Run(net)
    run.startServer({})
    net.set(blackhole=True)
    options = {"handshakeTimeout": 3}
    spec: Dict[str, Any] = {"options": options}
    if endpointString:
        spec["endpoint"] = f"tcp:{netpath.ADDRESS_B}:{PORT}:timeout=3"
    start = run.startClient(spec)
    run.watch(20)
    net.set(blackhole=False)
    cleared = time.monotonic()
    up = _firstUp(run, 45)
    attempts = len(run.of("reconnect"))
    errors = run.of("error")
    parts = [f"up {up - cleared:.1f}s after the path cleared ({up - start:.1f}s after start)" if up else "not up 45s after the path cleared"]
    parts.append(f"{attempts} reconnect events, {len(errors)} errors")
    return {
        "measured": "; ".join(parts),
        "ok": up is not None and up - cleared <= 3 + 1 + 1,
        "errors": [f"{e['t'] - start:.1f}s: {e['msg'][:150]}" for e in errors + run.of("log")][:8],
        "events": run.events + run.serverEvents(),
    }


def scenarioFailover(net: netpath.NetPath) -> Dict[str, Any]:
    net.set(delay=0.025)
    run = Run(net)
    run.startServer({"ports": [PORT, PORT + 1]})
    options = {"ping": 2, "timeout": 1, "handshakeTimeout": 3}
    endpoints = [{"host": netpath.ADDRESS_B, "port": port} for port in (PORT, PORT + 1)]
    run.startClient({"options": options, "endpoints": endpoints, "ticks": 5})
    if _firstUp(run, 20) is None:
        return {"measured": "never up", "ok": False}
    run.watch(1)
    start = time.monotonic()
    net.set(block=[PORT])
    again = run.watch(50, lambda e: e.get("ev") == "up")
    serverEvents = run.serverEvents()
    links = [e["port"] for e in serverEvents if e.get("ev") == "link" and e["t"] > start]
    downs = [d for d in run.of("down") if d["t"] > start]
    parts = [f"link dropped at {downs[0]['t'] - start:.1f}s" if downs else "link never dropped"]
    if again:
        parts.append(f"up again at {run.of('up')[-1]['t'] - start:.1f}s, on port {links[-1] if links else '?'}")
    else:
        parts.append("not up again within 50s")
    parts.append(f"{len([e for e in run.of('reconnect') if e['t'] > start])} reconnect events")
    return {
        "measured": "; ".join(parts),
        "ok": again and run.of("up")[-1]["t"] - start <= 2 + 1 + 3 + 1.5,
        "drops": _drops(run.events + serverEvents, start),
        "events": run.events + serverEvents,
    }


def scenarioLoss(net: netpath.NetPath) -> Dict[str, Any]:
    net.set(delay=0.02, loss=0.1)
    run = Run(net)
    run.startServer({})
    run.startClient({"ticks": 20})
    up = _firstUp(run, 30)
    if up is None:
        return {"measured": "never up (10% loss)", "ok": False}
    run.watch(25)
    ticks = run.of("tick")
    latencies = sorted(t["t"] - t["sent"] for t in ticks)
    downs = run.of("down")
    fails = run.of("fail")
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    measured = (
        f"{len(downs)} drops, {len(run.of('reconnect'))} reconnects, {len(fails)} failed calls in 25s; "
        f"{len(ticks)} replies, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )
    serverEvents = run.serverEvents()
    return {
        "measured": measured,
        "ok": not downs and not fails,
        "drops": _drops(run.events + serverEvents, up),
        "events": run.events + serverEvents,
    }


def _certificates(folder: Path) -> Dict[str, str]:
    """
    A CA and a server certificate for the server's address in namespace B.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from upnode.test.certs import NOW, _certificate, _key, _name, _pem

    year = datetime.timedelta(days=365)
    caKey, caName = _key(), _name("upnode paths CA")
    ca = _certificate("upnode paths CA", caKey, caName, caKey, None, NOW - year, NOW + year, ca=True)
    key = _key()
    names: List[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(netpath.ADDRESS_B))]
    cert = _certificate(netpath.ADDRESS_B, key, caName, caKey, names, NOW - year, NOW + year)
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(_pem(key))
    return {k: str(v) for k, v in paths.items()}


def scenarioTLS(net: netpath.NetPath) -> Dict[str, Any]:
    net.set(delay=1.0)
    folder = Path(tempfile.mkdtemp(prefix="upnode-paths-"))
    try:
        certs = _certificates(folder)
        run = Run(net)
        run.startServer({"tls": certs})
        start = run.startClient({"endpoint": f"tls:{netpath.ADDRESS_B}:{PORT}:trustRoots={certs['ca']}"})
        up = _firstUp(run, 45)
        attempts = len(run.of("reconnect"))
        errors = run.of("error")
        measured = f"up at {up - start:.1f}s" if up else "not up within 45s"
        measured += f", {attempts} reconnect events, {len(errors)} errors"
        return {
            "measured": measured,
            "ok": up is not None and not attempts and not errors,
            "errors": [e["msg"][:150] for e in errors],
            "events": run.events + run.serverEvents(),
        }
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


Scenario = Tuple[str, str, str, Callable[[netpath.NetPath], Dict[str, Any]]]

SCENARIOS: List[Scenario] = [
    (
        "big",
        "1 Mbit/s, 300 ms, 64 KB queue; 4 x 512 KiB replies; ping 10 / timeout 5",
        "all 4 replies, link kept",
        lambda net: scenarioBig(net, upload=False),
    ),
    (
        "upload",
        "the same, pings off both sides, plus a 640 KiB upload",
        "all replies and the upload, link kept",
        lambda net: scenarioBig(net, upload=True),
    ),
    (
        "partition2",
        "2 s blackhole (both ways, silent) from just before a ping, 300 ms RTT, 20 calls/s, defaults",
        "ridden out: no drop, no failed call",
        lambda net: scenarioPartition(net, 2.0, delay=0.15),
    ),
    (
        "partition4",
        "4 s blackhole from just before a ping, 300 ms RTT, 20 calls/s, defaults",
        "ridden out: no drop, no failed call",
        lambda net: scenarioPartition(net, 4.0, delay=0.15),
    ),
    (
        "partition7",
        "7 s blackhole from just before a ping, 300 ms RTT, 20 calls/s, defaults",
        f"longer than the ping timeout: rebuilt, calls back within {BACK_WITHIN:g} s of the path clearing",
        lambda net: scenarioPartition(net, 7.0, delay=0.15, ridden=False),
    ),
    (
        "partition7-timeout15",
        "the 7 s blackhole on 300 ms RTT, timeout 15 on both sides",
        "ridden out: no drop, no failed call",
        lambda net: scenarioPartition(net, 7.0, delay=0.15, options={"timeout": 15}),
    ),
    (
        "partition4-lan",
        "the 4 s blackhole on a 50 ms RTT path",
        "ridden out: no drop, no failed call",
        lambda net: scenarioPartition(net, 4.0, delay=0.025),
    ),
    (
        "deadhost",
        "blackhole before connecting, cleared at 20 s; handshakeTimeout 3",
        "up within ~handshakeTimeout + reconnect delay of the path clearing",
        lambda net: scenarioDeadHost(net, endpointString=False),
    ),
    (
        "deadhost-timeout3",
        "the same with the endpoint string tcp:...:timeout=3",
        "up within ~handshakeTimeout + reconnect delay of the path clearing",
        lambda net: scenarioDeadHost(net, endpointString=True),
    ),
    (
        "failover",
        "two endpoints; the one in use blackholed; ping 2, timeout 1, handshakeTimeout 3",
        "on the other endpoint within ping + timeout + handshakeTimeout + reconnect (~7 s)",
        scenarioFailover,
    ),
    (
        "loss",
        "10% loss both ways, 40 ms RTT, 20 calls/s for 25 s, defaults",
        "no reconnect, no failed call",
        scenarioLoss,
    ),
    (
        "tls",
        "TLS over a 2 s RTT path, defaults",
        "up at the first attempt",
        scenarioTLS,
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [s[0] for s in SCENARIOS]
    parser.add_argument("--scenario", action="append", help="run this one (a prefix picks several): " + ", ".join(names))
    parser.add_argument("--json", help="write every result, events included, to this file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    reason = netpath.unavailable()
    if reason is not None:
        print(f"cannot emulate paths here: {reason}", file=sys.stderr)
        return 2
    chosen = [s for s in SCENARIOS if not args.scenario or any(s[0].startswith(p) for p in args.scenario)]
    if not chosen:
        parser.error(f"no scenario named {args.scenario}; choose from {', '.join(names)}")
    rows = []
    results = {}
    for name, path, promise, function in chosen:
        began = time.monotonic()
        with netpath.NetPath(lifetime=150, seed=args.seed) as net:
            try:
                result = function(net)
            except Exception as e:
                result = {"measured": f"harness error: {e!r}", "ok": False}
        result["seconds"] = time.monotonic() - began
        results[name] = result
        mark = "ok" if result.get("ok") else "BROKEN"
        rows.append((name, path, promise, result["measured"], mark))
        print(f"{name}: {mark}: {result['measured']} ({result['seconds']:.0f}s)", flush=True)
        for line in result.get("drops", [])[:6] + result.get("errors", [])[:4]:
            print(f"    {line}", flush=True)
    print()
    print("| scenario | path | promise | measured | |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("server", "client"):
        (server if sys.argv[1] == "server" else client)(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
