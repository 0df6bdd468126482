"""
Several MCP servers behind one REAL bridge process (``twistd -n mcpbridge``,
or ``python -m mcpbridge.cli`` where the exit status matters), on 127.0.0.1:

* named servers (``--named-server NAME=COMMAND``) beside the default one,
  each at ``/servers/NAME/mcp`` with children of its own; unknown names 404;
* the ``mcpServers`` config file (``--config``): command, args, env, cwd,
  disabled/enabled, a per-server ``timeout``, unknown keys (a warning);
* a config file or environment variable that cannot be used stops the
  bridge at once: exit status 2 and one line on stderr;
* a server whose command is missing fails alone (``/health`` 503, ``/status``);
* environment variables (``MCP_PORT``, ``MCP_BIND_HOST``, ``MCP_MAX_SESSIONS``)
  and the precedence command line > environment > config file > defaults;
* SIGHUP reloads the config file: servers added, removed (their children
  stop), changed (existing sessions keep their old child), unchanged (not
  touched); a file with an error is rejected whole;
* ``--log-format json``, ``--log-file`` and ``LOG_FILE``;
* the HTTP+SSE transport of a named server announces its own messages path.

The servers are ``python -m mcpbridge.demo_server`` and
``tests/servers/env_server.py`` (reports its pid, argv, cwd and
environment).  Tests of one class share a bridge where they do not change
it: trial does not run ``setUpClass``, so :class:`SharedBridgeTestCase`
builds it in the first ``setUp`` and stops it after the class's last test
(or at exit when only some of them run).  Every wait is bounded; only
processes started here are stopped, by their own handles.  Plain
``unittest`` so that trial and pytest both run it.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.support import (
    HOST, PYTHON_CLIENT, ROOT, TWISTD, Bridge, child_env, free_port, http_request,
    process_alive, read_sse_event, run_json, snapshot, still_alive, wait_until)

PY = sys.executable
ENV_SERVER = os.path.join(ROOT, "tests", "servers", "env_server.py")
DEMO = [PY, "-m", "mcpbridge.demo_server"]
#: Short stop graces and drain, so children and removed servers go quickly.
FAST = ["--stdin-grace", "0.5", "--term-grace", "1", "--drain-timeout", "2"]
#: jsonrpc.REQUEST_TIMEOUT and SERVER_UNAVAILABLE, spelled out so that a
#: change of the bridge's codes shows here.
REQUEST_TIMEOUT = -32001
SERVER_UNAVAILABLE = -32002
INVALID_REQUEST = -32600

POST_HEADERS = {"accept": "application/json, text/event-stream",
                "content-type": "application/json"}
VERSION = "2025-06-18"
GONE_TIMEOUT = 10.0  # seconds for a child to be gone
RELOAD_TIMEOUT = 10.0  # seconds for a SIGHUP to be acted on
EXIT_TIMEOUT = 30.0  # seconds for a bridge with a bad configuration to exit


# ------------------------------------------------------------- helpers ---

def write_json(path: str, obj: Any) -> None:
    """Replace a file atomically (a reload never sees half of it)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def env_entry(*args: str, **extra: Any) -> Dict[str, Any]:
    """An mcpServers entry running the env server."""
    return {"command": PY, "args": [ENV_SERVER, *args], **extra}


def mcp_path(name: Optional[str]) -> str:
    return "/mcp" if name is None else f"/servers/{name}/mcp"


def parse_answer(headers: Dict[str, str], body: bytes, ident: Any) -> Dict[str, Any]:
    """
    The JSON-RPC answer with id C{ident} in a response: a JSON body, or an
    SSE stream whose events carry it (notifications before it are skipped).
    """
    ctype = headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        for line in body.decode("utf-8").splitlines():
            if line.startswith("data:"):
                message: Dict[str, Any] = json.loads(line[5:].strip())
                if message.get("id") == ident and ("result" in message or "error" in message):
                    return message
        raise AssertionError(f"no answer to {ident!r} in the stream: {body[:500]!r}")
    answer: Dict[str, Any] = json.loads(body)
    return answer


class Session:
    """A session-era session of one server, over raw HTTP."""

    def __init__(self, port: int, name: Optional[str], session_id: str,
                 init_result: Dict[str, Any]) -> None:
        self.port = port
        self.name = name
        self.path = mcp_path(name)
        self.id = session_id
        self.init_result = init_result
        self.ids = 1

    def post(self, obj: Any, timeout: float = 20.0) -> Tuple[int, Dict[str, str], bytes]:
        return http_request(self.port, "POST", self.path, json.dumps(obj).encode(),
                            {**POST_HEADERS, "mcp-session-id": self.id,
                             "mcp-protocol-version": VERSION}, timeout=timeout)

    def call_raw(self, tool: str, timeout: float = 20.0,
                 **arguments: Any) -> Tuple[int, Dict[str, Any]]:
        """Call a tool; the HTTP status and the JSON-RPC answer."""
        self.ids += 1
        status, headers, body = self.post(
            {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call",
             "params": {"name": tool, "arguments": arguments}}, timeout=timeout)
        if status != 200:
            return status, {"http_body": body.decode("utf-8", "replace")}
        return status, parse_answer(headers, body, self.ids)

    def call(self, tool: str, timeout: float = 20.0, **arguments: Any) -> Dict[str, Any]:
        """Call a tool; its result (asserting a 200 and no JSON-RPC error)."""
        status, answer = self.call_raw(tool, timeout=timeout, **arguments)
        assert status == 200 and "result" in answer, (
            f"tools/call {tool} on {self.path}: HTTP {status}, {answer}")
        result: Dict[str, Any] = answer["result"]
        return result

    def text(self, tool: str, **arguments: Any) -> str:
        return str(self.call(tool, **arguments)["content"][0]["text"])

    def info(self) -> Dict[str, Any]:
        """The env server's pid, argv, cwd and env."""
        info: Dict[str, Any] = json.loads(self.text("info"))
        return info

    def delete(self) -> int:
        return http_request(self.port, "DELETE", self.path,
                            headers={"mcp-session-id": self.id})[0]


def initialize_raw(port: int, name: Optional[str],
                   timeout: float = 20.0) -> Tuple[int, Dict[str, str], bytes]:
    return http_request(port, "POST", mcp_path(name), json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {},
            "clientInfo": {"name": "multi-server-test", "version": "1"}}}).encode(),
        POST_HEADERS, timeout=timeout)


def open_session(port: int, name: Optional[str]) -> Session:
    """initialize and notifications/initialized; asserts both worked."""
    status, headers, body = initialize_raw(port, name)
    assert status == 200, f"initialize on {mcp_path(name)}: HTTP {status} {body[:300]!r}"
    answer = parse_answer(headers, body, 1)
    assert "result" in answer, answer
    session = Session(port, name, headers["mcp-session-id"], answer["result"])
    status, _, body = session.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202, f"notifications/initialized: HTTP {status} {body[:300]!r}"
    return session


def error_of(body: bytes) -> Dict[str, Any]:
    """The JSON-RPC error object of an error response body."""
    message = json.loads(body)
    assert message.get("jsonrpc") == "2.0" and "error" in message, message
    error: Dict[str, Any] = message["error"]
    return error


def get_status(port: int) -> Dict[str, Any]:
    status, _, body = http_request(port, "GET", "/status")
    assert status == 200, (status, body[:300])
    report: Dict[str, Any] = json.loads(body)
    return report


def server_status(port: int, name: Optional[str]) -> Optional[Dict[str, Any]]:
    """One server's entry in /status, or None when it is not listed."""
    for entry in get_status(port)["servers"]:
        if entry["name"] == name:
            return dict(entry)
    return None


def child_pids(entry: Dict[str, Any]) -> List[int]:
    return [int(c["pid"]) for c in entry["children"]]


def count_sessions(testcase: unittest.TestCase, port: int, name: Optional[str] = None,
                   most: int = 5) -> int:
    """
    How many sessions open before the bridge answers 503 (which it must, within
    C{most} + 1 attempts); the sessions are deleted again.
    """
    sessions: List[Session] = []
    refused: Optional[Tuple[int, Dict[str, str], bytes]] = None
    try:
        for _ in range(most + 1):
            status, headers, body = initialize_raw(port, name)
            if status == 200:
                sessions.append(Session(port, name, headers["mcp-session-id"], {}))
                continue
            refused = (status, headers, body)
            break
    finally:
        for s in sessions:
            s.delete()
    testcase.assertIsNotNone(refused, f"no 503 after {len(sessions)} sessions")
    assert refused is not None
    status, headers, body = refused
    testcase.assertEqual(status, 503, body)
    testcase.assertIn("retry-after", headers)
    error = error_of(body)
    testcase.assertEqual(error["code"], SERVER_UNAVAILABLE, error)
    testcase.assertIn("too many sessions", error["message"])
    return len(sessions)


def count_sessions_upto(port: int, name: Optional[str], most: int) -> int:
    """How many of C{most} sessions open (up to the first refusal); deleted again."""
    sessions: List[Session] = []
    try:
        for _ in range(most):
            status, headers, _ = initialize_raw(port, name)
            if status != 200:
                break
            sessions.append(Session(port, name, headers["mcp-session-id"], {}))
    finally:
        for s in sessions:
            s.delete()
    return len(sessions)


def send_sighup(bridge: Bridge) -> None:
    """SIGHUP to the bridge's own pid (a process this module started)."""
    os.kill(bridge.pid, signal.SIGHUP)


def wait_for_log(bridge: Bridge, text: str, count: int = 1,
                 timeout: float = RELOAD_TIMEOUT) -> bool:
    return bool(wait_until(lambda: bridge.current_log().count(text) >= count, timeout))


class EnvPortBridge(Bridge):
    """
    A bridge given no --port: MCP_PORT (a free port) and MCP_BIND_HOST choose
    where it listens.
    """

    def argv(self) -> List[str]:
        self.env["MCP_PORT"] = str(self.port)
        self.env["MCP_BIND_HOST"] = HOST
        return [TWISTD, "-n", "--pidfile=", "mcpbridge", *self.options, "--", *self.command]


# --------------------------------------------------------- shared base ---

class SharedBridgeTestCase(unittest.TestCase):
    """
    Tests that share what L{setUpShared} builds (bridges, files), built by
    the first test's setUp (trial does not run setUpClass) and torn down
    after the class's last test, or at exit when only some of its tests run.
    A failed build fails every test of the class with its reason.
    """

    shared: Dict[str, Any]
    _built: Any
    _stops: List[Any]
    _left: int

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        """Build what the tests share; append a callable per thing to stop."""
        raise NotImplementedError

    @classmethod
    def _tests(cls) -> int:
        return len([n for n in dir(cls) if n.startswith("test") and callable(getattr(cls, n))])

    @classmethod
    def _tearDownShared(cls) -> None:
        stops = cls.__dict__.get("_stops") or []
        if "_built" in cls.__dict__:
            del cls._built  # a later run of the class builds anew
        cls._stops = []
        for stop in reversed(stops):
            try:
                stop()
            except Exception:
                pass

    def setUp(self) -> None:
        cls = type(self)
        if "_built" not in cls.__dict__:
            cls._stops = []
            cls._left = cls._tests()
            try:
                cls._built = cls.setUpShared(cls._stops)
            except BaseException as e:  # noqa: B036 - reported by every test
                cls._built = e
            atexit.register(cls._tearDownShared)
        self.addCleanup(self._oneDone)
        built = cls.__dict__["_built"]
        if isinstance(built, BaseException):
            raise AssertionError(f"the shared bridge of {cls.__name__} could not be set "
                                 f"up: {built}") from built
        self.shared = built

    def _oneDone(self) -> None:
        cls = type(self)
        cls._left -= 1
        if cls._left <= 0:
            cls._tearDownShared()


def start_bridge(stops: List[Any], command: Sequence[str], options: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, healthy: bool = True,
                 cls: type[Bridge] = Bridge) -> Bridge:
    bridge = cls(command, options, env).start(healthy=healthy)
    stops.append(bridge.stop)
    return bridge


def temp_dir(stops: List[Any]) -> str:
    path = tempfile.mkdtemp(prefix="mcpbridge-multi-")
    stops.append(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# ------------------------------------------------------- named servers ---

class NamedServerTests(SharedBridgeTestCase):
    """
    The default server at /mcp beside --named-server a (the demo server) and
    b (the env server, with arguments holding '=' and quotes).
    """

    B_ARGS = ["--x=1", "two words", "k=v"]

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        bridge = start_bridge(stops, DEMO, [
            *FAST,
            "--named-server", f"a={PY} -m mcpbridge.demo_server",
            "--named-server", f"b={PY} {ENV_SERVER} --x=1 \"two words\" k=v"])
        return {"bridge": bridge}

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.shared["bridge"]
        return bridge

    def test_eachServerHasItsOwnChildren(self) -> None:
        """
        tools/call works through /mcp and /servers/a/mcp, each session in a
        child of its own that /status lists under its own server.
        """
        default = open_session(self.bridge.port, None)
        named = open_session(self.bridge.port, "a")
        self.assertEqual(default.text("echo", text="to the default"), "to the default")
        self.assertEqual(named.text("echo", text="to a"), "to a")
        default_pid = default.call("whoami")["structuredContent"]["pid"]
        named_pid = named.call("whoami")["structuredContent"]["pid"]
        self.assertNotEqual(default_pid, named_pid)
        entries = {e["name"]: e for e in get_status(self.bridge.port)["servers"]}
        self.assertEqual(set(entries), {None, "a", "b"})
        self.assertIn(default_pid, child_pids(entries[None]))
        self.assertNotIn(default_pid, child_pids(entries["a"]))
        self.assertIn(named_pid, child_pids(entries["a"]))
        self.assertNotIn(named_pid, child_pids(entries[None]))
        self.assertEqual(entries["a"]["endpoints"],
                         {"mcp": "/servers/a/mcp", "sse": "/servers/a/sse"})
        # A session belongs to its server: a's session id means nothing at /mcp.
        status, _, body = http_request(self.bridge.port, "POST", "/mcp", json.dumps({
            "jsonrpc": "2.0", "id": 9, "method": "tools/list"}).encode(),
            {**POST_HEADERS, "mcp-session-id": named.id})
        self.assertEqual(status, 404, body)
        self.assertEqual(default.delete(), 204)
        self.assertEqual(named.delete(), 204)

    def test_officialClientOnNamedServer(self) -> None:
        """The official Python SDK client's basic scenario at /servers/a/mcp."""
        rc, result, stdout, stderr = run_json(
            [PY, PYTHON_CLIENT, "basic", f"{self.bridge.base}/servers/a/mcp"], timeout=60)
        self.assertEqual(rc, 0, f"{stdout[-2000:]}\n{stderr[-2000:]}")
        self.assertTrue(result and result["ok"], result)
        self.assertEqual(result["server"], "mcpbridge-demo")
        self.assertEqual(result["echo"], "hello bridge")

    def test_unknownServerIs404(self) -> None:
        """
        Every endpoint of a server the bridge does not have is a 404 with a
        JSON-RPC error naming it.
        """
        status, headers, body = initialize_raw(self.bridge.port, "nope")
        self.assertEqual(status, 404, body)
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertNotIn("mcp-session-id", headers)
        error = error_of(body)
        self.assertEqual(error["code"], INVALID_REQUEST)
        self.assertIn("'nope'", error["message"])
        for method, path in (("GET", "/servers/nope/mcp"), ("DELETE", "/servers/nope/mcp"),
                             ("GET", "/servers/nope/sse"),
                             ("POST", "/servers/nope/messages?session_id=0")):
            status, _, body = http_request(
                self.bridge.port, method, path, b"{}" if method == "POST" else None,
                {"accept": "application/json, text/event-stream",
                 "content-type": "application/json", "mcp-session-id": "0" * 32})
            self.assertEqual(status, 404, f"{method} {path}: {body!r}")
            self.assertIn("'nope'", error_of(body)["message"], f"{method} {path}")

    def test_firstEqualsEndsTheName(self) -> None:
        """
        --named-server 'b=PY SCRIPT --x=1 "two words" k=v': the name is b,
        the rest is split as a shell would, later '=' kept.
        """
        entry = server_status(self.bridge.port, "b")
        self.assertIsNotNone(entry, "server b is not in /status")
        assert entry is not None
        self.assertEqual(entry["command"], PY)
        session = open_session(self.bridge.port, "b")
        self.assertEqual(session.init_result["serverInfo"]["name"], "env-server")
        self.assertEqual(session.info()["argv"], self.B_ARGS)
        self.assertEqual(session.delete(), 204)

    def test_sseAnnouncesNamedMessagesPath(self) -> None:
        """
        GET /servers/a/sse announces /servers/a/messages?session_id=...; a
        message POSTed there is answered on that stream; the session id is
        unknown to the other servers' message endpoints.
        """
        conn = http.client.HTTPConnection(HOST, self.bridge.port, timeout=10)
        try:
            conn.request("GET", "/servers/a/sse", headers={"accept": "text/event-stream"})
            response = conn.getresponse()
            self.assertEqual(response.status, 200)
            self.assertTrue(response.getheader("content-type", "").startswith(
                "text/event-stream"))
            deadline = time.monotonic() + 10
            event = read_sse_event(response, deadline)
            self.assertIsNotNone(event)
            assert event is not None
            endpoint = event["data"]
            self.assertRegex(endpoint, r"^/servers/a/messages\?session_id=[0-9a-f]{32}$")
            session_id = endpoint.split("=", 1)[1]
            for other in (f"/messages?session_id={session_id}",
                          f"/servers/b/messages?session_id={session_id}"):
                status, _, body = http_request(self.bridge.port, "POST", other, b"{}",
                                               {"content-type": "application/json"})
                self.assertEqual(status, 404, f"{other}: {body!r}")
            status, _, body = http_request(self.bridge.port, "POST", endpoint, json.dumps({
                "jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {
                    "protocolVersion": "2024-11-05", "capabilities": {},
                    "clientInfo": {"name": "sse-test", "version": "1"}}}).encode(),
                {"content-type": "application/json"})
            self.assertEqual(status, 202, body)
            answer = read_sse_event(response, deadline)
            self.assertIsNotNone(answer, "the SSE stream ended before the answer")
            assert answer is not None
            message = json.loads(answer["data"])
            self.assertEqual(message["id"], 7)
            self.assertEqual(message["result"]["serverInfo"]["name"], "mcpbridge-demo")
        finally:
            conn.close()


# --------------------------------------------------------- config file ---

class ConfigFileTests(SharedBridgeTestCase):
    """
    A bridge with only named servers, from an mcpServers file (and one
    --named-server that has the name of a file entry).
    """

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        tmp = temp_dir(stops)
        workdir = os.path.join(tmp, "work dir")
        os.mkdir(workdir)
        config = os.path.join(tmp, "servers.json")
        write_json(config, {"mcpServers": {
            "envy": env_entry("--envy", env={"MCPB_TEST_KEY": "from-config", "MCPB_NUM": 7},
                              cwd=workdir, color="blue"),
            "quick": env_entry(timeout=1),
            "slow": env_entry(),
            "off": env_entry(disabled=True),
            "off2": env_entry(enabled=False),
            "dup": env_entry(),
        }})
        bridge = start_bridge(stops, [], [
            *FAST, "--config", config,
            "--named-server", f"dup={PY} -m mcpbridge.demo_server"],
            env={"MCPB_BRIDGE_ONLY": "not for children"})
        return {"bridge": bridge, "workdir": workdir, "config": config}

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.shared["bridge"]
        return bridge

    def test_enabledServersServed(self) -> None:
        """Every enabled entry is served at /servers/NAME/mcp, and only those."""
        names = {e["name"] for e in get_status(self.bridge.port)["servers"]}
        self.assertEqual(names, {"envy", "quick", "slow", "dup"})
        for name in ("envy", "quick", "slow"):
            session = open_session(self.bridge.port, name)
            self.assertEqual(session.text("echo", text=name), name)
            self.assertEqual(session.delete(), 204)

    def test_disabledServersAre404(self) -> None:
        """"disabled": true and "enabled": false entries are not served."""
        for name in ("off", "off2"):
            status, _, body = initialize_raw(self.bridge.port, name)
            self.assertEqual(status, 404, f"{name}: {body!r}")
            self.assertIn(repr(name), error_of(body)["message"])

    def test_envArgsAndCwdReachTheChild(self) -> None:
        """
        The entry's env (numbers as strings), args and cwd reach its child;
        not another server's child; the bridge's own environment is not
        passed on.
        """
        envy = open_session(self.bridge.port, "envy")
        info = envy.info()
        self.assertEqual(info["argv"], ["--envy"])
        self.assertEqual(info["env"].get("MCPB_TEST_KEY"), "from-config")
        self.assertEqual(info["env"].get("MCPB_NUM"), "7")
        self.assertNotIn("MCPB_BRIDGE_ONLY", info["env"])
        self.assertEqual(os.path.realpath(info["cwd"]),
                         os.path.realpath(self.shared["workdir"]))
        slow = open_session(self.bridge.port, "slow")
        other = slow.info()
        self.assertNotIn("MCPB_TEST_KEY", other["env"])
        self.assertNotEqual(os.path.realpath(other["cwd"]),
                            os.path.realpath(self.shared["workdir"]))
        self.assertEqual(other["argv"], [])
        envy.delete()
        slow.delete()

    def test_timeoutIsThatServersRequestTimeout(self) -> None:
        """
        "timeout": 1 makes a 2.5 s tool call of that server a -32001 error
        after about 1 s; the same call of a server without it is answered
        (both at once).
        """
        quick = open_session(self.bridge.port, "quick")
        slow = open_session(self.bridge.port, "slow")
        answers: Dict[str, Any] = {}

        def call(name: str, session: Session) -> None:
            started = time.monotonic()
            try:
                answers[name] = (session.call_raw("sleep", seconds=2.5, timeout=20),
                                 time.monotonic() - started)
            except Exception as e:  # reported below
                answers[name] = e

        threads = [threading.Thread(target=call, args=("quick", quick)),
                   threading.Thread(target=call, args=("slow", slow))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        (status, answer), took = answers["quick"]
        self.assertEqual(status, 200, answer)
        self.assertIn("error", answer, answer)
        self.assertEqual(answer["error"]["code"], REQUEST_TIMEOUT, answer)
        self.assertIn("timed out", answer["error"]["message"])
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 2.3, "the per-server timeout was not applied")
        (status, answer), took = answers["slow"]
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer.get("result", {}).get("content", [{}])[0].get("text"), "slept",
                         answer)
        self.assertGreaterEqual(took, 2.4)
        quick.delete()
        slow.delete()

    def test_unknownKeyIsAWarning(self) -> None:
        """
        An unknown key in an entry is a warning in the log naming the file,
        the server and the key; that server still runs.
        """
        lines = [line for line in self.bridge.current_log().splitlines()
                 if "unknown key 'color' ignored" in line]
        self.assertEqual(len(lines), 1, self.bridge.current_log()[-3000:])
        self.assertIn("#warn]", lines[0])
        self.assertIn(self.shared["config"], lines[0])
        self.assertIn("server 'envy'", lines[0])
        session = open_session(self.bridge.port, "envy")
        self.assertEqual(session.text("echo", text="still here"), "still here")
        session.delete()

    def test_commandLineNameWinsOverFile(self) -> None:
        """--named-server dup=... replaces the file's entry named dup."""
        session = open_session(self.bridge.port, "dup")
        self.assertEqual(session.init_result["serverInfo"]["name"], "mcpbridge-demo")
        session.delete()


# ----------------------------------------------- a server cannot start ---

class MissingCommandTests(SharedBridgeTestCase):
    """A config file with a good server and one whose command does not exist."""

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        tmp = temp_dir(stops)
        config = os.path.join(tmp, "servers.json")
        write_json(config, {"mcpServers": {
            "good": env_entry(),
            "bad": {"command": "no-such-command-xyz", "args": ["--flag"]}}})
        bridge = start_bridge(stops, [], [*FAST, "--config", config], healthy=False)
        return {"bridge": bridge}

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.shared["bridge"]
        return bridge

    def test_goodServerWorks(self) -> None:
        session = open_session(self.bridge.port, "good")
        self.assertEqual(session.text("echo", text="fine"), "fine")
        self.assertEqual(session.delete(), 204)

    def test_missingCommandIs502(self) -> None:
        """initialize of the broken server: 502 with an error naming the command."""
        status, headers, body = initialize_raw(self.bridge.port, "bad")
        self.assertEqual(status, 502, body)
        self.assertNotIn("mcp-session-id", headers)
        error = error_of(body)
        self.assertEqual(error["code"], SERVER_UNAVAILABLE)
        self.assertIn("no-such-command-xyz", error["message"])

    def test_healthIs503NamingTheServer(self) -> None:
        status, _, body = http_request(self.bridge.port, "GET", "/health")
        self.assertEqual(status, 503, body)
        health = json.loads(body)
        self.assertEqual(health["status"], "failing")
        self.assertEqual(set(health["servers"]), {"good", "bad"})
        self.assertEqual(health["servers"]["bad"]["status"], "failing")
        self.assertIn("no-such-command-xyz", health["servers"]["bad"]["last_error"] or "")
        self.assertEqual(health["servers"]["good"]["status"], "ok")
        self.assertIsNone(health["servers"]["good"]["last_error"])

    def test_statusListsEveryServer(self) -> None:
        """/status: every server with sessions, children and last_error."""
        session = open_session(self.bridge.port, "good")
        pid = session.info()["pid"]
        report = get_status(self.bridge.port)
        entries = {e["name"]: e for e in report["servers"]}
        self.assertEqual(set(entries), {"good", "bad"})
        for entry in entries.values():
            for key in ("sessions", "children", "last_error"):
                self.assertIn(key, entry)
        self.assertEqual(entries["good"]["sessions"], 1)
        self.assertEqual(child_pids(entries["good"]), [pid])
        self.assertIsNone(entries["good"]["last_error"])
        self.assertEqual(entries["good"]["status"], "ok")
        self.assertEqual(entries["bad"]["sessions"], 0)
        self.assertEqual(entries["bad"]["children"], [])
        self.assertIn("no-such-command-xyz", entries["bad"]["last_error"] or "")
        self.assertEqual(entries["bad"]["status"], "failing")
        self.assertEqual(entries["bad"]["command"], "no-such-command-xyz")
        self.assertEqual(session.delete(), 204)


# ------------------------------------------------ startup config errors ---

class StartupErrorTests(SharedBridgeTestCase):
    """
    Configurations that cannot be used stop the bridge before it serves:
    exit status 2, one line on stderr naming the file or variable, no
    traceback, no usage text.  All cases run at once (each process with a
    bounded wait, killed by its own handle if it does not exit).
    """

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        tmp = temp_dir(stops)

        def config(name: str, text: str) -> str:
            path = os.path.join(tmp, name)
            write_text(path, text)
            return path

        files = {
            "invalid": config("invalid.json", '{"mcpServers": {"x": {"command": "python3"},}'),
            "args": config("args.json", json.dumps(
                {"mcpServers": {"x": {"command": PY, "args": "x"}}})),
            "option": config("option.json", json.dumps(
                {"mcpServers": {"x": env_entry()}, "options": {"max-sessions": "lots"}})),
            "port": config("port.json", json.dumps(
                {"mcpServers": {"x": env_entry()}, "options": {"port": "bogus:1"}})),
            "missing": os.path.join(tmp, "no-such-dir", "missing.json"),
        }
        listen = ["--port", f"tcp:{free_port()}:interface={HOST}"]
        twistd = [TWISTD, "-n", "--pidfile=", "mcpbridge"]
        cli = [PY, "-m", "mcpbridge.cli"]
        cases: Dict[str, Tuple[List[str], Dict[str, str]]] = {
            "invalid": ([*twistd, *listen, "--config", files["invalid"]], {}),
            "args": ([*twistd, *listen, "--config", files["args"]], {}),
            "option": ([*twistd, *listen, "--config", files["option"]], {}),
            "missing": ([*twistd, *listen, "--config", files["missing"]], {}),
            "cli_invalid": ([*cli, *listen, "--config", files["invalid"]], {}),
            "env_config": ([*twistd, *listen, "--", *DEMO],
                           {"MCPBRIDGE_CONFIG": files["invalid"]}),
            "env_max": ([*twistd, *listen, "--", *DEMO], {"MCP_MAX_SESSIONS": "lots"}),
            "cli_env_max": ([*cli, *listen, "--", *DEMO], {"MCP_MAX_SESSIONS": "lots"}),
            "port": ([*twistd, "--config", files["port"]], {}),
            "env_port": ([*twistd, "--", *DEMO], {"MCPBRIDGE_PORT": "bogus:1"}),
        }
        procs: Dict[str, Tuple[subprocess.Popen[bytes], Any, Any]] = {}
        try:
            for name, (argv, extra) in cases.items():
                out = open(os.path.join(tmp, f"{name}.out"), "w+b")
                err = open(os.path.join(tmp, f"{name}.err"), "w+b")
                procs[name] = (subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp,
                    env=child_env({"MCP_PORT": "", "MCP_BIND_HOST": "", **extra})), out, err)
            results: Dict[str, Tuple[Optional[int], str, str]] = {}
            deadline = time.monotonic() + EXIT_TIMEOUT
            for name, (proc, out, err) in procs.items():
                try:
                    code: Optional[int] = proc.wait(
                        timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                    code = None  # did not exit by itself: it accepted the configuration
                out.seek(0)
                err.seek(0)
                results[name] = (code, out.read().decode("utf-8", "replace"),
                                 err.read().decode("utf-8", "replace"))
        finally:
            for proc, out, err in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
                out.close()
                err.close()
        return {"results": results, "files": files}

    def assertRejected(self, case: str, *names: str) -> str:
        """
        The case exited by itself with status 2 and one stderr line that
        names each of C{names}; no traceback, no usage text.  Returns that
        line.
        """
        code, out, err = self.shared["results"][case]
        shown = f"exit {code}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"
        self.assertIsNotNone(code, f"it did not exit within {EXIT_TIMEOUT} s "
                                   f"(the configuration was accepted)\n{shown}")
        self.assertNotIn("Traceback", out + err, shown)
        self.assertNotIn("Usage:", out + err, f"usage text dumped\n{shown}")
        self.assertEqual(code, 2, shown)
        lines = [line for line in err.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, shown)
        self.assertEqual([line for line in out.splitlines() if line.strip()], [], shown)
        self.assertTrue(lines[0].startswith("mcpbridge: "), shown)
        for name in names:
            self.assertIn(name, lines[0], shown)
        line: str = lines[0]
        return line

    def test_invalidJSON(self) -> None:
        line = self.assertRejected("invalid", self.shared["files"]["invalid"])
        self.assertIn("invalid JSON", line)

    def test_invalidJSONConsoleScript(self) -> None:
        """The same through python -m mcpbridge.cli."""
        self.assertRejected("cli_invalid", self.shared["files"]["invalid"])

    def test_invalidJSONThroughEnvironment(self) -> None:
        """MCPBRIDGE_CONFIG naming an invalid file."""
        self.assertRejected("env_config", self.shared["files"]["invalid"])

    def test_argsNotAList(self) -> None:
        self.assertRejected("args", self.shared["files"]["args"], "'args'", "'x'")

    def test_invalidOptionValue(self) -> None:
        self.assertRejected("option", self.shared["files"]["option"], "max-sessions", "lots")

    def test_missingFile(self) -> None:
        self.assertRejected("missing", self.shared["files"]["missing"])

    def test_invalidEnvironmentVariable(self) -> None:
        self.assertRejected("env_max", "MCP_MAX_SESSIONS", "lots")

    def test_invalidEnvironmentVariableConsoleScript(self) -> None:
        self.assertRejected("cli_env_max", "MCP_MAX_SESSIONS", "lots")

    def test_invalidEndpointInConfigFile(self) -> None:
        """
        BRIDGE BUG when this fails: "options": {"port": "bogus:1"} in the
        config file is a configuration error like any other: exit 2 and one
        line naming the file.  (Seen: first exit 1 with the whole usage text
        and "bad --port ..."; later exit 2 with "bad port 'bogus:1' (from the
        environment or the config file)", which names neither.)
        """
        self.assertRejected("port", self.shared["files"]["port"], "bogus:1")

    def test_invalidEndpointInEnvironment(self) -> None:
        """
        BRIDGE BUG when this fails: MCPBRIDGE_PORT=bogus:1 is an invalid
        environment variable: exit 2 and one line naming it, as for
        MCP_MAX_SESSIONS=lots.
        """
        self.assertRejected("env_port", "MCPBRIDGE_PORT", "bogus:1")


# ------------------------------------------------ environment variables ---

class EnvironmentPortTests(SharedBridgeTestCase):
    """No --port: MCP_PORT and MCP_BIND_HOST; and MCP_MAX_SESSIONS=1."""

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        bridge = start_bridge(stops, [PY, ENV_SERVER], FAST,
                              env={"MCP_MAX_SESSIONS": "1", "MCPBRIDGE_MAX_SESSIONS": "",
                                   "MCPBRIDGE_PORT": ""},
                              cls=EnvPortBridge)
        return {"bridge": bridge}

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.shared["bridge"]
        return bridge

    def test_portAndHostFromEnvironment(self) -> None:
        """It listens where MCP_PORT and MCP_BIND_HOST say, and logs which were used."""
        status, _, body = http_request(self.bridge.port, "GET", "/health")
        self.assertEqual(status, 200, body)
        log = self.bridge.current_log()
        self.assertIn(f"on tcp:{self.bridge.port}:interface={HOST} serving", log)
        lines = [line for line in log.splitlines() if "settings from the environment:" in line]
        self.assertEqual(len(lines), 1, log[-3000:])
        for name in ("MCP_PORT", "MCP_BIND_HOST", "MCP_MAX_SESSIONS"):
            self.assertIn(name, lines[0])

    def test_maxSessionsFromEnvironment(self) -> None:
        """MCP_MAX_SESSIONS=1: the second session gets 503; after DELETE one fits again."""
        first = open_session(self.bridge.port, None)
        status, headers, body = initialize_raw(self.bridge.port, None)
        self.assertEqual(status, 503, body)
        self.assertIn("retry-after", headers)
        self.assertEqual(error_of(body)["code"], SERVER_UNAVAILABLE)
        self.assertEqual(first.text("echo", text="still served"), "still served")
        self.assertEqual(first.delete(), 204)
        again = open_session(self.bridge.port, None)
        self.assertEqual(again.delete(), 204)


class PrecedenceTests(unittest.TestCase):
    """
    max-sessions set in the config file (3), the environment (2) and on the
    command line (1): command line > environment > config file, seen by
    how many sessions open before a 503.
    """

    def bridge(self, options: Sequence[str], env: Dict[str, str]) -> Bridge:
        tmp = tempfile.mkdtemp(prefix="mcpbridge-multi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        config = os.path.join(tmp, "servers.json")
        write_json(config, {"mcpServers": {"named": env_entry()},
                            "options": {"max-sessions": 3}})
        bridge = Bridge([PY, ENV_SERVER], [*FAST, "--config", config, *options],
                        {"MCPBRIDGE_MAX_SESSIONS": "", **env}).start()
        self.addCleanup(bridge.stop)
        return bridge

    def test_commandLineWins(self) -> None:
        bridge = self.bridge(["--max-sessions", "1"], {"MCP_MAX_SESSIONS": "2"})
        self.assertEqual(count_sessions(self, bridge.port), 1)
        self.assertEqual(count_sessions(self, bridge.port, "named"), 1)

    def test_environmentBeatsConfigFile(self) -> None:
        bridge = self.bridge([], {"MCP_MAX_SESSIONS": "2"})
        self.assertEqual(count_sessions(self, bridge.port), 2)
        self.assertEqual(count_sessions(self, bridge.port, "named"), 2)

    def test_configFileBeatsDefault(self) -> None:
        bridge = self.bridge([], {"MCP_MAX_SESSIONS": ""})
        self.assertEqual(count_sessions(self, bridge.port), 3)
        self.assertEqual(count_sessions(self, bridge.port, "named"), 3)


# -------------------------------------------------------------- SIGHUP ---

class ReloadTests(SharedBridgeTestCase):
    """
    One SIGHUP that adds "new", removes "gone", changes "changed" (args and
    env) and leaves "keep" alone, with a session open on each old server.
    """

    @classmethod
    def setUpShared(cls, stops: List[Any]) -> Dict[str, Any]:
        tmp = temp_dir(stops)
        config = os.path.join(tmp, "servers.json")
        write_json(config, {"mcpServers": {
            "keep": env_entry(),
            "gone": env_entry(),
            "changed": env_entry(env={"MCPB_VERSION": "old"})}})
        bridge = start_bridge(stops, [], [*FAST, "--config", config])
        sessions = {name: open_session(bridge.port, name) for name in ("keep", "gone", "changed")}
        before = {name: s.info() for name, s in sessions.items()}
        gone = snapshot([before["gone"]["pid"]])
        assert gone, "the child of 'gone' is not running"
        write_json(config, {"mcpServers": {
            "keep": env_entry(),
            "changed": env_entry("--new", env={"MCPB_VERSION": "new"}),
            "new": env_entry()}})
        send_sighup(bridge)
        reloaded = wait_for_log(bridge, "config reloaded")
        assert reloaded, f"no 'config reloaded' in the log:\n{bridge.current_log()[-3000:]}"
        return {"bridge": bridge, "sessions": sessions, "before": before, "gone": gone}

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.shared["bridge"]
        return bridge

    def test_reportLogged(self) -> None:
        lines = [line for line in self.bridge.current_log().splitlines()
                 if "config reloaded:" in line]
        self.assertEqual(len(lines), 1)
        for part in ("added new", "removed gone", "changed changed", "unchanged keep"):
            self.assertIn(part, lines[0])

    def test_addedServerServed(self) -> None:
        session = open_session(self.bridge.port, "new")
        self.assertEqual(session.text("echo", text="hello new"), "hello new")
        self.assertIsNotNone(server_status(self.bridge.port, "new"))
        self.assertEqual(session.delete(), 204)

    def test_removedServerIs404AndItsChildStops(self) -> None:
        status, _, body = initialize_raw(self.bridge.port, "gone")
        self.assertEqual(status, 404, body)
        old = self.shared["sessions"]["gone"]
        status, answer = old.call_raw("echo", text="anyone?")
        self.assertEqual(status, 404, answer)
        self.assertIsNone(server_status(self.bridge.port, "gone"))
        self.assertNotIn("gone", json.loads(http_request(self.bridge.port, "GET",
                                                         "/health")[2])["servers"])
        gone = self.shared["gone"]
        self.assertTrue(wait_until(lambda: not still_alive(gone), GONE_TIMEOUT),
                        f"the child of the removed server is still running: {gone}")

    def test_unchangedServerKeepsItsSessionAndChild(self) -> None:
        session = self.shared["sessions"]["keep"]
        pid = self.shared["before"]["keep"]["pid"]
        self.assertEqual(session.info()["pid"], pid)
        self.assertEqual(session.text("echo", text="kept"), "kept")
        entry = server_status(self.bridge.port, "keep")
        assert entry is not None
        self.assertIn(pid, child_pids(entry))
        self.assertTrue(process_alive(pid))

    def test_changedServerOldSessionKeepsOldChild(self) -> None:
        session = self.shared["sessions"]["changed"]
        before = self.shared["before"]["changed"]
        info = session.info()
        self.assertEqual(info["pid"], before["pid"])
        self.assertEqual(info["argv"], [])
        self.assertEqual(info["env"].get("MCPB_VERSION"), "old")

    def test_changedServerNewSessionRunsNewCommand(self) -> None:
        session = open_session(self.bridge.port, "changed")
        info = session.info()
        self.assertNotEqual(info["pid"], self.shared["before"]["changed"]["pid"])
        self.assertEqual(info["argv"], ["--new"])
        self.assertEqual(info["env"].get("MCPB_VERSION"), "new")
        entry = server_status(self.bridge.port, "changed")
        assert entry is not None
        self.assertIn(info["pid"], child_pids(entry))
        self.assertIn(self.shared["before"]["changed"]["pid"], child_pids(entry))
        self.assertEqual(session.delete(), 204)


class ReloadRejectedTests(unittest.TestCase):
    """A config file with an error is rejected whole on SIGHUP."""

    def setUp(self) -> None:
        tmp = tempfile.mkdtemp(prefix="mcpbridge-multi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.config = os.path.join(tmp, "servers.json")
        write_json(self.config, {"mcpServers": {"one": env_entry(), "two": env_entry()}})
        self.bridge = Bridge(DEMO, [*FAST, "--config", self.config]).start()
        self.addCleanup(self.bridge.stop)
        self.sessions = {name: open_session(self.bridge.port, name)
                         for name in (None, "one", "two")}
        self.pids = {"one": self.sessions["one"].info()["pid"],
                     "two": self.sessions["two"].info()["pid"],
                     None: self.sessions[None].call("whoami")["structuredContent"]["pid"]}

    def reloadRejected(self) -> str:
        send_sighup(self.bridge)
        self.assertTrue(wait_for_log(self.bridge, "config reload rejected"),
                        self.bridge.current_log()[-3000:])
        lines = [line for line in self.bridge.current_log().splitlines()
                 if "config reload rejected" in line]
        self.assertEqual(len(lines), 1)
        self.assertIn(self.config, lines[0])
        self.assertNotIn("config reloaded", self.bridge.current_log())
        return lines[0]

    def assertEverythingStays(self) -> None:
        self.assertEqual({e["name"] for e in get_status(self.bridge.port)["servers"]},
                         {None, "one", "two"})
        for name in ("one", "two"):
            self.assertEqual(self.sessions[name].info()["pid"], self.pids[name])
            fresh = open_session(self.bridge.port, name)
            self.assertEqual(fresh.text("echo", text="new session"), "new session")
            fresh.delete()
        self.assertEqual(self.sessions[None].call("whoami")["structuredContent"]["pid"],
                         self.pids[None])

    def test_invalidJSONRejected(self) -> None:
        write_text(self.config, '{"mcpServers": {"one": ')
        line = self.reloadRejected()
        self.assertIn("invalid JSON", line)
        self.assertIn("#error]", line)
        self.assertEverythingStays()

    def test_oneBadEntryRejectsTheWholeFile(self) -> None:
        """A new valid server beside an invalid one is not added either."""
        write_json(self.config, {"mcpServers": {
            "one": env_entry(), "three": env_entry(),
            "bad": {"command": PY, "args": "x"}}})
        line = self.reloadRejected()
        self.assertIn("'args'", line)
        status, _, body = initialize_raw(self.bridge.port, "three")
        self.assertEqual(status, 404, body)
        self.assertEverythingStays()


class ReloadOptionsTests(unittest.TestCase):
    """
    Top-level "options" of the config file on SIGHUP: a changed value
    applies to new sessions; a value taken out of the file falls back to
    the default (precedence: ... > config file > defaults).
    """

    def setUp(self) -> None:
        tmp = tempfile.mkdtemp(prefix="mcpbridge-multi-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.config = os.path.join(tmp, "servers.json")
        write_json(self.config, {"mcpServers": {"named": env_entry()},
                                 "options": {"max-sessions": 1}})
        self.bridge = Bridge([PY, ENV_SERVER], [*FAST, "--config", self.config],
                             {"MCP_MAX_SESSIONS": "", "MCPBRIDGE_MAX_SESSIONS": ""}).start()
        self.addCleanup(self.bridge.stop)
        self.reloads = 0
        self.assertEqual(count_sessions(self, self.bridge.port), 1)

    def reload(self, config: Dict[str, Any]) -> None:
        write_json(self.config, config)
        self.reloads += 1
        send_sighup(self.bridge)
        self.assertTrue(wait_for_log(self.bridge, "config reloaded", self.reloads),
                        self.bridge.current_log()[-3000:])

    def test_changedOptionApplies(self) -> None:
        self.reload({"mcpServers": {"named": env_entry()}, "options": {"max-sessions": 2}})
        self.assertEqual(count_sessions(self, self.bridge.port), 2)
        self.assertEqual(count_sessions(self, self.bridge.port, "named"), 2)

    def test_removedOptionFallsBackToDefault(self) -> None:
        """
        BRIDGE BUG when this fails: after "max-sessions" is taken out of the
        file's "options" and SIGHUP, the old file value stays in force
        (Options.resolve only overwrites options the environment or the new
        file set) instead of the default of 100.
        """
        self.reload({"mcpServers": {"named": env_entry()}, "options": {"max-sessions": 2}})
        self.assertEqual(count_sessions(self, self.bridge.port), 2)
        self.reload({"mcpServers": {"named": env_entry()}})
        opened = count_sessions_upto(self.bridge.port, None, 4)
        self.assertEqual(opened, 4, f"only {opened} sessions before a 503: the removed "
                                    f"file option max-sessions is still in force, not the "
                                    f"default 100")


# ---------------------------------------------------------------- logs ---

def parse_json_lines(testcase: unittest.TestCase, text: str) -> List[Dict[str, Any]]:
    """Every non-empty line of C{text} as a JSON object with the four fields."""
    records = []
    lines = [line for line in text.splitlines() if line.strip()]
    testcase.assertTrue(lines, "the log is empty")
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            testcase.fail(f"log line {number} is not JSON: {line!r}")
        testcase.assertIsInstance(record, dict, line)
        for key in ("time", "level", "logger", "message"):
            testcase.assertIn(key, record, line)
            testcase.assertIsInstance(record[key], str, line)
        testcase.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        testcase.assertIn(record["level"], ("debug", "info", "warn", "error", "critical"), line)
        records.append(record)
    return records


class LogTests(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="mcpbridge-multi-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self, options: Sequence[str], env: Optional[Dict[str, str]] = None) -> Bridge:
        bridge = Bridge(DEMO, [*FAST, *options],
                        {"LOG_FILE": "", "MCPBRIDGE_LOG_FILE": "", "MCPBRIDGE_LOG_FORMAT": "",
                         **(env or {})}).start()
        self.addCleanup(bridge.stop)
        return bridge

    def exercise(self, bridge: Bridge) -> None:
        """Sessions on two servers, a tool call and an error, then stop."""
        for name in (None, "named"):
            session = open_session(bridge.port, name)
            session.text("echo", text="log me")
            session.delete()
        initialize_raw(bridge.port, "nope")

    def test_jsonFormat(self) -> None:
        """
        --log-format json: every line the bridge writes (startup, a config
        warning logged before logging starts, children's stderr, shutdown)
        is one JSON object with time, level, logger and message.
        """
        config = os.path.join(self.tmp, "servers.json")
        write_json(config, {"mcpServers": {
            "named": {"command": PY, "args": ["-m", "mcpbridge.demo_server"],
                      "color": "blue"}}})
        bridge = self.start(["--log-format", "json", "--config", config])
        self.exercise(bridge)
        records = parse_json_lines(self, bridge.stop())
        messages = [r["message"] for r in records]
        self.assertTrue(any(m.startswith("mcpbridge ") and " serving " in m for m in messages),
                        messages[:5])
        warnings = [r for r in records if "unknown key 'color' ignored" in r["message"]]
        self.assertEqual(len(warnings), 1, messages)
        self.assertEqual(warnings[0]["level"], "warn")
        self.assertEqual(warnings[0]["logger"], "mcpbridge.tap")
        self.assertTrue(any("stderr" in m and "mcpbridge-demo" in m for m in messages),
                        "no child stderr line in the log")
        self.assertTrue(any(r["logger"].startswith("mcpbridge.sessions") for r in records))

    def test_logFile(self) -> None:
        """--log-file PATH: the log goes there, nothing to standard output."""
        path = os.path.join(self.tmp, "bridge.log")
        bridge = self.start(["--log-file", path, "--named-server",
                             f"named={PY} -m mcpbridge.demo_server"])
        self.exercise(bridge)
        stdout = bridge.stop()
        self.assertEqual(stdout.strip(), "", "the log went to standard output too")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(f"on tcp:{bridge.port}:interface={HOST} serving", text)
        self.assertIn("[mcpbridge.sessions.Session#info] session ", text)
        self.assertIn("Server Shut Down.", text)

    def test_logFileFromEnvironment(self) -> None:
        """LOG_FILE=PATH (with --log-format json): JSON lines in that file."""
        path = os.path.join(self.tmp, "from-env.log")
        bridge = self.start(["--log-format", "json", "--named-server",
                             f"named={PY} -m mcpbridge.demo_server"], {"LOG_FILE": path})
        self.exercise(bridge)
        stdout = bridge.stop()
        self.assertEqual(stdout.strip(), "", "the log went to standard output too")
        with open(path, encoding="utf-8") as f:
            records = parse_json_lines(self, f.read())
        messages = [r["message"] for r in records]
        self.assertTrue(any(f"on tcp:{bridge.port}:interface={HOST} serving" in m
                            for m in messages), messages[:5])
        self.assertTrue(any("LOG_FILE" in m for m in messages
                            if m.startswith("settings from the environment")), messages[:5])


if __name__ == "__main__":
    unittest.main()
