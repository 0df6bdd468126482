"""
Helpers for tests that run a real mcpbridge (``twistd -n mcpbridge``) as a
subprocess and talk to it over HTTP on 127.0.0.1.

Usage, as a context manager::

    with Bridge([sys.executable, FEATURE_SERVER]) as bridge:
        ...  # bridge.url is http://127.0.0.1:PORT/mcp
    print(bridge.log)

or with ``addCleanup`` (works with both trial and pytest)::

    bridge = Bridge([...]).start()
    self.addCleanup(bridge.stop)

Everything is bounded: waiting for ``/health``, stopping (SIGTERM, then
SIGKILL of that one pid only), and every HTTP call made here.  The bridge's
output goes to a temporary file, so a chatty bridge can never block on a
full pipe; :meth:`Bridge.stop` returns it.

:func:`descendants` lists the live (non-zombie) processes below a pid by
walking ``/proc``, for asserting that a bridge leaves no child behind.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

#: The project root (the directory holding ``mcpbridge/`` and ``tests/``).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The bin directory of the interpreter running the tests (the venv's).
BIN = os.path.dirname(os.path.abspath(sys.executable))
TWISTD = os.path.join(BIN, "twistd")
#: The official-SDK test server and clients.
FEATURE_SERVER = os.path.join(ROOT, "tests", "servers", "feature_server.py")
PYTHON_CLIENT = os.path.join(ROOT, "tests", "clients", "python_client.py")
TS_CLIENT = os.path.join(ROOT, "tests", "clients", "ts_client.mjs")

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """
    The environment for a subprocess of the tests: ours, with the project
    root first on ``PYTHONPATH`` so it imports this very ``mcpbridge``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """
    Poll C{predicate} until it returns something true, or C{timeout} passes.

    @return: the last value of C{predicate} (false on timeout).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------- /proc ---

class ProcStat(NamedTuple):
    """The fields of /proc/PID/stat the tests and the benchmark read."""

    state: str
    ppid: int
    ticks: int  # utime + stime, in clock ticks
    starttime: int


def proc_stat(pid: int) -> Optional[ProcStat]:
    """The /proc/PID/stat of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or ')'.
    rest = data[data.rindex(")") + 2:].split()
    return ProcStat(rest[0], int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19]))


def process_alive(pid: int, starttime: Optional[int] = None) -> bool:
    """
    Whether C{pid} names a live process that is not a zombie (and, given
    C{starttime} from /proc, the same process rather than a reused pid).
    """
    stat = proc_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return starttime is None or stat.starttime == starttime


def descendants(pid: int) -> List[int]:
    """The live, non-zombie processes below C{pid} (children, grandchildren...)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is None or stat.state in ("Z", "X"):
            continue
        children.setdefault(stat.ppid, []).append(int(entry))
    found: List[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return sorted(found)


def snapshot(pids: Iterable[int]) -> List[Tuple[int, int]]:
    """(pid, starttime) pairs, to check later with L{still_alive}."""
    out = []
    for p in pids:
        stat = proc_stat(p)
        if stat is not None:
            out.append((p, stat.starttime))
    return out


def still_alive(snap: Sequence[Tuple[int, int]]) -> List[int]:
    """The pids of a L{snapshot} whose very process is still alive."""
    return [p for (p, start) in snap if process_alive(p, start)]


# ---------------------------------------------------------------- HTTP ---

def stop_piped(proc: "subprocess.Popen[bytes]", timeout: float) -> None:
    """
    Kill a child driven over its pipes (if it still runs), reap it, and
    close its pipes.
    """
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def text_of(response: Dict[str, Any]) -> str:
    """
    The text of a tool result with one text content.
    """
    content = response["result"]["content"]
    assert len(content) == 1 and content[0]["type"] == "text", content
    text: str = content[0]["text"]
    return text


def http_request(port: int, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None,
                 timeout: float = 10.0, tls: Optional[ssl.SSLContext] = None,
                 ) -> Tuple[int, Dict[str, str], bytes]:
    """
    One bounded HTTP request to 127.0.0.1:C{port} (HTTPS with C{tls}); the
    whole body is read.

    @return: (status, lower-cased headers, body).
    """
    conn = (http.client.HTTPSConnection(HOST, port, timeout=timeout, context=tls)
            if tls is not None else http.client.HTTPConnection(HOST, port, timeout=timeout))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def read_sse_event(response: http.client.HTTPResponse, deadline: float) -> Optional[Dict[str, Any]]:
    """
    The next SSE event of C{response} as C{{"event", "id", "data",
    "retry"}}, or L{None} at the end of the stream (or a broken connection); comments are skipped.  Each read is
    bounded by the connection's socket timeout.

    @raise TimeoutError: when C{deadline} (a C{time.monotonic()} value)
        passes first.
    """
    event: Dict[str, Any] = {"event": "message", "id": None, "data": [], "retry": None}
    seen = False
    while time.monotonic() < deadline:
        try:
            line = response.readline()
        except (ConnectionError, http.client.IncompleteRead):
            line = b""
        if not line:
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            if seen:
                event["data"] = "\n".join(event["data"])
                return event
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.decode("utf-8").partition(":")
        value = value[1:] if value.startswith(" ") else value
        seen = True
        if name == "data":
            event["data"].append(value)
        elif name in ("event", "id", "retry"):
            event[name] = value
    raise TimeoutError("no complete SSE event before the deadline")


# -------------------------------------------------------------- Bridge ---

#: prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int) -> bool:
    """
    Linux's prctl(2) with one argument.

    @return: whether it worked (never, off Linux).
    """
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    except Exception:
        return False


def die_with_parent() -> None:
    """
    In a forked bridge, before exec: ask Linux to SIGTERM it if the
    process that started it dies, so a killed test or benchmark run leaves
    no bridge behind (the bridge then stops its own children).
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class BridgeError(Exception):
    """The bridge did not start (its log is in the message)."""


class Bridge:
    """
    A real mcpbridge under twistd, listening on a free 127.0.0.1 port.

    @ivar command: the MCP server command line the bridge runs per session.
    @ivar options: extra mcpbridge options (before the C{--}).
    @ivar port: the TCP port; C{url} is C{http://127.0.0.1:PORT/mcp}.
    @ivar endpoint: the --port given, with C{{port}} and C{{host}} filled in
        (default C{tcp:{port}:interface={host}}).
    @ivar tls: the client TLS context, when the bridge serves HTTPS (its
        C{url} is then C{https://}).
    @ivar pass_fds: descriptors of ours the bridge process inherits (at the
        same numbers), e.g. a listening socket for socket activation.
    @ivar log: the bridge's output, once stopped.
    """

    def __init__(self, command: Sequence[str], options: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, ready_timeout: float = 20.0,
                 stop_timeout: float = 15.0, endpoint: str = "tcp:{port}:interface={host}",
                 tls: Optional[ssl.SSLContext] = None, pass_fds: Sequence[int] = ()) -> None:
        self.command = list(command)
        self.pass_fds = tuple(pass_fds)
        self.options = list(options)
        self.endpoint = endpoint
        self.tls = tls
        self.env = child_env(env)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log: Optional[str] = None
        self.returncode: Optional[int] = None
        self._logfile: Any = None
        self._workdir: Optional[tempfile.TemporaryDirectory] = None

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def base(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the bridge was not started"
        return self.proc.pid

    def argv(self) -> List[str]:
        return [TWISTD, "-n", "--pidfile=", "mcpbridge",
                "--port", self.endpoint.format(port=self.port, host=HOST),
                *self.options, "--", *self.command]

    def start(self, healthy: bool = True) -> "Bridge":
        """
        Start twistd and wait (bounded) until C{GET /health} answers 200 (or
        answers at all, when not C{healthy}: a bridge whose server cannot
        start says so with 503).

        @raise BridgeError: if it exits or is not healthy in time; the
            process is stopped first.
        """
        last: Any = None
        for _attempt in range(3):  # a port taken between free_port() and bind
            self.port = free_port()
            self.returncode = None
            self.log = None
            self._workdir = tempfile.TemporaryDirectory(prefix="mcpbridge-test-")
            self._logfile = open(os.path.join(self._workdir.name, "bridge.log"), "w+b")
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=self._logfile,
                stderr=subprocess.STDOUT, env=self.env, cwd=self._workdir.name,
                preexec_fn=die_with_parent, pass_fds=self.pass_fds)
            deadline = time.monotonic() + self.ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status, _, body = http_request(self.port, "GET", "/health", timeout=2.0,
                                                   tls=self.tls)
                    if status == 200 or not healthy:
                        return self
                    last = (status, body)
                except OSError as e:
                    last = e
                time.sleep(0.1)
            log = self.stop()
            if "Address already in use" in log or "CannotListenError" in log:
                continue
            raise BridgeError(f"the bridge did not become healthy within "
                              f"{self.ready_timeout} s (last: {last!r}); its log:\n{log}")
        raise BridgeError(f"no free port for the bridge after 3 attempts: {last!r}")

    def health(self, timeout: float = 5.0) -> Dict[str, Any]:
        status, _, body = http_request(self.port, "GET", "/health", timeout=timeout,
                                       tls=self.tls)
        result: Dict[str, Any] = json.loads(body)
        result["_status"] = status
        return result

    def children(self) -> List[int]:
        """The live processes below the bridge (its MCP servers and theirs)."""
        return descendants(self.pid)

    def current_log(self) -> str:
        if self._logfile is None:
            return self.log or ""
        self._logfile.flush()
        with open(self._logfile.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> str:
        """
        SIGTERM the bridge, wait (bounded) for it, SIGKILL that pid only if it
        is still there; idempotent.

        @return: everything the bridge wrote.
        """
        proc = self.proc
        if proc is not None and self.returncode is None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            self.returncode = proc.returncode
        if self._logfile is not None:
            self.log = self.current_log()
            self._logfile.close()
            self._logfile = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return self.log or ""

    def __enter__(self) -> "Bridge":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_json(argv: Sequence[str], timeout: float = 60.0,
             env: Optional[Dict[str, str]] = None,
             on_pause: Optional[Callable[[Any], None]] = None) -> Tuple[int, Any, str, str]:
    """
    Run a client script that prints one JSON object on its last stdout line.

    With C{on_pause}, the script gets C{MCPBRIDGE_PAUSE=<path>}; when it
    writes C{<path>.ready} (JSON) it waits for C{<path>.go}, and in between
    C{on_pause} is called with that JSON (see C{python_client.pause_point}).

    @return: (exit status, the parsed object or None, stdout, stderr).
    @raise AssertionError: when it does not finish within C{timeout}, or
        never reaches the pause point.
    """
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="mcpbridge-client-") as tmp:
        extra = dict(env or {})
        pause = os.path.join(tmp, "pause")
        if on_pause is not None:
            extra["MCPBRIDGE_PAUSE"] = pause
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out_f,
                                    stderr=err_f, env=child_env(extra), cwd=ROOT)
        try:
            if on_pause is not None:
                ready = wait_until(lambda: os.path.exists(pause + ".ready") or
                                   proc.poll() is not None,
                                   max(0.0, deadline - time.monotonic()))
                if ready and os.path.exists(pause + ".ready"):
                    try:
                        with open(pause + ".ready") as f:
                            on_pause(json.load(f))
                    finally:
                        open(pause + ".go", "w").close()
                elif proc.poll() is None:
                    raise subprocess.TimeoutExpired(argv, timeout)
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError(
                f"{argv!r} did not finish within {timeout} s\nstdout: {_read(out_path)}"
                f"\nstderr: {_read(err_path)[-4000:]}")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            raise
        stdout, stderr = _read(out_path), _read(err_path)
    result = None
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = None
    return proc.returncode, result, stdout, stderr


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


class BridgeTestCase(unittest.TestCase):
    """
    Start bridges that are stopped, and checked for leaks, at cleanup.

    @cvar bridge_options: options every bridge of the class gets first.
    """

    bridge_options: Sequence[str] = ()
    #: Seconds a bridge's processes get to be gone after it stopped.
    gone_timeout = 10.0

    def start_bridge(self, command: Sequence[str], options: Sequence[str] = (),
                     check_leaks: bool = True, **kw: Any) -> Bridge:
        """
        Start a bridge (C{kw} as for L{Bridge}: env, endpoint, tls, ...).
        """
        bridge = Bridge(command, [*self.bridge_options, *options], **kw).start()
        self.addCleanup(self._stop, bridge, check_leaks)
        return bridge

    def wait_for_children(self, bridge: Bridge, count: int, what: str,
                          timeout: float = 10.0) -> List[int]:
        """
        Wait (bounded) until exactly C{count} live processes are below
        C{bridge}; fail, saying C{what} was expected, if they never are.

        @return: their pids.
        """
        # Wrapped in a tuple, so that "no children" counts as found.
        found = wait_until(lambda: (lambda c: (c,) if len(c) == count else None)(
            bridge.children()), timeout)
        self.assertTrue(found, f"expected {what}, got {bridge.children()}")
        pids: List[int] = found[0]
        return pids

    def assert_stops_cleanly(self, bridge: Bridge, pids: Iterable[int],
                             within: float = 8.0) -> str:
        """
        SIGTERM C{bridge} (L{Bridge.stop}) and check that it exited by
        itself (status 0 or -15) within C{within} seconds and that none of
        C{pids} (processes that were below it) outlived it.

        @return: the bridge's log.
        """
        snap = snapshot(pids)
        started = time.monotonic()
        log = bridge.stop()
        took = time.monotonic() - started
        self.assertLess(took, within, log[-3000:])
        self.assertIn(bridge.returncode, (0, -15), log[-3000:])
        self.assertEqual(still_alive(snap), [],
                         f"alive after the bridge exited: {still_alive(snap)}\n{log[-3000:]}")
        return log

    def _stop(self, bridge: Bridge, check_leaks: bool) -> None:
        if bridge.returncode is not None:
            return
        snap = snapshot(bridge.children())
        log = bridge.stop()
        if check_leaks:
            left = wait_until(lambda: not still_alive(snap), self.gone_timeout)
            self.assertTrue(left, f"processes {still_alive(snap)} of the bridge outlived it; "
                                  f"its log:\n{log[-3000:]}")
