# -*- test-case-name: upnode.test.test_tap -*-
"""
The demo service ``twistd -n upnode-server`` serves by default: the seed
README's walkthroughs (``time``, and ``auth`` giving a session with
``beep``) and an ``echo``.
"""

from __future__ import annotations

import time as _time
from typing import Any, Callable


class DemoService:
    """
    One instance per connection.
    """

    def __init__(self, remote: Any, conn: Any) -> None:
        self._remote = remote

    def time(self, cb: Callable[[str], Any]) -> None:
        """
        The server's local time, as the seed's simple example prints it.
        """
        cb(_time.ctime())

    def echo(self, *args: Any) -> None:
        """
        Call the last argument with the ones before it.
        """
        if args and callable(args[-1]):
            args[-1](*args[:-1])

    def auth(self, user: str, password: str, cb: Callable[..., Any]) -> None:
        """
        The seed's authentication example: moo / hax opens a session.
        """
        if user == "moo" and password == "hax":
            cb(None, {"beep": lambda fn: fn(f"boop at {_time.ctime()}")})
        else:
            cb("ACCESS DENIED")
