"""
Tests for L{mcpbridge.logs}' output formats: the JSON-lines observer and
L{makeObserver}.
"""

from __future__ import annotations

import io
import json
import os
import re
from datetime import datetime, timezone
from typing import IO, Any, Dict, List, cast

from twisted.logger import ILogObserver, Logger, LogPublisher
from twisted.python import log as legacyLog
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.logs import FORMATS, jsonLineObserver, makeObserver

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class FlushCountingIO(io.StringIO):
    """
    A L{io.StringIO} that records what it held each time it was flushed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flushedValues: List[str] = []

    def flush(self) -> None:
        super().flush()
        self.flushedValues.append(self.getvalue())


class JSONLineObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.observer = jsonLineObserver(self.out)
        self.log = Logger(namespace="mcpbridge.test", observer=self.observer)

    def lines(self) -> List[str]:
        text = self.out.getvalue()
        self.assertTrue(text.endswith("\n"), repr(text))
        return text[:-1].split("\n")

    def records(self) -> List[Dict[str, Any]]:
        """
        Every line written so far, each parsed as one JSON object.
        """
        records = []
        for line in self.lines():
            record = json.loads(line)
            self.assertIsInstance(record, dict)
            records.append(record)
        return records

    def only(self) -> Dict[str, Any]:
        records = self.records()
        self.assertEqual(len(records), 1, records)
        return records[0]

    def test_providesILogObserver(self) -> None:
        self.assertTrue(ILogObserver.providedBy(self.observer))

    def test_basicFields(self) -> None:
        """
        A plain event has exactly time, level, logger and message.
        """
        self.log.info("hello {who}", who="world")
        record = self.only()
        self.assertEqual(
            sorted(record), ["level", "logger", "message", "time", "who"]
        )
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["logger"], "mcpbridge.test")
        self.assertEqual(record["message"], "hello world")
        self.assertEqual(record["who"], "world")

    def test_levels(self) -> None:
        """
        Each Twisted log level is written by its lower-case name.
        """
        self.log.debug("d")
        self.log.info("i")
        self.log.warn("w")
        self.log.error("e")
        self.log.critical("c")
        self.assertEqual(
            [(r["level"], r["message"]) for r in self.records()],
            [
                ("debug", "d"),
                ("info", "i"),
                ("warn", "w"),
                ("error", "e"),
                ("critical", "c"),
            ],
        )

    def test_namespaces(self) -> None:
        """
        The logger field is the event's namespace, or C{"-"} without one.
        """
        Logger(namespace="mcpbridge.web", observer=self.observer).info("a")
        Logger(namespace="mcpbridge.pool", observer=self.observer).info("b")
        self.observer({"log_format": "c", "log_time": 0.0})
        self.assertEqual(
            [r["logger"] for r in self.records()],
            ["mcpbridge.web", "mcpbridge.pool", "-"],
        )

    def test_extraKeys(self) -> None:
        """
        Keys the event was logged with become fields, JSON scalars as they
        are; Twisted's C{log_*} keys do not.
        """
        self.log.info(
            "session {session} started",
            session="ab12",
            count=3,
            ratio=0.5,
            ok=True,
            nothing=None,
        )
        record = self.only()
        self.assertEqual(record["message"], "session ab12 started")
        self.assertEqual(record["session"], "ab12")
        self.assertIs(record["count"], 3)
        self.assertEqual(record["ratio"], 0.5)
        self.assertIs(record["ok"], True)
        self.assertIn("nothing", record)
        self.assertIsNone(record["nothing"])
        self.assertEqual([k for k in record if k.startswith("log_")], [])

    def test_reservedKeyDoesNotOverwrite(self) -> None:
        """
        An event key named like one of the fixed fields does not replace it.
        """
        self.log.warn("x", logger="other", traceback="tb", message="m")
        self.observer(
            {
                "log_format": "y",
                "log_namespace": "mcpbridge.test",
                "level": "custom",
            }
        )
        record, second = self.records()
        self.assertEqual(second["level"], "info")
        self.assertEqual(second["message"], "y")
        self.assertEqual(second["event_level"], "custom")
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["logger"], "mcpbridge.test")
        self.assertEqual(record["message"], "x")
        self.assertEqual(record["event_logger"], "other")
        self.assertEqual(record["event_traceback"], "tb")

    def test_failure(self) -> None:
        """
        An event with a failure has its traceback in C{traceback}, and it is
        still one line.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("handler {name} crashed", name="tools/call")
        [line] = self.lines()
        record = json.loads(line)
        self.assertEqual(record["level"], "critical")
        self.assertEqual(record["message"], "handler tools/call crashed")
        self.assertEqual(record["name"], "tools/call")
        self.assertIn("Traceback", record["traceback"])
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertIn("\n", record["traceback"])

    def test_noTracebackWithoutFailure(self) -> None:
        self.log.error("no failure here")
        self.assertNotIn("traceback", self.only())

    def test_unserialisableValue(self) -> None:
        """
        A value JSON cannot hold is written as its C{repr()}; one whose
        C{repr()} raises still gives a line.
        """

        class Odd:
            def __repr__(self) -> str:
                return "<Odd thing>"

        class Broken:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        self.log.info(
            "odd",
            odd=Odd(),
            broken=Broken(),
            items=[1, 2],
            nan=float("nan"),
            huge=10**5000,
        )
        record = self.only()
        self.assertEqual(record["message"], "odd")
        self.assertEqual(record["odd"], "<Odd thing>")
        self.assertIsInstance(record["broken"], str)
        self.assertIn("Broken", record["broken"])
        self.assertEqual(record["items"], "[1, 2]")
        self.assertEqual(record["nan"], "nan")
        self.assertIsInstance(record["huge"], str)

    def test_bytes(self) -> None:
        """
        Bytes are decoded as UTF-8, invalid sequences replaced.
        """
        self.log.info("b", good="café".encode("utf-8"), bad=b"\xffok")
        record = self.only()
        self.assertEqual(record["good"], "café")
        self.assertEqual(record["bad"], "\ufffdok")

    def test_legacyEventDict(self) -> None:
        """
        A bare legacy-style event (no C{log_level}, C{isError} and a
        C{message} tuple) is an error with the message text, and its legacy
        keys are not fields.
        """
        self.observer(
            {
                "message": ("boom", 42),
                "isError": 1,
                "system": "-",
                "time": 1700000000.0,
                "log_time": 1700000000.0,
            }
        )
        record = self.only()
        self.assertEqual(record["level"], "error")
        self.assertEqual(record["message"], "boom 42")
        self.assertEqual(record["logger"], "-")
        self.assertEqual(record["time"], "2023-11-14T22:13:20.000Z")
        self.assertEqual(
            sorted(record), ["level", "logger", "message", "time"]
        )

    def test_legacyInfoWithoutLevel(self) -> None:
        """
        A legacy event without a level and not an error is C{"info"}.
        """
        self.observer({"message": ("printed",), "isError": 0, "printed": 1})
        record = self.only()
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["message"], "printed")
        self.assertNotIn("printed", record)

    def test_legacyAPI(self) -> None:
        """
        Events from L{twisted.python.log}, adapted to new-style events the
        way Twisted does it, keep their extra keys and message; a legacy
        error's traceback goes to C{traceback}, its "why" is the message.
        """
        publisher = LogPublisher(self.observer)
        legacy = legacyLog.LogPublisher(publisher, publisher)
        legacy.msg("hello", "there", peer="127.0.0.1")
        try:
            1 / 0
        except ZeroDivisionError:
            legacy.msg(failure=Failure(), why="while serving", isError=1)
        first, second = self.records()
        self.assertEqual(first["message"], "hello there")
        self.assertEqual(first["level"], "info")
        self.assertEqual(first["peer"], "127.0.0.1")
        self.assertEqual(second["message"], "while serving")
        self.assertIn(second["level"], ("error", "critical"))
        self.assertIn("ZeroDivisionError", second["traceback"])
        for record in (first, second):
            for key in ("isError", "system", "why", "failure", "format"):
                self.assertNotIn(key, record)

    def test_newlineInMessage(self) -> None:
        """
        A message with newlines (and other line separators) is still one
        physical line.
        """
        self.log.info("line one\nline two\r\nthree\u2028four", note="a\nb")
        text = self.out.getvalue()
        self.assertEqual(text.count("\n"), 1)
        self.assertEqual(len(text.splitlines()), 1)
        record = self.only()
        self.assertEqual(record["message"], "line one\nline two\r\nthree\u2028four")
        self.assertEqual(record["note"], "a\nb")

    def test_timeFormat(self) -> None:
        """
        The time is the event's C{log_time} as ISO 8601 UTC with
        milliseconds and a C{"Z"}.
        """
        when = datetime(2026, 11, 21, 10, 15, 30, 123456, tzinfo=timezone.utc)
        self.observer(
            {"log_format": "t", "log_time": when.timestamp(), "log_namespace": "x"}
        )
        self.assertEqual(self.only()["time"], "2026-11-21T10:15:30.123Z")

    def test_timeOfLoggerEvent(self) -> None:
        self.log.info("now")
        self.assertRegex(self.only()["time"], ISO_Z)

    def test_unformattableMessage(self) -> None:
        """
        A format naming a key the event lacks still gives a line.
        """
        self.log.info("missing {key}")
        record = self.only()
        self.assertIn("Unable to format event", record["message"])

    def test_serialisationFailureWritesFallback(self) -> None:
        """
        An event that cannot be serialised at all gives a fallback line
        instead of an exception.
        """

        class Hostile(Dict[str, Any]):
            def items(self) -> Any:
                raise RuntimeError("hostile event")

        self.observer(Hostile(log_format="x", log_namespace="mcpbridge.bad"))
        record = self.only()
        self.assertEqual(record["level"], "error")
        self.assertEqual(record["logger"], "mcpbridge.bad")
        self.assertIn("Unable to serialise log event", record["message"])
        self.assertIn("hostile event", record["message"])

    def test_fallbackWhenEverythingFails(self) -> None:
        """
        Even an "event" that breaks every lookup gives a JSON line.
        """

        class Worse(Dict[str, Any]):
            def get(self, *args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("no")

            def items(self) -> Any:
                raise RuntimeError("no")

        self.observer(Worse())
        record = self.only()
        self.assertEqual(record["level"], "error")
        self.assertIn("Unable to serialise", record["message"])

    def test_flushEachLine(self) -> None:
        """
        The file is flushed after every line, with that line complete.
        """
        out = FlushCountingIO()
        log = Logger(namespace="n", observer=jsonLineObserver(out))
        log.info("one")
        log.info("two")
        self.assertEqual(len(out.flushedValues), 2)
        self.assertEqual(out.flushedValues[0].count("\n"), 1)
        self.assertTrue(out.flushedValues[0].endswith("\n"))
        self.assertEqual(out.flushedValues[1].count("\n"), 2)


class MakeObserverTests(SynchronousTestCase):
    def closeLater(self, observer: ILogObserver) -> IO[Any]:
        """
        The file an observer from L{makeObserver} writes to, closed when the
        test ends.
        """
        outFile = getattr(observer, "outFile", None) or getattr(
            observer, "_outFile", None
        )
        # Never close anything but the log file (not sys.stdout, say).
        self.assertIsInstance(outFile, LogFile)
        assert isinstance(outFile, LogFile)
        self.addCleanup(outFile.close)
        return cast(IO[Any], outFile)

    def test_formats(self) -> None:
        self.assertEqual(FORMATS, ("text", "json"))

    def test_unknownFormat(self) -> None:
        error = self.assertRaises(ValueError, makeObserver, "xml", None)
        self.assertIn("xml", str(error))
        self.assertRaises(ValueError, makeObserver, "JSON", None, io.StringIO())

    def test_jsonToStream(self) -> None:
        out = io.StringIO()
        observer = makeObserver("json", None, out)
        Logger(namespace="ns", observer=observer).info("hi {x}", x=1)
        record = json.loads(out.getvalue())
        self.assertEqual(record["message"], "hi 1")
        self.assertEqual(record["logger"], "ns")

    def test_textToStream(self) -> None:
        out = io.StringIO()
        observer = makeObserver("text", None, out)
        Logger(namespace="ns", observer=observer).info("hi {x}", x=1)
        text = out.getvalue()
        self.assertIn("[ns#info] hi 1", text)
        self.assertRaises(ValueError, json.loads, text)

    def test_jsonToFile(self) -> None:
        path = self.mktemp()
        observer = makeObserver("json", path)
        outFile = self.closeLater(observer)
        log = Logger(namespace="mcpbridge.file", observer=observer)
        log.info("first {n}", n=1)
        log.warn("second é")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        records = [json.loads(line) for line in lines]
        self.assertEqual(records[0]["message"], "first 1")
        self.assertEqual(records[0]["n"], 1)
        self.assertEqual(records[1]["message"], "second é")
        self.assertEqual(records[1]["level"], "warn")
        self.assertEqual(outFile.rotateLength, 10 * 1024 * 1024)  # type: ignore[attr-defined]
        self.assertEqual(outFile.maxRotatedFiles, 5)  # type: ignore[attr-defined]

    def test_textToFile(self) -> None:
        path = self.mktemp()
        observer = makeObserver("text", path)
        outFile = self.closeLater(observer)
        Logger(namespace="mcpbridge.file", observer=observer).info("plain {n}", n=7)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("[mcpbridge.file#info] plain 7\n", text)
        self.assertFalse(text.lstrip().startswith("{"))
        self.assertEqual(outFile.rotateLength, 10 * 1024 * 1024)  # type: ignore[attr-defined]
        self.assertEqual(outFile.maxRotatedFiles, 5)  # type: ignore[attr-defined]

    def test_fileAppends(self) -> None:
        """
        An existing log file is appended to.
        """
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("earlier\n")
        observer = makeObserver("json", path)
        self.closeLater(observer)
        Logger(namespace="n", observer=observer).info("later")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "earlier")
        self.assertEqual(json.loads(lines[1])["message"], "later")

    def test_missingDirectory(self) -> None:
        path = os.path.join(self.mktemp(), "missing", "bridge.log")
        for format in FORMATS:
            error = self.assertRaises(OSError, makeObserver, format, path)
            self.assertIn("does not exist", str(error))
            self.assertFalse(os.path.exists(os.path.dirname(path)))

    def test_pathIsDirectory(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        self.assertRaises(OSError, makeObserver, "json", path)

    def test_defaultStreamIsStdoutAtCallTime(self) -> None:
        """
        Without a path or stream, the observer writes to L{sys.stdout} as it
        is when L{makeObserver} is called.
        """
        out = io.StringIO()
        self.patch(__import__("sys"), "stdout", out)
        observer = makeObserver("json", None)
        Logger(namespace="n", observer=observer).info("to stdout")
        self.assertEqual(json.loads(out.getvalue())["message"], "to stdout")
