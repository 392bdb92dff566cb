"""
The seed's "authenticated interruption" client: the connect callback logs
in again after every reconnect and hands the session to transactions.
"""

import sys

from twisted.internet import reactor, task

import upnode


def onRemote(remote, conn):
    def authed(err, session):
        if err:
            print(err, file=sys.stderr)
        else:
            conn.emit("up", session)

    remote.auth("moo", "hax", authed)


up = upnode.connect(7000, onRemote)


def tick():
    up(lambda session, conn: session["beep"](lambda s: print(s, flush=True)))


task.LoopingCall(tick).start(1.0)
reactor.run()
