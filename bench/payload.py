"""
The benchmark payload: a small object (plus, in each call, one callback).
"""

import time

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


class Window:
    """
    A pipelined run's timing: replies counted after C{warmup} of them, for
    at most C{seconds} from then.
    """

    def __init__(self, warmup: int, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.done = 0
        self.start = time.perf_counter()
        self.deadline = self.start + seconds

    def answered(self) -> bool:
        """
        One more reply; whether the timed part is over.
        """
        self.done += 1
        if self.done == self.warmup:
            self.start = time.perf_counter()
            self.deadline = self.start + self.seconds
        return self.done > self.warmup and time.perf_counter() >= self.deadline

    def timed(self) -> "tuple[int, float]":
        """
        (replies in the timed part, its seconds).
        """
        return self.done - self.warmup, time.perf_counter() - self.start
