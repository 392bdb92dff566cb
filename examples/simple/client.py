"""
The seed's "simple service interruption" client: one transaction a second,
buffered while the server is down.
"""

from twisted.internet import reactor, task

import upnode

up = upnode.connect(7000)


def tick():
    up(lambda remote, conn: remote.time(lambda t: print("time =", t, flush=True)))


task.LoopingCall(tick).start(1.0)
reactor.run()
