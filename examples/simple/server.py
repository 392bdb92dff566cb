"""
The seed's "simple service interruption" server.
"""

import time

from twisted.internet import reactor

import upnode


class Clock:
    def __init__(self, remote, conn):
        pass

    def time(self, cb):
        cb(time.ctime())


upnode.upnode(Clock).listen(7000)
reactor.run()
