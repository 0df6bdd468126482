"""
The stdio MCP server child process: spawning it in its own process group,
framing its stdout into JSON-RPC messages, logging its stderr, writing to its
stdin, and stopping it (and everything it started) for certain.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
from collections import deque
from typing import Any, Callable, Mapping, Optional, Sequence

import attr
from twisted.internet import error as ierror
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet import process as _twistedProcess
from twisted.internet.process import Process, ProcessWriter
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from .eager import pipeSender, writeEagerly
from .jsonrpc import Message, parseLine
from .logs import logger

#: Environment variables a child gets by default, besides C{--env} pairs.
SAFE_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "VIRTUAL_ENV",
)

#: Never passed to a child: they belong to the bridge's own supervisor.
_PRIVATE_ENVIRONMENT_PREFIXES = ("LISTEN_",)
_PRIVATE_ENVIRONMENT = ("NOTIFY_SOCKET",)
#: The id near the start of a response line, read when the line is too long to parse.
_RESPONSE_ID = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def buildEnvironment(
    passEnvironment: bool,
    extra: Mapping[str, str],
    base: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """
    The environment for a child.

    @param passEnvironment: pass all of C{base} rather than the safe subset.
    @param extra: C{--env} pairs, applied last.
    @param base: the bridge's own environment (default C{os.environ}).
    """
    if base is None:
        base = os.environ
    if passEnvironment:
        env = dict(base)
    else:
        env = {k: base[k] for k in SAFE_ENVIRONMENT if k in base}
        env.setdefault("PATH", DEFAULT_PATH)
    for key in list(env):
        if key in _PRIVATE_ENVIRONMENT or key.startswith(_PRIVATE_ENVIRONMENT_PREFIXES):
            del env[key]
    env.update(extra)
    return env


class ChildStartError(Exception):
    """
    The child could not be started; the message says why, for humans.
    """


@attr.s(auto_attribs=True, frozen=True)
class CommandSpec:
    """
    How to run a child.

    @ivar argv: the command and its arguments.
    @ivar env: the complete environment.
    @ivar cwd: working directory, or L{None} for the bridge's own.
    @ivar shell: run C{argv} joined as one C{/bin/sh -c} command line.
    @ivar stdinGrace: seconds to wait after closing stdin before SIGTERM.
    @ivar termGrace: seconds to wait after SIGTERM before SIGKILL.
    @ivar maxMessageBytes: the longest stdout line accepted.
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Optional[str] = None
    shell: bool = False
    stdinGrace: float = 2.0
    termGrace: float = 3.0
    maxMessageBytes: int = 64 * 1024 * 1024

    def resolve(self) -> tuple[str, list[str]]:
        """
        The executable path and argument vector to spawn.

        @raise ChildStartError: if the program cannot be found.
        """
        if self.shell:
            return "/bin/sh", ["/bin/sh", "-c", " ".join(self.argv)]
        program = self.argv[0]
        if os.sep in program:
            path = program
            if self.cwd and not os.path.isabs(path):
                path = os.path.join(self.cwd, path)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise ChildStartError(f"command not found or not executable: {program}")
            return path, list(self.argv)
        found = shutil.which(program, path=self.env.get("PATH", DEFAULT_PATH))
        if found is None:
            raise ChildStartError(f"command not found on the child's PATH: {program}")
        return found, list(self.argv)


class _SetsidOS:
    """
    The C{os} module as Twisted's process code sees it while it spawns a
    group leader: the same, but C{posix_spawnp} also starts a new session.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def posix_spawnp(*args: Any, **kwargs: Any) -> int:
        return os.posix_spawnp(*args, setsid=True, **kwargs)


_SETSID_OS = _SetsidOS()


class _GroupLeaderProcess(Process):
    """
    A L{Process} that becomes the leader of a new session (and so of a new
    process group) before it executes the command, so the bridge can signal
    the child and everything it started as one group.

    Twisted spawns with C{posix_spawnp} when it can, which costs the bridge
    far less than a fork of itself (a fork copies its page tables and blocks
    the reactor for milliseconds); this class has that call start the new
    session too (C{POSIX_SPAWN_SETSID}).  Where Twisted falls back to fork
    (a working directory other than the bridge's), L{_execChild} calls
    C{setsid} in the child just before exec.
    """

    def _trySpawnInsteadOfFork(self, *args: Any, **kwargs: Any) -> bool:
        real = _twistedProcess.os
        _twistedProcess.os = _SETSID_OS  # type: ignore[assignment]
        try:
            return bool(super()._trySpawnInsteadOfFork(*args, **kwargs))
        finally:
            _twistedProcess.os = real

    def _execChild(self, *args: Any, **kwargs: Any) -> None:
        os.setsid()
        super()._execChild(*args, **kwargs)


def spawnGroupLeader(
    reactor: IReactorProcess,
    protocol: ProcessProtocol,
    executable: str,
    args: list[str],
    env: Mapping[str, str],
    path: Optional[str],
) -> IProcessTransport:
    """
    Spawn a child in a process group of its own.  Reactors that are not
    POSIX reactors (the in-memory ones in tests) get an ordinary
    C{spawnProcess} call.
    """
    if isinstance(reactor, PosixReactorBase):
        return _GroupLeaderProcess(reactor, executable, args, dict(env), path, protocol)
    return reactor.spawnProcess(protocol, executable, args, dict(env), path)


_LAUNCHERS = ("python", "node", "npx", "uvx", "uv", "bun", "deno", "sh", "bash", "env",
              "pipx", "ruby", "java")


def serverName(argv: Sequence[str]) -> str:
    """
    A short name for a server command, for logs: the program, or for an
    interpreter or launcher (C{python -m x}, C{npx -y pkg}) what it runs.
    """
    if not argv:
        return "?"
    name = os.path.basename(argv[0])
    if name.rstrip("0123456789.") in _LAUNCHERS:
        for arg in argv[1:]:
            if not arg.startswith("-") and arg not in ("run", "exec", "x"):
                return os.path.basename(arg.rstrip("/")) or name
    return name


def describeSignal(signum: int) -> str:
    try:
        return f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"signal {signum}"


class _ChildProtocol(ProcessProtocol):
    """
    Frames stdout into lines and stderr into log lines for a L{ChildProcess}.

    stdout lines are found by scanning only newly arrived bytes, so a message
    of any size costs time and memory proportional to its length.
    """

    def __init__(self, child: "ChildProcess") -> None:
        self.child = child
        self._out: list[bytes] = []
        self._outLength = 0
        self._discarding = False
        self._err = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self._stdout(data)
        elif childFD == 2:
            self._stderr(data)

    def _stdout(self, data: bytes) -> None:
        start = 0
        newline = data.find(b"\n")
        while newline != -1:
            if self._discarding:
                self._discarding = False
            elif self._out:
                self._out.append(data[start:newline])
                line = b"".join(self._out)
                self._out = []
                self._outLength = 0
                self._line(line)
            else:
                self._line(data[start:newline])
            start = newline + 1
            newline = data.find(b"\n", start)
        if start < len(data) and not self._discarding:
            rest = data[start:] if start else data
            self._outLength += len(rest)
            if self._outLength > self.child.spec.maxMessageBytes:
                head = self._out[0] if self._out else rest
                self._out = []
                self._outLength = 0
                self._discarding = True
                self.child.oversized(head[:4096])
            else:
                self._out.append(rest)

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return
        if len(line) > self.child.spec.maxMessageBytes:
            self.child.oversized(line[:4096])
            return
        self.child.lineReceived(line)

    def _stderr(self, data: bytes) -> None:
        data = self._err + data
        lines = data.split(b"\n")
        self._err = lines.pop()
        if len(self._err) > 8192:
            lines.append(self._err)
            self._err = b""
        for line in lines:
            self.child.stderrLine(line)

    def processEnded(self, reason: Failure) -> None:
        if self._err:
            self.child.stderrLine(self._err)
            self._err = b""
        self.child.ended(reason)


class ChildProcess:
    """
    One running stdio MCP server.

    @ivar state: C{"new"}, C{"running"}, C{"stopping"} or C{"exited"}.
    @ivar pid: the process id once started.
    @ivar exitDescription: how it ended, for humans, once it has.
    @ivar stderrTail: its last stderr lines.
    """

    log = logger("mcpbridge.child")

    def __init__(
        self,
        spec: CommandSpec,
        reactor: Any,
        label: str,
        onMessage: Callable[[Message], None],
        onExit: Callable[["ChildProcess"], None],
        onOversized: Callable[[Any, str], None] = lambda ident, reason: None,
        spawn: Callable[..., IProcessTransport] = spawnGroupLeader,
        killpg: Callable[[int, int], None] = os.killpg,
    ) -> None:
        self.spec = spec
        self.reactor = reactor
        self.label = label
        self.onMessage = onMessage
        self.onExit = onExit
        self.onOversized = onOversized
        self._spawn = spawn
        self.state = "new"
        self.pid: Optional[int] = None
        self.transport: Optional[IProcessTransport] = None
        self.exitDescription: Optional[str] = None
        self.stderrTail: deque[str] = deque(maxlen=20)
        self._killpg = killpg
        self.finished = False
        self._waiters: list[Deferred[None]] = []
        self._escalation: Any = None
        self._sweepDeadline = 0.0
        self._pausedBy: set[object] = set()

    def start(self) -> None:
        """
        Spawn the process.

        @raise ChildStartError: when it cannot be spawned; the reason is
            worded for the person who configured the command.
        """
        executable, args = self.spec.resolve()
        protocol = _ChildProtocol(self)
        try:
            self.transport = self._spawn(
                self.reactor, protocol, executable, args, self.spec.env, self.spec.cwd
            )
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise ChildStartError(
                    "cannot start the MCP server: the system refused to create a process (EAGAIN)"
                ) from e
            raise ChildStartError(f"cannot start the MCP server: {e}") from e
        self.pid = self.transport.pid
        stdin = getattr(self.transport, "pipes", {}).get(0)
        if isinstance(stdin, ProcessWriter):
            writeEagerly(stdin, pipeSender(stdin))
        self.state = "running"
        self._log(LogLevel.info, "child {server} started: pid {pid}, {command}",
                  command=" ".join(self.spec.argv))

    @property
    def running(self) -> bool:
        return self.state == "running"

    def send(self, message: Message) -> bool:
        """
        Write one message to the child's stdin.

        @return: whether the child could take it.
        """
        if self.state != "running" or self.transport is None:
            return False
        self.transport.writeSequence([message.raw, b"\n"])
        return True

    @property
    def server(self) -> str:
        """
        A short name for the server, for logs.
        """
        return serverName(self.spec.argv)

    def _log(self, level: LogLevel, fmt: str, **fields: Any) -> None:
        self.log.emit(level, fmt, server=self.server, pid=self.pid, session=self.label,
                      **fields)

    def pauseFor(self, reader: object) -> None:
        """
        Stop reading the child's stdout while C{reader} (a client stream
        whose socket is full) cannot take more; stderr is still drained.  A
        slow client makes the child wait rather than the bridge buffer.
        """
        if not self._pausedBy:
            pipe = getattr(self.transport, "pipes", {}).get(1)
            if pipe is not None:
                pipe.pauseProducing()
        self._pausedBy.add(reader)

    def resumeFor(self, reader: object) -> None:
        """
        C{reader} drained or ended: read on once no other reader is full.
        """
        if reader in self._pausedBy:
            self._pausedBy.discard(reader)
            if not self._pausedBy:
                pipe = getattr(self.transport, "pipes", {}).get(1)
                if pipe is not None:
                    pipe.resumeProducing()

    # Events from the protocol.

    def lineReceived(self, line: bytes) -> None:
        try:
            messages = parseLine(line)
        except ValueError:
            self._log(LogLevel.warn, "child {server}[{pid}] wrote a line that is not "
                      "JSON-RPC; skipped: {line!r}", line=line[:200])
            return
        for message in messages:
            try:
                self.onMessage(message)
            except Exception:
                # A bug in handling one message must not cost the child its pipe.
                self.log.failure("handling a message from child {server}[{pid}]",
                                 server=self.server, pid=self.pid)

    def oversized(self, head: bytes) -> None:
        """
        A line over the size limit was discarded: if the id of the response
        it held can be read from its first bytes, tell C{onOversized}.
        """
        self._log(LogLevel.error, "child {server}[{pid}] wrote a message over the {limit} "
                  "byte limit; discarded", limit=self.spec.maxMessageBytes)
        match = _RESPONSE_ID.search(head)
        if match is None:
            return
        try:
            ident = json.loads(match.group(1))
        except ValueError:
            return
        self.onOversized(ident, f"the MCP server's response exceeded the bridge's message "
                                f"size limit of {self.spec.maxMessageBytes} bytes")

    def stderrLine(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.stderrTail.append(text)
        self._log(LogLevel.info, "{server}[{pid}] session {session:.8} stderr: {line}",
                  line=text)

    def ended(self, reason: Failure) -> None:
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        if sig is not None:
            self.exitDescription = f"killed by {describeSignal(sig)}"
        elif code is not None:
            self.exitDescription = f"exited with code {code}"
        else:
            self.exitDescription = "exited"
        wasStopping = self.state == "stopping"
        self.state = "exited"
        if self._escalation is not None and self._escalation.active():
            self._escalation.cancel()
        self._escalation = None
        if wasStopping or isinstance(value, ierror.ProcessDone):
            self._log(LogLevel.info, "child {server}[{pid}] {how}", how=self.exitDescription)
        else:
            self._log(LogLevel.error, "child {server}[{pid}] {how}; last stderr: {stderr}",
                      how=self.exitDescription, stderr=list(self.stderrTail)[-5:])
        self.onExit(self)
        # Whatever the child left in its group goes too, before stop() fires.
        self._sweepDeadline = self.reactor.seconds() + self.spec.termGrace
        self._sweepGroup(first=True)

    def _sweepGroup(self, first: bool = False) -> None:
        self._escalation = None
        alive = self._signalGroup(0)
        if alive and self.reactor.seconds() < self._sweepDeadline:
            if first:
                self._signalGroup(signal.SIGTERM)
            self._escalation = self.reactor.callLater(0.05, self._sweepGroup)
            return
        if alive:
            self._log(LogLevel.warn, "processes left by child {server}[{pid}] ignored "
                      "SIGTERM; sending SIGKILL")
            self._signalGroup(signal.SIGKILL)
        self.finished = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    # Stopping.

    def stop(self) -> "Deferred[None]":
        """
        Stop the child: close its stdin, then SIGTERM its process group after
        C{stdinGrace}, then SIGKILL it after C{termGrace}.

        @return: fires once the child has exited and nothing is left in its
            process group.
        """
        if self.state == "new" or self.finished:
            self.state = "exited"
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self.state == "running":
            self.state = "stopping"
            assert self.transport is not None
            try:
                self.transport.closeStdin()
            except Exception:
                pass
            self._escalation = self.reactor.callLater(
                self.spec.stdinGrace, self._escalate, signal.SIGTERM)
        return d

    def whenFinished(self) -> "Deferred[None]":
        """
        Fires once the child has exited and its process group is empty.
        """
        if self.finished or self.state == "new":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _escalate(self, sig: int) -> None:
        self._escalation = None
        if self.state == "exited":
            return
        self._log(LogLevel.info, "child {server}[{pid}] still running; sending {sig}",
                  sig=describeSignal(sig))
        self._signalGroup(sig)
        if sig == signal.SIGTERM:
            self._escalation = self.reactor.callLater(
                self.spec.termGrace, self._escalate, signal.SIGKILL)

    def _signalGroup(self, sig: int) -> bool:
        """
        Send C{sig} to the child's process group.

        @return: whether the group still exists.
        """
        if self.pid is None:
            return False
        try:
            self._killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        except OSError as e:
            self.log.warn("cannot signal child group {pid}: {error}", pid=self.pid, error=e)
            return False
        return True
