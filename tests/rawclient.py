"""
A minimal Streamable HTTP client over http.client, for tests that need exact
control over requests and see exactly what the bridge answers.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .support import Bridge, http_request


class Client:
    """
    A minimal Streamable HTTP client over http.client, for exact control.
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.session: Optional[str] = None
        self.ids = 0

    def post(self, obj: Any, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        return http_request(self.bridge.port, "POST", "/mcp", json.dumps(obj).encode(),
                            headers, timeout=timeout)

    def initialize(self) -> None:
        status, headers, body = self.initializeRaw()
        assert status == 200, body
        self.session = headers["mcp-session-id"]

    def initializeRaw(self, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
        return self.post({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}, timeout=timeout)

    def call(self, name: str, timeout: float = 60, **arguments: Any) -> dict[str, Any]:
        """
        Call a tool; the answer must be a JSON body with status 200.
        """
        status, headers, body = self.rawCall(name, timeout=timeout, **arguments)
        assert status == 200, (status, body[:300])
        assert headers["content-type"] == "application/json", headers
        return json.loads(body)

    def rawCall(self, name: str, timeout: float = 60,
                **arguments: Any) -> tuple[int, dict[str, str], bytes]:
        self.ids += 1
        return self.post({"jsonrpc": "2.0", "id": self.ids, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}}, timeout=timeout)

    def delete(self) -> int:
        assert self.session
        return http_request(self.bridge.port, "DELETE", "/mcp",
                            headers={"Mcp-Session-Id": self.session})[0]


