"""
A packet-level link between two network namespaces, for tests and benchmarks
of real network paths.

    with NetPath(seed=1) as net:
        net.set(delay=0.15, rate=1_000_000, queue=64_000)   # both directions
        server = net.spawn("b", ["-m", "some.module", "serve"])
        client = net.spawn("a", ["-m", "some.module", "call", net.addressB])
        print(client.read(timeout=10))                       # one JSON line
        net.set("ab", blackhole=True)                        # a silent partition

Two namespaces, C{upn-PID-a} and C{upn-PID-b} (PID: the emulator's process),
each hold one TUN device with an address of a private /30 (L{ADDRESS_A},
L{ADDRESS_B}) that exists only there. The emulator, a separate process
(this file run as a script, so that the tests' own reactor does not compete
with its timing), owns both TUN descriptors and forwards each IPv4 packet
between the two addresses through, per direction (C{"ab"}: from A to B,
C{"ba"}: back), a model of a link: random loss, a serialiser at C{rate} bits
a second in front of a tail-drop queue of C{queue} bytes, a one-way C{delay}
with C{jitter} (packets keep their order), a C{blackhole} (everything
dropped, in flight too: no FIN, RST or ICMP ever comes back; or only the
packets from or to some ports, C{block}) and a C{freeze}
(packets held, then released at once or dropped). Both kernels' TCP stacks
therefore see what they would see on a real path: nothing acknowledges a
byte or a SYN on their behalf. Anything else (IPv6, other addresses) is
dropped: nothing leaves the two namespaces.

The control channel is the emulator's standard input and output, one JSON
object a line each way. When its input closes (the controlling process
died) or its lifetime ends, the emulator deletes both namespaces and exits;
L{NetPath.close} kills every process spawned into them, stops the emulator
and deletes the namespaces whatever happened; L{sweep} removes namespaces a
crashed run left behind (only those whose emulator is dead).
"""

from __future__ import annotations

import collections
import fcntl
import json
import os
import queue
import random
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Tuple

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

ADDRESS_A = "10.241.0.1"
ADDRESS_B = "10.241.0.2"
PREFIX = "upn-"
_NAME = re.compile(r"^upn-(\d+)-[ab]$")

# Packets the emulator keeps at most, per direction, in flight (with no rate
# set, the queue bound does not apply) and frozen.
IN_FLIGHT_MAX = 16 * 1024 * 1024
HOLD_MAX = 8 * 1024 * 1024

ROOT = Path(__file__).resolve().parents[3]

SETTINGS = {"cmd", "dir", "delay", "jitter", "rate", "queue", "loss", "blackhole", "block", "freeze", "drop"}


# -- the emulator process ----------------------------------------------------


class Direction:
    """
    One direction of the link: its settings, its serialiser and the packets
    on their way, in release order.
    """

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng
        self.delay = 0.0
        self.jitter = 0.0
        self.rate = 0.0  # bits a second; 0: no serialisation
        self.queue = 1_000_000  # bytes the bottleneck holds before tail drop
        self.loss = 0.0
        self.blackhole = False
        self.freeze = False
        self.block: frozenset[int] = frozenset()  # TCP/UDP ports blackholed alone
        self.busyUntil = 0.0
        self.lastRelease = 0.0
        self.flight: Deque[Tuple[float, bytes]] = collections.deque()
        self.flightBytes = 0
        self.held: List[bytes] = []
        self.heldBytes = 0
        self.stats: Dict[str, int] = collections.Counter()

    def settings(self) -> Dict[str, Any]:
        return {
            "delay": self.delay,
            "jitter": self.jitter,
            "rate": self.rate,
            "queue": self.queue,
            "loss": self.loss,
            "blackhole": self.blackhole,
            "freeze": self.freeze,
            "block": sorted(self.block),
        }

    def blocked(self, packet: bytes) -> bool:
        """
        Whether C{packet} is TCP or UDP from or to a port in L{block}.
        """
        if not self.block or packet[9] not in (6, 17):
            return False
        offset = (packet[0] & 15) * 4
        if len(packet) < offset + 4:
            return False
        source, destination = struct.unpack_from("!HH", packet, offset)
        return source in self.block or destination in self.block

    def arrive(self, now: float, packet: bytes) -> None:
        size = len(packet)
        self.stats["in"] += 1
        if self.blackhole or self.blocked(packet):
            self.stats["blackholed"] += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.stats["lost"] += 1
            return
        if self.flightBytes + size > IN_FLIGHT_MAX:
            self.stats["overflow"] += 1
            return
        if self.rate:
            backlog = max(0.0, self.busyUntil - now) * self.rate / 8
            if backlog + size > self.queue:
                self.stats["taildrop"] += 1
                return
            self.busyUntil = max(now, self.busyUntil) + size * 8 / self.rate
            sent = self.busyUntil
        else:
            sent = now
        delay = self.delay
        if self.jitter:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter, self.jitter))
        # Order is kept, as on one path: a packet never overtakes another.
        release = max(sent + delay, self.lastRelease)
        self.lastRelease = release
        self.flight.append((release, packet))
        self.flightBytes += size

    def due(self, now: float) -> List[bytes]:
        out = []
        flight = self.flight
        while flight and flight[0][0] <= now:
            packet = flight.popleft()[1]
            self.flightBytes -= len(packet)
            if self.blackhole or self.blocked(packet):
                self.stats["blackholed"] += 1
            elif self.freeze:
                if self.heldBytes + len(packet) > HOLD_MAX:
                    self.stats["overflow"] += 1
                else:
                    self.held.append(packet)
                    self.heldBytes += len(packet)
            else:
                out.append(packet)
        return out

    def thaw(self, drop: bool) -> List[bytes]:
        held, self.held, self.heldBytes = self.held, [], 0
        self.freeze = False
        if drop:
            self.stats["thawdropped"] += len(held)
            return []
        return held

    def nextRelease(self) -> Optional[float]:
        return self.flight[0][0] if self.flight else None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _openTun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _removeNamespace(name: str) -> None:
    """
    Kill whatever still runs in namespace C{name}, then delete it.
    """
    for pid in _namespacePids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _deleteNamespace(name)


def _deleteNamespace(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve(lifetime: float, seed: int) -> int:
    """
    The emulator's main loop (this file run as a script): make both
    namespaces, say C{ready} on standard output, forward packets and obey
    commands until told to stop, until standard input closes, or for
    C{lifetime} seconds at most; then (and when terminated) close both TUN
    devices and delete both namespaces.
    """
    pid = os.getpid()

    def terminated(number: int, frame: Any) -> None:
        raise SystemExit(128 + number)  # runs the cleanup below

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, terminated)
    names = {"a": f"{PREFIX}{pid}-a", "b": f"{PREFIX}{pid}-b"}
    fds: Dict[str, int] = {}
    try:
        return _serve(lifetime, seed, names, fds)
    finally:
        for fd in fds.values():
            os.close(fd)
        for name in names.values():
            _deleteNamespace(name)


def _serve(lifetime: float, seed: int, names: Dict[str, str], fds: Dict[str, int]) -> int:
    pid = os.getpid()
    addresses = {"a": ADDRESS_A, "b": ADDRESS_B}
    # Destination address (as bytes in the IP header) per side.
    destinations = {"a": bytes(map(int, ADDRESS_B.split("."))), "b": bytes(map(int, ADDRESS_A.split(".")))}
    out = sys.stdout

    def reply(message: Dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        for side in "ab":
            device = f"upn{pid}{side}"
            fds[side] = _openTun(device)
            _ip("netns", "add", names[side])
            _ip("link", "set", device, "netns", names[side])
            _ip("-n", names[side], "link", "set", "lo", "up")
            _ip("-n", names[side], "addr", "add", f"{addresses[side]}/30", "dev", device)
            _ip("-n", names[side], "link", "set", device, "up")
    except Exception as e:
        detail = getattr(e, "stderr", b"") or b""
        reply({"error": f"{e} {detail.decode(errors='replace').strip()}"})
        return 1

    rng = random.Random(seed)
    directions = {"a": Direction("ab", rng), "b": Direction("ba", rng)}  # keyed by the sending side
    byName = {"ab": [directions["a"]], "ba": [directions["b"]], "both": [directions["a"], directions["b"]]}
    other = {"a": "b", "b": "a"}
    control = sys.stdin.fileno()
    os.set_blocking(control, False)
    pending = b""
    deadline = time.monotonic() + lifetime

    def write(side: str, packets: List[bytes], stats: Dict[str, int]) -> None:
        for packet in packets:
            try:
                os.write(fds[side], packet)
                stats["delivered"] += 1
            except (BlockingIOError, OSError):
                stats["writefailed"] += 1

    def command(message: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
        what = message.get("cmd")
        if what == "stop":
            return {"ok": True}, True
        if what == "stats":
            return {"ok": True, **{d.name: {**d.stats, **d.settings()} for d in directions.values()}}, False
        if what == "set":
            unknown = set(message) - SETTINGS
            if unknown:
                return {"error": f"unknown settings {sorted(unknown)}"}, False
            targets = byName[message.get("dir", "both")]
            now = time.monotonic()
            for d in targets:
                for key in ("delay", "jitter", "rate", "queue", "loss"):
                    if key in message:
                        setattr(d, key, float(message[key]))
                if "blackhole" in message:
                    d.blackhole = bool(message["blackhole"])
                if "block" in message:
                    d.block = frozenset(int(port) for port in message["block"])
                if "freeze" in message:
                    if message["freeze"]:
                        d.freeze = True
                    elif d.freeze:
                        sender = "a" if d is directions["a"] else "b"
                        write(other[sender], d.thaw(bool(message.get("drop", False))), d.stats)
                if "rate" in message:
                    d.busyUntil = now
            return {"ok": True}, False
        return {"error": f"unknown command {what!r}"}, False

    reply({"ready": True, "pid": pid, "a": names["a"], "b": names["b"]})
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        wake = deadline
        for d in directions.values():
            release = d.nextRelease()
            if release is not None and release < wake:
                wake = release
        readable, _, _ = select.select([fds["a"], fds["b"], control], [], [], max(0.0, wake - now))
        now = time.monotonic()
        stop = False
        for side in "ab":
            if fds[side] not in readable:
                continue
            d = directions[side]
            for _ in range(256):
                try:
                    packet = os.read(fds[side], 65536)
                except BlockingIOError:
                    break
                # IPv4 to the other side's address only; the rest
                # (IPv6 neighbour discovery, say) stays where it is.
                if len(packet) >= 20 and packet[0] >> 4 == 4 and packet[16:20] == destinations[side]:
                    d.arrive(now, packet)
                else:
                    d.stats["foreign"] += 1
        if control in readable:
            try:
                chunk = os.read(control, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    answer, stop = command(json.loads(line))
                except Exception as e:
                    answer = {"error": repr(e)}
                reply(answer)
                if stop:
                    break
        if stop:
            break
        now = time.monotonic()
        for side in "ab":
            d = directions[side]
            write(other[side], d.due(now), d.stats)
    return 0


# -- the controlling side ----------------------------------------------------


def requirePaths() -> None:
    """
    For a test's C{setUp}: skip, saying why, where packet-level paths
    cannot run (fail instead under CI, which must run them); and skip under
    the asyncio reactor, whose run of the suite repeats what the default
    reactor's has shown (these tests drive programs in namespaces of their
    own, whatever reactor the test process runs), so that CI runs them
    once.
    """
    from twisted.trial.unittest import SkipTest

    from .helpers import onceOnTheDefaultReactor

    onceOnTheDefaultReactor("the peers on packet-level paths are processes of their own")
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            raise AssertionError(f"packet-level paths must run under CI: {reason}")
        raise SkipTest(reason)


def unavailable() -> Optional[str]:
    """
    Why packet-level paths cannot run here, or C{None} if they can.
    """
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces and TUN devices need root"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"no usable ip command: {e}"
    if probe.returncode:
        return f"ip netns unavailable: {probe.stderr.decode(errors='replace').strip()}"
    try:
        os.close(_openTun(f"upn{os.getpid()}probe"[:15]))
    except OSError as e:
        return f"cannot create a TUN device: {e}"
    return None


def namespaces() -> List[str]:
    """
    Our namespaces (C{upn-PID-a}, C{upn-PID-b}) that exist now.
    """
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.split() and _NAME.match(line.split()[0])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespacePids(name: str) -> List[int]:
    listed = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in listed.split() if p.isdigit()]


def sweep() -> List[str]:
    """
    Delete the namespaces a crashed run left behind: those whose emulator
    process is gone (the processes still inside them were spawned there by
    that run, and are killed first). Return their names.
    """
    removed = []
    for name in namespaces():
        match = _NAME.match(name)
        assert match is not None
        if _alive(int(match.group(1))):
            continue
        _removeNamespace(name)
        removed.append(name)
    return removed


class Peer:
    """
    A process running in one of the namespaces: its standard output read as
    JSON lines (other lines are kept as C{{"text": line}}), its standard
    input held open so that it can tell when we are gone.
    """

    def __init__(self, process: subprocess.Popen[bytes], name: str) -> None:
        self.process = process
        self.pid = process.pid
        self.name = name
        self.lines: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue()
        self.seen: List[Dict[str, Any]] = []
        self.stderr: List[str] = []
        threading.Thread(target=self._pump, args=(process.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(process.stderr, False), daemon=True).start()

    def _pump(self, stream: Optional[IO[bytes]], json_: bool) -> None:
        assert stream is not None
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if not json_:
                self.stderr.append(line)
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    message = {"value": message}
            except ValueError:
                message = {"text": line}
            self.lines.put(message)
        if json_:
            self.lines.put(None)

    def read(self, timeout: float) -> Optional[Dict[str, Any]]:
        """
        The next JSON line, or C{None} once the process has ended or after
        C{timeout} seconds.
        """
        try:
            message = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if message is None:
            self.lines.put(None)  # stays ended for later reads
            return None
        self.seen.append(message)
        return message

    def until(self, key: str, timeout: float) -> Optional[Dict[str, Any]]:
        """
        Read lines until one has C{key}; C{None} if none came in C{timeout}.
        """
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            message = self.read(left)
            if message is None:
                if self.process.poll() is not None:
                    return None
                continue
            if key in message:
                return message

    def send(self, message: Dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, number)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class NetPath:
    """
    The emulated link, its two namespaces, and the processes spawned into
    them; a context manager that removes them all.

    @ivar addressA: the address of namespace A's end.
    @ivar addressB: the address of namespace B's end.
    """

    addressA = ADDRESS_A
    addressB = ADDRESS_B

    def __init__(self, lifetime: float = 600.0, seed: int = 0) -> None:
        self.lifetime = lifetime
        self.seed = seed
        self.peers: List[Peer] = []
        self.emulator: Optional[subprocess.Popen[bytes]] = None
        self.names: Dict[str, str] = {}
        self._lock = threading.Lock()
        self._buffer = b""

    def start(self) -> NetPath:
        sweep()
        self.emulator = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", str(self.lifetime), str(self.seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        ready = self._answer(timeout=20)
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"the link emulator did not start: {ready}")
        self.names = {"a": ready["a"], "b": ready["b"]}
        return self

    def __enter__(self) -> NetPath:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _answer(self, timeout: float) -> Dict[str, Any]:
        assert self.emulator is not None and self.emulator.stdout is not None
        fd = self.emulator.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                return {"error": "no answer from the link emulator"}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {"error": "the link emulator ended"}
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def command(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """
        Send one command to the emulator and return its answer.
        """
        with self._lock:
            assert self.emulator is not None and self.emulator.stdin is not None
            self.emulator.stdin.write((json.dumps(message) + "\n").encode())
            self.emulator.stdin.flush()
            answer = self._answer(timeout=10)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def set(self, direction: str = "both", **settings: Any) -> None:
        """
        Change the link in one direction (C{"ab"}, C{"ba"}) or both: any of
        C{delay}, C{jitter} (seconds), C{rate} (bits a second, 0 for none),
        C{queue} (bytes), C{loss} (0 to 1), C{blackhole}, C{block} (a
        list of TCP/UDP ports blackholed alone: from or to them), C{freeze}
        (C{False} releases what was held; with C{drop=True}, drops it).
        """
        self.command({"cmd": "set", "dir": direction, **settings})

    def stats(self) -> Dict[str, Any]:
        return self.command({"cmd": "stats"})

    def spawn(self, side: str, args: List[str], env: Optional[Dict[str, str]] = None) -> Peer:
        """
        Run C{python ARGS} in namespace C{side} (C{"a"} or C{"b"}), with
        this checkout first on its path.
        """
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        environment["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.names[side], sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
            env=environment,
        )
        peer = Peer(process, f"{side}:{' '.join(args)}")
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        """
        Kill every spawned process, stop the emulator, delete both
        namespaces; safe to call more than once.
        """
        for peer in self.peers:
            try:
                peer.kill()
            except Exception:
                pass
        self.peers = []
        emulator, self.emulator = self.emulator, None
        if emulator is not None:
            try:
                assert emulator.stdin is not None
                emulator.stdin.write(b'{"cmd": "stop"}\n')
                emulator.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                emulator.wait(timeout=5)
            except subprocess.TimeoutExpired:
                emulator.kill()
                emulator.wait(timeout=5)
            if emulator.stdout is not None:
                emulator.stdout.close()
        for name in self.names.values():
            _removeNamespace(name)


def watchParent(onLine: Optional[Callable[[Dict[str, Any]], None]] = None) -> None:
    """
    For processes spawned into a namespace: exit at once when standard
    input closes (whoever spawned us is gone); hand each JSON line read
    there to C{onLine} (called in a thread of its own).
    """

    def watch() -> None:
        try:
            for line in sys.stdin.buffer:
                if onLine is not None and line.strip():
                    onLine(json.loads(line))
        finally:
            os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        sys.exit(serve(float(sys.argv[2]), int(sys.argv[3])))
    if len(sys.argv) >= 2 and sys.argv[1] == "sweep":
        print("\n".join(sweep()))
        sys.exit(0)
    print(__doc__)
    sys.exit(2)
