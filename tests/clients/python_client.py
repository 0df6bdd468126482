"""
Run one scenario against an MCP Streamable HTTP endpoint with the official
Python SDK client (``mcp`` >= 2.3: ``mcp.Client`` over
``mcp.client.streamable_http.streamable_http_client``, handshake era) and
print one JSON object with what was observed.

    python tests/clients/python_client.py [--transport {http,sse}] SCENARIO URL

With ``--transport sse`` (or ``MCPBRIDGE_TRANSPORT=sse`` in the environment)
the client speaks the deprecated HTTP+SSE transport (2024-11-05) instead:
``mcp.client.sse.sse_client(URL)``, URL being the ``.../sse`` endpoint.  Every
scenario but ``delete`` and ``resumption`` (Streamable HTTP only) works over
it; the printed object then also has ``transport: "sse"`` and ``sse``, one
entry per SSE connection (the announced endpoint, the session id, the
statuses of the POSTs, the number of GETs), and these extra checks apply:
the endpoint is ``<URL without sse>messages?session_id=<32 hex>``, every
POST got 202, and every message arrived on the SSE stream (``via`` GET).

Scenarios: basic, progress, sampling, elicitation, roots, logging,
subscription, concurrent, two_sessions, delete, resumption.  The server is
expected to be ``tests/servers/feature_server.py`` behind the bridge (only
``basic`` also works with ``python -m mcpbridge.demo_server``).

The printed object always has ``scenario``, ``ok`` (the scenario's own
checks passed) and ``errors``; the rest depends on the scenario.  ``wire``,
where present, lists every JSON-RPC message the client received with the
HTTP exchange that carried it (``GET`` stream or the ``POST`` of which
request), read by a tap on the SDK's HTTP transport.  Exit status: 0 when
``ok``, 1 when a check failed, 2 on an exception.  Every wait is bounded.

Environment: ``MCPBRIDGE_CLIENT_HEADERS`` (a JSON object of headers every
request carries, e.g. an API key), ``MCPBRIDGE_CLIENT_CAFILE`` (the CA to
verify an https:// bridge with), ``MCPBRIDGE_CLIENT_CERT`` and
``MCPBRIDGE_CLIENT_KEY`` (a client certificate for mutual TLS).

``resumption`` is raw HTTP (``http.client``): the SDK gives no way to drop a
connection on purpose, and resuming is what is tested.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import sys
import time
import traceback
import urllib.parse
import warnings
from typing import Any, Dict, List, Optional

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

# Run as a script: make the project root importable, for tests.support.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.support import read_sse_event  # noqa: E402

warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

SCENARIO_TIMEOUT = 40.0  # seconds for a whole scenario
WATCHED = "test://watched"
ROOTS = [("file:///tmp/mcpbridge-root-a", "a"), ("file:///tmp/mcpbridge-root-b", "b")]

JSON = Dict[str, Any]

#: "http" (Streamable HTTP) or "sse" (HTTP+SSE, 2024-11-05); set by main().
TRANSPORT = "http"
#: Every Connection made, for the transport-wide checks of main().
CONNECTIONS: List["Connection"] = []


# ------------------------------------------------------------ HTTP tap ---

class _TapStream(httpx2.AsyncByteStream):
    """Pass a response body through unchanged, recording the JSON-RPC
    messages in it (SSE ``data:`` lines, or one JSON body)."""

    def __init__(self, inner: Any, label: str, sse: bool, sink: "Tap") -> None:
        self.inner = inner
        self.label = label
        self.sse = sse
        self.sink = sink
        self.buffer = b""
        self.data: List[bytes] = []
        self.event: Optional[bytes] = None

    async def __aiter__(self):  # type: ignore[override]
        async for chunk in self.inner:
            self._feed(chunk)
            yield chunk
        self._end()

    def _feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        if not self.sse:
            return
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            line = line.rstrip(b"\r")
            if line == b"":
                if self.data and self.event == b"endpoint":
                    self.sink.endpoints.append(b"\n".join(self.data).decode("utf-8", "replace"))
                elif self.data:
                    self.sink.record(self.label, b"\n".join(self.data))
                self.data = []
                self.event = None
            elif line.startswith(b"data:"):
                value = line[5:]
                self.data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self.event = line[6:].strip()

    def _end(self) -> None:
        if not self.sse and self.buffer.strip():
            self.sink.record(self.label, self.buffer)
            self.buffer = b""

    async def aclose(self) -> None:
        await self.inner.aclose()


def tls_context() -> Optional[ssl.SSLContext]:
    """The client's TLS settings from the environment: MCPBRIDGE_CLIENT_CAFILE
    (the only CA trusted; verification stays on) and MCPBRIDGE_CLIENT_CERT /
    MCPBRIDGE_CLIENT_KEY (a client certificate, for mutual TLS)."""
    cafile = os.environ.get("MCPBRIDGE_CLIENT_CAFILE")
    cert = os.environ.get("MCPBRIDGE_CLIENT_CERT")
    if not cafile and not cert:
        return None
    context = ssl.create_default_context(cafile=cafile)
    if cert:
        context.load_cert_chain(cert, os.environ.get("MCPBRIDGE_CLIENT_KEY"))
    return context


def extra_headers() -> Dict[str, str]:
    """Headers every request carries: MCPBRIDGE_CLIENT_HEADERS, a JSON object
    (e.g. {"X-API-Key": "..."})."""
    return json.loads(os.environ.get("MCPBRIDGE_CLIENT_HEADERS") or "{}")


class Tap(httpx2.AsyncHTTPTransport):
    """An httpx2 transport that records every exchange and every JSON-RPC
    message received, labelled with the request that carried it."""

    def __init__(self) -> None:
        context = tls_context()
        super().__init__(**({"verify": context} if context is not None else {}))
        self.exchanges: List[JSON] = []
        self.wire: List[JSON] = []
        self.session_ids: List[str] = []
        self.endpoints: List[str] = []  # HTTP+SSE: data of each "endpoint" event
        self.get_opened = anyio.Event()

    def record(self, label: str, data: bytes) -> None:
        try:
            obj = json.loads(data)
        except ValueError:
            return
        for msg in obj if isinstance(obj, list) else [obj]:
            if not isinstance(msg, dict):
                continue
            kind = msg.get("method") or ("response" if "id" in msg else "?")
            self.wire.append({"via": label, "message": kind, "id": msg.get("id")})

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        label = request.method
        if request.method == "POST":
            try:
                body = json.loads(request.content)
                label = f"POST {body.get('method') or 'response'}"
                name = (body.get("params") or {}).get("name")
                if name:
                    label += f" {name}"
                if "id" in body and body.get("method"):
                    label += f" #{body['id']}"
            except Exception:
                pass
        response = await super().handle_async_request(request)
        ctype = response.headers.get("content-type", "")
        sid = (request.headers.get("mcp-session-id") or response.headers.get("mcp-session-id")
               or request.url.params.get("session_id"))  # HTTP+SSE: in the POST URL
        if sid and sid not in self.session_ids:
            self.session_ids.append(sid)
        self.exchanges.append({"request": label, "status": response.status_code,
                               "content_type": ctype.split(";")[0],
                               "session": sid})
        if request.method == "GET" and response.status_code == 200:
            self.get_opened.set()
        response.stream = _TapStream(response.stream, label, ctype.startswith("text/event-stream"),
                                     self)
        return response


# ------------------------------------------------------- the SDK client ---

class Observer:
    """The callbacks a client is given, and what they saw."""

    def __init__(self) -> None:
        self.sampling: List[JSON] = []
        self.elicitation: List[JSON] = []
        self.roots_requests = 0
        self.logs: List[JSON] = []
        self.notifications: List[str] = []
        self.updated: List[str] = []
        self.got_updated = anyio.Event()
        self.got_list_changed = anyio.Event()

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        texts = [m.content.text for m in params.messages if isinstance(m.content, types.TextContent)]
        self.sampling.append({"messages": texts, "max_tokens": params.max_tokens})
        return types.CreateMessageResult(
            role="assistant", model="test-model",
            content=types.TextContent(type="text", text="sampled(" + " ".join(texts) + ")"))

    async def on_elicitation(self, context: Any, params: Any) -> Any:
        self.elicitation.append({"message": params.message})
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def on_roots(self, context: Any) -> Any:
        self.roots_requests += 1
        return types.ListRootsResult(roots=[types.Root(uri=uri, name=name) for uri, name in ROOTS])

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append({"level": params.level, "data": params.data, "logger": params.logger})

    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.notifications.append(f"exception: {message!r}")
            return
        root = getattr(message, "root", message)
        method = getattr(root, "method", type(root).__name__)
        self.notifications.append(method)
        if method == "notifications/resources/updated":
            self.updated.append(str(root.params.uri))
            self.got_updated.set()
        elif method == "notifications/tools/list_changed":
            self.got_list_changed.set()


class Connection:
    """
    One SDK client (one MCP session) with its tap and observer, over
    Streamable HTTP or, when L{TRANSPORT} is C{"sse"}, over HTTP+SSE.
    """

    def __init__(self, url: str, terminate_on_close: bool = True) -> None:
        self.url = url
        self.tap = Tap()
        self.observer = Observer()
        self.sse_session_ids: List[str] = []
        self.http: Optional[httpx2.AsyncClient] = None
        transport: Any
        if TRANSPORT == "sse":
            def factory(headers: Optional[Dict[str, str]] = None,
                        timeout: Optional[httpx2.Timeout] = None,
                        auth: Optional[httpx2.Auth] = None) -> httpx2.AsyncClient:
                return httpx2.AsyncClient(transport=self.tap,
                                          headers={**extra_headers(), **(headers or {})},
                                          timeout=timeout, auth=auth)

            transport = sse_client(url, timeout=15.0, sse_read_timeout=60.0,
                                   httpx_client_factory=factory,
                                   on_session_created=self.sse_session_ids.append)
        else:
            self.http = httpx2.AsyncClient(transport=self.tap, headers=extra_headers(),
                                           timeout=httpx2.Timeout(15.0, read=60.0))
            transport = streamable_http_client(url, http_client=self.http,
                                               terminate_on_close=terminate_on_close)
        CONNECTIONS.append(self)
        obs = self.observer
        self.client = Client(
            transport,
            mode="legacy",
            read_timeout_seconds=30.0,
            sampling_callback=obs.on_sampling,
            elicitation_callback=obs.on_elicitation,
            list_roots_callback=obs.on_roots,
            logging_callback=obs.on_log,
            message_handler=obs.on_message,
            client_info=types.Implementation(name="mcpbridge-test-python", version="1.0"),
        )

    async def __aenter__(self) -> "Connection":
        if self.http is None:  # HTTP+SSE: sse_client opens and closes its own client
            await self.client.__aenter__()
            return self
        await self.http.__aenter__()
        try:
            await self.client.__aenter__()
        except BaseException:
            await self.http.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.http is None:
            await self.client.__aexit__(*exc)
            return
        try:
            await self.client.__aexit__(*exc)
        finally:
            await self.http.__aexit__(None, None, None)

    @property
    def session_id(self) -> Optional[str]:
        if self.sse_session_ids:
            return self.sse_session_ids[0]
        return self.tap.session_ids[0] if self.tap.session_ids else None

    def sse_report(self) -> JSON:
        """What this HTTP+SSE connection did on the wire."""
        return {"endpoint": self.tap.endpoints[0] if self.tap.endpoints else None,
                "endpoints": len(self.tap.endpoints),
                "session_id": self.session_id,
                "gets": [e["status"] for e in self.tap.exchanges if e["request"] == "GET"],
                "get_content_types": [e["content_type"] for e in self.tap.exchanges
                                      if e["request"] == "GET"],
                "posts": [e["status"] for e in self.tap.exchanges
                          if e["request"].startswith("POST")],
                "via": sorted({w["via"] for w in self.tap.wire})}


def sse_checks(url: str, c: Checks) -> List[JSON]:
    """
    The checks every HTTP+SSE scenario shares, over every connection made:
    one GET answered with an event stream, whose first event announced
    C{<url minus "sse">messages?session_id=<32 hex>}; every POST got 202;
    every message came on the SSE stream.
    """
    base = urllib.parse.urlsplit(url).path
    prefix = base[:-len("sse")] if base.endswith("sse") else base
    pattern = re.compile(re.escape(prefix) + r"messages\?session_id=([0-9a-f]{32})")
    reports = []
    for conn in CONNECTIONS:
        r = conn.sse_report()
        reports.append(r)
        match = pattern.fullmatch(r["endpoint"] or "")
        c.expect(match, f"endpoint event {r['endpoint']!r} is not "
                        f"{prefix}messages?session_id=<32 hex>")
        c.expect(r["endpoints"] == 1, f"{r['endpoints']} endpoint events")
        if match:
            c.expect(r["session_id"] == match.group(1),
                     f"session id {r['session_id']!r} differs from the endpoint's")
        c.expect(r["gets"] == [200] and r["get_content_types"] == ["text/event-stream"],
                 f"SSE GETs {r['gets']} {r['get_content_types']}")
        c.expect(r["posts"] and all(s == 202 for s in r["posts"]), f"POST statuses {r['posts']}")
        c.expect(r["via"] in ([], ["GET"]), f"messages arrived via {r['via']}")
    return reports


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Checks:
    def __init__(self) -> None:
        self.errors: List[str] = []

    def expect(self, condition: Any, message: str) -> None:
        if not condition:
            self.errors.append(message)


# ------------------------------------------------------------ scenarios ---

async def basic(url: str, c: Checks) -> JSON:
    """initialize, tools/list, tools/call echo (plus resources/list if offered)."""
    async with Connection(url) as conn:
        client = conn.client
        tools = await client.list_tools()
        names = sorted(t.name for t in tools.tools)
        result = await client.call_tool("echo", {"text": "hello bridge"})
        resources: List[str] = []
        caps = client.server_capabilities
        if caps.resources is not None:
            resources = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        out = {"server": client.server_info.name if client.server_info else None,
               "protocol_version": client.protocol_version,
               "session_id": conn.session_id, "tools": names, "resources": resources,
               "echo": text_of(result), "is_error": bool(result.is_error)}
    c.expect("echo" in names, f"echo not listed: {names}")
    c.expect(out["echo"] == "hello bridge", f"echo returned {out['echo']!r}")
    if os.environ.get("MCPBRIDGE_STATELESS") == "1":
        c.expect(not conn.session_id, f"a stateless server sent Mcp-Session-Id {conn.session_id}")
    else:
        c.expect(conn.session_id, "no Mcp-Session-Id seen")
    return out


async def progress(url: str, c: Checks) -> JSON:
    """tools/call progress with a progress callback."""
    seen: List[List[Any]] = []

    async def on_progress(value: float, total: Optional[float], message: Optional[str]) -> None:
        seen.append([value, total, message])

    async with Connection(url) as conn:
        result = await conn.client.call_tool("progress", {"steps": 5, "delay": 0.05},
                                             progress_callback=on_progress)
    c.expect(text_of(result) == "done 5", f"result {text_of(result)!r}")
    c.expect([s[0] for s in seen] == [1, 2, 3, 4, 5], f"progress values {seen}")
    return {"result": text_of(result), "progress": seen, "wire": conn.tap.wire}


async def sampling(url: str, c: Checks) -> JSON:
    """The tool asks the client for sampling/createMessage."""
    async with Connection(url) as conn:
        result = await conn.client.call_tool("sample", {"prompt": "hello"})
    text = text_of(result)
    c.expect(text == "sampled: sampled(hello)", f"result {text!r}")
    c.expect(len(conn.observer.sampling) == 1, f"sampling calls {conn.observer.sampling}")
    return {"result": text, "sampling_requests": conn.observer.sampling, "wire": conn.tap.wire,
            "exchanges": conn.tap.exchanges}


async def elicitation(url: str, c: Checks) -> JSON:
    """The tool asks the client for elicitation/create."""
    async with Connection(url) as conn:
        result = await conn.client.call_tool("elicit", {"message": "Your name?"})
    text = text_of(result)
    c.expect(text == 'accept {"name": "Ada"}', f"result {text!r}")
    c.expect(conn.observer.elicitation == [{"message": "Your name?"}],
             f"elicitation calls {conn.observer.elicitation}")
    return {"result": text, "elicitation_requests": conn.observer.elicitation,
            "wire": conn.tap.wire}


async def roots(url: str, c: Checks) -> JSON:
    """The tool asks the client for roots/list."""
    async with Connection(url) as conn:
        result = await conn.client.call_tool("roots", {})
    uris = json.loads(text_of(result))
    c.expect(uris == [u for u, _ in ROOTS], f"roots {uris}")
    c.expect(conn.observer.roots_requests == 1, f"roots requests {conn.observer.roots_requests}")
    return {"roots": uris, "roots_requests": conn.observer.roots_requests, "wire": conn.tap.wire}


async def logging(url: str, c: Checks) -> JSON:
    """The tool sends log messages; the logging callback receives them."""
    async with Connection(url) as conn:
        await conn.client.set_logging_level("debug")
        result = await conn.client.call_tool("log", {"count": 3, "level": "warning"})
        with anyio.move_on_after(5):
            while len(conn.observer.logs) < 3:
                await anyio.sleep(0.02)
    logs = conn.observer.logs
    c.expect(text_of(result) == "logged 3", f"result {text_of(result)!r}")
    c.expect([entry["data"] for entry in logs] == [f"log message {i}" for i in (1, 2, 3)],
             f"logs {logs}")
    c.expect(all(entry["level"] == "warning" for entry in logs), f"levels {logs}")
    return {"result": text_of(result), "logs": logs, "wire": conn.tap.wire}


async def subscription(url: str, c: Checks) -> JSON:
    """resources/subscribe, then touch: resources/updated arrives on the GET stream."""
    async with Connection(url) as conn:
        client = conn.client
        with anyio.move_on_after(10):
            await conn.tap.get_opened.wait()
        get_open = conn.tap.get_opened.is_set()
        await client.subscribe_resource(WATCHED)
        result = await client.call_tool("touch", {"uri": WATCHED})
        with anyio.move_on_after(10):
            await conn.observer.got_updated.wait()
            await conn.observer.got_list_changed.wait()
    wire = conn.tap.wire
    via = {w["message"]: w["via"] for w in wire if w["message"].startswith("notifications/")}
    c.expect(get_open, "the SDK client never opened its GET stream")
    c.expect(conn.observer.updated == [WATCHED], f"resources/updated for {conn.observer.updated}")
    c.expect(via.get("notifications/resources/updated") == "GET",
             f"resources/updated came via {via.get('notifications/resources/updated')}")
    c.expect(json.loads(text_of(result)) == ["notifications/resources/updated",
                                              "notifications/tools/list_changed"],
             f"touch result {text_of(result)!r}")
    touch_posts = [e for e in conn.tap.exchanges if e["request"].startswith("POST tools/call touch")]
    return {"get_stream_open": get_open, "updated": conn.observer.updated,
            "notifications": conn.observer.notifications, "via": via,
            "touch_post": touch_posts, "wire": wire}


async def concurrent(url: str, c: Checks) -> JSON:
    """10 concurrent slow_echo calls with varied delays in one session."""
    delays = [0.9, 0.1, 0.6, 0.3, 0.8, 0.2, 0.7, 0.05, 0.5, 0.4]
    results: Dict[int, str] = {}
    order: List[int] = []
    async with Connection(url) as conn:
        async def one(i: int) -> None:
            r = await conn.client.call_tool("slow_echo", {"text": f"msg-{i}", "delay": delays[i]})
            results[i] = text_of(r)
            order.append(i)

        start = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(len(delays)):
                tg.start_soon(one, i)
        elapsed = time.monotonic() - start
    sessions = {e["session"] for e in conn.tap.exchanges if e["request"].startswith("POST tools/call")}
    c.expect(all(results.get(i) == f"msg-{i}" for i in range(len(delays))), f"results {results}")
    c.expect(elapsed < 3.5, f"took {elapsed:.2f} s (one after another: {sum(delays):.2f} s)")
    c.expect(order != list(range(len(delays))), f"answers came in request order {order}")
    c.expect(len(sessions) == 1, f"calls spread over sessions {sessions}")
    return {"results": {str(k): v for k, v in sorted(results.items())}, "order": order,
            "by_delay": sorted(range(len(delays)), key=lambda i: delays[i]), "delays": delays,
            "elapsed": round(elapsed, 3), "sessions": sorted(s for s in sessions if s)}


async def two_sessions(url: str, c: Checks) -> JSON:
    """Two clients at once: separate children, separate answers."""
    out: Dict[str, JSON] = {}

    async def run(name: str) -> None:
        async with Connection(url) as conn:
            pid = int(text_of(await conn.client.call_tool("pid", {})))
            texts = []
            for i in range(3):
                r = await conn.client.call_tool("slow_echo", {"text": f"{name}-{i}", "delay": 0.1})
                texts.append(text_of(r))
            out[name] = {"pid": pid, "texts": texts, "session_id": conn.session_id,
                         "wire_sessions": sorted(s for s in conn.tap.session_ids if s)}

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "A")
        tg.start_soon(run, "B")
    a, b = out["A"], out["B"]
    c.expect(a["pid"] != b["pid"], f"both sessions ran in pid {a['pid']}")
    c.expect(a["session_id"] != b["session_id"], "both clients got the same session id")
    for name, v in out.items():
        c.expect(v["texts"] == [f"{name}-{i}" for i in range(3)], f"{name} got {v['texts']}")
        c.expect(len(v["wire_sessions"]) == 1, f"{name} used sessions {v['wire_sessions']}")
    return out


async def pause_point(info: JSON) -> None:
    """
    If MCPBRIDGE_PAUSE names a path, write C{info} to PATH.ready and wait
    (at most 20 s) for PATH.go to appear: the test looks at the bridge's
    processes while this client holds its session open.
    """
    path = os.environ.get("MCPBRIDGE_PAUSE")
    if not path:
        return
    with open(path + ".ready.tmp", "w") as f:
        json.dump(info, f)
    os.rename(path + ".ready.tmp", path + ".ready")
    with anyio.move_on_after(20):
        while not os.path.exists(path + ".go"):
            await anyio.sleep(0.02)


async def delete(url: str, c: Checks) -> JSON:
    """The client ends its session with DELETE on close; the old id then gets 404."""
    async with Connection(url) as conn:
        pid = int(text_of(await conn.client.call_tool("pid", {})))
        session_id = conn.session_id
        await pause_point({"pid": pid, "session_id": session_id})
    deletes = [e for e in conn.tap.exchanges if e["request"] == "DELETE"]
    assert session_id is not None
    async with httpx2.AsyncClient(timeout=10.0) as http:
        later = await http.post(url, headers={
            "accept": "application/json, text/event-stream", "content-type": "application/json",
            "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"},
            content=json.dumps({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}))
    c.expect([d["status"] for d in deletes] in ([200], [204]), f"DELETE exchanges {deletes}")
    c.expect(later.status_code == 404, f"request after DELETE got {later.status_code}")
    return {"pid": pid, "session_id": session_id, "delete": deletes,
            "after_delete_status": later.status_code, "after_delete_body": later.text}


# ------------------------------------------------------ raw resumption ---

def _split(event_id: str) -> List[int]:
    stream, seq = event_id.split(".")
    return [int(stream), int(seq)]


def resumption(url: str, c: Checks) -> JSON:
    """
    Raw HTTP: a slow progress call switches its POST to SSE; read two
    progress events, drop the connection, then GET with Last-Event-ID and
    collect what is replayed and what follows.
    """
    parts = urllib.parse.urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    deadline = time.monotonic() + 30
    base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    def post(conn: http.client.HTTPConnection, body: JSON, headers: Dict[str, str]) -> Any:
        conn.request("POST", path, body=json.dumps(body), headers={**base, **headers})
        return conn.getresponse()

    conn = http.client.HTTPConnection(host, port, timeout=10)
    resp = post(conn, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "mcpbridge-test-raw", "version": "1"}}}, {})
    init_body = resp.read()
    session = resp.getheader("mcp-session-id")
    c.expect(resp.status == 200 and session, f"initialize: {resp.status} {init_body[:200]!r}")
    headers = {"mcp-session-id": session or "", "mcp-protocol-version": "2025-11-25"}
    resp = post(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    resp.read()
    c.expect(resp.status == 202, f"notifications/initialized: {resp.status}")
    conn.close()

    steps, delay = 8, 0.3
    conn = http.client.HTTPConnection(host, port, timeout=10)
    resp = post(conn, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "progress", "arguments": {"steps": steps, "delay": delay},
        "_meta": {"progressToken": "resume-me"}}}, headers)
    post_type = resp.getheader("content-type")
    before: List[JSON] = []
    progress_before: List[float] = []
    while len(progress_before) < 2:
        event = read_sse_event(resp, deadline)
        if event is None:
            break
        before.append({"id": event["id"], "data": event["data"]})
        if event["data"]:
            msg = json.loads(event["data"])
            if msg.get("method") == "notifications/progress":
                progress_before.append(msg["params"]["progress"])
    last_id = next((e["id"] for e in reversed(before) if e["id"]), None)
    # Drop the connection mid-stream: close the socket without reading on.
    conn.sock.shutdown(2) if conn.sock is not None else None
    conn.close()
    time.sleep(delay * 2.5)  # events keep coming while we are away

    after: List[JSON] = []
    progress_after: List[float] = []
    final: Optional[JSON] = None
    get_status = None
    ended_after_response = False
    if last_id is not None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", path, headers={"accept": "text/event-stream", **headers,
                                           "last-event-id": last_id})
        resp = conn.getresponse()
        get_status = resp.status
        opened = time.monotonic()
        while time.monotonic() < deadline:
            event = read_sse_event(resp, deadline)
            if event is None:
                ended_after_response = final is not None
                break
            after.append({"id": event["id"], "data": event["data"],
                          "t": round(time.monotonic() - opened, 3)})
            if not event["data"]:
                continue
            msg = json.loads(event["data"])
            if msg.get("method") == "notifications/progress":
                progress_after.append(msg["params"]["progress"])
            elif msg.get("id") == 2:
                final = msg
        conn.close()

    last = _split(last_id) if last_id else None
    ids_after = [_split(e["id"]) for e in after if e["id"]]
    c.expect(post_type and post_type.startswith("text/event-stream"),
             f"the slow call's POST was answered with {post_type}")
    c.expect(last_id is not None, f"no event id before the drop: {before}")
    c.expect(get_status == 200, f"GET with Last-Event-ID: {get_status}")
    c.expect(final is not None and "result" in final, f"no final response on the GET: {after}")
    c.expect(progress_before + progress_after == [float(i) for i in range(1, steps + 1)],
             f"progress before {progress_before} + after {progress_after}")
    if last is not None:
        c.expect(all(i[0] == last[0] and i[1] > last[1] for i in ids_after),
                 f"replayed ids {ids_after} not all after {last_id} on stream {last[0]}")
    return {"session_id": session, "post_content_type": post_type, "last_event_id": last_id,
            "before": before, "after": after, "progress_before": progress_before,
            "progress_after": progress_after, "final": final, "get_status": get_status,
            "ended_after_response": ended_after_response}


SCENARIOS = {f.__name__: f for f in (basic, progress, sampling, elicitation, roots, logging,
                                     subscription, concurrent, two_sessions, delete)}
SYNC_SCENARIOS = {"resumption": resumption}


#: Scenarios that only make sense over Streamable HTTP.
HTTP_ONLY = {"delete", "resumption"}


def main(argv: List[str]) -> int:
    global TRANSPORT
    args = list(argv[1:])
    transport = os.environ.get("MCPBRIDGE_TRANSPORT") or "http"
    if len(args) >= 2 and args[0] == "--transport":
        transport = args[1]
        del args[:2]
    elif args and args[0].startswith("--transport="):
        transport = args.pop(0).partition("=")[2]
    names = [*SCENARIOS, *SYNC_SCENARIOS]
    if transport not in ("http", "sse") or len(args) != 2 or args[0] not in names \
            or (transport == "sse" and args[0] in HTTP_ONLY):
        print(f"usage: {argv[0]} [--transport {{http,sse}}] {{{','.join(names)}}} URL\n"
              f"(over sse, not {', '.join(sorted(HTTP_ONLY))})", file=sys.stderr)
        return 2
    TRANSPORT = transport
    name, url = args
    checks = Checks()
    out: JSON = {"scenario": name, "transport": transport}
    status = 0
    try:
        if name in SYNC_SCENARIOS:
            out.update(SYNC_SCENARIOS[name](url, checks))
        else:
            async def run() -> JSON:
                with anyio.fail_after(SCENARIO_TIMEOUT):
                    return await SCENARIOS[name](url, checks)

            out.update(anyio.run(run))
            if transport == "sse":
                out["sse"] = sse_checks(url, checks)
        status = 1 if checks.errors else 0
    except BaseException as e:  # report anything, including exception groups
        traceback.print_exc()
        checks.errors.append(f"exception: {e!r}")
        status = 2
    out["ok"] = status == 0
    out["errors"] = checks.errors
    sys.stdout.write(json.dumps(out, default=repr) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
