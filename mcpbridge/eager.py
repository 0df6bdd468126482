"""
Writes that go out at once.

A Twisted transport buffers every write and sends it on the reactor's next
turn, when the descriptor is reported writable: two more epoll calls and a
loop turn for each answer and each message to a child, on a path where the
socket or pipe is almost always empty and writable.  L{writeEagerly} makes
a transport try the system call at once when nothing is queued, and queue
only what does not fit, in Twisted's usual way.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable


#: The largest write tried at once.
EAGER_LIMIT = 64 * 1024


def writeEagerly(transport: Any, send: Callable[[bytes], int]) -> None:
    """
    Make C{transport} (a Twisted C{FileDescriptor}: a TCP connection or a
    process's stdin) send at once what it is given while its buffer is
    empty.

    @param send: writes some bytes without blocking and says how many; may
        raise L{BlockingIOError}, or any L{OSError}, which leaves the bytes
        to Twisted (whose write path then meets the error and reports it).
    """
    queue = transport.write
    queueSequence = transport.writeSequence

    def write(data: bytes) -> None:
        # Large writes are queued whole: sending part at once would cost a
        # copy of the rest, and saves nothing worth it.
        if (data and len(data) <= EAGER_LIMIT
                and transport.connected and not transport.disconnecting
                and not transport._tempDataBuffer
                and transport.offset >= len(transport.dataBuffer)):
            try:
                sent = send(data)
            except OSError:
                sent = 0
            if sent >= len(data):
                return
            data = data[sent:]
        queue(data)

    def writeSequence(iovec: Iterable[bytes]) -> None:
        # Small pieces are joined and sent as one; large ones are queued as
        # they are, since joining them would copy them.
        pieces = list(iovec)
        if sum(map(len, pieces)) <= EAGER_LIMIT:
            write(b"".join(pieces))
        else:
            queueSequence(pieces)

    transport.write = write
    transport.writeSequence = writeSequence


def socketSender(transport: Any) -> Callable[[bytes], int]:
    return transport.socket.send


def pipeSender(writer: Any) -> Callable[[bytes], int]:
    fd = writer.fd
    return lambda data: os.write(fd, data)
