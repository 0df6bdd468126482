"""
Structured logging for mcpbridge.

Every logger in the package publishes through one level filter, so
C{--log-level} silences mcpbridge's own debug events cheaply without touching
the observers twistd (or a test) installed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any, Dict, Optional, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.python.reflect import safe_str
from zope.interface import implementer

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_publisher = FilteringLogObserver(globalLogPublisher, [_predicate])


def setLogLevel(name: str) -> None:
    """
    Set the lowest level of mcpbridge events that reach the log.

    @raise KeyError: for a name not in L{LEVELS}.
    """
    global _debug
    level = LEVELS[name.lower()]
    _predicate.setLogLevelForNamespace("", level)
    _debug = level <= LogLevel.debug


#: Whether debug events pass, kept as a plain flag for the hot paths.
_debug = False


def debugEnabled() -> bool:
    """
    Whether debug events pass the filter; lets hot paths skip building them.
    """
    return _debug


def logger(namespace: str) -> Logger:
    """
    A L{Logger} for C{namespace} that publishes through the level filter.
    """
    return Logger(namespace=namespace, observer=_publisher)


# ---------------------------------------------------------------------------
# Output formats
# ---------------------------------------------------------------------------

FORMATS = ("text", "json")

#: A log file given by path rotates at this size ...
ROTATE_LENGTH = 10 * 1024 * 1024
#: ... keeping this many old files.
MAX_ROTATED_FILES = 5

#: Event keys that Twisted (or its legacy L{twisted.python.log} API) uses for
#: its own bookkeeping; they never become JSON fields.  Keys starting with
#: C{"log_"} are left out as well.
_INTERNAL_KEYS = frozenset(
    {
        "message",
        "format",
        "isError",
        "system",
        "time",
        "failure",
        "why",
        "printed",
        "logLevel",
    }
)

#: The fields every JSON line has (or may have); an event key of the same
#: name is written as C{"event_" + key} rather than overwrite them.
_RESERVED_FIELDS = frozenset({"time", "level", "logger", "message", "traceback"})


def _isoTime(when: object) -> str:
    """
    Format a POSIX timestamp as ISO 8601 UTC with milliseconds and a C{"Z"}.
    A missing or unusable timestamp means "now".
    """
    try:
        stamp = float(when)  # type: ignore[arg-type]
        moment = datetime.fromtimestamp(stamp, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        moment = datetime.fromtimestamp(time.time(), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (
        moment.microsecond // 1000,
    )


def _levelName(event: LogEvent) -> str:
    """
    The event's level as a lower-case name; legacy events without one are
    C{"info"}, or C{"error"} when they are flagged C{isError}.
    """
    level = event.get("log_level")
    if level is None:
        return "error" if event.get("isError") else "info"
    name = getattr(level, "name", None)
    if isinstance(name, str):
        try:
            if LogLevel.lookupByName(name) is level:
                return name
        except ValueError:
            pass
    return safe_str(level).lower()


def _repr(value: object) -> str:
    """
    C{repr(value)}, or a short note when that fails.
    """
    try:
        return repr(value)
    except Exception:
        return "<%s instance with repr error>" % (type(value).__name__,)


def _legacyText(event: LogEvent) -> str:
    """
    The text of an event from the legacy L{twisted.python.log} API that has
    not been through Twisted's legacy-to-new adapter (so it has no
    C{log_format}): its C{message} tuple, its C{format}, or its C{why}.
    """
    message = event.get("message")
    if message:
        if isinstance(message, (tuple, list)):
            return " ".join(safe_str(part) for part in message)
        return safe_str(message)
    legacyFormat = event.get("format")
    if legacyFormat is not None:
        try:
            return safe_str(legacyFormat % event)
        except Exception as e:
            return "Unable to format event %s: %s" % (_repr(event), _repr(e))
    if event.get("isError") and "failure" in event:
        why = event.get("why")
        return safe_str(why) if why else "Unhandled Error"
    return ""


def _messageText(event: LogEvent) -> str:
    """
    The event's message: L{formatEvent} for new-style events (and legacy
    events that went through Twisted's adapter); L{formatEvent} yields
    nothing for a bare legacy event, so those are formatted here, as are
    legacy error events (whose text Twisted's adapter would give the whole
    traceback).
    """
    if (
        event.get("isError")
        and "failure" in event
        and "log_failure" not in event
        and not event.get("message")
    ):
        # A legacy log.err(): Twisted's adapter puts the traceback into the
        # text; the message is the "why", the traceback has its own field.
        return _legacyText(event)
    text = formatEvent(event)
    if not text and event.get("log_format") is None:
        text = _legacyText(event)
    return text


def _tracebackText(event: LogEvent) -> Optional[str]:
    """
    The traceback of the event's failure (C{log_failure}, or a legacy
    C{failure}), if it has one.
    """
    failure = event.get("log_failure")
    if failure is None:
        failure = event.get("failure")
    if failure is None:
        return None
    if not isinstance(failure, Failure):
        return safe_str(failure)
    try:
        return str(failure.getTraceback())
    except Exception as e:
        return "(unable to obtain traceback: %s)" % (_repr(e),)


#: Ints longer than this are not written out (Python refuses to print ints
#: of more than 4300 digits by default; 10000 bits is about 3000).
_MAX_INT_BITS = 10000


def _jsonValue(value: object) -> Any:
    """
    A JSON scalar for an event value: str, int, float, bool and None as they
    are (non-finite floats and subclasses normalised), bytes decoded as UTF-8
    with replacement, anything else its C{repr()}.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        number = int(value)
        if number.bit_length() > _MAX_INT_BITS:
            # Too long for str() under Python's digit limit.
            return "<int with %d bits>" % (number.bit_length(),)
        return number
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return _repr(value)


def _record(event: LogEvent) -> Dict[str, Any]:
    """
    The fields of the JSON line for C{event}.
    """
    namespace = event.get("log_namespace")
    record: Dict[str, Any] = {
        "time": _isoTime(event.get("log_time")),
        "level": _levelName(event),
        "logger": safe_str(namespace) if namespace else "-",
        "message": _messageText(event),
    }
    traceback = _tracebackText(event)
    if traceback is not None:
        record["traceback"] = traceback
    for key, value in event.items():
        name = key if isinstance(key, str) else safe_str(key)
        if name.startswith("log_") or name in _INTERNAL_KEYS:
            continue
        if name in _RESERVED_FIELDS:
            name = "event_" + name
        record[name] = _jsonValue(value)
    return record


def _dumps(record: Dict[str, Any]) -> str:
    # ensure_ascii keeps the line one physical line for every reader (it
    # escapes U+2028/U+2029 and lone surrogates too) and writable to a
    # stream of any encoding.
    return json.dumps(record, ensure_ascii=True, allow_nan=False)


def _fallbackLine(event: LogEvent, error: BaseException) -> str:
    """
    A line describing an event that could not be serialised.
    """
    try:
        namespace = event.get("log_namespace")
        return _dumps(
            {
                "time": _isoTime(event.get("log_time")),
                "level": "error",
                "logger": safe_str(namespace) if namespace else "-",
                "message": "Unable to serialise log event: %s" % (_repr(error),),
                "event": _repr(event),
            }
        )
    except BaseException:
        return (
            '{"time": "%s", "level": "error", "logger": "mcpbridge.logs", '
            '"message": "Unable to serialise log event"}' % (_isoTime(None),)
        )


@implementer(ILogObserver)
class _JSONLineObserver:
    """
    Writes each event as one JSON object on one line, then flushes.
    """

    def __init__(self, outFile: IO[str]) -> None:
        self.outFile = outFile

    def __call__(self, event: LogEvent) -> None:
        try:
            try:
                line = _dumps(_record(event))
            except Exception:
                # Most likely one odd value (an int too long to print, say):
                # retry with every extra field checked on its own.
                line = _dumps(self._checkedRecord(event))
        except Exception as e:
            line = _fallbackLine(event, e)
        self.outFile.write(line + "\n")
        self.outFile.flush()

    @staticmethod
    def _checkedRecord(event: LogEvent) -> Dict[str, Any]:
        record = _record(event)
        for name, value in list(record.items()):
            try:
                _dumps({name: value})
            except Exception:
                record[name] = _repr(value)
        return record


def jsonLineObserver(outFile: IO[str]) -> ILogObserver:
    """
    One JSON object per line, for log collectors (not Twisted's
    C{jsonFileLogObserver}, whose record separators and full event dumps
    collectors do not want).

    Each line has C{time} (ISO 8601 UTC, milliseconds, C{"Z"}), C{level},
    C{logger} (the namespace), C{message}, C{traceback} when the event
    carries a failure, and every other event key that is neither Twisted's
    own (C{log_*} and the legacy keys) nor unserialisable: values are JSON
    scalars, bytes are decoded, anything else is C{repr()}ed.  An event key
    that clashes with one of those fields is written as C{event_<key>}.  A
    failure to serialise an event writes a fallback line; it never raises
    into the logging system.  The file is flushed after each line.
    """
    return _JSONLineObserver(outFile)


def makeObserver(
    format: str, path: Optional[str], stream: Optional[IO[str]] = None
) -> ILogObserver:
    """
    The observer twistd should log to: C{"text"} (Twisted's
    L{textFileLogObserver}, the usual twistd format) or C{"json"}
    (L{jsonLineObserver}).

    @param path: a log file, rotated at 10 MiB keeping 5 old files; its
        directory must exist.  L{None}, C{""} or C{"-"} log to C{stream}.
    @param stream: where to log without a path; L{sys.stdout} (as it is at
        the time of the call) by default.

    @raise ValueError: for a format not in L{FORMATS}.
    @raise OSError: when the log file's directory does not exist or the
        file cannot be opened.
    """
    if format not in FORMATS:
        raise ValueError(
            "Unknown log format %r; expected one of: %s"
            % (format, ", ".join(FORMATS))
        )
    outFile: IO[str]
    if path and path != "-":
        fullPath = os.path.abspath(path)
        directory = os.path.dirname(fullPath)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                "Log file directory %r does not exist (log file %r)"
                % (directory, path)
            )
        if os.path.isdir(fullPath):
            raise IsADirectoryError("Log file %r is a directory" % (path,))
        # LogFile is file-like enough: write() takes text (as UTF-8), flush().
        outFile = cast(
            IO[str],
            LogFile(
                os.path.basename(fullPath),
                directory,
                rotateLength=ROTATE_LENGTH,
                maxRotatedFiles=MAX_ROTATED_FILES,
            ),
        )
    else:
        outFile = sys.stdout if stream is None else stream
    if format == "json":
        return jsonLineObserver(outFile)
    return textFileLogObserver(outFile)
