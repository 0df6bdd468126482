"""
A small demo MCP server speaking newline-delimited JSON-RPC 2.0 on stdio.

Run it with ``python -m mcpbridge.demo_server``.  It needs only the standard
library and exercises what a bridge has to carry: progress and log
notifications, cancellation, server-to-client requests (sampling and
elicitation), concurrent requests finishing out of order, resources, prompts.

Design: the main thread reads stdin one line at a time and answers quick
requests inline.  Every ``tools/call`` runs in its own thread, so the reader
keeps going while a countdown sleeps or a sampling request waits for the
client.  All writes to stdout go through one lock; stderr is for humans.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from typing import Any, BinaryIO, Callable, Dict, Optional

try:
    from mcpbridge import __version__ as VERSION
except ImportError:  # pragma: no cover - only when run outside the package
    VERSION = "0"

JSON = Dict[str, Any]
log = logging.getLogger("mcpbridge-demo")

SUPPORTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
CLIENT_REQUEST_TIMEOUT = 300.0  # seconds to wait for a sampling/elicitation answer
EOF_GRACE = 0.5  # seconds given to running tool calls once stdin closes

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = (
    -32700, -32600, -32601, -32602, -32603)

RESOURCES = {
    "demo://readme": ("readme", "text/plain",
                      "This is the mcpbridge demo server. It has a few tools, "
                      "two static resources and one prompt.\n"),
    "demo://config.json": ("config", "application/json",
                           json.dumps({"server": "mcpbridge-demo", "version": VERSION})),
}

_STRING = {"type": "string"}
_NUMBER = {"type": "number"}
_QUESTION = {"type": "object", "properties": {"question": _STRING}, "required": ["question"]}
_EMPTY = {"type": "object", "properties": {}}
TOOLS: list[JSON] = [
    {"name": "echo", "description": "Return the given text unchanged.",
     "inputSchema": {"type": "object", "properties": {"text": _STRING}, "required": ["text"]}},
    {"name": "add", "description": "Add two numbers and return the sum.",
     "inputSchema": {"type": "object", "properties": {"a": _NUMBER, "b": _NUMBER},
                     "required": ["a", "b"]},
     "outputSchema": {"type": "object", "properties": {"sum": _NUMBER}, "required": ["sum"]}},
    {"name": "countdown",
     "description": "Count down, sending a progress notification (if the request carries a "
                    "progressToken) and a log message per step. Cancellable.",
     "inputSchema": {"type": "object", "properties": {
         "steps": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
         "interval": {"type": "number", "minimum": 0, "maximum": 60, "default": 0.2,
                      "description": "Seconds between steps."}}}},
    {"name": "ask_llm",
     "description": "Ask the client's LLM a question via sampling/createMessage.",
     "inputSchema": _QUESTION},
    {"name": "ask_user",
     "description": "Ask the user a question via elicitation/create.",
     "inputSchema": _QUESTION},
    {"name": "whoami", "description": "Return this server process's pid.",
     "inputSchema": _EMPTY,
     "outputSchema": {"type": "object", "properties": {"pid": {"type": "integer"}},
                      "required": ["pid"]}},
    {"name": "fail", "description": "Always return a tool-level error (isError true).",
     "inputSchema": _EMPTY},
]

PROMPT = {"name": "greet", "description": "Write a friendly greeting for someone.",
          "arguments": [{"name": "name", "description": "Who to greet.", "required": True}]}


class RpcError(Exception):
    """A JSON-RPC error to send back as the response to a request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ToolError(Exception):
    """A tool-level failure, reported as a result with ``isError: true``."""


class Cancelled(Exception):
    """The tool call was cancelled: it must send no response at all."""


def _text_result(text: str, is_error: bool = False, structured: Optional[JSON] = None) -> JSON:
    result: JSON = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def _arg(args: JSON, name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    """Fetch one tool argument, checking its JSON type (bool is not a number).

    Without a default the argument is required."""
    if name not in args:
        if default is None:
            raise ToolError(f"missing required argument {name!r}")
        return default
    value = args[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ToolError(f"argument {name!r} has the wrong type")
    return value


class Call:
    """One running ``tools/call`` request."""

    def __init__(self, request_id: Any, params: JSON) -> None:
        self.id = request_id
        meta = params.get("_meta")
        self.progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
        self.cancelled = threading.Event()


class DemoServer:
    """The server state and the stdin read loop."""

    def __init__(self, infile: BinaryIO, outfile: BinaryIO) -> None:
        self._in, self._out = infile, outfile
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._closed = False  # set at shutdown: later writes are dropped
        self._eof = threading.Event()
        self._client_caps: JSON = {}
        self._log_level = "info"
        self._calls: Dict[str, Call] = {}  # in-flight tools/call, by json.dumps(id)
        self._waiting: Dict[str, list[Any]] = {}  # our request id -> [Event, reply]
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._tools: Dict[str, Callable[[JSON, Call], JSON]] = {
            "echo": self._tool_echo, "add": self._tool_add, "countdown": self._tool_countdown,
            "ask_llm": self._tool_ask_llm, "ask_user": self._tool_ask_user,
            "whoami": lambda args, call: _text_result(
                f"pid {os.getpid()}", structured={"pid": os.getpid()}),
            "fail": lambda args, call: _text_result(
                "this tool always fails (a tool-level error, not a protocol error)", True),
        }
        self._methods: Dict[str, Callable[[JSON], JSON]] = {
            "initialize": self._initialize, "ping": lambda p: {},
            "tools/list": lambda p: {"tools": TOOLS},
            "logging/setLevel": self._set_level,
            "resources/list": lambda p: {"resources": [
                {"uri": uri, "name": name, "mimeType": mime}
                for uri, (name, mime, _) in RESOURCES.items()]},
            "resources/templates/list": lambda p: {"resourceTemplates": []},
            "resources/read": self._read_resource,
            "resources/subscribe": self._subscribe, "resources/unsubscribe": self._subscribe,
            "prompts/list": lambda p: {"prompts": [PROMPT]},
            "prompts/get": self._get_prompt,
        }

    # -- output -------------------------------------------------------------

    def send(self, message: JSON) -> None:
        """Write one message as a single line and flush it (thread-safe)."""
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        # These may appear raw inside strings; escape them so that clients
        # splitting on Unicode line breaks still see one message per line.
        for char in ("\u2028", "\u2029", "\x85"):
            line = line.replace(char, "\\u%04x" % ord(char))
        with self._write_lock:
            if self._closed:
                return
            try:
                self._out.write(line.encode("utf-8") + b"\n")
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._closed = True

    def notify(self, method: str, params: JSON) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def _error(self, request_id: Any, code: int, message: str) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id,
                   "error": {"code": code, "message": message}})

    def log_message(self, level: str, data: Any, logger: str = "demo") -> None:
        """Send a ``notifications/message`` if ``level`` passes logging/setLevel."""
        if LOG_LEVELS.index(level) >= LOG_LEVELS.index(self._log_level):
            self.notify("notifications/message", {"level": level, "logger": logger, "data": data})

    # -- input --------------------------------------------------------------

    def serve(self) -> int:
        """Read messages until stdin closes, then shut down; return the exit status."""
        while True:
            raw = self._in.readline()
            if not raw:
                break
            if raw.strip():
                self._handle_line(raw)
        log.info("stdin closed, shutting down")
        self._eof.set()
        deadline = time.monotonic() + EOF_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._write_lock:
            self._closed = True
        return 0

    def _handle_line(self, raw: bytes) -> None:
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            log.warning("unparseable line: %s", e)
            self._error(None, PARSE_ERROR, f"Parse error: {e}")
            return
        if not isinstance(message, dict):
            self._error(None, INVALID_REQUEST, "Invalid Request: expected a JSON object")
            return
        if "method" not in message and ("result" in message or "error" in message):
            self._handle_response(message.get("id"), message)  # never answer a response
            return
        request_id = message.get("id")
        has_id = "id" in message
        if has_id and (isinstance(request_id, bool) or not isinstance(request_id, (str, int))):
            self._error(None, INVALID_REQUEST, "Invalid Request: bad id")
            return
        method = message.get("method")
        if message.get("jsonrpc") != "2.0" or (method is not None and not isinstance(method, str)):
            self._error(request_id if has_id else None, INVALID_REQUEST, "Invalid Request")
            return
        params = message.get("params", {})
        if method is None:
            self._error(request_id if has_id else None, INVALID_REQUEST, "Invalid Request")
        elif not has_id:
            self._handle_notification(method, params)
        elif method != "tools/call" and method not in self._methods:
            self._error(request_id, METHOD_NOT_FOUND, f"Method not found: {method}")
        elif not isinstance(params, dict):
            self._error(request_id, INVALID_PARAMS, "Invalid params: expected an object")
        elif method == "tools/call":
            self._start_tool_call(request_id, params)
        else:
            try:
                result = self._methods[method](params)
            except RpcError as e:
                self._error(request_id, e.code, e.message)
            else:
                self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def _handle_notification(self, method: str, params: Any) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            with self._state_lock:
                call = self._calls.get(json.dumps(params.get("requestId")))
            if call is not None:
                log.info("cancelling request %r (%s)", call.id, params.get("reason", ""))
                call.cancelled.set()
        elif method == "notifications/initialized":
            log.info("client initialized")
        # Other notifications (progress, roots/list_changed, ...) need no action.

    def _handle_response(self, request_id: Any, message: JSON) -> None:
        with self._state_lock:
            slot = self._waiting.get(request_id) if isinstance(request_id, str) else None
        if slot is None:
            log.warning("response to unknown request %r ignored: %s", request_id, message)
            return
        slot[1] = message
        slot[0].set()

    # -- plain requests -----------------------------------------------------

    def _initialize(self, params: JSON) -> JSON:
        asked = params.get("protocolVersion")
        caps = params.get("capabilities")
        self._client_caps = caps if isinstance(caps, dict) else {}
        return {
            "protocolVersion": asked if asked in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}, "logging": {},
                             "resources": {"subscribe": True, "listChanged": False},
                             "prompts": {"listChanged": False}},
            "serverInfo": {"name": "mcpbridge-demo", "title": "mcpbridge demo server",
                           "version": VERSION},
            "instructions": "A demo server: try the echo, add and countdown tools.",
        }

    def _set_level(self, params: JSON) -> JSON:
        level = params.get("level")
        if level not in LOG_LEVELS:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown log level {level!r}")
        self._log_level = level
        return {}

    def _resource_uri(self, params: JSON) -> str:
        uri = params.get("uri")
        if not isinstance(uri, str) or uri not in RESOURCES:
            raise RpcError(INVALID_PARAMS, f"Resource not found: {uri!r}")
        return uri

    def _read_resource(self, params: JSON) -> JSON:
        uri = self._resource_uri(params)
        _, mime, text = RESOURCES[uri]
        return {"contents": [{"uri": uri, "mimeType": mime, "text": text}]}

    def _subscribe(self, params: JSON) -> JSON:
        self._resource_uri(params)  # static resources: nothing will ever change
        return {}

    def _get_prompt(self, params: JSON) -> JSON:
        if params.get("name") != PROMPT["name"]:
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: {params.get('name')!r}")
        args = params.get("arguments")
        name = args.get("name") if isinstance(args, dict) else None
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "Missing required argument 'name'")
        text = f"Please write a short, friendly greeting for {name}."
        return {"description": PROMPT["description"],
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}]}

    # -- tool calls ---------------------------------------------------------

    def _start_tool_call(self, request_id: Any, params: JSON) -> None:
        """Validate a tools/call and run the tool in its own thread."""
        name, args = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or name not in self._tools:
            self._error(request_id, INVALID_PARAMS, f"Unknown tool: {name!r}")
            return
        if not isinstance(args, dict):
            self._error(request_id, INVALID_PARAMS, "Invalid params: arguments must be an object")
            return
        call = Call(request_id, params)
        with self._state_lock:
            self._calls[json.dumps(request_id)] = call
        thread = threading.Thread(target=self._run_tool, args=(call, name, args),
                                  name=f"tool-{name}-{request_id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run_tool(self, call: Call, name: str, args: JSON) -> None:
        reply: Optional[JSON]
        try:
            reply = {"result": self._tools[name](args, call)}
        except ToolError as e:
            reply = {"result": _text_result(str(e), is_error=True)}
        except Cancelled:
            reply = None
        except Exception as e:  # a bug in a tool must not kill the server
            log.exception("tool %s crashed", name)
            reply = {"error": {"code": INTERNAL_ERROR, "message": f"Internal error: {e}"}}
        finally:
            with self._state_lock:
                self._calls.pop(json.dumps(call.id), None)
        if reply is not None and not call.cancelled.is_set():
            self.send({"jsonrpc": "2.0", "id": call.id, **reply})

    def _tool_echo(self, args: JSON, call: Call) -> JSON:
        return _text_result(_arg(args, "text", (str,)))

    def _tool_add(self, args: JSON, call: Call) -> JSON:
        total = _arg(args, "a", (int, float)) + _arg(args, "b", (int, float))
        return _text_result(str(total), structured={"sum": total})

    def _tool_countdown(self, args: JSON, call: Call) -> JSON:
        steps = _arg(args, "steps", (int,), 5)
        interval = _arg(args, "interval", (int, float), 0.2)
        if not 1 <= steps <= 100 or not 0 <= interval <= 60:
            raise ToolError("steps must be 1..100 and interval 0..60 seconds")
        for step in range(1, steps + 1):
            if call.cancelled.wait(interval):
                raise Cancelled()
            message = f"step {step}/{steps}"
            if call.progress_token is not None:
                self.notify("notifications/progress", {
                    "progressToken": call.progress_token, "progress": step,
                    "total": steps, "message": message})
            self.log_message("info", f"countdown {message}", logger="countdown")
        return _text_result(f"done after {steps} steps")

    def _ask_client(self, call: Call, method: str, params: JSON) -> JSON:
        """Send a request to the client and block until its response arrives.

        Raises Cancelled if the tool call is cancelled or stdin closes, and
        ToolError on timeout or if the client answers with an error.
        """
        request_id = f"srv-{next(self._ids)}"
        slot: list[Any] = [threading.Event(), None]
        with self._state_lock:
            self._waiting[request_id] = slot
        try:
            self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            deadline = time.monotonic() + CLIENT_REQUEST_TIMEOUT
            while not slot[0].wait(0.05):
                if call.cancelled.is_set() or self._eof.is_set():
                    self.notify("notifications/cancelled",
                                {"requestId": request_id, "reason": "tool call cancelled"})
                    raise Cancelled()
                if time.monotonic() > deadline:
                    self.notify("notifications/cancelled",
                                {"requestId": request_id, "reason": "timed out"})
                    raise ToolError(f"the client did not answer {method} in time")
        finally:
            with self._state_lock:
                self._waiting.pop(request_id, None)
        reply: JSON = slot[1]
        if "error" in reply or not isinstance(reply.get("result"), dict):
            error = reply.get("error")
            detail = error.get("message") if isinstance(error, dict) else error
            raise ToolError(f"the client answered {method} with an error: {detail}")
        result: JSON = reply["result"]
        return result

    def _tool_ask_llm(self, args: JSON, call: Call) -> JSON:
        question = _arg(args, "question", (str,))
        if "sampling" not in self._client_caps:
            raise ToolError("the client does not support sampling (no 'sampling' capability)")
        result = self._ask_client(call, "sampling/createMessage", {
            "messages": [{"role": "user", "content": {"type": "text", "text": question}}],
            "maxTokens": 200})
        content = result.get("content")
        blocks = content if isinstance(content, list) else [content]
        texts = [b["text"] for b in blocks
                 if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
        if not texts:
            raise ToolError("the client's sampling result contained no text")
        return _text_result("\n".join(texts))

    def _tool_ask_user(self, args: JSON, call: Call) -> JSON:
        question = _arg(args, "question", (str,))
        if "elicitation" not in self._client_caps:
            raise ToolError("the client does not support elicitation (no 'elicitation' capability)")
        result = self._ask_client(call, "elicitation/create", {
            "message": question,
            "requestedSchema": {"type": "object", "properties": {
                "answer": {"type": "string", "description": "Your answer"}},
                "required": ["answer"]}})
        answer = {"action": result.get("action"), "content": result.get("content")}
        return _text_result(json.dumps(answer, ensure_ascii=False), structured=answer)


def main() -> int:
    """Entry point for ``python -m mcpbridge.demo_server``."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="mcpbridge-demo[%(process)d] %(levelname)s %(message)s")
    log.info("mcpbridge demo MCP server %s ready on stdio", VERSION)
    try:
        return DemoServer(sys.stdin.buffer, sys.stdout.buffer).serve()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
