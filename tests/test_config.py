"""
Tests for L{mcpbridge.config}: the C{mcpServers} file, C{--named-server},
option coercion and environment variables.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.endpoints import _parse
from twisted.trial.unittest import SynchronousTestCase

from mcpbridge.config import (
    ENVIRONMENT,
    GLOBAL_OPTIONS,
    SERVER_OPTIONS,
    Config,
    ConfigError,
    ServerEntry,
    flag,
    loadConfig,
    nonNegative,
    optionsFromEnvironment,
    parseConfig,
    parseNamedServer,
    secrets,
    size,
)

PATH = "mcp.json"


def servers(**entries: Any) -> str:
    """
    The text of a configuration file with these C{mcpServers} entries.
    """
    return json.dumps({"mcpServers": entries})


def parse(document: Any) -> Config:
    """
    Parse a configuration given as a JSON-able value.
    """
    return parseConfig(json.dumps(document), PATH)


class ConfigTestCase(SynchronousTestCase):
    def assertOneLine(self, error: ConfigError) -> str:
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertNotIn("\r", message)
        self.assertTrue(message)
        return message

    def assertRejected(self, text: str, *fragments: str) -> str:
        """
        C{text} is rejected with a one-line message that starts with the
        file's name and contains every fragment.
        """
        error = self.assertRaises(ConfigError, parseConfig, text, PATH)
        message = self.assertOneLine(error)
        self.assertTrue(message.startswith(PATH + ": "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def assertEntryRejected(self, entry: Any, *fragments: str) -> str:
        """
        A file whose only server, C{srv}, is C{entry} is rejected, with a
        message naming the server.
        """
        return self.assertRejected(servers(srv=entry), "server 'srv'", *fragments)


class NonNegativeTests(SynchronousTestCase):
    def test_floatFromString(self) -> None:
        """
        Strings (from the command line or environment) become floats.
        """
        coerce = nonNegative(float)
        self.assertEqual(coerce("2.5"), 2.5)
        self.assertEqual(coerce(" 3 "), 3.0)
        self.assertIsInstance(coerce("3"), float)

    def test_floatFromNumber(self) -> None:
        """
        JSON numbers, integers included, become floats.
        """
        coerce = nonNegative(float)
        self.assertEqual(coerce(7), 7.0)
        self.assertIsInstance(coerce(7), float)
        self.assertEqual(coerce(0), 0.0)

    def test_intFromStringAndNumber(self) -> None:
        """
        An int coercer takes digits and whole JSON numbers (even written
        with a fraction of zero).
        """
        coerce = nonNegative(int)
        self.assertEqual(coerce("12"), 12)
        self.assertEqual(coerce(12), 12)
        self.assertEqual(coerce(12.0), 12)
        self.assertIsInstance(coerce(12.0), int)

    def test_negative(self) -> None:
        """
        Negative numbers are rejected with "must not be negative".
        """
        for kind, value in [(float, "-1"), (float, -0.5), (int, "-3"), (int, -3)]:
            e = self.assertRaises(ValueError, nonNegative(kind), value)
            self.assertIn("must not be negative", str(e))

    def test_notANumber(self) -> None:
        """
        Words, booleans, null, arrays, fractions for ints, and non-finite
        numbers are rejected.
        """
        for kind, value in [(float, "soon"), (float, True), (float, None), (float, [1]),
                            (int, "1.5"), (int, 1.5), (int, False), (float, "nan"),
                            (float, "inf"), (float, float("inf")), (float, 10**400)]:
            self.assertRaises(ValueError, nonNegative(kind), value)

    def test_otherKinds(self) -> None:
        """
        Only int and float are supported.
        """
        self.assertRaises(TypeError, nonNegative, str)

    def test_coerceDoc(self) -> None:
        """
        The coercer documents itself for L{twisted.python.usage}.
        """
        self.assertEqual(getattr(nonNegative(int), "coerceDoc"), "Must not be negative.")


class SizeTests(SynchronousTestCase):
    def test_suffixes(self) -> None:
        """
        K, M and G are powers of 1024, in any case, with optional B or iB.
        """
        self.assertEqual(size("100"), 100)
        self.assertEqual(size("100B"), 100)
        self.assertEqual(size("2k"), 2048)
        self.assertEqual(size("2KB"), 2048)
        self.assertEqual(size("1.5KiB"), 1536)
        self.assertEqual(size("64M"), 64 * 1024**2)
        self.assertEqual(size(" 1 G "), 1024**3)

    def test_jsonNumber(self) -> None:
        """
        A JSON number is a count of bytes.
        """
        self.assertEqual(size(4096), 4096)
        self.assertEqual(size(4096.0), 4096)
        self.assertIsInstance(size(4096.0), int)

    def test_notPositive(self) -> None:
        """
        Zero and fractions below one byte are rejected.
        """
        for value in ("0", 0, "0.5", 0.2, "0K"):
            e = self.assertRaises(ValueError, size, value)
            self.assertIn("positive size", str(e))

    def test_invalid(self) -> None:
        """
        Other strings and JSON values are rejected.
        """
        for value in ("lots", "-5", "5T", "K", "", True, None, [1], float("nan"), "1e3"):
            self.assertRaises(ValueError, size, value)


class FlagTests(SynchronousTestCase):
    def test_true(self) -> None:
        """
        JSON true and the usual words for yes are true.
        """
        for value in (True, "1", "true", "TRUE", "yes", "On", " on "):
            self.assertIs(flag(value), True, value)

    def test_false(self) -> None:
        """
        JSON false and the usual words for no are false.
        """
        for value in (False, "0", "false", "False", "no", "OFF"):
            self.assertIs(flag(value), False, value)

    def test_invalid(self) -> None:
        """
        Anything else is rejected, JSON numbers and null included.
        """
        values: list[Any] = ["maybe", "", "2", 1, 0, None, []]
        for value in values:
            e = self.assertRaises(ValueError, flag, value)
            self.assertIn("expected true or false", str(e))


class OptionTablesTests(SynchronousTestCase):
    def test_serverOptionNames(self) -> None:
        """
        Exactly the documented options may be set per server.
        """
        self.assertEqual(set(SERVER_OPTIONS), {
            "idle-timeout", "request-timeout", "startup-timeout", "max-sessions",
            "heartbeat", "max-message-size", "history-size", "stdin-grace", "term-grace",
            "drain-timeout", "spares", "max-session-streams", "pool-size",
            "pool-concurrency", "pool-queue", "stateless", "shell", "pass-environment"})

    def test_globalOptionNames(self) -> None:
        """
        Exactly the documented options are global only.
        """
        self.assertEqual(set(GLOBAL_OPTIONS), {
            "port", "log-level", "log-format", "log-file", "cwd", "write-buffer-size",
            "tls-key", "tls-cert", "tls-client-ca", "api-key", "bearer-token-file",
            "allow-origin", "allow-host", "cors-allow-credentials", "cors-max-age",
            "max-body-size", "rate-limit", "rate-burst", "read-timeout", "keepalive-timeout"})

    def test_secrets(self) -> None:
        """
        API keys: a string (commas separate several) or a list; the keys
        never appear in an error.
        """
        self.assertEqual(secrets(" a1 , b2,"), ["a1", "b2"])
        self.assertEqual(secrets(["a1", " b2 "]), ["a1", "b2"])
        for bad in (" , ", [], [12345678], 12345678, {"k": "v"}):
            e = self.assertRaises(ValueError, secrets, bad)
            self.assertNotIn("12345678", str(e))

    def test_apiKeyFromEnvironment(self) -> None:
        options, used = optionsFromEnvironment({"MCP_PROXY_API_KEY": "one,two"})
        self.assertEqual((options, used), ({"api-key": ["one", "two"]}, ["MCP_PROXY_API_KEY"]))
        options, _ = optionsFromEnvironment({"MCP_PROXY_API_KEY": "one",
                                             "MCPBRIDGE_API_KEY": "three"})
        self.assertEqual(options["api-key"], ["three"])

    def test_serverCoercers(self) -> None:
        """
        Each server option has the coercer its kind needs.
        """
        self.assertEqual(SERVER_OPTIONS["idle-timeout"]("1.5"), 1.5)
        self.assertEqual(SERVER_OPTIONS["max-sessions"]("5"), 5)
        self.assertRaises(ValueError, SERVER_OPTIONS["max-sessions"], "5.5")
        self.assertEqual(SERVER_OPTIONS["history-size"]("1K"), 1024)
        self.assertEqual(GLOBAL_OPTIONS["write-buffer-size"]("1M"), 1024**2)
        self.assertRaises(ValueError, GLOBAL_OPTIONS["write-buffer-size"], "0")
        self.assertIs(SERVER_OPTIONS["stateless"]("yes"), True)
        for name in ("idle-timeout", "request-timeout", "startup-timeout", "heartbeat",
                     "stdin-grace", "term-grace", "drain-timeout"):
            self.assertEqual(SERVER_OPTIONS[name]("2"), 2.0, name)
            self.assertRaises(ValueError, SERVER_OPTIONS[name], "-2")
        for name in ("max-sessions", "spares", "pool-size", "pool-concurrency",
                     "pool-queue"):
            self.assertEqual(SERVER_OPTIONS[name]("0"), 0, name)
            self.assertRaises(ValueError, SERVER_OPTIONS[name], "-1")
        for name in ("max-message-size", "history-size"):
            self.assertRaises(ValueError, SERVER_OPTIONS[name], "0")
        for name in ("stateless", "shell", "pass-environment"):
            self.assertIs(SERVER_OPTIONS[name]("off"), False)

    def test_port(self) -> None:
        """
        The port is one endpoint description or a list of them; always a
        list once coerced.
        """
        port = GLOBAL_OPTIONS["port"]
        self.assertEqual(port("tcp:3000"), ["tcp:3000"])
        self.assertEqual(port(["tcp:1", "unix:/x"]), ["tcp:1", "unix:/x"])
        for value in ([], "", ["tcp:1", ""], ["tcp:1", 2], 3000, None):
            self.assertRaises(ValueError, port, value)

    def test_logLevel(self) -> None:
        """
        Log levels are case-insensitive, stored lower-case, and warning
        means warn.
        """
        level = GLOBAL_OPTIONS["log-level"]
        self.assertEqual(level("DEBUG"), "debug")
        self.assertEqual(level("info"), "info")
        self.assertEqual(level("Warning"), "warn")
        self.assertEqual(level("error"), "error")
        self.assertRaises(ValueError, level, "loud")
        self.assertRaises(ValueError, level, 3)

    def test_logFormat(self) -> None:
        """
        The log format is text or json.
        """
        self.assertEqual(GLOBAL_OPTIONS["log-format"]("JSON"), "json")
        self.assertEqual(GLOBAL_OPTIONS["log-format"]("text"), "text")
        self.assertRaises(ValueError, GLOBAL_OPTIONS["log-format"], "xml")

    def test_paths(self) -> None:
        """
        log-file and cwd are non-empty strings.
        """
        for name in ("log-file", "cwd"):
            self.assertEqual(GLOBAL_OPTIONS[name]("/var/log/x"), "/var/log/x")
            for value in ("", " ", 5, None, "a\0b"):
                self.assertRaises(ValueError, GLOBAL_OPTIONS[name], value)


class ServerEntryTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        An entry needs only a name and a command.
        """
        entry = ServerEntry(name="time", argv=("python",))
        self.assertEqual(entry.env, ())
        self.assertIsNone(entry.cwd)
        self.assertEqual(entry.options, ())
        self.assertEqual(entry.source, "config")

    def test_validNames(self) -> None:
        """
        Letters, digits, dot, underscore and dash, up to 64 characters.
        """
        for name in ("a", "Time-2_x.y", "x" * 64, "-x", "_"):
            self.assertEqual(ServerEntry(name=name, argv=("x",)).name, name)

    def test_invalidNames(self) -> None:
        """
        Empty, too long, hidden, and names with other characters are
        rejected with a one-line message quoting the name.
        """
        for name in ("", "x" * 65, ".hidden", "my server", "a/b", "caf\u00e9", "a\nb",
                     "default"):
            e = self.assertRaises(ConfigError, ServerEntry, name=name, argv=("x",))
            self.assertIn("invalid server name", str(e))
            self.assertNotIn("\n", str(e))

    def test_emptyCommand(self) -> None:
        """
        The argument vector must not be empty, nor its first word blank.
        """
        self.assertRaises(ConfigError, ServerEntry, name="x", argv=())
        self.assertRaises(ConfigError, ServerEntry, name="x", argv=("",))
        self.assertRaises(ConfigError, ServerEntry, name="x", argv=("a", "b\0"))

    def test_normalized(self) -> None:
        """
        A list command, and env or options given as mappings or unsorted
        pairs, are stored as sorted tuples, so equal settings are equal.
        """
        a = ServerEntry(name="x", argv=["a", "b"],
                        env={"B": "2", "A": "1"},
                        options=[("spares", 1), ("idle-timeout", 5.0)])
        b = ServerEntry(name="x", argv=("a", "b"), env=(("A", "1"), ("B", "2")),
                        options={"idle-timeout": 5.0, "spares": 1})
        self.assertEqual(a.argv, ("a", "b"))
        self.assertEqual(a.env, (("A", "1"), ("B", "2")))
        self.assertEqual(a.options, (("idle-timeout", 5.0), ("spares", 1)))
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))

    def test_changes(self) -> None:
        """
        Entries that differ in any field are unequal.
        """
        base = ServerEntry(name="x", argv=("a",))
        for other in (ServerEntry(name="y", argv=("a",)),
                      ServerEntry(name="x", argv=("a", "b")),
                      ServerEntry(name="x", argv=("a",), env={"A": "1"}),
                      ServerEntry(name="x", argv=("a",), cwd="/"),
                      ServerEntry(name="x", argv=("a",), options=(("spares", 1),))):
            self.assertNotEqual(base, other)

    def test_frozen(self) -> None:
        """
        Entries cannot be changed.
        """
        entry = ServerEntry(name="x", argv=("a",))
        self.assertRaises(AttributeError, setattr, entry, "name", "y")

    def test_invalidEnvAndOptions(self) -> None:
        """
        Env names must be plain, values strings; option names must be
        server options and values hashable.
        """
        for env in ({"": "x"}, {"A=B": "x"}, {"A": 1}):
            self.assertRaises(ConfigError, ServerEntry, name="x", argv=("a",),
                              env=env)
        for options in ({"port": "tcp:1"}, {"bogus": 1}, {"spares": [1]}):
            self.assertRaises(ConfigError, ServerEntry, name="x", argv=("a",),
                              options=options)
        self.assertRaises(ConfigError, ServerEntry, name="x", argv=("a",), cwd="")

    def test_option(self) -> None:
        """
        option() gives the entry's own value, or the default.
        """
        entry = ServerEntry(name="x", argv=("a",), options=(("idle-timeout", 5.0),))
        self.assertEqual(entry.option("idle-timeout", 300.0), 5.0)
        self.assertEqual(entry.option("request-timeout", 600.0), 600.0)

    def test_optionUnknown(self) -> None:
        """
        option() raises KeyError for a name that is not a server option.
        """
        entry = ServerEntry(name="x", argv=("a",))
        self.assertRaises(KeyError, entry.option, "idle_timeout", 1)
        self.assertRaises(KeyError, entry.option, "port", 1)


class NamedServerTests(SynchronousTestCase):
    def test_simple(self) -> None:
        """
        NAME=COMMAND ARGS gives a command-line entry.
        """
        entry = parseNamedServer("time=python -m mcp_server_time")
        self.assertEqual(entry, ServerEntry(name="time",
                                            argv=("python", "-m", "mcp_server_time"),
                                            source="command line"))

    def test_equalsInArguments(self) -> None:
        """
        Only the first = ends the name.
        """
        entry = parseNamedServer("A=python -m x --opt=1")
        self.assertEqual(entry.name, "A")
        self.assertEqual(entry.argv, ("python", "-m", "x", "--opt=1"))

    def test_quotes(self) -> None:
        """
        The command is split as a shell would, quotes and backslashes
        included; # is not a comment.
        """
        entry = parseNamedServer(
            """fs=npx -y "@scope/server fs" 'it''s' a\\ b c#d""")
        self.assertEqual(entry.argv, ("npx", "-y", "@scope/server fs", "its", "a b", "c#d"))

    def test_spacesAroundName(self) -> None:
        """
        Spaces around the name are dropped.
        """
        self.assertEqual(parseNamedServer(" time = python").name, "time")

    def assertNamedRejected(self, text: str, fragment: str) -> None:
        e = self.assertRaises(ConfigError, parseNamedServer, text)
        message = str(e)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith("--named-server "), message)
        self.assertIn(fragment, message)

    def test_errors(self) -> None:
        """
        No =, no name, a bad name, no command, or an unbalanced quote are
        errors, each one line.
        """
        self.assertNamedRejected("python -m x", "NAME=COMMAND")
        self.assertNamedRejected("=python -m x", "name")
        self.assertNamedRejected("my server=python", "invalid server name 'my server'")
        self.assertNamedRejected(".x=python", "invalid server name")
        self.assertNamedRejected("x=", "command")
        self.assertNamedRejected("x=   ", "command")
        self.assertNamedRejected("x=python 'open", "No closing quotation")
        self.assertNamedRejected("x=python\n'open", "No closing quotation")


class ParseConfigTests(ConfigTestCase):
    def test_example(self) -> None:
        """
        The documented example parses into entries and global options.
        """
        config = parse({
            "mcpServers": {
                "time": {"command": "python", "args": ["-m", "mcp_server_time"],
                         "env": {"TZ": "UTC"}, "cwd": "/srv", "timeout": 120,
                         "disabled": False,
                         "options": {"idle-timeout": 60, "max-sessions": 5}}},
            "options": {"port": "tcp:3000", "request-timeout": 300}})
        self.assertEqual(config.path, PATH)
        self.assertEqual(config.servers, {"time": ServerEntry(
            name="time", argv=("python", "-m", "mcp_server_time"), env=(("TZ", "UTC"),),
            cwd="/srv",
            options=(("idle-timeout", 60.0), ("max-sessions", 5),
                     ("request-timeout", 120.0)),
            source=PATH)})
        self.assertEqual(config.options, {"port": ["tcp:3000"], "request-timeout": 300.0})
        self.assertEqual(config.warnings, [])
        self.assertEqual(config.disabled, [])

    def test_minimal(self) -> None:
        """
        Only the command is required; args, env and the rest default.
        """
        config = parseConfig(servers(x={"command": "cat"}), PATH)
        self.assertEqual(config.servers["x"], ServerEntry(name="x", argv=("cat",),
                                                          source=PATH))
        self.assertEqual(config.options, {})

    def test_empty(self) -> None:
        """
        An empty mcpServers object is valid.
        """
        config = parseConfig('{"mcpServers": {}}', PATH)
        self.assertEqual(config.servers, {})
        self.assertEqual(config.warnings, [])

    def test_defaultPath(self) -> None:
        """
        Without a path, messages say <config>.
        """
        self.assertEqual(parseConfig('{"mcpServers": {}}').path, "<config>")
        e = self.assertRaises(ConfigError, parseConfig, "[]")
        self.assertTrue(str(e).startswith("<config>: "))

    def test_order(self) -> None:
        """
        Servers keep the file's order.
        """
        text = '{"mcpServers": {"b": {"command": "x"}, "a": {"command": "x"}, ' \
               '"c": {"command": "x"}}}'
        self.assertEqual(list(parseConfig(text, PATH).servers), ["b", "a", "c"])

    def test_envConversions(self) -> None:
        """
        Env numbers become their decimal text and booleans true/false.
        """
        config = parseConfig(servers(x={"command": "x", "env": {
            "S": "s", "I": 8080, "F": 1.5, "T": True, "N": False, "E": ""}}), PATH)
        self.assertEqual(dict(config.servers["x"].env),
                         {"S": "s", "I": "8080", "F": "1.5", "T": "true", "N": "false",
                          "E": ""})

    def test_optionsCoerced(self) -> None:
        """
        Per-server options are coerced: strings and numbers alike.
        """
        config = parseConfig(servers(x={"command": "x", "options": {
            "idle-timeout": "60", "max-sessions": 5, "history-size": "1M",
            "stateless": True, "shell": "yes"}}), PATH)
        self.assertEqual(dict(config.servers["x"].options), {
            "idle-timeout": 60.0, "max-sessions": 5, "history-size": 1024**2,
            "stateless": True, "shell": True})

    def test_globalOptions(self) -> None:
        """
        Every option may be set globally, and the global-only ones too.
        """
        config = parse({"mcpServers": {}, "options": {
            "port": ["tcp:1", "unix:/tmp/s"], "log-level": "WARNING", "log-format": "json",
            "log-file": "/tmp/log", "cwd": "/srv", "pool-size": "3",
            "pass-environment": True}})
        self.assertEqual(config.options, {
            "port": ["tcp:1", "unix:/tmp/s"], "log-level": "warn", "log-format": "json",
            "log-file": "/tmp/log", "cwd": "/srv", "pool-size": 3,
            "pass-environment": True})

    def test_timeout(self) -> None:
        """
        timeout is the server's request timeout in seconds.
        """
        config = parseConfig(servers(x={"command": "x", "timeout": 90}), PATH)
        self.assertEqual(config.servers["x"].option("request-timeout", 600.0), 90.0)
        self.assertEqual(config.warnings, [])

    def test_timeoutZero(self) -> None:
        """
        A timeout of 0 is allowed (never time out).
        """
        config = parseConfig(servers(x={"command": "x", "timeout": 0}), PATH)
        self.assertEqual(config.servers["x"].option("request-timeout", 600.0), 0.0)

    def test_requestTimeoutOptionWins(self) -> None:
        """
        An explicit options request-timeout wins over timeout, with a warning.
        """
        config = parseConfig(servers(x={"command": "x", "timeout": 90,
                                        "options": {"request-timeout": 30}}), PATH)
        self.assertEqual(config.servers["x"].options, (("request-timeout", 30.0),))
        self.assertEqual(len(config.warnings), 1)
        self.assertIn("server 'x'", config.warnings[0])
        self.assertIn("'timeout' ignored", config.warnings[0])

    def test_nulls(self) -> None:
        """
        null counts as not given for optional keys and option values.
        """
        config = parseConfig(servers(x={
            "command": "x", "args": None, "env": None, "cwd": None, "timeout": None,
            "disabled": None, "enabled": None, "options": {"spares": None}}), PATH)
        self.assertEqual(config.servers["x"], ServerEntry(name="x", argv=("x",),
                                                          source=PATH))
        self.assertEqual(parse({"mcpServers": {}, "options": None}).options, {})

    def test_typeStdio(self) -> None:
        """
        type or transportType stdio is accepted silently.
        """
        config = parseConfig(servers(
            a={"command": "x", "type": "stdio"},
            b={"command": "x", "transportType": "stdio"}), PATH)
        self.assertEqual(list(config.servers), ["a", "b"])
        self.assertEqual(config.warnings, [])

    def test_quietKeys(self) -> None:
        """
        Keys clients keep for themselves are ignored without a warning.
        """
        config = parse({"$schema": "x", "mcpServers": {"x": {
            "command": "x", "description": "d", "autoApprove": ["a"],
            "alwaysAllow": ["b"], "disabledTools": []}}})
        self.assertEqual(list(config.servers), ["x"])
        self.assertEqual(config.warnings, [])

    def test_byteOrderMark(self) -> None:
        """
        parseConfig takes text; a file with a BOM still loads (loadConfig).
        """
        path = self.mktemp()
        with open(path, "w", encoding="utf-8-sig") as f:
            f.write(servers(x={"command": "x"}))
        self.assertEqual(list(loadConfig(path).servers), ["x"])


class WarningTests(ConfigTestCase):
    def test_unknownTopLevelKey(self) -> None:
        """
        An unknown top-level key is a warning naming the file and key.
        """
        config = parse({"mcpServers": {}, "globalShortcut": "x"})
        self.assertEqual(config.warnings, ["mcp.json: unknown key 'globalShortcut' ignored"])

    def test_unknownEntryKey(self) -> None:
        """
        An unknown key in a server entry is a warning naming the server.
        """
        config = parseConfig(servers(x={"command": "x", "foo": 1, "bar": 2}), PATH)
        self.assertEqual(config.warnings, ["mcp.json: server 'x': unknown key 'foo' ignored",
                                           "mcp.json: server 'x': unknown key 'bar' ignored"])
        self.assertEqual(list(config.servers), ["x"])

    def test_url(self) -> None:
        """
        An entry with a url or serverUrl is a remote server: skipped with a
        warning.
        """
        for key in ("url", "serverUrl"):
            config = parseConfig(servers(r={key: "https://example.com/mcp"},
                                         x={"command": "x"}), PATH)
            self.assertEqual(list(config.servers), ["x"])
            self.assertEqual(config.disabled, [])
            self.assertEqual(len(config.warnings), 1)
            self.assertTrue(config.warnings[0].startswith("mcp.json: server 'r': "))
            self.assertIn(key, config.warnings[0])
            self.assertIn("skipped", config.warnings[0])

    def test_remoteType(self) -> None:
        """
        A type or transportType other than stdio is a remote server.
        """
        for key, value in (("type", "sse"), ("type", "streamable-http"),
                           ("transportType", "sse")):
            config = parseConfig(servers(r={key: value, "command": "x"}), PATH)
            self.assertEqual(config.servers, {})
            self.assertEqual(len(config.warnings), 1)
            self.assertIn(value, config.warnings[0])
            self.assertIn("server 'r'", config.warnings[0])

    def test_remoteNotChecked(self) -> None:
        """
        A remote server's name and keys are not checked, since it is not run.
        """
        config = parseConfig(servers(**{"Linear (remote)": {
            "url": "https://x", "headers": {"a": "b"}, "args": 5}}), PATH)
        self.assertEqual(config.servers, {})
        self.assertEqual(len(config.warnings), 1)

    def test_remoteTypeNotAString(self) -> None:
        """
        A type that is not a string is an error.
        """
        self.assertEntryRejected({"command": "x", "type": 1}, "'type'")


class DisabledTests(ConfigTestCase):
    def test_disabled(self) -> None:
        """
        disabled true skips the server and lists its name.
        """
        config = parseConfig(servers(a={"command": "x", "disabled": True},
                                     b={"command": "x", "disabled": False}), PATH)
        self.assertEqual(list(config.servers), ["b"])
        self.assertEqual(config.disabled, ["a"])

    def test_enabledFalse(self) -> None:
        """
        enabled false skips the server too; enabled true does not.
        """
        config = parseConfig(servers(a={"command": "x", "enabled": False},
                                     b={"command": "x", "enabled": True}), PATH)
        self.assertEqual(list(config.servers), ["b"])
        self.assertEqual(config.disabled, ["a"])

    def test_disabledStillChecked(self) -> None:
        """
        A disabled entry is still type-checked.
        """
        self.assertEntryRejected({"command": "x", "disabled": True, "args": "-v"}, "'args'")
        self.assertEntryRejected({"disabled": True}, "'command' is missing")
        self.assertRejected(servers(**{"bad name": {"command": "x", "enabled": False}}),
                            "invalid server name 'bad name'")

    def test_notABool(self) -> None:
        """
        disabled and enabled must be booleans.
        """
        self.assertEntryRejected({"command": "x", "disabled": "yes"}, "'disabled'")
        self.assertEntryRejected({"command": "x", "enabled": 1}, "'enabled'")

    def test_disabledRemote(self) -> None:
        """
        A disabled remote server is listed as disabled, without a warning.
        """
        config = parseConfig(servers(r={"url": "https://x", "disabled": True}), PATH)
        self.assertEqual(config.disabled, ["r"])
        self.assertEqual(config.warnings, [])


class RejectedTests(ConfigTestCase):
    def test_invalidJSON(self) -> None:
        """
        Invalid JSON is reported with line and column.
        """
        message = self.assertRejected('{"mcpServers": {\n  "a": {}\n  "b": {}}}')
        self.assertEqual(message,
                         "mcp.json: line 3 column 3: invalid JSON: Expecting ',' delimiter")

    def test_emptyFile(self) -> None:
        """
        An empty file is invalid JSON.
        """
        self.assertRejected("", "line 1 column 1", "invalid JSON")

    def test_nonStandardConstants(self) -> None:
        """
        NaN and Infinity are not JSON.
        """
        self.assertRejected('{"mcpServers": {"x": {"command": "x", "timeout": NaN}}}',
                            "NaN")
        self.assertRejected('{"mcpServers": {}, "options": {"heartbeat": Infinity}}',
                            "Infinity")

    def test_topLevelNotAnObject(self) -> None:
        """
        The top level must be an object.
        """
        self.assertRejected("[]", "top level", "an array")
        self.assertRejected('"x"', "top level")

    def test_noMcpServers(self) -> None:
        """
        mcpServers is required, and must be an object.
        """
        self.assertRejected('{"servers": {}}', "'mcpServers'")
        self.assertRejected('{"mcpServers": []}', "'mcpServers'", "an array")
        self.assertRejected('{"mcpServers": null}', "'mcpServers'", "null")

    def test_entryNotAnObject(self) -> None:
        """
        Each server entry must be an object.
        """
        self.assertEntryRejected("python -m x", "must be an object")

    def test_command(self) -> None:
        """
        command is required and must be a non-empty string.
        """
        self.assertEntryRejected({"args": ["x"]}, "'command' is missing")
        self.assertEntryRejected({"command": None}, "'command' is missing")
        self.assertEntryRejected({"command": ""}, "'command'")
        self.assertEntryRejected({"command": "  "}, "'command'")
        self.assertEntryRejected({"command": ["python", "-m"]}, "'command'", "an array")

    def test_args(self) -> None:
        """
        args must be a list of strings.
        """
        self.assertEntryRejected({"command": "x", "args": "-m x"}, "'args'", "the string")
        self.assertEntryRejected({"command": "x", "args": ["-p", 80]}, "'args'", "item 1")
        self.assertEntryRejected({"command": "x", "args": {"a": 1}}, "'args'")

    def test_env(self) -> None:
        """
        env must be an object of strings, numbers or booleans.
        """
        self.assertEntryRejected({"command": "x", "env": ["A=1"]}, "'env'")
        self.assertEntryRejected({"command": "x", "env": {"A": None}}, "env 'A'", "null")
        self.assertEntryRejected({"command": "x", "env": {"A": ["x"]}}, "env 'A'")
        self.assertEntryRejected({"command": "x", "env": {"A": {}}}, "env 'A'")
        self.assertEntryRejected({"command": "x", "env": {"": "x"}}, "env ''")
        self.assertEntryRejected({"command": "x", "env": {"A=B": "x"}}, "env 'A=B'")

    def test_cwd(self) -> None:
        """
        cwd must be a non-empty string.
        """
        self.assertEntryRejected({"command": "x", "cwd": 5}, "'cwd'")
        self.assertEntryRejected({"command": "x", "cwd": ""}, "'cwd'")

    def test_timeout(self) -> None:
        """
        timeout must be a non-negative number.
        """
        self.assertEntryRejected({"command": "x", "timeout": -1}, "'timeout'", "negative")
        self.assertEntryRejected({"command": "x", "timeout": "60"}, "'timeout'")
        self.assertEntryRejected({"command": "x", "timeout": True}, "'timeout'")
        self.assertEntryRejected({"command": "x", "timeout": [60]}, "'timeout'")

    def test_optionsNotAnObject(self) -> None:
        """
        options must be an object, per server and globally.
        """
        self.assertEntryRejected({"command": "x", "options": ["a"]}, "'options'")
        self.assertRejected('{"mcpServers": {}, "options": "x"}', "'options'")

    def test_optionValue(self) -> None:
        """
        An option value the coercer rejects names the server and option.
        """
        message = self.assertEntryRejected(
            {"command": "x", "options": {"max-sessions": "lots"}}, "'max-sessions'")
        self.assertIn("lots", message)
        self.assertEntryRejected({"command": "x", "options": {"idle-timeout": -5}},
                                 "'idle-timeout'", "must not be negative")
        self.assertEntryRejected({"command": "x", "options": {"stateless": 1}},
                                 "'stateless'")
        self.assertEntryRejected({"command": "x", "options": {"history-size": "0"}},
                                 "'history-size'")

    def test_globalOptionValue(self) -> None:
        """
        A bad global option value names the file and option.
        """
        self.assertRejected('{"mcpServers": {}, "options": {"log-level": "loud"}}',
                            "'log-level'")
        self.assertRejected('{"mcpServers": {}, "options": {"port": 3000}}', "'port'")
        self.assertRejected('{"mcpServers": {}, "options": {"pool-size": -1}}',
                            "'pool-size'")

    def test_unknownOption(self) -> None:
        """
        An unknown option name is an error, with a suggestion when close.
        """
        message = self.assertEntryRejected(
            {"command": "x", "options": {"idle_timeout": 5}}, "unknown option 'idle_timeout'")
        self.assertIn("did you mean 'idle-timeout'", message)
        self.assertEntryRejected({"command": "x", "options": {"idleTimeout": 5}},
                                 "did you mean 'idle-timeout'")
        self.assertEntryRejected({"command": "x", "options": {"colour": 5}},
                                 "unknown option 'colour'")
        self.assertRejected('{"mcpServers": {}, "options": {"bogus": 1}}',
                            "unknown option 'bogus'")

    def test_globalOnlyOptionPerServer(self) -> None:
        """
        The global-only options cannot be set per server.
        """
        for name in GLOBAL_OPTIONS:
            self.assertEntryRejected({"command": "x", "options": {name: "x"}},
                                     f"option '{name}'", "top-level")

    def test_invalidName(self) -> None:
        """
        Server names must be valid.
        """
        for name in ("my server", ".x", "", "x" * 65, "a/b"):
            self.assertRejected(servers(**{name: {"command": "x"}}), "invalid server name")

    def test_duplicates(self) -> None:
        """
        A key given twice in one object is an error, not silently the last.
        """
        self.assertRejected('{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}',
                            "server 'a'", "more than once")
        self.assertRejected('{"mcpServers": {"a": {"command": "x", "command": "y"}}}',
                            "server 'a'", "'command'", "more than once")
        self.assertRejected('{"mcpServers": {"a": {"command": "x", '
                            '"env": {"A": "1", "A": "2"}}}}', "server 'a'", "'A'")
        self.assertRejected('{"mcpServers": {}, "mcpServers": {}}', "'mcpServers'")
        self.assertRejected('{"mcpServers": {}, "options": {"spares": 1, "spares": 2}}',
                            "'spares'")

    def test_noPartialResult(self) -> None:
        """
        One bad entry among good ones rejects the whole file.
        """
        self.assertRejected(servers(good={"command": "x"}, bad={"command": 5},
                                    also={"command": "y"}), "server 'bad'")

    def test_oneLine(self) -> None:
        """
        Values with newlines are quoted so the message stays on one line.
        """
        message = self.assertEntryRejected(
            {"command": "x", "options": {"log\nlevel": 1}}, "unknown option")
        self.assertIn("'log\\nlevel'", message)
        message = self.assertRejected(servers(**{"a\nb": {"command": "x"}}))
        self.assertIn("'a\\nb'", message)

    def test_errorStrIsOneLine(self) -> None:
        """
        Even a message built with a newline prints as one line.
        """
        self.assertEqual(str(ConfigError("a\nb")), "a b")


class LoadConfigTests(ConfigTestCase):
    def test_load(self) -> None:
        """
        loadConfig reads and parses a file, naming it in the result.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(servers(x={"command": "x"}, y={"command": "y", "foo": 1}))
        config = loadConfig(path)
        self.assertEqual(config.path, path)
        self.assertEqual(config.servers["x"].source, path)
        self.assertEqual(config.warnings, [f"{path}: server 'y': unknown key 'foo' ignored"])

    def test_missing(self) -> None:
        """
        A missing file is a ConfigError saying it cannot be read.
        """
        path = self.mktemp()
        e = self.assertRaises(ConfigError, loadConfig, path)
        message = self.assertOneLine(e)
        self.assertTrue(message.startswith(f"cannot read {path}: "), message)
        self.assertIn("No such file", message)

    def test_directory(self) -> None:
        """
        A directory cannot be read as a file.
        """
        path = self.mktemp()
        os.mkdir(path)
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertTrue(str(e).startswith(f"cannot read {path}: "))

    def test_notText(self) -> None:
        """
        A file that is not UTF-8 is rejected, naming the file.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'{"mcpServers": {"\xff": {}}}')
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertTrue(str(e).startswith(f"{path}: "))
        self.assertIn("UTF-8", str(e))

    def test_invalidNamesFile(self) -> None:
        """
        Parse errors from a loaded file name that file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"mcpServers": {"x": {"command": 5}}}')
        e = self.assertRaises(ConfigError, loadConfig, path)
        self.assertTrue(str(e).startswith(f"{path}: server 'x': "), str(e))


class EnvironmentTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        The documented aliases map to their options, and every option has
        an MCPBRIDGE_ variable.
        """
        for variable, option in {
            "MCP_PORT": "port", "MCP_BIND_HOST": "port",
            "MCP_SESSION_TIMEOUT": "idle-timeout", "MCP_LOG_LEVEL": "log-level",
            "LOG_FILE": "log-file", "MCP_SUBPROCESS_TIMEOUT": "request-timeout",
            "MCP_STARTUP_TIMEOUT": "startup-timeout", "MCP_MAX_SESSIONS": "max-sessions",
            "MCP_READ_BUFFER_SIZE": "max-message-size",
            "MCP_WRITE_BUFFER_SIZE": "write-buffer-size", "MCPBRIDGE_CONFIG": "config",
            "MCPBRIDGE_LOG_FORMAT": "log-format",
        }.items():
            self.assertEqual(ENVIRONMENT[variable], option)
        for option in [*SERVER_OPTIONS, *GLOBAL_OPTIONS]:
            self.assertEqual(ENVIRONMENT["MCPBRIDGE_" + option.upper().replace("-", "_")],
                             option)
        self.assertEqual(ENVIRONMENT["MCPBRIDGE_POOL_SIZE"], "pool-size")

    def test_nothing(self) -> None:
        """
        An environment without the variables sets nothing.
        """
        self.assertEqual(optionsFromEnvironment({"PATH": "/bin", "PORT": "80"}), ({}, []))

    def test_aliases(self) -> None:
        """
        Each alias sets its option, coerced.
        """
        options, used = optionsFromEnvironment({
            "MCP_SESSION_TIMEOUT": "60", "MCP_LOG_LEVEL": "debug", "LOG_FILE": "/tmp/l",
            "MCP_SUBPROCESS_TIMEOUT": "30", "MCP_STARTUP_TIMEOUT": "5",
            "MCP_MAX_SESSIONS": "7", "MCP_READ_BUFFER_SIZE": "1M",
            "MCP_WRITE_BUFFER_SIZE": "64K", "MCPBRIDGE_CONFIG": "/etc/mcp.json",
            "MCPBRIDGE_LOG_FORMAT": "JSON"})
        self.assertEqual(options, {
            "idle-timeout": 60.0, "log-level": "debug", "log-file": "/tmp/l",
            "request-timeout": 30.0, "startup-timeout": 5.0, "max-sessions": 7,
            "max-message-size": 1024**2, "write-buffer-size": 64 * 1024,
            "config": "/etc/mcp.json", "log-format": "json"})
        self.assertEqual(sorted(used), sorted([
            "MCP_SESSION_TIMEOUT", "MCP_LOG_LEVEL", "LOG_FILE", "MCP_SUBPROCESS_TIMEOUT",
            "MCP_STARTUP_TIMEOUT", "MCP_MAX_SESSIONS", "MCP_READ_BUFFER_SIZE",
            "MCP_WRITE_BUFFER_SIZE", "MCPBRIDGE_CONFIG", "MCPBRIDGE_LOG_FORMAT"]))

    def test_generic(self) -> None:
        """
        MCPBRIDGE_<OPTION> sets any option.
        """
        options, used = optionsFromEnvironment({
            "MCPBRIDGE_POOL_SIZE": "4", "MCPBRIDGE_STATELESS": "yes",
            "MCPBRIDGE_HISTORY_SIZE": "2M", "MCPBRIDGE_PORT": "unix:/run/mcp.sock",
            "MCPBRIDGE_CWD": "/srv", "MCPBRIDGE_HEARTBEAT": "0"})
        self.assertEqual(options, {
            "pool-size": 4, "stateless": True, "history-size": 2 * 1024**2,
            "port": ["unix:/run/mcp.sock"], "cwd": "/srv", "heartbeat": 0.0})
        self.assertEqual(sorted(used), sorted([
            "MCPBRIDGE_POOL_SIZE", "MCPBRIDGE_STATELESS", "MCPBRIDGE_HISTORY_SIZE",
            "MCPBRIDGE_PORT", "MCPBRIDGE_CWD", "MCPBRIDGE_HEARTBEAT"]))

    def test_genericWins(self) -> None:
        """
        MCPBRIDGE_<OPTION> wins over an alias for the same option; only the
        winner is reported as used.
        """
        options, used = optionsFromEnvironment({
            "MCP_SESSION_TIMEOUT": "60", "MCPBRIDGE_IDLE_TIMEOUT": "90"})
        self.assertEqual(options, {"idle-timeout": 90.0})
        self.assertEqual(used, ["MCPBRIDGE_IDLE_TIMEOUT"])
        options, used = optionsFromEnvironment({
            "MCP_LOG_LEVEL": "debug", "MCPBRIDGE_LOG_LEVEL": "error"})
        self.assertEqual(options, {"log-level": "error"})

    def test_logLevelCase(self) -> None:
        """
        MCP_LOG_LEVEL is case-insensitive and warning means warn.
        """
        self.assertEqual(optionsFromEnvironment({"MCP_LOG_LEVEL": "INFO"})[0],
                         {"log-level": "info"})
        self.assertEqual(optionsFromEnvironment({"MCP_LOG_LEVEL": "Warning"})[0],
                         {"log-level": "warn"})

    def test_empty(self) -> None:
        """
        An empty variable counts as unset.
        """
        self.assertEqual(optionsFromEnvironment({
            "MCP_MAX_SESSIONS": "", "MCP_PORT": "", "MCP_BIND_HOST": "",
            "MCPBRIDGE_STATELESS": " "}), ({}, []))
        options, used = optionsFromEnvironment({
            "MCP_SESSION_TIMEOUT": "60", "MCPBRIDGE_IDLE_TIMEOUT": ""})
        self.assertEqual(options, {"idle-timeout": 60.0})
        self.assertEqual(used, ["MCP_SESSION_TIMEOUT"])

    def assertEnvironmentRejected(self, environ: dict[str, str], prefix: str) -> str:
        e = self.assertRaises(ConfigError, optionsFromEnvironment, environ)
        message = str(e)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(prefix), message)
        return message

    def test_invalid(self) -> None:
        """
        An invalid value names the variable and value.
        """
        self.assertEnvironmentRejected({"MCP_MAX_SESSIONS": "lots"},
                                       "MCP_MAX_SESSIONS='lots': ")
        self.assertEnvironmentRejected({"MCP_SESSION_TIMEOUT": "-1"},
                                       "MCP_SESSION_TIMEOUT='-1': must not be negative")
        self.assertEnvironmentRejected({"MCP_LOG_LEVEL": "loud"}, "MCP_LOG_LEVEL='loud': ")
        self.assertEnvironmentRejected({"MCPBRIDGE_STATELESS": "maybe"},
                                       "MCPBRIDGE_STATELESS='maybe': ")
        self.assertEnvironmentRejected({"MCP_READ_BUFFER_SIZE": "big"},
                                       "MCP_READ_BUFFER_SIZE='big': ")
        self.assertEnvironmentRejected({"MCPBRIDGE_LOG_FORMAT": "xml"},
                                       "MCPBRIDGE_LOG_FORMAT='xml': ")
        self.assertEnvironmentRejected({"MCP_MAX_SESSIONS": "a\nb"},
                                       "MCP_MAX_SESSIONS='a\\nb': ")

    def test_invalidEvenWhenOverridden(self) -> None:
        """
        Every variable set must be valid, even one that another overrides.
        """
        self.assertEnvironmentRejected(
            {"MCP_SESSION_TIMEOUT": "soon", "MCPBRIDGE_IDLE_TIMEOUT": "5"},
            "MCP_SESSION_TIMEOUT='soon': ")

    def test_portAndHost(self) -> None:
        """
        MCP_PORT and MCP_BIND_HOST together make one TCP endpoint.
        """
        options, used = optionsFromEnvironment({"MCP_PORT": "8080",
                                                "MCP_BIND_HOST": "0.0.0.0"})
        self.assertEqual(options, {"port": ["tcp:8080:interface=0.0.0.0"]})
        self.assertEqual(used, ["MCP_PORT", "MCP_BIND_HOST"])

    def test_portOnly(self) -> None:
        """
        MCP_PORT alone listens on 127.0.0.1.
        """
        options, used = optionsFromEnvironment({"MCP_PORT": "8080"})
        self.assertEqual(options, {"port": ["tcp:8080:interface=127.0.0.1"]})
        self.assertEqual(used, ["MCP_PORT"])

    def test_hostOnly(self) -> None:
        """
        MCP_BIND_HOST alone listens on port 3000.
        """
        options, used = optionsFromEnvironment({"MCP_BIND_HOST": "192.0.2.1"})
        self.assertEqual(options, {"port": ["tcp:3000:interface=192.0.2.1"]})
        self.assertEqual(used, ["MCP_BIND_HOST"])

    def test_ipv6Host(self) -> None:
        """
        An IPv6 host has its colons escaped, so Twisted reads it back whole;
        brackets around it are dropped.
        """
        for host in ("::1", "[::1]"):
            options, _ = optionsFromEnvironment({"MCP_BIND_HOST": host})
            self.assertEqual(options, {"port": ["tcp:3000:interface=\\:\\:1"]})
            args, kw = _parse(options["port"][0])
            self.assertEqual((args, kw), (["tcp", "3000"], {"interface": "::1"}))

    def test_portInvalid(self) -> None:
        """
        A non-numeric or out-of-range port is rejected.
        """
        for port in ("http", "-1", "65536", "99999999", "80.5", "8o"):
            self.assertEnvironmentRejected({"MCP_PORT": port}, f"MCP_PORT={port!r}: ")
        self.assertEqual(optionsFromEnvironment({"MCP_PORT": "65535"})[0],
                         {"port": ["tcp:65535:interface=127.0.0.1"]})

    def test_hostInvalid(self) -> None:
        """
        A host with spaces, or empty brackets, is rejected.
        """
        for host in ("a b", "[]"):
            self.assertEnvironmentRejected({"MCP_BIND_HOST": host},
                                           f"MCP_BIND_HOST={host!r}: ")

    def test_genericPortWins(self) -> None:
        """
        MCPBRIDGE_PORT wins over MCP_PORT and MCP_BIND_HOST.
        """
        options, used = optionsFromEnvironment({
            "MCP_PORT": "8080", "MCP_BIND_HOST": "0.0.0.0", "MCPBRIDGE_PORT": "tcp:9"})
        self.assertEqual(options, {"port": ["tcp:9"]})
        self.assertEqual(used, ["MCPBRIDGE_PORT"])
