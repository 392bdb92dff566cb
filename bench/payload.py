"""
The benchmark payload: a small object (plus, in each call, one callback).
"""

PAYLOAD = {"id": 1, "name": "bench", "tags": ["a", "b"], "ok": True, "ratio": 0.5}


def peerMain(argv, serve, calls) -> None:  # type: ignore[no-untyped-def]
    """
    A peer program's command line: C{server PORT}, or C{MODE PORT CALLS
    WARMUP SECONDS} for a client.
    """
    mode, port = argv[1], int(argv[2])
    if mode == "server":
        serve(port)
    else:
        calls(mode, port, int(argv[3]), int(argv[4]), float(argv[5]))
