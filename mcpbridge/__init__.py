"""
mcpbridge: serve a stdio MCP server over Streamable HTTP.
"""

__version__ = "0.1.0"
