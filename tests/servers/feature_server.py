"""
A small stdio MCP server, built with the official ``mcp`` SDK (>= 2.3), for
mcpbridge's integration tests (``tests/test_integration_sdk.py``).

Run it as ``python tests/servers/feature_server.py``; it speaks
newline-delimited JSON-RPC on stdin/stdout (handshake era: the client opens
with ``initialize``) and ends when stdin closes.  Each tool exercises one
thing a bridge has to carry:

=============  ===============================================================
tool           what it does
=============  ===============================================================
``echo``       returns ``text`` unchanged
``slow_echo``  sleeps ``delay`` seconds, then returns ``text`` (concurrent,
               out-of-order answers)
``progress``   sends ``steps`` progress notifications ``delay`` s apart (only
               if the call carried a ``progressToken``), returns ``done <n>``
``log``        sends ``count`` ``notifications/message`` log messages
``sample``     asks the client for ``sampling/createMessage`` with ``prompt``
               and returns ``sampled: <the client's text>``
``elicit``     asks the client for ``elicitation/create`` (a form with a
               ``name`` string) and returns ``<action> <content as JSON>``
``roots``      asks the client for ``roots/list`` and returns the root URIs
               as a JSON list
``pid``        returns this process's id
``touch``      sends ``notifications/resources/updated`` for ``uri`` (default
               ``test://watched``) if it is subscribed, then
               ``notifications/tools/list_changed``; returns what it sent
=============  ===============================================================

Resources: ``test://watched`` (text, subscribable with
``resources/subscribe``).  Server-to-client requests are sent with the
calling request's id as ``related_request_id``; over stdio that changes
nothing on the wire (the bridge has to route them by its own rule).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata

# Sampling, roots and logging are deprecated as of 2026-07-28 but are exactly
# what these handshake-era tests exercise.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

NAME = "mcpbridge-feature-server"
WATCHED = "test://watched"
INVALID_PARAMS = -32602

Ctx = ServerRequestContext[Any, Any]


def _tool(name: str, description: str, properties: dict[str, Any] | None = None,
          required: tuple[str, ...] = ()) -> types.Tool:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = list(required)
    return types.Tool(name=name, description=description, input_schema=schema)


_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}

TOOLS = [
    _tool("echo", "Return text unchanged.", {"text": _STR}, ("text",)),
    _tool("slow_echo", "Sleep delay seconds, then return text.", {"text": _STR, "delay": _NUM},
          ("text",)),
    _tool("progress", "Report steps progress notifications, delay seconds apart.",
          {"steps": _INT, "delay": _NUM}),
    _tool("log", "Send count log messages.", {"count": _INT, "level": _STR}),
    _tool("sample", "Ask the client to sample a message for prompt.", {"prompt": _STR}, ("prompt",)),
    _tool("elicit", "Ask the client for a name (elicitation/create).", {"message": _STR}),
    _tool("roots", "Ask the client for its roots and return their URIs."),
    _tool("pid", "Return this server's process id."),
    _tool("touch", "Send resources/updated (if subscribed) and tools/list_changed.",
          {"uri": _STR}),
]


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


class FeatureServer:
    """Handlers and per-process state (the subscribed URIs)."""

    def __init__(self) -> None:
        self.subscriptions: set[str] = set()

    async def _ask(self, ctx: Ctx, request: Any, result_type: Any) -> Any:
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        return await ctx.session.send_request(request, result_type, metadata=metadata)

    async def list_tools(self, ctx: Ctx, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = dict(params.arguments or {})
        name = params.name
        if name == "echo":
            return _text(str(args.get("text", "")))
        if name == "slow_echo":
            await anyio.sleep(float(args.get("delay", 0.5)))
            return _text(str(args.get("text", "")))
        if name == "progress":
            steps = int(args.get("steps", 3))
            delay = float(args.get("delay", 0.05))
            for i in range(1, steps + 1):
                await ctx.session.report_progress(float(i), float(steps), f"step {i}")
                if i < steps:
                    await anyio.sleep(delay)
            return _text(f"done {steps}")
        if name == "log":
            count = int(args.get("count", 3))
            level = args.get("level", "info")
            for i in range(1, count + 1):
                await ctx.session.send_log_message(level, f"log message {i}", logger=NAME,
                                                   related_request_id=ctx.request_id)
            return _text(f"logged {count}")
        if name == "sample":
            request = types.CreateMessageRequest(params=types.CreateMessageRequestParams(
                messages=[types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=str(args["prompt"])))],
                max_tokens=50))
            result = await self._ask(ctx, request, types.CreateMessageResult)
            content = result.content
            text = content.text if isinstance(content, types.TextContent) else repr(content)
            return _text(f"sampled: {text}")
        if name == "elicit":
            request = types.ElicitRequest(params=types.ElicitRequestFormParams(
                message=str(args.get("message", "Who are you?")),
                requested_schema={"type": "object", "properties": {"name": _STR},
                                  "required": ["name"]}))
            result = await self._ask(ctx, request, types.ElicitResult)
            return _text(f"{result.action} {json.dumps(result.content or {}, sort_keys=True)}")
        if name == "roots":
            result = await self._ask(ctx, types.ListRootsRequest(), types.ListRootsResult)
            return _text(json.dumps([str(root.uri) for root in result.roots]))
        if name == "pid":
            return _text(str(os.getpid()))
        if name == "touch":
            uri = str(args.get("uri", WATCHED))
            sent = []
            if uri in self.subscriptions:
                await ctx.session.send_resource_updated(uri)
                sent.append("notifications/resources/updated")
            await ctx.session.send_tool_list_changed()
            sent.append("notifications/tools/list_changed")
            return _text(json.dumps(sent))
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")

    async def list_resources(self, ctx: Ctx, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[
            types.Resource(uri=WATCHED, name="watched", mime_type="text/plain",
                           description="A resource clients may subscribe to")])

    async def read_resource(self, ctx: Ctx,
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        if params.uri != WATCHED:
            raise MCPError(code=INVALID_PARAMS, message="Resource not found", data={"uri": params.uri})
        return types.ReadResourceResult(contents=[
            types.TextResourceContents(uri=WATCHED, mime_type="text/plain", text="watched")])

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        self.subscriptions.add(params.uri)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self.subscriptions.discard(params.uri)
        return types.EmptyResult()

    async def set_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    def build(self) -> Server[Any]:
        return Server(
            NAME, version="1.0.0",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_subscribe_resource=self.subscribe,
            on_unsubscribe_resource=self.unsubscribe,
            on_set_logging_level=self.set_level,
        )


async def serve() -> None:
    server = FeatureServer().build()
    options = server.create_initialization_options(
        NotificationOptions(tools_changed=True, resources_changed=True))
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, options)


def main() -> int:
    anyio.run(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
