"""
Tests of L{mcpbridge.eager}: writes go out at once while nothing is queued,
and whatever does not go out is queued in Twisted's usual way.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.eager import EAGER_LIMIT, pipeSender, socketSender, writeEagerly


class FakeDescriptor:
    """
    The parts of a Twisted C{FileDescriptor} that L{writeEagerly} reads.
    """

    def __init__(self) -> None:
        self.connected = True
        self.disconnecting = False
        self._tempDataBuffer: list[bytes] = []
        self.dataBuffer = b""
        self.offset = 0
        self.queued: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.queued.append(data)
        self._tempDataBuffer.append(data)

    def writeSequence(self, iovec: Any) -> None:
        # As Twisted's: the pieces queued as they are, not through write.
        for data in iovec:
            self.queued.append(data)
            self._tempDataBuffer.append(data)


class WriteEagerlyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sent: list[bytes] = []
        self.accept = 1 << 30
        self.error: OSError | None = None
        self.fd = FakeDescriptor()
        writeEagerly(self.fd, self.send)

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        n = min(len(data), self.accept)
        self.sent.append(data[:n])
        return n

    def test_atOnce(self) -> None:
        self.fd.writeSequence([b"head ", b"body"])
        self.assertEqual((self.sent, self.fd.queued), ([b"head body"], []))

    def test_restQueued(self) -> None:
        self.accept = 3
        self.fd.write(b"abcdef")
        self.assertEqual((self.sent, self.fd.queued), ([b"abc"], [b"def"]))

    def test_queuedWhileBuffered(self) -> None:
        """
        Once something waits, later writes queue behind it, in order.
        """
        self.accept = 0
        self.fd.write(b"one")
        self.accept = 100
        self.fd.write(b"two")
        self.assertEqual(self.fd.queued, [b"one", b"two"])
        self.fd._tempDataBuffer.clear()
        self.fd.dataBuffer, self.fd.offset = b"one", 1
        self.fd.write(b"three")
        self.assertEqual(self.fd.queued, [b"one", b"two", b"three"])

    def test_errorsLeftToTwisted(self) -> None:
        for error in (BlockingIOError(), BrokenPipeError(), ConnectionResetError()):
            self.error = error
            self.fd.write(b"x")
        self.assertEqual(self.fd.queued, [b"x", b"x", b"x"])

    def test_largeQueued(self) -> None:
        self.fd.write(b"y" * (EAGER_LIMIT + 1))
        self.assertEqual((self.sent, len(self.fd.queued)), ([], 1))

    def test_largeSequenceQueuedAsItIs(self) -> None:
        """
        A large sequence is queued piece by piece, not joined (a copy).
        """
        pieces = [b"head", b"y" * EAGER_LIMIT, b"tail"]
        self.fd.writeSequence(pieces)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.fd.queued, pieces)
        self.assertIs(self.fd.queued[1], pieces[1])

    def test_notWhenClosing(self) -> None:
        self.fd.disconnecting = True
        self.fd.write(b"z")
        self.assertEqual((self.sent, self.fd.queued), ([], [b"z"]))


class SenderTests(SynchronousTestCase):
    """
    The senders write to real sockets and pipes without blocking.
    """

    def test_socket(self) -> None:
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.setblocking(False)
        transport = type("T", (), {"socket": a})()
        self.assertEqual(socketSender(transport)(b"hello"), 5)
        self.assertEqual(b.recv(10), b"hello")

    def test_pipeFull(self) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        os.set_blocking(w, False)
        send = pipeSender(type("W", (), {"fd": w})())
        total = 0
        with self.assertRaises(BlockingIOError):
            for _ in range(10000):
                total += send(b"p" * 65536)
        self.assertGreater(total, 0)
