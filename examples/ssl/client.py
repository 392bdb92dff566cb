"""
The seed's ssl example client.  The certificate is checked against the host
name and the trust root; any failure ends the connection before a dnode
byte is sent, and is reported as an error event.
"""

import sys

from twisted.internet import reactor, task

import upnode

up = upnode.connect({"endpoint": "tls:localhost:7000:trustRoots=keys/cert.pem"})
up.on("error", lambda failure: print("error:", failure.value, file=sys.stderr))


def tick():
    up(lambda remote, conn: remote.time(lambda t: print("time =", t, flush=True)))


task.LoopingCall(tick).start(1.0)
reactor.run()
