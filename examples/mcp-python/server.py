"""A sessionful MCP server on FastMCP (the `mcp` package, 1.x), made for mcpd.

Streamable HTTP on /mcp (or, with TRANSPORT=sse, the deprecated HTTP+SSE pair /sse and
/messages/), on the socket mcpd hands over (LISTEN_FDS) or on $PORT. uvicorn drains on SIGTERM:
it stops accepting and lets open requests finish.
"""

import os

import uvicorn
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("mcpd-example-python")


@mcp.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@mcp.tool()
def echo(text: str) -> str:
    """Echo a text, saying which process answered."""
    return f"{text} (pid {os.getpid()})"


def main():
    app = mcp.sse_app() if os.environ.get("TRANSPORT") == "sse" else mcp.streamable_http_app()
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) > 0:
        config = uvicorn.Config(app, fd=3, log_level="info")  # the socket mcpd (or systemd) bound
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3200")), log_level="info")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
