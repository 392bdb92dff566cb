"""
The seed's "authenticated interruption" server: beep sits behind auth.
"""

import time

from twisted.internet import reactor

import upnode


class Service:
    def __init__(self, remote, conn):
        pass

    def auth(self, user, password, cb):
        if (user, password) == ("moo", "hax"):
            cb(None, {"beep": lambda fn: fn("boop at " + time.ctime())})
        else:
            cb("ACCESS DENIED")


upnode.upnode(Service).listen(7000)
reactor.run()
