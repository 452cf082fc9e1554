"""A real MCP server for the tests, built with the official SDK (2.x ``MCPServer``), on stdio."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("notes")
NOTES: list[str] = []


@app.tool()
def add_note(text: str) -> str:
    """Keep a note; says its number."""
    NOTES.append(text)
    return f"noted #{len(NOTES)}: {text}"


@app.tool()
def pid() -> str:
    """The server's process id (the tests kill it)."""
    return str(os.getpid())


@app.tool()
async def slow(seconds: float) -> str:
    """Answer after ``seconds``."""
    import asyncio

    await asyncio.sleep(seconds)
    return "slept"


@app.tool()
def big(chars: int) -> str:
    """A result of ``chars`` characters."""
    return "x" * chars


@app.tool()
def auth(ctx: Context) -> str:
    """The Authorization and X-Team headers the HTTP request came with."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", {})
    return f"{headers.get('authorization')}|{headers.get('x-team')}"


@app.tool()
def secret_env() -> str:
    """What the child sees of the gateway's secrets (must be nothing)."""
    return os.environ.get("SALON_TEST_SECRET", "<unset>") + "|" + os.environ.get("NOTE_KEY", "")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":  # streamable HTTP on this port
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    app.run()
    if os.environ.get("NOTES_OUTLIVE_STDIN"):  # a server that ignores its stdin closing
        import time

        time.sleep(3600)
