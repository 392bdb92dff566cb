"""
The socket settings, and the read-size fast path's feature check: each
setting applies where the transport has it and is skipped, correctly,
where it does not.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from upnode import _tuning
from upnode._protocol import DnodeProtocol


@implementer(ITCPTransport)
class FakeTCP(FileDescriptor):
    def __init__(self, fail: bool = False) -> None:
        FileDescriptor.__init__(self, reactor=object())
        self.noDelay: List[bool] = []
        self.fail = fail

    def setTcpNoDelay(self, enabled: bool) -> None:
        if self.fail:
            raise OSError("gone")
        self.noDelay.append(enabled)


class Wrapper:
    """
    A protocol wrapper (as TLS is) over another transport.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport


class TuningTests(SynchronousTestCase):
    def test_readSizeOnASocketTransport(self) -> None:
        tcp = FakeTCP()
        self.assertTrue(_tuning.setReadSize(Wrapper(tcp), 4096))
        self.assertEqual(tcp.bufferSize, 4096)

    def test_readSizeFallback(self) -> None:
        """
        Where the attribute is not an int, or the transport is no file
        descriptor, nothing is touched and the transport reads as it does.
        """
        tcp = FakeTCP()
        tcp.bufferSize = None  # type: ignore[assignment]
        self.assertFalse(_tuning.setReadSize(tcp, 4096))
        self.assertIsNone(tcp.bufferSize)
        self.assertFalse(_tuning.setReadSize(StringTransport(), 4096))
        self.assertFalse(_tuning.setReadSize(None, 4096))

    def test_noDelayThroughAWrapper(self) -> None:
        tcp = FakeTCP()
        self.assertTrue(_tuning.setNoDelay(Wrapper(tcp)))
        self.assertEqual(tcp.noDelay, [True])

    def test_noDelayWhereThereIsNoTCP(self) -> None:
        self.assertFalse(_tuning.setNoDelay(StringTransport()))
        self.assertFalse(_tuning.setNoDelay(FakeTCP(fail=True)))

    def test_protocolOnATransportWithNeither(self) -> None:
        """
        A protocol on a transport with neither setting starts and talks.
        """
        proto = DnodeProtocol({"x": 1})
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIn(b'"method":"methods"', transport.value())
