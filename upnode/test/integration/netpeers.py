"""
Plain-socket TCP peers that the packet-level path tests run inside the two
namespaces, each printing JSON lines:

    python -m upnode.test.integration.netpeers server PORT
    python -m upnode.test.integration.netpeers rtt HOST PORT COUNT
    python -m upnode.test.integration.netpeers download HOST PORT BYTES
    python -m upnode.test.integration.netpeers hold HOST PORT

The server answers each connection by its first line: C{echo} (echo until
the end), C{source N} (send N bytes of L{payload} and close). C{hold}
connects to the echo service, says C{connected}, writes C{{"write": N}}
bytes when told so on its standard input, and reports its socket's
C{TCP_INFO} every 0.25 s with whether the socket became readable (a FIN or
an RST would make it so) and how many bytes came back.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import socket
import struct
import sys
import threading
import time
from typing import Any, Dict

from .netpath import watchParent


def say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def payload(n: int) -> bytes:
    return random.Random(7).randbytes(n)


def tcpInfo(sock: socket.socket) -> Dict[str, int]:
    """
    The fields of Linux's C{struct tcp_info} the tests look at.
    """
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    state, _, retransmits, probes, backoff = struct.unpack_from("5B", raw, 0)
    rto, _, _, _, unacked = struct.unpack_from("5I", raw, 8)
    (rtt,) = struct.unpack_from("I", raw, 68)
    (totalRetrans,) = struct.unpack_from("I", raw, 100)
    return {
        "state": state,
        "retransmits": retransmits,
        "backoff": backoff,
        "rto": rto,
        "unacked": unacked,
        "rtt": rtt,
        "totalRetrans": totalRetrans,
    }


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.strip()


def _serve(conn: socket.socket) -> None:
    with conn:
        words = _line(conn).split()
        if words == [b"echo"]:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        elif words[:1] == [b"source"]:
            conn.sendall(payload(int(words[1])))
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass


def server(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    say(listening=port)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


def rtt(host: str, port: int, count: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.monotonic()
    sock.connect((host, port))
    connect = time.monotonic() - start
    sock.sendall(b"echo\n")
    rtts = []
    for _ in range(count):
        start = time.monotonic()
        sock.sendall(b"x")
        if sock.recv(1) != b"x":
            break
        rtts.append(time.monotonic() - start)
    say(connect=connect, rtts=rtts)


def download(host: str, port: int, n: int) -> None:
    sock = socket.socket()
    sock.connect((host, port))
    sock.sendall(f"source {n}\n".encode())
    got = hashlib.sha256()
    size = 0
    first = last = 0.0
    start = time.monotonic()
    while True:
        data = sock.recv(262144)
        if not data:
            break
        if not size:
            first = time.monotonic()
        size += len(data)
        got.update(data)
        last = time.monotonic()
    say(
        bytes=size,
        intact=got.hexdigest() == hashlib.sha256(payload(n)).hexdigest(),
        firstByte=first - start,
        seconds=last - first,
        info=tcpInfo(sock),
    )


def hold(host: str, port: int) -> None:
    sock = socket.socket()
    sock.connect((host, port))
    sock.sendall(b"echo\n")
    say(connected=True)
    sock.setblocking(False)
    received = 0
    todo = bytearray()

    def command(message: Dict[str, Any]) -> None:
        todo.extend(b"y" * int(message["write"]))

    watchParent(command)
    started = time.monotonic()
    while time.monotonic() - started < 120:
        readable, _, _ = select.select([sock], [], [], 0.25)
        if todo:
            try:
                sent = sock.send(bytes(todo))
                del todo[:sent]
            except BlockingIOError:
                pass
        eof = False
        if readable:
            try:
                data = sock.recv(65536)
                received += len(data)
                eof = not data
            except BlockingIOError:
                pass
            except OSError as e:
                say(error=repr(e))
                return
        say(t=time.monotonic() - started, info=tcpInfo(sock), readable=bool(readable), received=received, eof=eof)
        if eof:
            return


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:]
    if role != "hold":
        watchParent()
    if role == "server":
        server(int(args[0]))
    elif role == "rtt":
        rtt(args[0], int(args[1]), int(args[2]))
    elif role == "download":
        download(args[0], int(args[1]), int(args[2]))
    elif role == "hold":
        hold(args[0], int(args[1]))
