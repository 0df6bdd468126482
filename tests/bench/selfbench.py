#!/usr/bin/env python3
"""
selfbench: a self-contained benchmark of mcpbridge (needs only the project's
.venv; the load generator is standard-library Python).

Run from a fresh clone, after ``tests/run`` has created ``.venv``::

    .venv/bin/python tests/bench/selfbench.py            # full run, about 1-2 minutes
    .venv/bin/python tests/bench/selfbench.py --quick    # small counts, < 30 s
    .venv/bin/python tests/bench/selfbench.py --json out.json --bridge-args "--log-level warn"

It starts one bridge, with ``tests/bench/echo_server.py`` as the stdio MCP
server (one child per session, 24 warm spares)::

    .venv/bin/twistd -n --pidfile= mcpbridge --port tcp:PORT:interface=127.0.0.1 \\
        --spares 24 --max-sessions N [--bridge-args ...] -- .venv/bin/python tests/bench/echo_server.py

``--max-sessions N`` is added because one run opens more sessions than the
bridge's default limit of 100 (N is what the run needs, plus a margin); a
``--max-sessions`` in ``--bridge-args`` comes later and wins.

Then it runs the cases below, prints a Markdown table (plus the machine, the
exact bridge command and the date), writes every raw figure as JSON with
``--json FILE``, and stops everything it started.  Before each timed case it
waits (at most 15 s) until the bridge and its children are quiet, e.g. until
the spare children have started.

The cases run in the order a), direct, c), e), b), d), f): memory the bridge
freed after the throughput run or a large result would be reused by new
sessions and hide their cost in e).  b) therefore runs with the 120 sessions
of c) and e) open (idle), which costs it nothing measurable.

What the cases measure, and how to read them:

a) sequential latency
    One session, one keep-alive connection, ``--latency-n`` ``tools/call
    echo`` requests one at a time (after ``--warmup`` unmeasured ones):
    p50/p99/mean in µs, from writing the request to reading the whole
    answer.  This is the time one request spends in the bridge plus the echo
    server plus the loopback network; compare it with *direct*.
direct
    The same echo calls written straight into a fresh ``echo_server.py``'s
    stdin and read from its stdout, with no bridge and no HTTP: the floor.
    ``a) minus direct`` is roughly what the bridge adds to each request.
b) throughput
    ``--conns`` keep-alive connections spread over ``--sessions`` sessions,
    each connection with one request in flight at all times (closed loop),
    run by ``--procs`` worker processes.  1 s of warm-up is not counted, then
    ``--duration`` seconds are: requests per second, p50/p99 latency, and
    the bridge's CPU time per request (utime+stime of the bridge process from
    /proc over the measured window, divided by the requests).  CPU µs per
    request is the figure that depends least on the machine and on the load
    generator.  The load generator's own CPU is reported too: if its busiest
    worker is near 100 % of a core, the client, not the bridge, was the
    limit; on a 2-vCPU machine the bridge, its children and the load
    generator share the same two cores, so req/s is a lower bound.
c) session setup
    ``--setup-n`` new sessions one after another: time from the initialize
    POST to its answer (p50/max ms; fast while warm spares last), and
    ``whoami`` in each session: the number of distinct child pids should
    equal the number of sessions (one child per session).
d) large result
    One ``tools/call blob`` of ``--blob-bytes`` (10 000 000) bytes: latency,
    whether the text came back whole, and how much the bridge's peak
    resident memory (VmHWM) grew, in MB and as a multiple of the payload
    (1x means the bridge held one copy of the result at its peak).  The peak
    is reset (``/proc/PID/clear_refs``) before the call when the kernel
    allows it, so the growth is that of this call.  Then one blob of
    ``--big-mb`` MB (50; 0 skips it): does it work, and how long it takes.
e) idle-session memory
    ``--idle-sessions`` more sessions, initialized and then left idle; 2 s
    later the growth of the bridge's own VmRSS (children not included),
    divided by the number of sessions, in KB.  (Each session also costs one
    echo_server child, which is not counted here.)
f) leaks
    Every session the run opened is DELETEd; 3 s later, how many of the
    children that served those sessions are still alive (warm spares are not
    counted: they belong to no session).  Then SIGTERM to the bridge: the
    time it takes to exit (SIGKILL after 5 s, reported), and how many of all
    the children it ever had are still alive 3 s after it exited.  Finally
    selfbench checks that no process of the bridge is left and kills (by
    pid) any that is: "killed by selfbench".  All three counts should be 0.

Exit status: 0 when every case ran with no error and nothing leaked; 1 when a
request got a wrong answer (wrong id or text, an HTTP or JSON-RPC error, a
timeout) or a child was left behind; 2 when the bridge did not start or a
case could not run (with a one-line message on stderr).

Safety: everything listens and connects on 127.0.0.1 only; every loop is
bounded in count and time (``--max-seconds`` overall, default 600); only
processes this script started are signalled, by pid (SIGTERM, then SIGKILL
after 5 s); the bridge and its children are stopped on any failure (finally
and atexit), and the bridge gets SIGTERM from the kernel should this script
die (PR_SET_PDEATHSIG).  This script also makes itself a child subreaper, so
that a child the bridge leaves behind becomes its own and can be found and
killed.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import math
import multiprocessing
import os
import platform
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

JSON = Dict[str, Any]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Its process helpers (/proc, ports, prctl) are the tests' own, standard
# library only, imported whichever directory this runs from.
sys.path.insert(0, ROOT)
from tests.support import (  # noqa: E402
    PR_SET_CHILD_SUBREAPER, die_with_parent, free_port, prctl, proc_stat, process_alive)
ECHO_SERVER = os.path.join(HERE, "echo_server.py")
HOST = "127.0.0.1"
PROTOCOL_VERSION = "2025-11-25"
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Seconds a stopped process gets after SIGTERM before SIGKILL.
KILL_GRACE = 5.0
#: Seconds allowed for one ordinary request (blobs get more).
REQUEST_TIMEOUT = 20.0
#: Shortest window (s) over which CPU shares are computed from /proc clock ticks.
MIN_CPU_WINDOW = 0.5
#: Other processes' CPU (% of one core) above which a timed case is flagged as noisy.
NOISY_PERCENT = 25.0
#: Seconds to wait, after DELETE and after the bridge exits, before counting survivors.
LEAK_WAIT = 3.0

#: Counts of a full run, and of --quick (an explicit option overrides either).
FULL = {"latency_n": 2000, "warmup": 200, "conns": 32, "sessions": 8, "duration": 10.0,
        "tp_warmup": 1.0, "setup_n": 20, "blob_bytes": 10_000_000, "big_mb": 50,
        "idle_sessions": 100}
QUICK = {"latency_n": 200, "warmup": 50, "conns": 8, "sessions": 4, "duration": 2.0,
         "tp_warmup": 0.5, "setup_n": 5, "blob_bytes": 1_000_000, "big_mb": 5,
         "idle_sessions": 10}

#: Every case, in the order of the report (and of the JSON "cases").
CASES = ("latency", "direct", "throughput", "session_setup", "large_result",
         "idle_memory", "leaks")
CASE_TITLES = {"latency": "a) sequential latency", "direct": "direct (pipes, no HTTP)",
               "throughput": "b) throughput", "session_setup": "c) session setup",
               "large_result": "d) large result", "idle_memory": "e) idle-session memory",
               "leaks": "f) leaks"}


class BenchError(Exception):
    """A case (or the bridge) failed: the message is one line for the user."""


class ProtocolError(Exception):
    """An answer that is not what the protocol requires; C{kind} names it for counting."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# ------------------------------------------------------------ time budget ---

class Budget:
    """The overall time limit (--max-seconds): every wait is capped by it."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def cap(self, timeout: float) -> float:
        """C{timeout}, shortened to what is left; raise when nothing is."""
        left = self.left()
        if left <= 0:
            raise BenchError(f"the overall time limit (--max-seconds {self.seconds:g}) ran out")
        return min(timeout, left)


BUDGET = Budget(600.0)


def sleep_for(seconds: float) -> None:
    time.sleep(max(0.0, BUDGET.cap(seconds)))


# ----------------------------------------------------------------- /proc ---

def cpu_ticks(pid: int) -> int:
    stat = proc_stat(pid)
    return stat.ticks if stat is not None else 0


def status_kb(pid: int, name: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM); BenchError if missing."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/status: {e}") from e
    raise BenchError(f"/proc/{pid}/status has no {name}")


def children_of(pid: int) -> Dict[int, int]:
    """The live, non-zombie processes whose parent is C{pid}: {pid: starttime}."""
    found: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is not None and stat.ppid == pid and stat.state not in ("Z", "X"):
            found[int(entry)] = stat.starttime
    return found


def machine_ticks() -> Tuple[int, int]:
    """
    (busy, stolen) clock ticks of all CPUs, from the first line of
    /proc/stat: busy is user, nice, system, irq and softirq (not idle,
    iowait or steal); stolen is the time a hypervisor gave to other guests.
    """
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]] + [0] * 8
    return values[0] + values[1] + values[2] + values[5] + values[6], values[7]


class CpuWindow:
    """
    The machine's CPU use over a time window, and how much of it went to
    processes other than ours (the noise in a measurement).  C{known} gives
    the CPU ticks of the processes under test; this script's own CPU counts
    as ours too.
    """

    def __init__(self, known: Callable[[], int]) -> None:
        self.known = known
        self.start = time.monotonic()
        self.busy0, self.steal0 = machine_ticks()
        self.known0 = known()
        self.own0 = time.process_time()
        self.end: Optional[Tuple[float, Tuple[int, int], int, float]] = None

    def mark(self) -> None:
        """End the window now (L{stop} may come later)."""
        if self.end is None:
            self.end = (time.monotonic(), machine_ticks(), self.known(), time.process_time())

    def stop(self, extra_cpu_s: float = 0.0) -> JSON:
        """The figures; C{extra_cpu_s}: CPU used in the window by further processes of ours."""
        self.mark()
        assert self.end is not None
        now, (busy, steal), known, own = self.end
        seconds = max(1e-6, now - self.start)
        busy_s = (busy - self.busy0) / CLK_TCK
        ours_s = (known - self.known0) / CLK_TCK + own - self.own0 + extra_cpu_s
        if seconds < MIN_CPU_WINDOW:  # clock ticks are too coarse for a shorter window
            return {"machine_busy_percent": None, "other_cpu_percent_of_core": None,
                    "stolen_cpu_percent_of_core": None}
        return {"machine_busy_percent": 100 * busy_s / seconds / (os.cpu_count() or 1),
                "other_cpu_percent_of_core": max(0.0, 100 * (busy_s - ours_s) / seconds),
                "stolen_cpu_percent_of_core": 100 * (steal - self.steal0) / CLK_TCK / seconds}


def machine_info() -> JSON:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    model = value.strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpu_model": model or platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "mem_total_kb": mem_kb,
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "python_executable": sys.executable}


#: Processes this script started itself (the bridge, direct servers, workers).
OWN_PIDS: Set[int] = set()


# ------------------------------------------------------------------ HTTP ---

@dataclass
class HttpResponse:
    status: int
    headers: Dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes


class ResponseParser:
    """
    An incremental HTTP/1.1 response parser: bodies by Content-Length,
    chunked, or up to the end of the connection.  L{feed} bytes in, take
    complete responses out with L{poll}.
    """

    MAX_HEAD = 64 * 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._start()

    def _start(self) -> None:
        self._status = 0
        self._headers: Dict[str, str] = {}
        self._mode = "head"  # head, length, chunk-size, chunk-data, trailer, eof
        self._need = 0
        self._chunks: List[bytes] = []

    def feed(self, data: bytes) -> None:
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    @property
    def idle(self) -> bool:
        """Nothing of a next response has arrived."""
        return self._mode == "head" and self._pos >= len(self._buf)

    def poll(self) -> Optional[HttpResponse]:
        """The next complete response, or None when more bytes are needed."""
        response = self._poll()
        if self._pos and (self._pos >= len(self._buf) or self._pos > (1 << 20)):
            del self._buf[:self._pos]
            self._pos = 0
        return response

    def _truncated(self) -> None:
        if self._eof:
            raise ProtocolError("closed", f"connection closed in the middle of a response "
                                          f"({self._mode})")

    def _finish(self, body: bytes) -> HttpResponse:
        response = HttpResponse(self._status, self._headers, body)
        self._start()
        return response

    def _poll(self) -> Optional[HttpResponse]:
        buf = self._buf
        if self._mode == "head":
            end = buf.find(b"\r\n\r\n", self._pos)
            if end < 0:
                if len(buf) - self._pos > self.MAX_HEAD:
                    raise ProtocolError("bad_http", "response head larger than 64 KiB")
                if self._pos < len(buf):
                    self._truncated()
                elif self._eof:
                    raise ProtocolError("closed", "connection closed before an answer")
                return None
            lines = bytes(buf[self._pos:end]).decode("latin-1").split("\r\n")
            self._pos = end + 4
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError("bad_http", f"bad status line {lines[0]!r}")
            self._status = int(parts[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                self._headers[name] = (f"{self._headers[name]}, {value}"
                                       if name in self._headers else value)
            if 100 <= self._status < 200:
                self._start()  # an interim answer: the real one follows
                return self._poll()
            if self._status in (204, 304):
                return self._finish(b"")
            if "chunked" in self._headers.get("transfer-encoding", "").lower():
                self._mode = "chunk-size"
            elif "content-length" in self._headers:
                try:
                    self._need = int(self._headers["content-length"])
                except ValueError:
                    raise ProtocolError("bad_http", "bad Content-Length") from None
                self._mode = "length"
            else:
                self._mode = "eof"
        if self._mode == "length":
            if len(buf) - self._pos < self._need:
                self._truncated()
                return None
            body = bytes(buf[self._pos:self._pos + self._need])
            self._pos += self._need
            return self._finish(body)
        while self._mode in ("chunk-size", "chunk-data"):
            if self._mode == "chunk-size":
                end = buf.find(b"\r\n", self._pos)
                if end < 0:
                    self._truncated()
                    return None
                size_text = bytes(buf[self._pos:end]).split(b";")[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError("bad_http", f"bad chunk size {size_text!r}") from None
                self._pos = end + 2
                if size == 0:
                    self._mode = "trailer"
                else:
                    self._need, self._mode = size, "chunk-data"
            else:
                if len(buf) - self._pos < self._need + 2:
                    self._truncated()
                    return None
                self._chunks.append(bytes(buf[self._pos:self._pos + self._need]))
                if buf[self._pos + self._need:self._pos + self._need + 2] != b"\r\n":
                    raise ProtocolError("bad_http", "chunk not followed by CRLF")
                self._pos += self._need + 2
                self._mode = "chunk-size"
        if self._mode == "trailer":
            while True:  # trailer lines, up to the empty line; bounded by the buffer
                end = buf.find(b"\r\n", self._pos)
                if end < 0:
                    self._truncated()
                    return None
                empty = end == self._pos
                self._pos = end + 2
                if empty:
                    return self._finish(b"".join(self._chunks))
        if self._mode == "eof":
            if not self._eof:
                return None
            body = bytes(buf[self._pos:])
            self._pos = len(buf)
            return self._finish(body)
        return None


def sse_messages(body: bytes) -> List[Any]:
    """The JSON values in the C{data:} lines of an event stream (events without data skipped)."""
    messages: List[Any] = []
    data: List[bytes] = []
    for line in body.replace(b"\r\n", b"\n").split(b"\n") + [b""]:
        if not line:
            if data and b"".join(data).strip():
                messages.append(json.loads(b"\n".join(data)))
            data = []
        elif not line.startswith(b":"):
            name, _, value = line.partition(b":")
            if name == b"data":
                data.append(value[1:] if value.startswith(b" ") else value)
    return messages


def rpc_reply(response: HttpResponse, request_id: Any) -> JSON:
    """
    The JSON-RPC response carried by an HTTP answer (JSON, or an event stream
    whose events may come before it): the one with C{request_id} if there is
    one, else the first response found (the caller then sees the wrong id).

    @raise ProtocolError: an HTTP error, or no JSON-RPC response in the body.
    """
    if response.status != 200:
        raise ProtocolError(f"http_{response.status}", response.body[:200].decode("utf-8", "replace"))
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            value = json.loads(response.body)
            messages = value if isinstance(value, list) else [value]
        elif ctype == "text/event-stream":
            messages = sse_messages(response.body)
        else:
            raise ProtocolError("bad_content_type", ctype)
    except ValueError as e:
        raise ProtocolError("bad_json", str(e)) from None
    replies = [m for m in messages if isinstance(m, dict) and "method" not in m
               and ("result" in m or "error" in m)]
    for reply in replies:
        if reply.get("id") == request_id:
            return reply
    if replies:
        return replies[0]
    raise ProtocolError("no_reply", "no JSON-RPC response in the answer")


def reply_text(reply: JSON, request_id: Any) -> str:
    """The single text content of a tools/call reply; ProtocolError otherwise."""
    if reply.get("id") != request_id:
        raise ProtocolError("wrong_id", f"expected id {request_id!r}, got {reply.get('id')!r}")
    if "error" in reply:
        raise ProtocolError("rpc_error", json.dumps(reply["error"])[:200])
    try:
        text = reply["result"]["content"][0]["text"]
    except (KeyError, IndexError, TypeError):
        raise ProtocolError("bad_result", json.dumps(reply)[:200]) from None
    if not isinstance(text, str):
        raise ProtocolError("bad_result", "text is not a string")
    return text


def request_bytes(method: str, port: int, path: str = "/mcp",
                  headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HttpConnection:
    """A blocking keep-alive HTTP/1.1 connection to 127.0.0.1:PORT, every wait bounded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: Optional[socket.socket] = None
        self.parser = ResponseParser()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=BUDGET.cap(timeout))
        tune(sock)
        self.sock, self.parser = sock, ResponseParser()
        return sock

    def request(self, method: str, path: str = "/mcp", headers: Optional[Dict[str, str]] = None,
                body: Optional[bytes] = None, timeout: float = REQUEST_TIMEOUT) -> HttpResponse:
        """
        Send one request and read its whole answer.  A kept-alive connection
        that the bridge closed meanwhile is reopened once.

        @raise OSError: connection problems and timeouts (the connection is closed).
        @raise ProtocolError: a malformed answer.
        """
        data = request_bytes(method, self.port, path, headers, body)
        for attempt in (1, 2):
            reused = self.sock is not None
            deadline = time.monotonic() + BUDGET.cap(timeout)
            sock = self.sock or self._connect(timeout)
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.sendall(data)
                response = self._read(sock, deadline)
            except (ProtocolError, ConnectionError) as e:
                # A kept-alive connection the bridge had closed: nothing of an
                # answer arrived, so the request was not read; send it again.
                stale = isinstance(e, ConnectionError) or (
                    isinstance(e, ProtocolError) and e.kind == "closed")
                self.close()
                if stale and reused and attempt == 1 and self.parser.idle:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            if response.headers.get("connection", "").lower() == "close":
                self.close()
            return response
        raise AssertionError("unreachable")

    def _read(self, sock: socket.socket, deadline: float) -> HttpResponse:
        while True:  # bounded by the deadline
            response = self.parser.poll()
            if response is not None:
                return response
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete answer in time")
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if chunk:
                self.parser.feed(chunk)
            else:
                self.parser.feed_eof()


# ------------------------------------------------------------------- MCP ---

@dataclass
class Session:
    id: str
    version: str
    case: str  # which case opened it
    child_pid: Optional[int] = None

    def headers(self) -> Dict[str, str]:
        return {"Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
                "Mcp-Session-Id": self.id, "MCP-Protocol-Version": self.version}


def rpc_body(request_id: Any, method: str, params: Optional[JSON] = None) -> bytes:
    message: JSON = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


def echo_body(request_id: int, text: str) -> bytes:
    return rpc_body(request_id, "tools/call", {"name": "echo", "arguments": {"text": text}})


class McpClient:
    """Session-era MCP over one keep-alive connection (any number of sessions)."""

    def __init__(self, port: int) -> None:
        self.conn = HttpConnection(port)
        self.next_id = 1

    def close(self) -> None:
        self.conn.close()

    def initialize(self, case: str, timeout: float = REQUEST_TIMEOUT) -> Tuple[Session, float]:
        """
        initialize, then notifications/initialized.

        @return: the session and the seconds from the initialize POST to its answer.
        """
        body = rpc_body(0, "initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcpbridge-selfbench", "version": "1"}})
        headers = {"Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        start = time.perf_counter()
        response = self.conn.request("POST", headers=headers, body=body, timeout=timeout)
        elapsed = time.perf_counter() - start
        reply = rpc_reply(response, 0)
        session_id = response.headers.get("mcp-session-id")
        if not session_id:
            raise ProtocolError("no_session_id", "initialize answer without Mcp-Session-Id")
        if "result" not in reply:
            raise ProtocolError("rpc_error", json.dumps(reply.get("error"))[:200])
        session = Session(session_id, str(reply["result"].get("protocolVersion") or PROTOCOL_VERSION),
                          case)
        note = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
        answer = self.conn.request("POST", headers=session.headers(), body=note, timeout=timeout)
        if answer.status != 202:
            raise ProtocolError(f"http_{answer.status}", "notifications/initialized not accepted")
        return session, elapsed

    def call(self, session: Session, method: str, params: Optional[JSON] = None,
             timeout: float = REQUEST_TIMEOUT) -> Tuple[JSON, int]:
        """One request; returns (its JSON-RPC reply, the id it was sent with)."""
        request_id = self.next_id
        self.next_id += 1
        response = self.conn.request("POST", headers=session.headers(),
                                     body=rpc_body(request_id, method, params), timeout=timeout)
        return rpc_reply(response, request_id), request_id

    def tool_text(self, session: Session, name: str, arguments: JSON,
                  timeout: float = REQUEST_TIMEOUT) -> str:
        reply, request_id = self.call(session, "tools/call",
                                      {"name": name, "arguments": arguments}, timeout)
        return reply_text(reply, request_id)

    def whoami(self, session: Session) -> int:
        text = self.tool_text(session, "whoami", {})
        if not text.isdigit():
            raise ProtocolError("bad_result", f"whoami answered {text!r}")
        session.child_pid = int(text)
        return session.child_pid

    def delete(self, session: Session) -> int:
        response = self.conn.request("DELETE", headers=session.headers())
        return response.status


# ---------------------------------------------------------------- bridge ---

class BridgeProcess:
    """
    The bridge under test: twistd next to this Python, on a free loopback
    port, its output in a temporary log file.  It remembers every child it
    was seen with (pid and start time), to check later which are still alive.
    """

    def __init__(self, options: Sequence[str], server: Sequence[str]) -> None:
        self.twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.options = list(options)
        self.server = list(server)
        self.port = 0
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.seen: Dict[int, int] = {}  # every child ever seen: pid -> starttime
        self.workdir = tempfile.mkdtemp(prefix="mcpbridge-selfbench-")
        self.log_path = os.path.join(self.workdir, "bridge.log")
        self.exit_seconds: Optional[float] = None
        self.sigkill_needed = False

    def argv(self, port: int) -> List[str]:
        return [self.twistd, "-n", "--pidfile=", "mcpbridge",
                "--port", f"tcp:{port}:interface={HOST}", *self.options, "--", *self.server]

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the bridge is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until GET /ping answers 200; BenchError otherwise."""
        if not os.path.exists(self.twistd):
            raise BenchError(f"no twistd next to {sys.executable}: run tests/run to create .venv")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        last = ""
        for _attempt in range(3):  # the port may be taken between the probe and the bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self.argv(self.port), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                    start_new_session=True, preexec_fn=die_with_parent)
            OWN_PIDS.add(self.proc.pid)
            self.exit_seconds = None
            deadline = time.monotonic() + BUDGET.cap(timeout)
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status = HttpConnection(self.port).request("GET", "/ping", timeout=2.0).status
                    if status == 200:
                        return
                    last = f"GET /ping answered {status}"
                except (OSError, ProtocolError) as e:
                    last = f"GET /ping: {e}"
                time.sleep(0.1)
            self.stop()
            with open(self.log_path, "rb") as f:
                log_text = f.read().decode("utf-8", "replace")
            if "Address already in use" not in log_text and "CannotListenError" not in log_text:
                break
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and self.exit_seconds is None:  # it exited by itself
            lines = [line for line in self.read_log().splitlines() if line.strip()]
            why = f"it exited with status {code}" + (f": {lines[-1].strip()[:200]}" if lines else "")
        else:
            why = f"no answer within {timeout:g} s; last: {last or 'nothing'}"
        raise BenchError(f"the bridge did not start ({why}); its log: {self.log_path}")

    def scan(self) -> Dict[int, int]:
        """The bridge's live children now (also remembered in C{seen})."""
        if not self.running:
            return {}
        current = children_of(self.pid)
        self.seen.update(current)
        return current

    def tree_ticks(self) -> int:
        """CPU ticks of the bridge plus its current children."""
        return cpu_ticks(self.pid) + sum(cpu_ticks(p) for p in self.scan())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (that pid only); records the time to exit."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while time.monotonic() - start < KILL_GRACE:  # bounded
            if proc.poll() is not None:
                break
            self.scan()
            time.sleep(0.02)
        if proc.poll() is None:
            self.sigkill_needed = True
            proc.kill()
            proc.wait(timeout=10)
        self.exit_seconds = time.monotonic() - start

    def leftovers(self) -> Dict[int, int]:
        """
        Processes of the bridge still alive: children ever seen, plus orphans
        the kernel gave to this script as their subreaper.
        """
        left = {pid: st for pid, st in self.seen.items() if process_alive(pid, st)}
        if not self.running:
            for pid, st in children_of(os.getpid()).items():
                if pid not in OWN_PIDS:
                    left[pid] = st
        return left

    def read_log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def remove_log(self) -> None:
        for path in (self.log_path, self.workdir):
            try:
                (os.rmdir if path == self.workdir else os.remove)(path)
            except OSError:
                pass


def kill_pids(pids: Dict[int, int]) -> List[int]:
    """SIGTERM these processes (checked by start time), SIGKILL after 5 s; returns them."""
    signal_alive(pids, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline and any(process_alive(p, st) for p, st in pids.items()):
        time.sleep(0.05)
    signal_alive(pids, signal.SIGKILL)
    reap_orphans()
    return sorted(pids)


def signal_alive(pids: Dict[int, int], sig: int) -> None:
    """Send C{sig} to those of these processes (checked by start time) still alive."""
    for pid, st in pids.items():
        if process_alive(pid, st):
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def reap_orphans() -> None:
    """Reap exited orphans that were reparented to this script (bounded)."""
    for _ in range(10000):
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def settle(bridge: BridgeProcess, max_wait: float = 15.0, window: float = 0.5,
           threshold: float = 0.1) -> float:
    """
    Wait until the bridge and its children use less than C{threshold} of a
    core over C{window} seconds (spares starting, children stopping), at most
    C{max_wait} seconds.  Returns the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        before = bridge.tree_ticks()
        sleep_for(window)
        if (bridge.tree_ticks() - before) / CLK_TCK / window < threshold:
            break
    return round(time.monotonic() - start, 2)


# ------------------------------------------------------------- statistics ---

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(samples_us: Sequence[float]) -> JSON:
    ordered = sorted(samples_us)
    return {"n": len(ordered), "p50_us": percentile(ordered, 0.50),
            "p99_us": percentile(ordered, 0.99),
            "mean_us": sum(ordered) / len(ordered) if ordered else float("nan"),
            "max_us": ordered[-1] if ordered else float("nan")}


class ErrorCounter:
    """Errors by kind, with the first message of each kind; gives up after a run of failures."""

    def __init__(self, give_up_after: int = 20) -> None:
        self.kinds: Counter[str] = Counter()
        self.examples: Dict[str, str] = {}
        self.consecutive = 0
        self.give_up_after = give_up_after

    def ok(self) -> None:
        self.consecutive = 0

    def add(self, kind: str, detail: str) -> None:
        self.kinds[kind] += 1
        self.examples.setdefault(kind, detail[:300])
        self.consecutive += 1
        if self.consecutive >= self.give_up_after:
            raise BenchError(f"{self.consecutive} requests failed in a row (last: {detail[:200]})")

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def as_json(self) -> JSON:
        return {"count": self.total, "by_kind": dict(self.kinds), "examples": self.examples}


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        return exc.kind
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    return type(exc).__name__


# ----------------------------------------------------------------- cases ---

@dataclass
class Context:
    args: argparse.Namespace
    bridge: BridgeProcess
    client: McpClient  # one connection for setup work: sessions, whoami, DELETE
    sessions: List[Session] = field(default_factory=list)  # every session the run opened

    def open_session(self, case: str) -> Tuple[Session, float]:
        session, elapsed = self.client.initialize(case)
        self.sessions.append(session)
        return session, elapsed


def echo_loop(send: Callable[[int, str], Tuple[Any, str]], count: int, warmup: int,
              errors: ErrorCounter, prefix: str) -> List[float]:
    """
    C{warmup} + C{count} echo calls through C{send(id, text) -> (id, text)};
    returns the latencies (µs) of the last C{count}.
    """
    samples: List[float] = []
    for i in range(warmup + count):
        text = f"{prefix}-{i}"
        start = time.perf_counter_ns()
        try:
            got_id, got_text = send(i + 1, text)
        except (OSError, ProtocolError, ValueError) as e:
            errors.add(error_kind(e), str(e))
            continue
        elapsed_us = (time.perf_counter_ns() - start) / 1000
        if got_id != i + 1:
            errors.add("wrong_id", f"sent id {i + 1}, got {got_id!r}")
        elif got_text != text:
            errors.add("wrong_text", f"sent {text!r}, got {got_text[:100]!r}")
        else:
            errors.ok()
            if i >= warmup:
                samples.append(elapsed_us)
        if i % 100 == 0:
            BUDGET.cap(1.0)  # stop when the overall limit runs out
    return samples


def case_latency(ctx: Context) -> JSON:
    args = ctx.args
    session, _ = ctx.open_session("latency")
    ctx.client.whoami(session)
    settled = settle(ctx.bridge)
    conn = HttpConnection(ctx.bridge.port)
    headers = session.headers()
    errors = ErrorCounter()

    def send(request_id: int, text: str) -> Tuple[Any, str]:
        reply = rpc_reply(conn.request("POST", headers=headers,
                                       body=echo_body(request_id, text)), request_id)
        if reply.get("id") != request_id:
            return reply.get("id"), ""
        return request_id, reply_text(reply, request_id)

    try:
        window = CpuWindow(ctx.bridge.tree_ticks)
        samples = echo_loop(send, args.latency_n, args.warmup, errors, "latency")
        noise = window.stop()
    finally:
        conn.close()
    return {"calls": args.latency_n, "warmup": args.warmup, **latency_summary(samples),
            "errors": errors.as_json(), "settle_wait_s": settled, **noise,
            "samples_us": [round(s, 1) for s in samples]}


class PipeServer:
    """echo_server.py over pipes, with reads bounded by select()."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0, cwd=ROOT)
        OWN_PIDS.add(self.proc.pid)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.rfd, selectors.EVENT_READ)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view):]

    def read_line(self, timeout: float = REQUEST_TIMEOUT) -> bytes:
        deadline = time.monotonic() + BUDGET.cap(timeout)
        while True:  # bounded by the deadline
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise TimeoutError("the echo server did not answer in time")
            data = os.read(self.rfd, 1 << 16)
            if not data:
                raise ProtocolError("closed", "the echo server closed its stdout")
            self.buf += data

    def call(self, request_id: Any, method: str, params: Optional[JSON] = None) -> JSON:
        self.write(rpc_body(request_id, method, params) + b"\n")
        reply: JSON = json.loads(self.read_line())
        return reply

    def close(self) -> Optional[int]:
        """Close stdin, wait for the exit (kill after 5 s); the exit status."""
        self.sel.close()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            return self.proc.wait(timeout=KILL_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def case_direct(ctx: Context) -> JSON:
    args = ctx.args
    server = PipeServer([sys.executable, ECHO_SERVER])
    errors = ErrorCounter()
    try:
        start = time.perf_counter()
        init = server.call(0, "initialize", {"protocolVersion": PROTOCOL_VERSION,
                                             "capabilities": {}, "clientInfo": {"name": "x"}})
        spawn_init_ms = (time.perf_counter() - start) * 1000
        if "result" not in init:
            raise BenchError(f"direct: echo_server.py did not initialize: {init}")
        server.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')

        def send(request_id: int, text: str) -> Tuple[Any, str]:
            server.write(echo_body(request_id, text) + b"\n")
            reply = json.loads(server.read_line())
            if reply.get("id") != request_id:
                return reply.get("id"), ""
            return request_id, reply_text(reply, request_id)

        window = CpuWindow(lambda: cpu_ticks(server.proc.pid))
        samples = echo_loop(send, args.latency_n, args.warmup, errors, "direct")
        noise = window.stop()
    finally:
        status = server.close()
    return {"calls": args.latency_n, "warmup": args.warmup, **latency_summary(samples),
            "errors": errors.as_json(), "first_initialize_ms": round(spawn_init_ms, 2), **noise,
            "exit_status_on_eof": status, "samples_us": [round(s, 1) for s in samples]}


# -- b) throughput: the load generator workers

@dataclass
class WorkerPlan:
    index: int
    port: int
    conns: List[Tuple[int, str, str]]  # (connection number, session id, protocol version)
    t_start: float  # time.monotonic() values, shared by all workers (CLOCK_MONOTONIC)
    t_measure: float
    t_stop: float
    drain: float  # seconds after t_stop for answers still in flight
    request_timeout: float


class LoadConnection:
    """One connection of a worker: at most one request in flight."""

    def __init__(self, number: int, port: int, session: Session) -> None:
        self.number = number
        self.sock = socket.create_connection((HOST, port), timeout=10)
        tune(self.sock)
        self.sock.setblocking(False)
        self.parser = ResponseParser()
        head = request_bytes("POST", port, headers=session.headers())
        self.head = head[:-2]  # without the final CRLF: Content-Length follows
        self.seq = 0
        self.request_id = 0
        self.text = ""
        self.sent_ns = 0
        self.out = b""
        self.writing = False  # registered for EVENT_WRITE (a request only partly sent)
        self.busy = False
        self.dead = False

    def next_request(self) -> bytes:
        # Connections share sessions, and ids must be unique within a session.
        self.seq += 1
        self.request_id = self.number * 1_000_000_000 + self.seq
        self.text = f"c{self.number}-{self.seq}"
        body = echo_body(self.request_id, self.text)
        self.busy = True
        self.sent_ns = time.perf_counter_ns()
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def run_worker(plan: WorkerPlan, results: Connection) -> None:
    """A worker process: run its connections and send the counts back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        outcome = _drive_connections(plan)
    except BaseException as e:  # report, never hang the main process
        outcome = {"fatal": f"{type(e).__name__}: {e}"}
    results.send(outcome)
    results.close()


def _drive_connections(plan: WorkerPlan) -> JSON:
    sel = selectors.DefaultSelector()
    conns = []
    for number, session_id, version in plan.conns:
        conn = LoadConnection(number, plan.port, Session(session_id, version, "throughput"))
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    errors: Counter[str] = Counter()
    examples: Dict[str, str] = {}
    latencies: List[int] = []
    completed_total = 0
    cpu_start: Optional[float] = None
    cpu_end: Optional[float] = None
    timeout_ns = int(plan.request_timeout * 1e9)

    def fail(conn: LoadConnection, kind: str, detail: str) -> None:
        errors[kind] += 1
        examples.setdefault(kind, detail[:300])
        if not conn.dead:
            conn.dead = True
            conn.busy = False
            sel.unregister(conn.sock)
            conn.sock.close()

    def send(conn: LoadConnection, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            fail(conn, error_kind(e), str(e))
            return
        conn.out = data[sent:]
        if bool(conn.out) != conn.writing:  # re-register only when that changes
            conn.writing = bool(conn.out)
            sel.modify(conn.sock, selectors.EVENT_READ
                       | (selectors.EVENT_WRITE if conn.writing else 0), conn)

    time.sleep(max(0.0, plan.t_start - time.monotonic()))
    for conn in conns:
        send(conn, conn.next_request())
    last_check = time.monotonic()
    while True:  # bounded: ends at t_stop + drain at the latest
        now = time.monotonic()
        if cpu_start is None and now >= plan.t_measure:
            cpu_start = time.process_time()
        if cpu_end is None and now >= plan.t_stop:
            cpu_end = time.process_time()
        live = [c for c in conns if c.busy and not c.dead]
        if now >= plan.t_stop and not live:
            break
        if now >= plan.t_stop + plan.drain:
            for conn in live:
                fail(conn, "timeout", "no answer before the end of the drain time")
            break
        if now - last_check > 0.5:  # requests that take too long
            last_check = now
            now_ns = time.perf_counter_ns()
            for conn in live:
                if now_ns - conn.sent_ns > timeout_ns:
                    fail(conn, "timeout", f"no answer within {plan.request_timeout:g} s")
        if not sel.get_map():
            break  # every connection failed
        for key, mask in sel.select(0.1):
            conn = key.data
            if conn.dead:
                continue
            if mask & selectors.EVENT_WRITE and conn.out:
                send(conn, conn.out)
                continue
            try:
                data = conn.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(conn, error_kind(e), str(e))
                continue
            if data:
                conn.parser.feed(data)
            else:
                conn.parser.feed_eof()
            try:
                response = conn.parser.poll()
            except ProtocolError as e:
                fail(conn, e.kind, str(e))
                continue
            if response is None:
                continue
            done_ns = time.perf_counter_ns()
            conn.busy = False
            completed_total += 1
            try:
                reply = rpc_reply(response, conn.request_id)
                if reply_text(reply, conn.request_id) != conn.text:
                    raise ProtocolError("wrong_text", f"sent {conn.text!r}")
            except (ProtocolError, ValueError) as e:
                errors[error_kind(e)] += 1
                examples.setdefault(error_kind(e), str(e)[:300])
            else:
                done = time.monotonic()
                if plan.t_measure <= done < plan.t_stop:
                    latencies.append((done_ns - conn.sent_ns) // 1000)
            if response.headers.get("connection", "").lower() == "close":
                fail(conn, "closed", "the bridge closed a kept-alive connection")
            elif time.monotonic() < plan.t_stop:
                send(conn, conn.next_request())
    for conn in conns:
        if not conn.dead:
            conn.sock.close()
    sel.close()
    if cpu_start is None:
        cpu_start = time.process_time()
    if cpu_end is None:
        cpu_end = time.process_time()
    return {"measured": len(latencies), "completed": completed_total,
            "latencies_us": latencies, "errors": dict(errors), "examples": examples,
            "cpu_s": cpu_end - cpu_start}


def case_throughput(ctx: Context) -> JSON:
    args = ctx.args
    sessions = []
    for _ in range(args.sessions):
        session, _ = ctx.open_session("throughput")
        ctx.client.whoami(session)
        sessions.append(session)
    server_pids = {s.child_pid for s in sessions if s.child_pid}
    settled = settle(ctx.bridge)
    procs = max(1, min(args.procs, args.conns))
    window = args.duration
    total_time = 0.5 + args.tp_warmup + window + 5.0
    BUDGET.cap(1.0)
    if BUDGET.left() < total_time:
        raise BenchError("not enough of --max-seconds left for the throughput case")
    t_start = time.monotonic() + 0.5
    t_measure = t_start + args.tp_warmup
    t_stop = t_measure + window
    mp = multiprocessing.get_context("fork")
    workers: List[Tuple[Any, Connection]] = []
    try:
        for w in range(procs):
            conns = [(i, sessions[i % len(sessions)].id, sessions[i % len(sessions)].version)
                     for i in range(w, args.conns, procs)]
            plan = WorkerPlan(w, ctx.bridge.port, conns, t_start, t_measure, t_stop,
                              drain=3.0, request_timeout=REQUEST_TIMEOUT)
            receiver, sender = mp.Pipe(duplex=False)
            proc = mp.Process(target=run_worker, args=(plan, sender), daemon=True)
            proc.start()
            if proc.pid is not None:
                OWN_PIDS.add(proc.pid)
            sender.close()
            workers.append((proc, receiver))
        bridge_pid = ctx.bridge.pid
        time.sleep(max(0.0, t_measure - time.monotonic()))
        bridge0 = cpu_ticks(bridge_pid)
        servers0 = {p: cpu_ticks(p) for p in server_pids}
        cpu_window = CpuWindow(ctx.bridge.tree_ticks)
        time.sleep(max(0.0, t_stop - time.monotonic()))
        bridge1 = cpu_ticks(bridge_pid)
        servers1 = {p: cpu_ticks(p) for p in server_pids}
        cpu_window.mark()
        measured_s = time.monotonic() - cpu_window.start
        outcomes: List[JSON] = []
        for proc, receiver in workers:
            wait = max(0.1, t_stop + 10.0 - time.monotonic())
            if receiver.poll(wait):
                outcomes.append(receiver.recv())
            else:
                outcomes.append({"fatal": "the worker sent no result in time"})
    finally:
        interrupted = sys.exc_info()[0] is not None
        for proc, receiver in workers:
            proc.join(timeout=0 if interrupted else 5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=KILL_GRACE)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            receiver.close()
    fatal = [o["fatal"] for o in outcomes if "fatal" in o]
    if fatal:
        raise BenchError(f"a load generator worker failed: {fatal[0]}")
    latencies: List[int] = []
    errors: Counter[str] = Counter()
    examples: Dict[str, str] = {}
    for o in outcomes:
        latencies.extend(o["latencies_us"])
        errors.update(o["errors"])
        for kind, text in o["examples"].items():
            examples.setdefault(kind, text)
    requests = len(latencies)
    bridge_cpu_s = (bridge1 - bridge0) / CLK_TCK
    servers_cpu_s = sum(servers1[p] - servers0[p] for p in server_pids) / CLK_TCK
    worker_cpu = [o["cpu_s"] for o in outcomes]
    summary = latency_summary(latencies)
    return {
        "conns": args.conns, "sessions": args.sessions, "procs": procs,
        "warmup_s": args.tp_warmup, "duration_s": window, "measured_s": round(measured_s, 3),
        "requests": requests, "req_per_s": requests / window,
        "p50_us": summary["p50_us"], "p99_us": summary["p99_us"], "mean_us": summary["mean_us"],
        "completed_including_warmup": sum(o["completed"] for o in outcomes),
        "errors": {"count": sum(errors.values()), "by_kind": dict(errors), "examples": examples},
        "bridge_cpu_s": bridge_cpu_s,
        "bridge_cpu_us_per_request": bridge_cpu_s * 1e6 / requests if requests else None,
        "bridge_cpu_percent_of_core": 100 * bridge_cpu_s / measured_s,
        "servers_cpu_us_per_request": servers_cpu_s * 1e6 / requests if requests else None,
        "loadgen_cpu_s": worker_cpu,
        "loadgen_cpu_percent_of_core": 100 * sum(worker_cpu) / window,
        "loadgen_busiest_worker_percent": 100 * max(worker_cpu) / window,
        **cpu_window.stop(extra_cpu_s=sum(worker_cpu)),
        "settle_wait_s": settled,
    }


def case_session_setup(ctx: Context) -> JSON:
    args = ctx.args
    settled = settle(ctx.bridge)
    times_ms: List[float] = []
    pids: List[int] = []
    errors = ErrorCounter(give_up_after=3)
    for _ in range(args.setup_n):
        try:
            session, elapsed = ctx.open_session("session_setup")
            times_ms.append(elapsed * 1000)
            pids.append(ctx.client.whoami(session))
            errors.ok()
        except (OSError, ProtocolError) as e:
            errors.add(error_kind(e), str(e))
    ordered = sorted(times_ms)
    return {"sessions": args.setup_n, "opened": len(times_ms),
            "initialize_p50_ms": percentile(ordered, 0.5),
            "initialize_max_ms": ordered[-1] if ordered else None,
            "initialize_ms": [round(t, 3) for t in times_ms],
            "distinct_child_pids": len(set(pids)), "errors": errors.as_json(),
            "settle_wait_s": settled}


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current VmRSS (Linux >= 4.0, our own processes only)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def blob_call(ctx: Context, session: Session, size: int, timeout: float) -> JSON:
    """One blob call: {"ok", "latency_ms", "length", "error"}; a wrong text is an error."""
    start = time.perf_counter()
    try:
        reply, reply_id = ctx.client.call(session, "tools/call",
                                          {"name": "blob", "arguments": {"size": size}},
                                          timeout=timeout)
        latency_ms = (time.perf_counter() - start) * 1000
        text = reply_text(reply, reply_id)
    except (OSError, ProtocolError, ValueError) as e:
        return {"ok": False, "latency_ms": None, "length": None, "error": str(e)[:300],
                "error_kind": error_kind(e)}
    right = len(text) == size and text.count("x") == size
    return {"ok": right, "latency_ms": latency_ms, "length": len(text),
            "error": None if right else "wrong_text", "error_kind": None if right else "wrong_text"}


def case_large_result(ctx: Context) -> JSON:
    args = ctx.args
    session, _ = ctx.open_session("large_result")
    ctx.client.whoami(session)
    settled = settle(ctx.bridge)
    pid = ctx.bridge.pid
    rss_before = status_kb(pid, "VmRSS")
    hwm_reset = reset_peak_rss(pid)
    hwm_before = status_kb(pid, "VmHWM")
    blob = blob_call(ctx, session, args.blob_bytes, timeout=60.0)
    hwm_after = status_kb(pid, "VmHWM")
    growth_bytes = (hwm_after - hwm_before) * 1024
    result: JSON = {
        "blob_bytes": args.blob_bytes, "ok": blob["ok"], "latency_ms": blob["latency_ms"],
        "length": blob["length"], "length_correct": blob["length"] == args.blob_bytes,
        "error": blob["error"], "error_kind": blob["error_kind"],
        "rss_before_kb": rss_before, "hwm_reset": hwm_reset,
        "hwm_before_kb": hwm_before, "hwm_after_kb": hwm_after,
        "hwm_growth_mb": growth_bytes / 1e6,
        "hwm_growth_x_payload": growth_bytes / args.blob_bytes if args.blob_bytes else None,
        "settle_wait_s": settled, "big_mb": args.big_mb,
    }
    if args.big_mb > 0:
        size = int(args.big_mb * 1_000_000)
        reset_peak_rss(pid)
        big = blob_call(ctx, session, size, timeout=120.0)
        result.update({"big_bytes": size, "big_ok": big["ok"], "big_latency_ms": big["latency_ms"],
                       "big_length": big["length"], "big_error": big["error"],
                       "big_error_kind": big["error_kind"],
                       "big_hwm_after_kb": status_kb(pid, "VmHWM")})
    return result


def case_idle_memory(ctx: Context) -> JSON:
    args = ctx.args
    settled = settle(ctx.bridge)
    pid = ctx.bridge.pid
    rss_before = status_kb(pid, "VmRSS")
    start = time.monotonic()
    opened = 0
    errors = ErrorCounter(give_up_after=3)
    for _ in range(args.idle_sessions):
        try:
            ctx.open_session("idle_memory")
            opened += 1
            errors.ok()
        except (OSError, ProtocolError) as e:
            errors.add(error_kind(e), str(e))
    open_s = time.monotonic() - start
    sleep_for(2.0)
    rss_after = status_kb(pid, "VmRSS")
    return {"sessions": args.idle_sessions, "opened": opened, "open_s": open_s,
            "rss_before_kb": rss_before, "rss_after_kb": rss_after,
            "rss_growth_kb_per_session": (rss_after - rss_before) / opened if opened else None,
            "children_now": len(ctx.bridge.scan()), "errors": errors.as_json(),
            "settle_wait_s": settled}


def case_leaks(ctx: Context) -> JSON:
    """DELETE every session, count survivors; then SIGTERM and count again."""
    bridge = ctx.bridge
    unknown = 0
    for session in ctx.sessions:  # the child of each session, by asking it
        if session.child_pid is None:
            try:
                ctx.client.whoami(session)
            except (OSError, ProtocolError):
                unknown += 1
    served: Dict[int, int] = {}
    for session in ctx.sessions:
        stat = proc_stat(session.child_pid) if session.child_pid else None
        if session.child_pid and stat is not None and stat.ppid == bridge.pid:
            served[session.child_pid] = stat.starttime
    bridge.scan()
    statuses: Counter[str] = Counter()
    for session in ctx.sessions:
        try:
            statuses[str(ctx.client.delete(session))] += 1
        except (OSError, ProtocolError) as e:
            statuses[error_kind(e)] += 1
    ctx.client.close()
    sleep_for(LEAK_WAIT)
    after_delete = sorted(p for p, st in served.items() if process_alive(p, st))
    children_after_delete = len(bridge.scan())
    bridge.stop()
    if bridge.exit_seconds is None:
        raise BenchError("the bridge was no longer running at SIGTERM")
    time.sleep(LEAK_WAIT)
    after_sigterm = sorted(bridge.leftovers())
    ok_deletes = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    return {"sessions": len(ctx.sessions), "sessions_with_known_child": len(served),
            "sessions_child_unknown": unknown,
            "delete_status": dict(statuses), "delete_ok": ok_deletes,
            "left_after_delete": len(after_delete), "left_after_delete_pids": after_delete,
            "children_after_delete_incl_spares": children_after_delete,
            "sigterm_exit_s": bridge.exit_seconds, "sigkill_needed": bridge.sigkill_needed,
            "bridge_exit_status": bridge.proc.returncode if bridge.proc else None,
            "children_ever_seen": len(bridge.seen),
            "left_after_sigterm": len(after_sigterm), "left_after_sigterm_pids": after_sigterm}


# ---------------------------------------------------------------- report ---

def fmt(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}".replace(",", " ")
    return str(value)


def error_count(case: JSON) -> int:
    errors = case.get("errors")
    return int(errors["count"]) if isinstance(errors, dict) else 0


def table_rows(results: JSON) -> List[Tuple[str, str, str]]:
    cases: JSON = results["cases"]
    rows: List[Tuple[str, str, str]] = []

    def add(case: str, figure: str, value: str) -> None:
        rows.append((CASE_TITLES[case], figure, value))

    for name in CASES:
        c = cases.get(name)
        if c is None:
            add(name, "not run", "—")
            continue
        if "failed" in c:
            add(name, "FAILED", c["failed"])
            continue
        if name in ("latency", "direct"):
            add(name, "echo calls (after warm-up)", f"{fmt(c['calls'])} (+{fmt(c['warmup'])})")
            add(name, "p50 / p99 / mean µs",
                f"{fmt(c['p50_us'])} / {fmt(c['p99_us'])} / {fmt(c['mean_us'])}")
            add(name, "errors", fmt(error_count(c)))
            add(name, "other processes' CPU, % of one core", fmt(c["other_cpu_percent_of_core"]))
        elif name == "throughput":
            add(name, "connections / sessions / worker processes",
                f"{c['conns']} / {c['sessions']} / {c['procs']}")
            add(name, f"requests in {fmt(c['duration_s'], 1)} s (after {fmt(c['warmup_s'], 1)} s warm-up)",
                fmt(c["requests"]))
            add(name, "req/s", fmt(c["req_per_s"]))
            add(name, "p50 / p99 µs", f"{fmt(c['p50_us'])} / {fmt(c['p99_us'])}")
            add(name, "bridge CPU µs per request", fmt(c["bridge_cpu_us_per_request"], 1))
            add(name, "bridge CPU, % of one core", fmt(c["bridge_cpu_percent_of_core"]))
            add(name, "echo servers CPU µs per request", fmt(c["servers_cpu_us_per_request"], 1))
            add(name, "load generator CPU, % of one core (busiest worker)",
                f"{fmt(c['loadgen_cpu_percent_of_core'])} ({fmt(c['loadgen_busiest_worker_percent'])})")
            add(name, f"machine CPU busy, % of {os.cpu_count()} cores",
                fmt(c["machine_busy_percent"]))
            add(name, "other processes' CPU, % of one core", fmt(c["other_cpu_percent_of_core"]))
            add(name, "errors", fmt(error_count(c)))
        elif name == "session_setup":
            add(name, "new sessions", f"{c['opened']} of {c['sessions']}")
            add(name, "initialize p50 / max ms",
                f"{fmt(c['initialize_p50_ms'], 2)} / {fmt(c['initialize_max_ms'], 2)}")
            add(name, "distinct child pids (one per session)",
                f"{c['distinct_child_pids']} of {c['opened']}")
            add(name, "errors", fmt(error_count(c)))
        elif name == "large_result":
            add(name, f"blob of {fmt(c['blob_bytes'])} B: latency ms", fmt(c["latency_ms"], 1))
            add(name, "length correct", fmt(c["length_correct"])
                + ("" if c["ok"] else f" ({c['error']})"))
            add(name, "bridge VmHWM growth MB (× payload)",
                f"{fmt(c['hwm_growth_mb'], 1)} ({fmt(c['hwm_growth_x_payload'], 2)}×)"
                + ("" if c["hwm_reset"] else " (peak not reset)"))
            if c.get("big_bytes"):
                add(name, f"blob of {fmt(c['big_bytes'])} B: works / latency ms",
                    f"{fmt(c['big_ok'])} / {fmt(c['big_latency_ms'], 1)}"
                    + ("" if c["big_ok"] else f" ({c['big_error']})"))
        elif name == "idle_memory":
            add(name, "idle sessions opened (seconds to open)",
                f"{c['opened']} of {c['sessions']} ({fmt(c['open_s'], 1)} s)")
            add(name, "bridge VmRSS growth KB per session", fmt(c["rss_growth_kb_per_session"], 1))
            add(name, "errors", fmt(error_count(c)))
        elif name == "leaks":
            add(name, "sessions DELETEd (2xx answers)", f"{c['sessions']} ({c['delete_ok']})")
            add(name, "session children alive 3 s after DELETE",
                f"{c['left_after_delete']} of {c['sessions_with_known_child']}")
            add(name, "SIGTERM → exit s", fmt(c["sigterm_exit_s"], 2)
                + (" (SIGKILL needed)" if c["sigkill_needed"] else ""))
            add(name, "children alive 3 s after exit",
                f"{c['left_after_sigterm']} of {c['children_ever_seen']}")
    cleanup = results.get("cleanup", {})
    rows.append(("cleanup", "bridge processes killed by selfbench",
                 fmt(len(cleanup.get("killed", [])))))
    rows.append(("all", "failed requests", fmt(results["errors"])))
    return rows


def render(results: JSON) -> str:
    machine = results["machine"]
    lines = [f"## mcpbridge selfbench{' (--quick)' if results['options']['quick'] else ''}", "",
             "| case | figure | value |", "|---|---|---|"]
    previous = ""
    for case, figure, value in table_rows(results):
        lines.append(f"| {case if case != previous else ''} | {figure} | {value} |")
        previous = case
    mem = machine.get("mem_total_kb")
    lines += ["",
              f"- machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs"
              + (f", {mem / 1048576:.1f} GiB RAM" if mem else "")
              + f", {machine['kernel']}, Python {machine['python']}",
              f"- bridge: `{results['bridge_command']}`",
              f"- date: {results['date']} (took {results['elapsed_s']:.0f} s)"]
    for name in ("latency", "direct", "throughput"):
        other = results["cases"].get(name, {}).get("other_cpu_percent_of_core")
        if other is not None and other > NOISY_PERCENT:
            lines.append(f"- warning: other processes used {other:.0f} % of a core during "
                         f"{CASE_TITLES[name]}: its figures are noisy")
        stolen = results["cases"].get(name, {}).get("stolen_cpu_percent_of_core")
        if stolen is not None and stolen > NOISY_PERCENT:
            lines.append(f"- warning: the hypervisor took {stolen:.0f} % of a core during "
                         f"{CASE_TITLES[name]}: its figures are noisy")
    return "\n".join(lines)


# ------------------------------------------------------------------ main ---

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Start mcpbridge with a tiny echo MCP server and measure it "
                    "(see the module docstring for what each case means).")
    p.add_argument("--quick", action="store_true",
                   help="small counts (a run takes < 30 s); the numbers are not comparable "
                        "with full runs")
    p.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    p.add_argument("--bridge-args", default="", metavar="'ARGS'",
                   help="extra mcpbridge options (one string, split like a shell)")
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="overall time limit (default 600)")
    p.add_argument("--latency-n", type=int, help="a)/direct: measured echo calls (2000)")
    p.add_argument("--warmup", type=int, help="a)/direct: unmeasured calls first (200)")
    p.add_argument("--conns", type=int, help="b): connections (32)")
    p.add_argument("--sessions", type=int, help="b): sessions the connections share (8)")
    p.add_argument("--duration", type=float, help="b): measured seconds (10)")
    p.add_argument("--tp-warmup", type=float, help="b): unmeasured seconds first (1)")
    p.add_argument("--procs", type=int, default=2, help="b): load generator processes (2)")
    p.add_argument("--setup-n", type=int, help="c): new sessions (20)")
    p.add_argument("--blob-bytes", type=int, help="d): size of the large result (10000000)")
    p.add_argument("--big-mb", type=float, help="d): size of the second blob in MB; 0 skips (50)")
    p.add_argument("--idle-sessions", type=int, help="e): idle sessions (100)")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # its value starts with "--", which argparse would refuse
        if argv[i] == "--bridge-args":
            argv[i:i + 2] = [f"--bridge-args={argv[i + 1]}"]
            break
    args = p.parse_args(argv)
    counts = QUICK if args.quick else FULL
    for name, default in counts.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("latency_n", "conns", "sessions", "setup_n", "procs", "blob_bytes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "idle_sessions", "big_mb", "tp_warmup"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if args.duration <= 0 or args.max_seconds <= 0:
        p.error("--duration and --max-seconds must be positive")
    try:
        args.extra = shlex.split(args.bridge_args)
    except ValueError as e:
        p.error(f"--bridge-args: {e}")
    return args


def run_cases(ctx: Context, results: JSON, failures: List[str]) -> None:
    steps: List[Tuple[str, Callable[[Context], JSON]]] = [
        ("latency", case_latency), ("direct", case_direct),
        ("session_setup", case_session_setup), ("idle_memory", case_idle_memory),
        ("throughput", case_throughput), ("large_result", case_large_result),
        ("leaks", case_leaks)]
    for name, run in steps:
        print(f"selfbench: running {CASE_TITLES[name]} ...", file=sys.stderr, flush=True)
        if name != "direct" and not ctx.bridge.running:
            message = "the bridge is no longer running"
            results["cases"][name] = {"failed": message}
            failures.append(f"{CASE_TITLES[name]}: {message}")
            continue
        try:
            outcome = run(ctx)
        except (BenchError, OSError, ProtocolError, ValueError) as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            results["cases"][name] = {"failed": message}
            failures.append(f"{CASE_TITLES[name]}: {message}")
            print(f"selfbench: {CASE_TITLES[name]} failed: {message}", file=sys.stderr)
            continue
        results["cases"][name] = outcome
        ctx.bridge.scan()


def main(argv: Optional[Sequence[str]] = None) -> int:
    global BUDGET
    args = parse_args(argv)
    BUDGET = Budget(args.max_seconds)
    started = time.monotonic()
    # Make SIGTERM unwind like Ctrl-C does, so that the finally below stops the bridge.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the bridge become ours
    planned = 1 + args.sessions + args.setup_n + 1 + args.idle_sessions
    options = ["--spares", "24", "--max-sessions", str(planned + 20), *args.extra]
    bridge = BridgeProcess(options, [sys.executable, ECHO_SERVER])

    def emergency_stop() -> None:
        bridge.stop()
        kill_pids(bridge.leftovers())

    atexit.register(emergency_stop)
    results: JSON = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "options": {k: v for k, v in vars(args).items() if k != "extra"},
        "bridge_command": "", "cases": {}, "errors": 0,
    }
    failures: List[str] = []
    ok_start = False
    interrupted = 0
    try:
        bridge.start()
        ok_start = True
        results["bridge_command"] = shlex.join(bridge.argv(bridge.port))
        print(f"selfbench: bridge pid {bridge.pid} on {HOST}:{bridge.port}, log {bridge.log_path}",
              file=sys.stderr, flush=True)
        ctx = Context(args, bridge, McpClient(bridge.port))
        run_cases(ctx, results, failures)
    except BenchError as e:
        failures.append(str(e))
    except (KeyboardInterrupt, SystemExit) as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        failures.append(f"interrupted (exit status {code}); the results are partial")
        interrupted = code
    finally:
        bridge.stop()
        leftovers = bridge.leftovers()
        killed = kill_pids(leftovers) if leftovers else []
        results["cleanup"] = {"killed": killed}
        if killed:
            print(f"selfbench: killed {len(killed)} process(es) the bridge left behind: "
                  f"{killed}", file=sys.stderr)
    results["cases"] = {n: results["cases"][n] for n in CASES if n in results["cases"]}
    results["bridge_command"] = results["bridge_command"] or shlex.join(bridge.argv(bridge.port))
    results["elapsed_s"] = time.monotonic() - started
    results["errors"] = sum(error_count(c) for c in results["cases"].values())
    large = results["cases"].get("large_result", {})
    if large and "failed" not in large:
        # The first blob must work; the big one may hit a limit, but must not be wrong.
        results["errors"] += int(not large["ok"]) + int(
            large.get("big_error_kind") in ("wrong_text", "wrong_id", "bad_result"))
    leaks = results["cases"].get("leaks", {})
    leaked = (leaks.get("left_after_delete", 0) + leaks.get("left_after_sigterm", 0)
              + len(results["cleanup"]["killed"]))
    results["failures"] = failures
    results["exit_status"] = (interrupted or 2) if failures else (
        1 if results["errors"] or leaked else 0)
    if ok_start:
        print(render(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if failures:
        print(f"selfbench: FAILED: {failures[0]}" + (f" (and {len(failures) - 1} more)"
                                                      if len(failures) > 1 else ""),
              file=sys.stderr)
    elif results["exit_status"]:
        print(f"selfbench: FAILED: {results['errors']} failed request(s), {leaked} "
              f"process(es) left behind", file=sys.stderr)
    if not results["exit_status"]:
        bridge.remove_log()
    elif not failures or bridge.log_path not in failures[0]:
        print(f"selfbench: the bridge's log: {bridge.log_path}", file=sys.stderr)
    return int(results["exit_status"])


if __name__ == "__main__":
    sys.exit(main())
