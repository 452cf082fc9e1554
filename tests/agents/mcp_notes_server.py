"""A real MCP server for the tests, built with the official SDK (2.x ``MCPServer``), on stdio."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

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
def secret_env() -> str:
    """What the child sees of the gateway's secrets (must be nothing)."""
    return os.environ.get("SALON_TEST_SECRET", "<unset>") + "|" + os.environ.get("NOTE_KEY", "")


if __name__ == "__main__":
    app.run()
    if os.environ.get("NOTES_OUTLIVE_STDIN"):  # a server that ignores its stdin closing
        import time

        time.sleep(3600)
