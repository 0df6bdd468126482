"""
Unit tests for L{mcpbridge.child}: framing, stderr, stopping, environment.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from twisted.internet.interfaces import IProcessTransport
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass

from mcpbridge.child import ChildProcess, ChildStartError, CommandSpec, buildEnvironment
from mcpbridge.jsonrpc import Message

from .fakes import FakeProcessTransport, FakeSpawner


class FakeTransportTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        The fake transport provides every method of L{IProcessTransport}, so
        tests on it exercise what the bridge can really call.
        """
        self.assertTrue(verifyClass(IProcessTransport, FakeProcessTransport))


class ChildTestCase(SynchronousTestCase):
    def makeChild(self, **spec: Any) -> ChildProcess:
        self.clock = MemoryReactorClock()
        self.spawner = FakeSpawner()
        self.messages: list[Message] = []
        self.exits: list[ChildProcess] = []
        self.oversized: list[tuple[Any, str]] = []
        command = CommandSpec(argv=("/bin/sh", "-c", "x"), env={"PATH": "/bin"}, **spec)
        child = ChildProcess(command, self.clock, "test", self.messages.append,
                             self.exits.append, lambda *a: self.oversized.append(a),
                             spawn=self.spawner, killpg=self.spawner.killpg)
        child.start()
        return child


class FramingTests(ChildTestCase):
    def test_linesAcrossChunks(self) -> None:
        """
        Messages split across reads and several in one read come out whole,
        in order, with their exact bytes.
        """
        self.makeChild()
        fake = self.spawner.last
        fake.send(b'{"jsonrpc":"2.0","id":1,"res')
        fake.send(b'ult":{}}\n{"jsonrpc":"2.0","method":"a"}\r\n{"jsonrpc":"2.0","id":2,')
        self.assertEqual(len(self.messages), 2)
        fake.send(b'"result":2}\n\n   \n')
        self.assertEqual([m.raw for m in self.messages], [
            b'{"jsonrpc":"2.0","id":1,"result":{}}',
            b'{"jsonrpc":"2.0","method":"a"}',
            b'{"jsonrpc":"2.0","id":2,"result":2}',
        ])

    def test_largeMessage(self) -> None:
        """
        A 12 MiB message arriving in 64 KiB reads passes intact.
        """
        self.makeChild()
        text = "x" * (12 * 1024 * 1024)
        line = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"t": text}}).encode() + b"\n"
        for i in range(0, len(line), 65536):
            self.spawner.last.send(line[i:i + 65536])
        self.assertEqual(len(self.messages), 1)
        self.assertEqual(len(self.messages[0].obj["result"]["t"]), len(text))

    def test_garbageSkipped(self) -> None:
        """
        A line that is not JSON is logged and skipped; the next one works.
        """
        self.makeChild()
        with capturedLogs() as events:
            self.spawner.last.send(b"Starting server...\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1}\n")
        self.assertEqual([m.id for m in self.messages], [1])
        self.assertTrue(any("not JSON-RPC" in e["log_format"] for e in events))

    def test_largeResponseReadByItsHead(self) -> None:
        """
        A large response is routed by the id at its head without being
        parsed whole; its object is parsed only when asked for.  Other
        large messages are parsed as usual.
        """
        from mcpbridge.jsonrpc import LARGE_LINE, LargeResponse

        self.makeChild()
        text = "y" * LARGE_LINE
        self.spawner.last.send(json.dumps({"jsonrpc": "2.0", "id": "r-1", "result": {
            "content": [{"type": "text", "text": text}]}}).encode() + b"\n")
        self.spawner.last.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                           "params": {"data": text}}).encode() + b"\n")
        response, notification = self.messages
        self.assertIsInstance(response, LargeResponse)
        self.assertEqual((response.id, response.isResponse, response.hasMethod),
                         ("r-1", True, False))
        self.assertIsNone(response._parsed)
        self.assertEqual(response.obj["result"]["content"][0]["text"], text)
        self.assertNotIsInstance(notification, LargeResponse)
        self.assertEqual(notification.method, "notifications/message")

    def test_tooDeepSkipped(self) -> None:
        """
        A line nested deeper than the parser can go is skipped like any
        other that is not JSON-RPC, not an error that escapes.
        """
        self.makeChild()
        with capturedLogs() as events:
            self.spawner.last.send(b"[" * 100000 + b"\n"
                                   + b'{"jsonrpc":"2.0","id":2,"result":1}\n')
        self.assertEqual([m.id for m in self.messages], [2])
        self.assertTrue(any("not JSON-RPC" in e["log_format"] for e in events))

    def test_handlerFailureKeepsReading(self) -> None:
        """
        If handling one message raises, the error is logged and the next
        messages are still read (the child keeps its pipe).
        """
        child = self.makeChild()
        seen: list[Any] = []

        def handle(message: Message) -> None:
            if message.id == 1:
                raise ValueError("a bug")
            seen.append(message.id)

        child.onMessage = handle
        self.spawner.last.send(b'{"jsonrpc":"2.0","id":1,"result":1}\n'
                               b'{"jsonrpc":"2.0","id":2,"result":2}\n')
        self.spawner.last.send(b'{"jsonrpc":"2.0","id":3,"result":3}\n')
        self.assertEqual(seen, [2, 3])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_oversizedDiscarded(self) -> None:
        """
        A line over the limit is discarded up to its newline and reported
        with the id read from its first bytes and the limit; the following
        message is read normally.
        """
        self.makeChild(maxMessageBytes=1000)
        fake = self.spawner.last
        fake.send(b'{"jsonrpc":"2.0","id":5,"result":"' + b"y" * 600)
        fake.send(b"y" * 600)
        fake.send(b"y" * 600 + b'"}\n{"jsonrpc":"2.0","id":6,"result":1}\n')
        self.assertEqual(self.oversized, [
            (5, "the MCP server's response exceeded the bridge's message size limit of "
                "1000 bytes")])
        self.assertEqual([m.id for m in self.messages], [6])

    def test_stderrLogged(self) -> None:
        """
        stderr is logged a line at a time, never parsed as protocol; a
        partial last line is logged when the child exits.
        """
        self.makeChild()
        with capturedLogs() as events:
            self.spawner.last.stderr(b"one\ntw")
            self.spawner.last.stderr(b"o\nthree")
            self.spawner.last.exit(1)
        lines = [e["line"] for e in events if "line" in e and e.get("session") ==
                 "test"]
        self.assertEqual(lines, ["one", "two", "three"])
        self.assertEqual(self.messages, [])


class StopTests(ChildTestCase):
    def test_exitAfterStdinClose(self) -> None:
        """
        Stopping closes stdin first; a child that exits then is never
        signalled, and C{stop()} fires once its group is empty.
        """
        child = self.makeChild()
        fake = self.spawner.last
        done: list[Any] = []
        child.stop().addCallback(done.append)
        self.assertTrue(fake.transport.stdinClosed)
        fake.exit(0)
        self.assertEqual(done, [None])
        self.assertEqual(fake.groupSignals, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_escalation(self) -> None:
        """
        A child that ignores stdin EOF gets SIGTERM to its group after the
        stdin grace, and SIGKILL after the term grace.
        """
        child = self.makeChild(stdinGrace=2.0, termGrace=3.0)
        self.spawner.exitOnSignal = False
        fake = self.spawner.last
        done: list[Any] = []
        child.stop().addCallback(done.append)
        self.clock.advance(1.9)
        self.assertEqual(fake.groupSignals, [])
        self.clock.advance(0.2)
        self.assertEqual(fake.groupSignals, [signal.SIGTERM])
        self.clock.advance(3.0)
        self.assertEqual(fake.groupSignals, [signal.SIGTERM, signal.SIGKILL])
        self.assertEqual(done, [])
        fake.exit(sig=signal.SIGKILL)
        self.assertEqual(done, [None])
        self.assertEqual(child.exitDescription, "killed by signal 9 (SIGKILL)")

    def test_crashReported(self) -> None:
        """
        An unexpected exit is reported to the owner with the exit code, and
        logged as an error with the last stderr lines.
        """
        child = self.makeChild()
        with capturedLogs() as events:
            self.spawner.last.stderr(b"Traceback: boom\n")
            self.spawner.last.exit(3)
        self.assertEqual(self.exits, [child])
        self.assertEqual(child.exitDescription, "exited with code 3")
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("Traceback: boom", errors[0]["stderr"])

    def test_sendAfterExit(self) -> None:
        """
        Writing to an exited child is refused rather than raising.
        """
        child = self.makeChild()
        self.spawner.last.exit(0)
        self.assertFalse(child.send(Message.fromObject({"jsonrpc": "2.0", "method": "x"})))


class CommandTests(SynchronousTestCase):
    def test_missingCommand(self) -> None:
        """
        A program not on the child's PATH is a L{ChildStartError} naming it.
        """
        spec = CommandSpec(argv=("no-such-program-xyz",), env={"PATH": "/usr/bin:/bin"})
        e = self.assertRaises(ChildStartError, spec.resolve)
        self.assertIn("no-such-program-xyz", str(e))

    def test_pathLookup(self) -> None:
        """
        A bare program name is found on the child's PATH.
        """
        spec = CommandSpec(argv=("sh", "-c", "true"), env={"PATH": "/usr/bin:/bin"})
        executable, args = spec.resolve()
        self.assertTrue(executable.endswith("/sh"))
        self.assertEqual(args, ["sh", "-c", "true"])

    def test_shell(self) -> None:
        """
        With C{shell}, the command line runs under C{/bin/sh -c}.
        """
        spec = CommandSpec(argv=("echo", "a|b"), env={}, shell=True)
        self.assertEqual(spec.resolve(), ("/bin/sh", ["/bin/sh", "-c", "echo a|b"]))


class EnvironmentTests(SynchronousTestCase):
    base = {"PATH": "/p", "HOME": "/h", "SECRET_TOKEN": "s", "NOTIFY_SOCKET": "/n",
            "LISTEN_FDS": "1", "LISTEN_PID": "9", "LANG": "C.UTF-8"}

    def test_safeSubset(self) -> None:
        """
        By default a child gets only the safe variables plus C{--env} pairs.
        """
        env = buildEnvironment(False, {"API_KEY": "k"}, self.base)
        self.assertEqual(env, {"PATH": "/p", "HOME": "/h", "LANG": "C.UTF-8", "API_KEY": "k"})

    def test_passEnvironment(self) -> None:
        """
        C{--pass-environment} passes everything except the supervisor's own
        C{NOTIFY_SOCKET} and C{LISTEN_*}.
        """
        env = buildEnvironment(True, {}, self.base)
        self.assertEqual(env, {"PATH": "/p", "HOME": "/h", "SECRET_TOKEN": "s",
                               "LANG": "C.UTF-8"})

    def test_defaultPath(self) -> None:
        """
        A child always has a PATH, even when the bridge has none.
        """
        self.assertIn("PATH", buildEnvironment(False, {}, {}))
