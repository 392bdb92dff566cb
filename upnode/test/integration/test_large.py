"""
Answers larger than the socket takes at once, over real loopback TCP: the
part the kernel takes is sent at once, the rest waits in the transport, and
everything arrives intact and in order.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

import upnode


class LargeAnswers(TestCase):
    timeout = 60

    async def test_largeThenSmallInOrder(self) -> None:
        order: List[Any] = []

        def echo(value: Any, cb: Any) -> None:
            cb(value)

        server = upnode.upnode({"echo": echo})
        self.addCleanup(server.end)
        # Lines far above what a socket takes in one send.
        options = {"ping": 0, "maxLineLength": 64 * 1024 * 1024}
        port = (await server.listen(0, "127.0.0.1", options)).getHost().port
        up = upnode.connect(port, "127.0.0.1", options)
        self.addCleanup(up.close)
        await up()
        big = "".join(chr(0x41 + i % 26) for i in range(16 * 1024 * 1024))
        calls = [up.call("echo", big, timeout=30)] + [up.call("echo", n, timeout=30) for n in range(20)]
        for call in calls:
            call.addCallback(lambda result: order.append(result) or result)
        results = await gatherResults(calls)
        self.assertEqual(results[0], big)
        self.assertEqual(results[1:], list(range(20)))
        self.assertEqual(order[0], big)
        self.assertEqual(order[1:], list(range(20)))
