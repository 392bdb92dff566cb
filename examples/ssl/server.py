"""
The seed's ssl example server: the simple time service over TLS.
"""

import time

from twisted.internet import reactor

import upnode


class Clock:
    def __init__(self, remote, conn):
        pass

    def time(self, cb):
        cb(time.ctime())


upnode.upnode(Clock).listen({"endpoint": "ssl:7000:privateKey=keys/key.pem:certKey=keys/cert.pem"})
reactor.run()
