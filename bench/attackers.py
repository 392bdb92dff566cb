"""
The attackers of bench/attack.py (and of the attack integration tests), in
plain blocking or non-blocking sockets so that they run in any thread and
need no reactor: each attack is a function of a port that returns what it
saw, every loop bounded in count and time.

Also here: the cons that keeps every callback it is given (for
C{twistd upnode-server --service bench.attackers.KEEPS}), the canary (a
small raw dnode client calling C{echo} every 50 ms, run as a subprocess:
C{python -m bench.attackers canary PORT}), a sampler of a process's RSS and
open descriptors, and L{measure}, which runs one attack with both.
"""

from __future__ import annotations

import json
import os
import resource
import select
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent

# -- A cons that keeps every callback ------------------------------------------

kept: List[Any] = []


def _echo(*args: Any) -> None:
    if args and callable(args[-1]):
        args[-1](*args[:-1])


#: C{keep(cb)} holds C{cb} forever; C{echo} is there for the canary.
KEEPS = {"keep": lambda cb: kept.append(cb), "echo": _echo}

# -- Wire helpers --------------------------------------------------------------

#: What our attackers expose: nothing, so the server never pings them.
METHODS = b'{"method":"methods","arguments":[{}],"callbacks":{}}\n'
#: What a real client sends first: its ping.
CLIENT_METHODS = b'{"method":"methods","arguments":[{"ping":"[Function]"}],"callbacks":{"0":["0","ping"]}}\n'
TCP_ESTABLISHED = 1


def line(message: Dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def echoLine(value: Any, callbackId: int = 0) -> bytes:
    return line({"method": "echo", "arguments": [value, "[Function]"], "callbacks": {str(callbackId): ["1"]}})


def dagLine(levels: int) -> bytes:
    """
    One echo call whose links double a one-byte leaf C{levels} times:
    argument 0 is a list whose item k+1 is C{[item k, item k]}, so that its
    last item is a DAG with 2**levels leaves.
    """
    tree: List[Any] = ["x"] + [[0, 0] for _ in range(levels)]
    links = []
    for k in range(levels):
        for slot in ("0", "1"):
            links.append({"from": ["0", str(k)], "to": ["0", str(k + 1), slot]})
    return line({"method": "echo", "arguments": [tree, "[Function]"], "callbacks": {"0": ["1"]}, "links": links})


def raiseFileLimit(wanted: int) -> int:
    """
    Raise our soft descriptor limit towards C{wanted} (up to the hard
    limit); return the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tcpState(sock: socket.socket) -> int:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def quantiles(values: Sequence[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"first": None, "median": None, "last": None, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "first": ordered[0],
        "median": statistics.median(ordered),
        "last": ordered[-1],
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


class Peers:
    """
    Attacking sockets and when the server dropped each (seconds since
    C{start}).
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.socks: List[socket.socket] = []
        self.connectedAt: List[float] = []
        self.droppedAt: List[Optional[float]] = []
        self.failed = 0

    def connect(self, port: int, count: int, deadline: float, first: bytes = b"") -> None:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                if first:
                    s.sendall(first)
            except OSError:
                s.close()
                self.failed += 1
                continue
            s.setblocking(False)
            self.socks.append(s)
            self.connectedAt.append(time.monotonic() - self.start)
            self.droppedAt.append(None)

    def alive(self) -> List[int]:
        return [i for i, t in enumerate(self.droppedAt) if t is None]

    def markDropped(self, i: int) -> None:
        if self.droppedAt[i] is None:
            self.droppedAt[i] = time.monotonic() - self.start

    def poll(self) -> int:
        """
        Note the peers the server has closed (without reading them); return
        how many are still up.
        """
        up = 0
        for i in self.alive():
            if tcpState(self.socks[i]) != TCP_ESTABLISHED:
                self.markDropped(i)
            else:
                up += 1
        return up

    def waitDropped(self, deadline: float, period: float = 0.1) -> None:
        while self.poll() and time.monotonic() < deadline:
            time.sleep(period)

    def close(self) -> None:
        for s in self.socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass
            s.close()

    def result(self, **extra: Any) -> Dict[str, Any]:
        dropped = [t for t in self.droppedAt if t is not None]
        held = [t - c for t, c in zip(self.droppedAt, self.connectedAt, strict=True) if t is not None]
        return dict(
            peers=len(self.socks),
            connectFailures=self.failed,
            dropped=len(dropped),
            drops=quantiles(dropped),
            heldMax=max(held) if held else None,
            **extra,
        )


def _pump(peers: Peers, chunk: Callable[[int], bytes], deadline: float, stopWhenAllDropped: bool = True) -> int:
    """
    Write C{chunk(i)} to every peer as fast as each takes it, never
    reading, until every peer is dropped or C{deadline}; return bytes sent.
    """
    sel = selectors.DefaultSelector()
    pending: Dict[int, memoryview] = {}
    for i in peers.alive():
        sel.register(peers.socks[i], selectors.EVENT_WRITE, i)
    sent = 0
    lastPoll = 0.0
    while time.monotonic() < deadline and sel.get_map():
        for key, _ in sel.select(0.1):
            i = key.data
            data = pending.pop(i, None)
            if data is None:
                data = memoryview(chunk(i))
            try:
                n = key.fileobj.send(data)  # type: ignore[union-attr]
            except BlockingIOError:
                n = 0
            except OSError:
                peers.markDropped(i)
                sel.unregister(key.fileobj)
                continue
            sent += n
            if n < len(data):
                pending[i] = data[n:]
        now = time.monotonic()
        if now - lastPoll > 0.1:
            lastPoll = now
            peers.poll()
            for key in list(sel.get_map().values()):
                if peers.droppedAt[key.data] is not None:
                    sel.unregister(key.fileobj)
    sel.close()
    return sent


# -- The attacks ---------------------------------------------------------------


def dag(port: int, levels: int = 24, readFor: float = 15.0, readMax: int = 64 * 1024 * 1024) -> Dict[str, Any]:
    """
    Attack 1: one echo of a DAG with 2**levels leaves; read what comes back
    (at most C{readMax} bytes, for C{readFor} seconds).
    """
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, 1, start + 10, METHODS + dagLine(levels))
    s = peers.socks[0]
    got = bytearray()
    lines: List[bytes] = []
    closed = False
    deadline = time.monotonic() + readFor
    while time.monotonic() < deadline and len(got) < readMax:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        try:
            data = s.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            closed = True
            peers.markDropped(0)
            break
        got += data
        while b"\n" in got and len(lines) < 3:
            one, _, rest = bytes(got).partition(b"\n")
            lines.append(one)
            got = bytearray(rest)
        if len(lines) >= 2:
            break
    reply = lines[1] if len(lines) > 1 else None
    peers.close()
    return peers.result(
        levels=levels,
        replyBytes=len(reply) if reply is not None else None,
        replyStart=reply[:120].decode("utf-8", "replace") if reply is not None else None,
        unfinishedBytes=len(got),
        closedByServer=closed,
    )


def flood(port: int, count: int = 50, seconds: float = 30.0) -> Dict[str, Any]:
    """
    Attack 2: C{count} peers send echo calls as fast as they can and read
    nothing, until dropped (or C{seconds}).
    """
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, count, start + 10, METHODS)
    blob = b"".join(echoLine(f"flood {n:06d} " + "y" * 80, n % 1000) for n in range(300))
    sent = _pump(peers, lambda i: blob, start + seconds)
    peers.poll()
    peers.close()
    return peers.result(bytesSent=sent)


def pipeline(port: int, count: int = 20, size: int = 1024 * 1024 - 256, seconds: float = 40.0) -> Dict[str, Any]:
    """
    Attack 3: C{count} peers pipeline echo calls of about 1 MiB lines
    without reading, until dropped (or C{seconds}).
    """
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, count, start + 10, METHODS)
    big = echoLine("z" * size)
    sent = _pump(peers, lambda i: big, start + seconds)
    peers.poll()
    peers.close()
    return peers.result(bytesSent=sent, lineBytes=len(big))


def idle(port: int, count: int = 2000, wait: float = 25.0) -> Dict[str, Any]:
    """
    Attack 4: C{count} peers connect and send nothing (on a TLS port: no
    ClientHello); wait until the server has closed each (or C{wait}
    seconds after the last connected).
    """
    limit = raiseFileLimit(count + 256)
    start = time.monotonic()
    peers = Peers(start)
    count = min(count, limit - 128)
    peers.connect(port, count, start + 60)
    peers.waitDropped(time.monotonic() + wait)
    peers.close()
    return peers.result(fileLimit=limit)


def legitimate(port: int, deadline: float) -> Dict[str, Any]:
    """
    A real client's first steps: connect, send our methods, get the
    server's, and get an echo answered; again until C{deadline} if the
    server closes us.  Returns the seconds it took (None: never).
    """
    start = time.monotonic()
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=max(0.1, deadline - time.monotonic())) as s:
                s.sendall(CLIENT_METHODS + echoLine("legit", 1))
                buffer = b""
                while time.monotonic() < deadline:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(65536)
                    if not data:
                        break
                    buffer += data
                    for one in buffer.split(b"\n")[:-1]:
                        message = json.loads(one)
                        if message.get("method") == 1:
                            return {"seconds": time.monotonic() - start, "attempts": attempts}
        except (OSError, ValueError):
            time.sleep(0.05)
    return {"seconds": None, "attempts": attempts}


def fdLimit(port: int, count: int = 1100, legitWithin: float = 15.0) -> Dict[str, Any]:
    """
    Attack 5: against a server at 1,024 descriptors, C{count} idle peers,
    then a legitimate client, which must be served.
    """
    raiseFileLimit(count + 256)
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, count, start + 60)
    connected = time.monotonic() - start
    legit = legitimate(port, time.monotonic() + legitWithin)
    peers.poll()
    peers.close()
    return peers.result(legitSeconds=legit["seconds"], legitAttempts=legit["attempts"], attackersConnectedAfter=connected)


def cycles(port: int, count: int = 20000, concurrency: int = 50, seconds: float = 120.0) -> Dict[str, Any]:
    """
    Attack 6: C{count} connect/close cycles, C{concurrency} at a time; each
    is timed from its connect to the server's methods line, then closed
    (with a reset, so that this side leaves no TIME_WAIT behind).
    """
    sel = selectors.DefaultSelector()
    times: List[float] = []
    failures = 0
    started = 0
    deadline = time.monotonic() + seconds
    linger = b"\x01\0\0\0\0\0\0\0"

    def begin() -> None:
        nonlocal started, failures
        started += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            failures += 1
            s.close()
            return
        sel.register(s, selectors.EVENT_READ, time.monotonic())

    def finish(s: Any) -> None:
        sel.unregister(s)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()

    while time.monotonic() < deadline and (started < count or sel.get_map()):
        while started < count and len(sel.get_map()) < concurrency:
            begin()
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if b"\n" in data:
                times.append((time.monotonic() - key.data) * 1000)
            else:
                failures += 1
            finish(s)
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data > 10:
                failures += 1
                finish(key.fileobj)
    for key in list(sel.get_map().values()):
        failures += 1
        finish(key.fileobj)
    sel.close()
    q = quantiles(times)
    return {"cycles": len(times), "failures": failures, "connectP50": q["p50"], "connectP99": q["p99"], "connectMax": q["max"]}


def slowloris(port: int, count: int = 500, interval: float = 2.0, seconds: float = 60.0) -> Dict[str, Any]:
    """
    Attack 7: C{count} peers that send their methods and then one byte of
    an unfinished line every C{interval} seconds, until dropped (or
    C{seconds}).
    """
    raiseFileLimit(count + 256)
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, count, start + 30, METHODS)
    head = b'{"method":"echo","arguments":["'
    sentBytes = [0] * len(peers.socks)
    firstByte = time.monotonic() - start
    deadline = start + seconds
    while time.monotonic() < deadline:
        for i in peers.alive():
            n = sentBytes[i]
            byte = head[n : n + 1] or b"s"
            try:
                peers.socks[i].send(byte)
                sentBytes[i] += 1
            except BlockingIOError:
                pass
            except OSError:
                peers.markDropped(i)
        end = time.monotonic() + interval
        while time.monotonic() < end:
            if not peers.poll():
                break
            time.sleep(0.1)
        if not peers.alive():
            break
    peers.poll()
    peers.close()
    return peers.result(firstByte=firstByte, interval=interval)


def partial(port: int, count: int = 200, size: int = 136_000, rss: Optional[Callable[[], float]] = None) -> Dict[str, Any]:
    """
    Attack 8: C{count} peers send their methods, then part of a line of
    C{size} bytes, and stop.  With C{rss} (the server's RSS in bytes, read
    now), the RSS the server holds per byte of unfinished lines.
    """
    raiseFileLimit(count + 256)
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, count, start + 30, METHODS)
    time.sleep(1.5)
    before = rss() if rss else None
    body = b'{"method":"echo","arguments":["' + b"p" * (size - 31)
    for s in peers.socks:
        s.setblocking(True)
        s.settimeout(10)
        try:
            s.sendall(body)
        except OSError:
            pass
        s.setblocking(False)
    sentAt = time.monotonic() - start
    time.sleep(3.0)
    after = rss() if rss else None
    peers.poll()
    up = len(peers.alive())
    peers.close()
    held = up * size
    ratio = (after - before) / held if rss and held else None
    return peers.result(
        sentAt=sentAt, heldBytes=held, rssBefore=before, rssAfter=after, rssPerByte=ratio, upWhenMeasured=up
    )


def callbacks(port: int, count: int = 3_000_000, seconds: float = 60.0) -> Dict[str, Any]:
    """
    Attack 9: one peer sends C{count} callbacks to C{keep}, which keeps
    them all, until dropped (or C{seconds}).
    """
    start = time.monotonic()
    peers = Peers(start)
    peers.connect(port, 1, start + 10, METHODS)
    batch = 10_000
    state = {"next": 0}

    def chunk(i: int) -> bytes:
        first = state["next"]
        if first >= count:
            return b""
        last = min(count, first + batch)
        state["next"] = last
        return b"".join(
            b'{"method":"keep","arguments":["[Function]"],"callbacks":{"%d":["0"]}}\n' % n for n in range(first, last)
        )

    deadline = start + seconds
    while time.monotonic() < deadline and peers.alive() and state["next"] < count:
        _pump(peers, chunk, min(deadline, time.monotonic() + 1.0))
    if peers.alive():
        peers.waitDropped(min(deadline, time.monotonic() + 10))
    peers.close()
    return peers.result(callbacksSent=state["next"])


ATTACKS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "dag": dag,
    "flood": flood,
    "pipeline": pipeline,
    "idle": idle,
    "fdlimit": fdLimit,
    "cycles": cycles,
    "slowloris": slowloris,
    "partial": partial,
    "callbacks": callbacks,
}

# -- Measuring -----------------------------------------------------------------


def readStatus(pid: int) -> Optional[Dict[str, float]]:
    """
    The RSS (bytes) and open descriptors of C{pid}, None when it is gone.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    if "\nState:\tZ" in status:
        return None
    rss = 0.0
    for row in status.splitlines():
        if row.startswith("VmRSS:"):
            rss = float(row.split()[1]) * 1024
    return {"rss": rss, "fds": fds}


class Sampler(threading.Thread):
    """
    Samples a process's RSS and descriptors every C{period} seconds.
    """

    def __init__(self, pid: int, period: float = 0.1) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.pid = pid
        self.period = period
        self.samples: List[Any] = []
        self.stopping = threading.Event()
        self.gone = False
        #: Past this RSS (bytes) the process is killed, so that an attack
        #: that makes it grow without bound does not take the machine down.
        self.cap: Optional[float] = None
        self.capped = False

    def run(self) -> None:
        while not self.stopping.is_set():
            sample = readStatus(self.pid)
            if sample is None:
                self.gone = True
                return
            self.samples.append((time.monotonic(), sample["rss"], sample["fds"]))
            if self.cap is not None and sample["rss"] > self.cap and not self.capped:
                self.capped = True
                os.kill(self.pid, signal.SIGKILL)
            self.stopping.wait(self.period)

    def now(self) -> float:
        sample = readStatus(self.pid)
        return sample["rss"] if sample else float("nan")

    def between(self, start: float, end: float) -> List[Any]:
        return [s for s in self.samples if start <= s[0] <= end]

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


class CanaryProcess:
    """
    The canary, in a process of its own so that the attackers' work does
    not show in its latency.
    """

    def __init__(self, port: int, interval: float = 0.05, timeout: float = 1.0, limit: float = 900.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.attackers", "canary", str(port), str(interval), str(timeout), str(limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        if not ready.startswith(b"ready"):
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the canary could not connect: {ready!r}")

    def stop(self) -> Dict[str, Any]:
        try:
            out, _ = self.process.communicate(b"stop\n", timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return {"calls": 0, "failures": -1, "errors": ["the canary did not stop"]}
        return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def canaryMain(port: int, interval: float, timeout: float, limit: float) -> None:
    """
    A raw dnode client calling echo every C{interval} seconds, each with
    C{timeout} to answer, until a line on stdin (or C{limit} seconds);
    then print its latencies as one JSON line.  It answers the server's
    pings and reconnects when closed.
    """
    latencies: List[float] = []
    slowest: List[Tuple[float, float]] = []  # (latency ms, wall time of the call)
    errors: List[str] = []
    failures = 0
    end = time.monotonic() + limit

    def connect() -> Any:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(CLIENT_METHODS)
        return s

    sock = connect()
    print("ready", flush=True)
    buffer = b""
    n = 0
    while time.monotonic() < end:
        if select.select([sys.stdin], [], [], 0)[0]:
            break
        n += 1
        sent = time.monotonic()
        try:
            if sock is None:
                sock = connect()
                buffer = b""
            sock.sendall(echoLine(n, n))
            answered = False
            while not answered:
                left = sent + timeout - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer within {timeout} s")
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the server")
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for one in lines:
                    message = json.loads(one)
                    method = message.get("method")
                    if method == n:
                        answered = True
                    elif method == 0:  # the server's ping: answer each callback
                        for cb in message.get("callbacks", {}):
                            sock.sendall(line({"method": int(cb), "arguments": []}))
            latencies.append((time.monotonic() - sent) * 1000)
            slowest = sorted([*slowest, (latencies[-1], time.time())], reverse=True)[:5]
        except (OSError, ValueError) as e:
            failures += 1
            if len(errors) < 5:
                errors.append(f"{type(e).__name__}: {e}")
            if not isinstance(e, TimeoutError) and sock is not None:
                sock.close()
                sock = None
        pause = sent + interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    q = quantiles(latencies)
    print(
        json.dumps(
            {
                "calls": len(latencies),
                "failures": failures,
                "errors": errors,
                "p50": q["p50"],
                "p99": q["p99"],
                "max": q["max"],
                "slowest": slowest,
            }
        ),
        flush=True,
    )


def waitForPort(port: int, timeout: float = 20.0, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} within {timeout} seconds")


def measure(
    pid: int,
    port: int,
    attack: Callable[..., Dict[str, Any]],
    settle: float = 2.0,
    afterDrop: Optional[float] = None,
    canary: bool = True,
    passRss: bool = False,
    rssCap: float = 2000.0,
    **sizes: Any,
) -> Dict[str, Any]:
    """
    Run one attack against the server C{pid} listening on C{port} (plain
    TCP, for the canary) with the sampler and the canary running; return
    the attack's results with the server's RSS (MB) and descriptors
    (baseline, peak, after) and the canary's latencies.  "After" is
    C{settle} seconds after the attack returns, or C{afterDrop} seconds
    after its last drop.  A server that grows past C{rssCap} MB over its
    baseline is killed (C{killedAtCap} in the results).
    """
    sampler = Sampler(pid)
    sampler.start()
    bird = CanaryProcess(port) if canary else None
    time.sleep(1.0)
    base = sampler.samples[-5:] or [(0, sampler.now(), 0)]
    baseline = statistics.median(s[1] for s in base)
    baseFds = base[-1][2]
    sampler.cap = baseline + rssCap * 1024 * 1024
    start, wallStart = time.monotonic(), time.time()
    if passRss:
        sizes["rss"] = sampler.now
    result = attack(port, **sizes)
    if afterDrop is not None and result.get("drops", {}).get("last") is not None:
        wake = start + result["drops"]["last"] + afterDrop
    else:
        wake = time.monotonic() + settle
    while time.monotonic() < wake and not sampler.gone:
        time.sleep(0.1)
    final = readStatus(pid)
    end = time.monotonic()
    result["canary"] = bird.stop() if bird else None
    if result["canary"]:
        # The slowest calls, and when: seconds since the attack started.
        result["canary"]["slowest"] = [[ms, round(t - wallStart, 2)] for ms, t in result["canary"].get("slowest", [])]
    sampler.stop()
    during = sampler.between(start, end)
    mb = 1024.0 * 1024.0
    result.update(
        serverAlive=final is not None,
        killedAtCap=sampler.capped,
        rssBase=baseline / mb,
        rssPeak=max([s[1] for s in during] or [float("nan")]) / mb,
        rssAfter=(final["rss"] / mb) if final else float("nan"),
        fdsBase=baseFds,
        fdsPeak=max([s[2] for s in during] or [0]),
        fdsAfter=final["fds"] if final else -1,
        afterSeconds=end - start,
    )
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["canary"]:
        canaryMain(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit("usage: python -m bench.attackers canary PORT INTERVAL TIMEOUT LIMIT")
