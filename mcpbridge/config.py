"""
Configuration beyond a single command: the C{mcpServers} JSON file that names
several stdio MCP servers, C{--named-server NAME=COMMAND} arguments, and
environment variables.

The file format is the one Claude Desktop, Cursor and mcp-proxy use::

    {"mcpServers": {
        "time": {"command": "python", "args": ["-m", "mcp_server_time"],
                 "env": {"TZ": "UTC"}, "cwd": "/srv", "timeout": 120,
                 "disabled": false,
                 "options": {"idle-timeout": 60, "max-sessions": 5}}},
     "options": {"port": "tcp:3000", "request-timeout": 300}}

Choices made where those clients differ or say nothing:

  - Any error rejects the whole file; L{ConfigError} names the file, and the
    server and key when there is one, on one line.
  - A key whose value is C{null} counts as not given (C{"cwd": null}), except
    C{"command"}, which is required, and values inside C{"env"}.
  - C{"timeout"} is the server's request timeout in seconds.  When the
    entry's C{"options"} also sets C{"request-timeout"}, that option wins and
    a warning says C{"timeout"} was ignored.
  - Unknown keys at the top level and in a server entry are ignored with a
    warning each.  A few keys clients keep for themselves are ignored
    silently: C{"$schema"} at the top level; C{"description"},
    C{"autoApprove"}, C{"alwaysAllow"} and C{"disabledTools"} in an entry.
    An unknown name inside an C{"options"} object is an error, because it is
    surely a mistyped option.
  - An entry with C{"url"} or C{"serverUrl"}, or a C{"type"} or
    C{"transportType"} other than C{"stdio"}, is a remote server: it is
    skipped with a warning before its name or other keys are checked (a
    remote server named C{"My Server"} does not stop the file from loading).
    A disabled remote server is only listed in L{Config.disabled}.
  - A disabled stdio entry is checked like any other, so turning it on later
    cannot reveal a mistake.
  - A key given twice in one JSON object (Python's C{json} would silently keep
    the last) is an error: two entries for one server name are surely a
    copy-and-paste mistake.
  - C{NaN} and C{Infinity}, which Python's C{json} accepts, are rejected.
  - A relative C{"cwd"} is relative to the bridge's own working directory, as
    on the command line, not to the configuration file.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import shlex
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import attr


class ConfigError(Exception):
    """
    A configuration that cannot be used.  C{str(e)} is one clear line, naming
    the file (and the server and key) when there is one.
    """

    def __str__(self) -> str:
        return " ".join(super().__str__().splitlines())


def _show(value: Any) -> str:
    """
    A short, one-line rendering of a value for an error message.
    """
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def _describe(value: Any) -> str:
    """
    What kind of JSON value C{value} is, for "must be X, not Y" messages.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {_show(value)}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _setDoc(coerce: Callable[[Any], Any], doc: str) -> None:
    """
    Give a coercer the C{coerceDoc} that L{twisted.python.usage} shows.
    """
    setattr(coerce, "coerceDoc", doc)


def nonNegative(kind: type) -> Callable[[Any], Any]:
    """
    A coercer to a non-negative number.

    @param kind: L{int} or L{float}.
    @return: a callable that takes a string (from the command line or the
        environment) or a JSON number, and returns a C{kind}.  It raises
        L{ValueError} for anything else, for a negative number, for a
        non-finite one, and (for L{int}) for one with a fraction.
    @raise TypeError: if C{kind} is neither L{int} nor L{float}.
    """
    if kind is not int and kind is not float:
        raise TypeError(f"nonNegative takes int or float, not {kind!r}")
    whole = kind is int
    noun = "a whole number" if whole else "a number"

    def coerce(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"expected {noun}, not {_describe(value)}")
        number: Union[int, float]
        try:
            if isinstance(value, str):
                number = int(value.strip()) if whole else float(value.strip())
            else:
                number = value if whole else float(value)
        except ValueError:
            raise ValueError(f"expected {noun}, not {_show(value)}") from None
        except OverflowError:
            raise ValueError(f"expected a finite number, not {_show(value)}") from None
        if isinstance(number, float):
            if not math.isfinite(number):
                raise ValueError(f"expected a finite number, not {_show(value)}")
            if whole:
                if not number.is_integer():
                    raise ValueError(f"expected a whole number, not {_show(value)}")
                number = int(number)
        if number < 0:
            raise ValueError(f"must not be negative: {_show(value)}")
        return number

    _setDoc(coerce, "Must not be negative.")
    return coerce


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:([KMG])(?:I?B)?|B)?", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def size(value: Any) -> int:
    """
    A positive byte count: a JSON number, or a string with an optional K, M
    or G suffix (powers of 1024; C{"64M"}, C{"1.5KiB"}, C{"512KB"} and
    C{"100B"} all work).  A fraction of a byte is dropped.

    @raise ValueError: for anything else, or for a count below one byte.
    """
    number: Union[int, float]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a size in bytes, not {_describe(value)}")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"expected a size in bytes (K, M or G suffix allowed), not {_show(value)}")
        number = float(match.group(1)) * _SIZE_FACTORS[(match.group(2) or "").upper()]
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"expected a finite size, not {_show(value)}")
    result = int(number)
    if result <= 0:
        raise ValueError(f"must be a positive size: {_show(value)}")
    return result


_setDoc(size, "Bytes; K, M and G suffixes allowed.")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def flag(value: Any) -> bool:
    """
    A boolean: a JSON C{true} or C{false}, or one of the strings 1, 0, true,
    false, yes, no, on and off, in any case.

    @raise ValueError: for anything else (JSON numbers included).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"expected true or false, not {_show(value)}")


_setDoc(flag, "true or false (also 1/0, yes/no, on/off).")


def _endpoints(value: Any) -> list[str]:
    """
    One Twisted endpoint description, or a list of them, as a list.  The
    descriptions themselves are checked when the service is built.
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(
            f"expected an endpoint description or a list of them, not {_describe(value)}")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected an endpoint description, not {_describe(item)}")
        if not item.strip():
            raise ValueError("an endpoint description must not be empty")
        result.append(item.strip())
    if not result:
        raise ValueError("expected at least one endpoint description")
    return result


_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
               "error": "error"}


def _logLevel(value: Any) -> str:
    """
    A log level, in any case; C{warning} means C{warn}.
    """
    if isinstance(value, str) and value.strip().lower() in _LOG_LEVELS:
        return _LOG_LEVELS[value.strip().lower()]
    raise ValueError(f"expected one of debug, info, warn, error, not {_show(value)}")


def _logFormat(value: Any) -> str:
    """
    C{text} or C{json}, in any case.
    """
    if isinstance(value, str) and value.strip().lower() in ("text", "json"):
        return value.strip().lower()
    raise ValueError(f"expected text or json, not {_show(value)}")


def _path(value: Any) -> str:
    """
    A non-empty file or directory name.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path, not {_describe(value)}")
    if "\0" in value:
        raise ValueError(f"a path must not contain NUL: {_show(value)}")
    return value


_setDoc(_path, "A path.")


def secrets(value: Any) -> list[str]:
    """
    API keys: one string (several separated by commas) or a list of strings.
    The keys themselves never appear in an error message.
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected a key or a list of keys, not {type(value).__name__}")
    result = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a key (a string), not {type(item).__name__}")
        if item.strip():
            result.append(item.strip())
    if not result:
        raise ValueError("no key in it")
    return result


_setDoc(secrets, "An API key (several separated by commas).")


def _origins(value: Any) -> list[str]:
    """
    Origins or patterns: one string (several separated by spaces or commas)
    or a list of strings.
    """
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected origins or a list of them, not {_describe(value)}")
    return [i.strip() for i in items if i.strip()]


_setDoc(_origins, "Origins (exact or patterns with *), separated by spaces or commas.")

#: The options that may be set per server (in a configuration file's
#: per-server C{"options"} object) and globally (the top-level C{"options"}
#: object), by command-line long option name, with the coercer that turns a
#: string or JSON value into the typed value (or raises L{ValueError}).
SERVER_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "idle-timeout": nonNegative(float),
    "request-timeout": nonNegative(float),
    "startup-timeout": nonNegative(float),
    "max-sessions": nonNegative(int),
    "heartbeat": nonNegative(float),
    "max-message-size": size,
    "history-size": size,
    "stdin-grace": nonNegative(float),
    "term-grace": nonNegative(float),
    "drain-timeout": nonNegative(float),
    "spares": nonNegative(int),
    "max-session-streams": nonNegative(int),
    "pool-size": nonNegative(int),
    "pool-concurrency": nonNegative(int),
    "pool-queue": nonNegative(int),
    "stateless": flag,
    "shell": flag,
    "pass-environment": flag,
}

#: The options allowed only in the top-level C{"options"} object, besides
#: L{SERVER_OPTIONS}: C{port} (an endpoint description or a list of them;
#: coerced to a list), C{log-level} (debug, info, warn, error; lower-cased),
#: C{log-format} (text, json), C{log-file} and C{cwd} (paths), and the
#: settings of the one HTTP server all servers share: C{write-buffer-size},
#: TLS, authentication, CORS and the limits on clients.
GLOBAL_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "port": _endpoints,
    "write-buffer-size": size,
    "log-level": _logLevel,
    "log-format": _logFormat,
    "log-file": _path,
    "cwd": _path,
    "tls-key": _path,
    "tls-cert": _path,
    "tls-client-ca": _path,
    "api-key": secrets,
    "bearer-token-file": _path,
    "allow-origin": _origins,
    "allow-host": _origins,
    "cors-allow-credentials": flag,
    "cors-max-age": nonNegative(int),
    "max-body-size": size,
    "rate-limit": nonNegative(float),
    "rate-burst": nonNegative(int),
    "read-timeout": nonNegative(float),
    "keepalive-timeout": nonNegative(float),
}

#: Options that hold a list (empty by default).
LIST_OPTIONS = frozenset({"port", "api-key", "allow-origin", "allow-host"})

_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: What the default server (the command after --) is called; no named server may be.
RESERVED_NAME = "default"


def _nameProblem(name: Any) -> Optional[str]:
    """
    Why C{name} cannot be a server name, or L{None} if it can.
    """
    if not isinstance(name, str):
        return f"expected a string, not {_describe(name)}"
    if not 1 <= len(name) <= 64:
        return "must be 1 to 64 characters long"
    if _NAME.fullmatch(name) is None:
        return "may contain only letters, digits, '.', '_' and '-'"
    if name.startswith("."):
        return "must not start with '.'"
    if name == RESERVED_NAME:
        return f"{RESERVED_NAME!r} names the server given after -- (in /health and the log)"
    return None


def _toArgv(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _toPairs(
    value: Union[Mapping[str, Any], Iterable[tuple[str, Any]]],
) -> tuple[tuple[str, Any], ...]:
    """
    Mapping items or pairs, as a tuple sorted by key (the last of repeated
    keys wins), so that equal settings give equal entries.
    """
    items = dict(value)
    return tuple(sorted(items.items(), key=lambda item: str(item[0])))


@attr.s(frozen=True, auto_attribs=True)
class ServerEntry:
    """
    One named stdio MCP server.  Entries are compared to decide whether a
    reload changed a server, so every field is hashable and deterministic.

    @ivar name: 1 to 64 of the characters C{A-Z a-z 0-9 . _ -}, not starting
        with C{.}.
    @ivar argv: the command and its arguments; not empty.
    @ivar env: C{(key, value)} pairs for this server's environment, sorted.
    @ivar cwd: the working directory, or L{None} for the bridge's own.
    @ivar options: C{(option name, coerced value)} overrides of the global
        L{SERVER_OPTIONS}, sorted.
    @ivar source: C{"command line"}, or the configuration file's path.

    @raise ConfigError: from the initializer, for an invalid field.
    """

    name: str
    argv: tuple[str, ...] = attr.ib(converter=_toArgv)
    env: tuple[tuple[str, str], ...] = attr.ib(default=(), converter=_toPairs)
    cwd: Optional[str] = None
    options: tuple[tuple[str, Any], ...] = attr.ib(default=(), converter=_toPairs)
    source: str = "config"

    def __attrs_post_init__(self) -> None:
        problem = _nameProblem(self.name)
        if problem is not None:
            raise ConfigError(
                f"{self.source}: invalid server name {_show(self.name)}: {problem}")
        where = f"{self.source}: server {self.name!r}"
        if not self.argv:
            raise ConfigError(f"{where}: no command given")
        for arg in self.argv:
            if not isinstance(arg, str):
                raise ConfigError(f"{where}: command arguments must be strings, not "
                                  f"{_describe(arg)}")
            if "\0" in arg:
                raise ConfigError(f"{where}: command arguments must not contain NUL")
        if not self.argv[0].strip():
            raise ConfigError(f"{where}: the command is empty")
        for key, value in self.env:
            problem = _envNameProblem(key)
            if problem is not None:
                raise ConfigError(f"{where}: env {_show(key)}: {problem}")
            if not isinstance(value, str) or "\0" in value:
                raise ConfigError(f"{where}: env {key!r}: expected a string without NUL, "
                                  f"not {_describe(value)}")
        if self.cwd is not None:
            try:
                _path(self.cwd)
            except ValueError as e:
                raise ConfigError(f"{where}: cwd: {e}") from None
        for name, value in self.options:
            if name not in SERVER_OPTIONS:
                raise ConfigError(f"{where}: unknown option {_show(name)}")
            try:
                hash(value)
            except TypeError:
                raise ConfigError(f"{where}: option {name!r}: {_show(value)} is not "
                                  f"a plain value") from None

    def option(self, name: str, default: Any) -> Any:
        """
        This server's own value of an option.

        @param name: a name in L{SERVER_OPTIONS}.
        @param default: what to return when this entry does not set it
            (normally the global value).
        @raise KeyError: if C{name} is not in L{SERVER_OPTIONS}.
        """
        if name not in SERVER_OPTIONS:
            raise KeyError(name)
        for key, value in self.options:
            if key == name:
                return value
        return default


def _envNameProblem(key: Any) -> Optional[str]:
    """
    Why C{key} cannot be an environment variable name, or L{None}.
    """
    if not isinstance(key, str):
        return f"expected a variable name, not {_describe(key)}"
    if not key:
        return "a variable name must not be empty"
    if "=" in key or "\0" in key:
        return "a variable name must not contain '=' or NUL"
    return None


def parseNamedServer(text: str) -> ServerEntry:
    """
    Parse a C{--named-server} argument, C{NAME=COMMAND [ARGUMENTS...]}: the
    first C{=} ends the name (surrounding spaces are dropped), and the rest is
    split into words as a POSIX shell would (quotes and backslashes work;
    C{#} is not a comment; nothing is expanded).

    @raise ConfigError: for a missing or invalid name, a missing command, or
        an unbalanced quote.
    """
    where = f"--named-server {_show(text)}"
    name, equals, command = text.partition("=")
    name = name.strip()
    if not equals:
        raise ConfigError(f"{where}: expected NAME=COMMAND [ARGUMENTS...]")
    if not name:
        raise ConfigError(f"{where}: the server name before '=' is missing")
    problem = _nameProblem(name)
    if problem is not None:
        raise ConfigError(f"{where}: invalid server name {_show(name)}: {problem}")
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ConfigError(f"{where}: cannot split the command: {e}") from None
    if not argv:
        raise ConfigError(f"{where}: the command after '=' is missing")
    return ServerEntry(name=name, argv=tuple(argv), source="command line")


@attr.s(auto_attribs=True)
class Config:
    """
    A parsed configuration file.

    @ivar path: the file's path, or L{None} when there was no file.
    @ivar servers: the enabled servers, by name, in file order.
    @ivar options: the coerced top-level C{"options"}.
    @ivar warnings: one line each: unknown keys, skipped remote servers.
    @ivar disabled: the names of servers skipped because disabled.
    """

    path: Optional[str]
    servers: dict[str, ServerEntry] = attr.Factory(dict)
    options: dict[str, Any] = attr.Factory(dict)
    warnings: list[str] = attr.Factory(list)
    disabled: list[str] = attr.Factory(list)


class _Object(dict[str, Any]):
    """
    A JSON object that remembers the keys it was given more than once.
    """

    duplicates: list[str]


def _makeObject(pairs: list[tuple[str, Any]]) -> _Object:
    result = _Object()
    result.duplicates = []
    for key, value in pairs:
        if key in result and key not in result.duplicates:
            result.duplicates.append(key)
        result[key] = value
    return result


class _BadConstant(Exception):
    pass


def _rejectConstant(name: str) -> Any:
    raise _BadConstant(name)


def _checkUnique(value: dict[str, Any], where: str, what: str = "key") -> None:
    duplicates = getattr(value, "duplicates", None)
    if duplicates:
        raise ConfigError(f"{where}: {what} {duplicates[0]!r} is given more than once")


def _suggestion(key: str, candidates: Iterable[str]) -> str:
    """
    A " (did you mean 'x'?)" hint for a mistyped option name, or nothing.
    """
    spelled = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", key).replace("_", "-").lower()
    close = difflib.get_close_matches(spelled, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parseOptions(value: Any, where: str, topLevel: bool) -> dict[str, Any]:
    """
    Check and coerce an C{"options"} object.

    @param where: the message prefix: the file, and the server if any.
    @param topLevel: whether L{GLOBAL_OPTIONS} are allowed too.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: 'options' must be an object, not {_describe(value)}")
    _checkUnique(value, where, "option")
    allowed = {**SERVER_OPTIONS, **GLOBAL_OPTIONS} if topLevel else SERVER_OPTIONS
    result: dict[str, Any] = {}
    for key, raw in value.items():
        coerce = allowed.get(key)
        if coerce is None:
            if key in GLOBAL_OPTIONS:
                raise ConfigError(f"{where}: option {key!r} can only be set in the "
                                  f"top-level 'options'")
            raise ConfigError(f"{where}: unknown option {_show(key)}"
                              f"{_suggestion(key, allowed)}")
        if raw is None:
            continue
        try:
            result[key] = coerce(raw)
        except ValueError as e:
            raise ConfigError(f"{where}: option {key!r}: {e}") from None
    return result


def _parseEnv(value: Any, where: str) -> dict[str, str]:
    """
    Check an entry's C{"env"} object; numbers and booleans become strings.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: 'env' must be an object, not {_describe(value)}")
    _checkUnique(value, f"{where}: env", "variable")
    result = {}
    for key, raw in value.items():
        problem = _envNameProblem(key)
        if problem is not None:
            raise ConfigError(f"{where}: env {_show(key)}: {problem}")
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, (int, float)):
            text = str(raw)
        elif isinstance(raw, str):
            text = raw
        else:
            raise ConfigError(f"{where}: env {key!r}: must be a string, number or boolean, "
                              f"not {_describe(raw)}")
        if "\0" in text:
            raise ConfigError(f"{where}: env {key!r}: must not contain NUL")
        result[key] = text
    return result


def _optionalBool(entry: dict[str, Any], key: str, where: str) -> Optional[bool]:
    value = entry.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false, not {_describe(value)}")
    return value


def _remoteReason(entry: dict[str, Any], where: str) -> Optional[str]:
    """
    Why an entry is a remote server the bridge cannot run, or L{None} for a
    stdio server.
    """
    for key in ("url", "serverUrl"):
        if entry.get(key) is not None:
            return f"remote server ({key!r} given)"
    for key in ("type", "transportType"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key!r} must be a string, not {_describe(value)}")
        if value.strip().lower() != "stdio":
            return f"remote server ({key} {_show(value)})"
    return None


_TOP_KEYS = frozenset({"mcpServers", "options"})
_QUIET_TOP_KEYS = frozenset({"$schema"})
_ENTRY_KEYS = frozenset({"command", "args", "env", "cwd", "timeout", "disabled", "enabled",
                         "options", "type", "transportType", "url", "serverUrl"})
_QUIET_ENTRY_KEYS = frozenset({"description", "autoApprove", "alwaysAllow", "disabledTools"})


def _parseEntry(name: str, entry: dict[str, Any], path: str,
                warnings: list[str]) -> ServerEntry:
    """
    Check one stdio server entry and build its L{ServerEntry}.
    """
    where = f"{path}: server {name!r}"
    for key in entry:
        if key not in _ENTRY_KEYS and key not in _QUIET_ENTRY_KEYS:
            warnings.append(f"{where}: unknown key {_show(key)} ignored")
    command = entry.get("command")
    if command is None:
        raise ConfigError(f"{where}: 'command' is missing")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"{where}: 'command' must be a non-empty string, not "
                          f"{_describe(command)}")
    args = entry.get("args")
    if args is None:
        args = []
    if not isinstance(args, list):
        raise ConfigError(f"{where}: 'args' must be a list of strings, not {_describe(args)}")
    for index, arg in enumerate(args):
        if not isinstance(arg, str):
            raise ConfigError(f"{where}: 'args' must be a list of strings, but item {index} "
                              f"is {_describe(arg)}")
    env = _parseEnv(entry.get("env"), where)
    cwd = entry.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.strip()):
        raise ConfigError(f"{where}: 'cwd' must be a non-empty string, not {_describe(cwd)}")
    timeout = entry.get("timeout")
    if timeout is not None:
        if isinstance(timeout, str):
            raise ConfigError(f"{where}: 'timeout' must be a number of seconds, not "
                              f"{_describe(timeout)}")
        try:
            timeout = SERVER_OPTIONS["request-timeout"](timeout)
        except ValueError as e:
            raise ConfigError(f"{where}: 'timeout': {e}") from None
    options = _parseOptions(entry.get("options"), where, topLevel=False)
    if timeout is not None:
        if "request-timeout" in options:
            warnings.append(f"{where}: 'timeout' ignored: options 'request-timeout' "
                            f"is also given")
        else:
            options["request-timeout"] = timeout
    return ServerEntry(name=name, argv=(command, *args), env=env, cwd=cwd, options=options,
                       source=path)


def parseConfig(text: str, path: str = "<config>") -> Config:
    """
    Parse the text of an C{mcpServers} configuration file.

    @param path: the file's name, for messages.
    @raise ConfigError: for invalid JSON or any invalid setting; nothing of
        the file is used then.
    """
    try:
        data = json.loads(text, object_pairs_hook=_makeObject, parse_constant=_rejectConstant)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None
    except _BadConstant as e:
        raise ConfigError(f"{path}: invalid JSON: {e.args[0]} is not a JSON value") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object, not "
                          f"{_describe(data)}")
    _checkUnique(data, path)
    config = Config(path=path)
    for key in data:
        if key not in _TOP_KEYS and key not in _QUIET_TOP_KEYS:
            config.warnings.append(f"{path}: unknown key {_show(key)} ignored")
    if "mcpServers" not in data:
        raise ConfigError(f"{path}: there is no 'mcpServers' object")
    servers = data["mcpServers"]
    if not isinstance(servers, dict):
        raise ConfigError(f"{path}: 'mcpServers' must be an object, not {_describe(servers)}")
    _checkUnique(servers, path, "server")
    config.options = _parseOptions(data.get("options"), path, topLevel=True)
    for name, entry in servers.items():
        where = f"{path}: server {_show(name)}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object, not {_describe(entry)}")
        _checkUnique(entry, where)
        off = (_optionalBool(entry, "disabled", where) is True
               or _optionalBool(entry, "enabled", where) is False)
        remote = _remoteReason(entry, where)
        if remote is not None:
            if off:
                config.disabled.append(name)
            else:
                config.warnings.append(
                    f"{where}: {remote} skipped: mcpbridge runs only stdio servers")
            continue
        problem = _nameProblem(name)
        if problem is not None:
            raise ConfigError(f"{path}: invalid server name {_show(name)}: {problem}")
        server = _parseEntry(name, entry, path, config.warnings)
        if off:
            config.disabled.append(name)
        else:
            config.servers[name] = server
    return config


def loadConfig(path: str) -> Config:
    """
    Read and parse a configuration file (UTF-8, with or without a BOM).

    @raise ConfigError: if the file cannot be read, or by L{parseConfig}.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parseConfig(text, path)


def _variable(option: str) -> str:
    """
    The generic environment variable for an option: C{MCPBRIDGE_POOL_SIZE}.
    """
    return "MCPBRIDGE_" + option.upper().replace("-", "_")


_ENVIRONMENT_COERCERS: dict[str, Callable[[Any], Any]] = {
    **SERVER_OPTIONS, **GLOBAL_OPTIONS, "config": _path}

#: The documented environment variables and the option each sets: aliases
#: other MCP bridges use, then C{MCPBRIDGE_<OPTION>} for every option (and
#: C{MCPBRIDGE_CONFIG} for the configuration file).  C{MCP_PORT} and
#: C{MCP_BIND_HOST} together make one C{tcp:PORT:interface=HOST} endpoint.
#: When an alias and an C{MCPBRIDGE_} variable set the same option, the
#: C{MCPBRIDGE_} one wins.
ENVIRONMENT: dict[str, str] = {
    "MCP_PORT": "port",
    "MCP_BIND_HOST": "port",
    "MCP_SESSION_TIMEOUT": "idle-timeout",
    "MCP_LOG_LEVEL": "log-level",
    "LOG_FILE": "log-file",
    "MCP_SUBPROCESS_TIMEOUT": "request-timeout",
    "MCP_STARTUP_TIMEOUT": "startup-timeout",
    "MCP_MAX_SESSIONS": "max-sessions",
    "MCP_READ_BUFFER_SIZE": "max-message-size",
    "MCP_WRITE_BUFFER_SIZE": "write-buffer-size",
    "MCP_PROXY_API_KEY": "api-key",
    "MCPBRIDGE_CONFIG": "config",
    "MCPBRIDGE_LOG_FORMAT": "log-format",
    **{_variable(option): option for option in _ENVIRONMENT_COERCERS},
}

_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORT = "3000"


def _escapeEndpoint(text: str) -> str:
    """
    Quote the characters special in a Twisted endpoint description.
    """
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _tcpEndpoint(port: Optional[str], host: Optional[str]) -> str:
    """
    The endpoint description that C{MCP_PORT} and C{MCP_BIND_HOST} make.

    @raise ConfigError: for a port that is not 0 to 65535, or a bad host.
    """
    if port is None:
        port = _DEFAULT_PORT
    else:
        if re.fullmatch(r"[0-9]{1,5}", port.strip()) is None or int(port) > 65535:
            raise ConfigError(f"MCP_PORT={port!r}: expected a TCP port number from 0 "
                              f"to 65535")
        port = str(int(port))
    if host is None:
        host = _DEFAULT_HOST
    else:
        name = host.strip()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1].strip()
        if not name or re.search(r"[\s\0]", name):
            raise ConfigError(f"MCP_BIND_HOST={host!r}: expected an IP address or host name")
        host = name
    return f"tcp:{port}:interface={_escapeEndpoint(host)}"


def optionsFromEnvironment(
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """
    The options set by the variables in L{ENVIRONMENT}.

    An empty (or blank) variable counts as unset.  Every variable that is set
    must be valid, even when another one takes precedence over it.

    @param environ: the environment, normally C{os.environ}.
    @return: the coerced options by option name, and the names of the
        variables whose values were used.
    @raise ConfigError: naming the variable and its value, for an invalid one.
    """

    def get(variable: str) -> Optional[str]:
        value = environ.get(variable)
        if value is None or not value.strip():
            return None
        return value

    chosen: dict[str, tuple[list[str], Any]] = {}
    for variable, option in ENVIRONMENT.items():
        if variable in ("MCP_PORT", "MCP_BIND_HOST"):
            continue
        raw = get(variable)
        if raw is None:
            continue
        try:
            value = _ENVIRONMENT_COERCERS[option](raw)
        except ValueError as e:
            raise ConfigError(f"{variable}={raw!r}: {e}") from None
        if variable == _variable(option) or option not in chosen:
            chosen[option] = ([variable], value)
    port, host = get("MCP_PORT"), get("MCP_BIND_HOST")
    if port is not None or host is not None:
        description = _tcpEndpoint(port, host)
        if "port" not in chosen:
            used = [name for name, value in (("MCP_PORT", port), ("MCP_BIND_HOST", host))
                    if value is not None]
            chosen["port"] = (used, [description])
    usedVariables = {name for names, _ in chosen.values() for name in names}
    options = {option: value for option, (_, value) in chosen.items()}
    return options, [name for name in ENVIRONMENT if name in usedVariables]
