"""
A client as a C{twisted.application} service: it connects when started,
and its stop closes it, so that no transaction waits for a link nobody
will make again.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import upnode
from upnode.testing import FakeEndpoint


class ServiceTests(SynchronousTestCase):
    def test_startConnectsStopCloses(self) -> None:
        clock = Clock()
        endpoint = FakeEndpoint(clock)
        service = upnode.upnode(reactor=clock).service(endpoint, ping=0)
        self.assertIsInstance(service, upnode.UpnodeClientService)
        waiting = service.client()
        self.assertEqual(endpoint.attempts, [])  # nothing before the start
        service.startService()
        self.assertEqual(len(endpoint.attempts), 1)
        server = upnode.UpnodeServerFactory({"echo": lambda value, cb: cb(value)}, ping=0, clock=clock)
        link = endpoint.accept(server)
        link.flush()
        remote = self.successResultOf(waiting)
        answers: List[Any] = []
        remote.echo("hi", answers.append)
        link.flush()
        self.assertEqual(answers, ["hi"])
        stopped = service.stopService()
        link.flush()
        self.successResultOf(stopped)
        self.assertEqual(service.client.status()["state"], "closed")
        self.failureResultOf(service.client(), upnode.Closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stopWhileWaiting(self) -> None:
        """
        Stopped while the server is away: what waits fails with Closed at
        once, and no retry is left scheduled.
        """
        clock = Clock()
        endpoint = FakeEndpoint(clock)
        service = upnode.upnode(reactor=clock).service(endpoint, ping=0, reconnect=0.5)
        service.startService()
        waiting = service.client()
        endpoint.refuse()
        self.assertEqual(service.client.status()["state"], "waiting")
        self.successResultOf(service.stopService())
        self.failureResultOf(waiting, upnode.Closed)
        self.assertEqual(clock.getDelayedCalls(), [])
