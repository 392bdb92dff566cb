"""
The ``upnode-server`` of the twistd plugin as an asyncio program (through
upnode.aio), for ``bench/attack.py --loop``:

    python bench/aioserver.py asyncio|uvloop [upnode-server options]

It takes the plugin's options and serves the same service; its ``tcp:``
ports ride the loop's own transports, any other (``ssl:``) Twisted's, as
in any upnode.aio program.  It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import upnode.aio  # noqa: E402


def endpointFor(loop: asyncio.AbstractEventLoop, reactor: Any, description: str) -> Any:
    from twisted.internet.endpoints import serverFromString

    from upnode._aiostream import LoopServerEndpoint

    kind, _, rest = description.partition(":")
    if kind != "tcp":
        return serverFromString(reactor, description)
    port, *options = rest.split(":")
    fields = dict(option.split("=", 1) for option in options)
    return LoopServerEndpoint(loop, int(port), fields.get("interface", ""), backlog=int(fields.get("backlog", 50)))


async def main(args: List[str]) -> None:
    from upnode.tap import Options, serverFactory

    reactor = upnode.aio.start()
    options = Options()
    options.parseOptions(args)
    factory = serverFactory(options)
    loop = asyncio.get_running_loop()
    for description in options["ports"]:
        await endpointFor(loop, reactor, description).listen(factory).asFuture(loop)
    stopped = loop.create_future()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, lambda: stopped.done() or stopped.set_result(None))
    await stopped


if __name__ == "__main__":
    if sys.argv[1] == "uvloop":
        import uvloop

        uvloop.run(main(sys.argv[2:]))
    else:
        asyncio.run(main(sys.argv[2:]))
