"""
In-memory stand-ins for child processes, for unit tests of the bridge.

L{FakeSpawner} takes the place of L{mcpbridge.child.spawnGroupLeader}: every
child it "spawns" is a L{FakeChild} whose transport records what the bridge
writes, and whose protocol the test drives to play the MCP server.
"""

from __future__ import annotations

import json
import signal
from typing import Any, Optional

import treq
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from mcpbridge.child import CommandSpec
from mcpbridge.sessions import SessionConfig, SessionManager


class FakeReader:
    """
    Stands in for the reader of one of a process's pipes.
    """

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False


@implementer(IProcessTransport)
class FakeProcessTransport:
    """
    The parent's side of a child process's pipes, in memory.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.data = b""
        self.stdinClosed = False
        self.signals: list[Any] = []
        self.lost = False
        self.pipes = {1: FakeReader(), 2: FakeReader()}

    def closeStdin(self) -> None:
        self.stdinClosed = True

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        if descriptor == 0:
            self.stdinClosed = True

    def writeToChild(self, childFD: int, data: bytes) -> None:
        assert childFD == 0
        self.write(data)

    def loseConnection(self) -> None:
        self.lost = True

    def signalProcess(self, signalID: Any) -> None:
        self.signals.append(signalID)

    def write(self, data: bytes) -> None:
        assert not self.stdinClosed, "write after stdin was closed"
        self.data += data

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


class FakeChild:
    """
    One spawned child: what the bridge wrote to it, and ways to answer.
    """

    def __init__(self, protocol: ProcessProtocol, transport: FakeProcessTransport,
                 executable: str, args: list[str], env: dict[str, str],
                 path: Optional[str]) -> None:
        self.protocol = protocol
        self.transport = transport
        self.executable = executable
        self.args = args
        self.env = env
        self.path = path
        self.exited = False
        self.groupSignals: list[int] = []

    @property
    def pid(self) -> int:
        return self.transport.pid

    def received(self) -> list[dict[str, Any]]:
        """
        Every message the bridge wrote to the child's stdin, parsed.
        """
        return [json.loads(line) for line in self.transport.data.split(b"\n") if line]

    def last(self) -> dict[str, Any]:
        return self.received()[-1]

    def send(self, obj: Any) -> None:
        """
        Write a message (or raw bytes) on the child's stdout.
        """
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        self.protocol.childDataReceived(1, data)

    def stderr(self, data: bytes) -> None:
        self.protocol.childDataReceived(2, data)

    def answer(self, request: dict[str, Any], result: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def answerInitialize(self, version: str = "2025-11-25") -> None:
        init = [m for m in self.received() if m.get("method") == "initialize"][-1]
        self.answer(init, {"protocolVersion": version, "capabilities": {"tools": {}},
                           "serverInfo": {"name": "fake", "version": "1"}})

    def exit(self, code: int = 0, sig: Optional[int] = None) -> None:
        """
        End the child with an exit code or a signal.
        """
        self.exited = True
        if sig is None and code == 0:
            reason: Failure = Failure(ProcessDone(0))
        else:
            reason = Failure(ProcessTerminated(exitCode=None if sig else code, signal=sig))
        self.protocol.processEnded(reason)


class FakeSpawner:
    """
    Spawns L{FakeChild}ren; also the C{killpg} the bridge signals groups with.
    """

    def __init__(self) -> None:
        self.children: list[FakeChild] = []
        self.failWith: Optional[Exception] = None
        self.exitOnSignal = True
        self._nextPid = 1000

    def __call__(self, reactor: Any, protocol: ProcessProtocol, executable: str,
                 args: list[str], env: Any, path: Optional[str]) -> FakeProcessTransport:
        if self.failWith is not None:
            raise self.failWith
        self._nextPid += 1
        transport = FakeProcessTransport(self._nextPid)
        protocol.makeConnection(transport)
        self.children.append(FakeChild(protocol, transport, executable, args, dict(env), path))
        return transport

    def child(self, pid: int) -> FakeChild:
        return next(c for c in self.children if c.pid == pid)

    def killpg(self, pgid: int, sig: int) -> None:
        child = self.child(pgid)
        if child.exited:
            raise ProcessLookupError()
        if sig == 0:
            return
        child.groupSignals.append(sig)
        if self.exitOnSignal and sig in (signal.SIGTERM, signal.SIGKILL):
            child.exit(sig=sig)

    @property
    def last(self) -> FakeChild:
        return self.children[-1]


class StubHTTP:
    """
    Reading answers of requests made with a StubTreq C{self.http}, for a
    trial TestCase.
    """

    http: Any

    def respond(self, d: Any) -> tuple[Any, bytes]:
        """
        The finished response of a request and its whole body.
        """
        self.http.flush()
        response = self.successResultOf(d)  # type: ignore[attr-defined]
        body = self.successResultOf(response.content())  # type: ignore[attr-defined]
        return response, body

    def stream(self, d: Any) -> tuple[Any, list[bytes], Any]:
        """
        A response whose body is still arriving: the chunks so far, and a
        Deferred that fires when it ends.
        """
        self.http.flush()
        response = self.successResultOf(d)  # type: ignore[attr-defined]
        chunks: list[bytes] = []
        done = treq.collect(response, chunks.append)
        self.http.flush()
        return response, chunks, done


def parseSSE(data: bytes) -> list[dict[str, Any]]:
    """
    Split an SSE body into events: dicts with C{id}, C{data} (parsed JSON or
    raw text), C{retry}; comments are returned as C{{"comment": ...}}.
    """
    events = []
    for block in data.split(b"\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        datalines = []
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                event["comment"] = line[1:].strip().decode()
            else:
                field, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if field == b"data":
                    datalines.append(value)
                else:
                    event[field.decode()] = value.decode()
        if datalines:
            text = b"\n".join(datalines)
            event["data"] = json.loads(text) if text.strip() else ""
        events.append(event)
    return events


def makeManager(config: Optional[SessionConfig] = None, **spec: Any
                ) -> tuple[SessionManager, FakeSpawner, MemoryReactorClock]:
    """
    A started L{SessionManager} over fake children and a fake clock.
    """
    clock = MemoryReactorClock()
    spawner = FakeSpawner()
    command = CommandSpec(argv=("/bin/sh",), env={"PATH": "/usr/bin:/bin"}, **spec)
    manager = SessionManager(command, config or SessionConfig(), clock,
                             spawn=spawner, killpg=spawner.killpg)
    manager.startService()
    return manager, spawner, clock


class WritesTransport(StringTransport):
    """
    A transport that keeps each write apart.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        #: What each call wrote, and the pieces it was given.
        self.writes: list[bytes] = []
        self.pieces: list[list[bytes]] = []

    def write(self, data: bytes) -> None:
        self.writeSequence([data])

    def writeSequence(self, data: Any) -> None:
        pieces = list(data)
        self.pieces.append(pieces)
        self.writes.append(b"".join(pieces))
        super().write(b"".join(pieces))
