"""
twistd plugin dropin for mcpbridge.  Kept free of imports from mcpbridge so a
broken install cannot make the plugin silently vanish from C{twistd --help}.
"""

from twisted.application.service import ServiceMaker

mcpbridge = ServiceMaker(
    "mcpbridge",
    "mcpbridge.tap",
    "Serve a stdio MCP server over Streamable HTTP",
    "mcpbridge",
)
