"""A small MCP server shipped with the demo: a notebook on disk, spoken to over stdio.

Built with the official ``mcp`` SDK (``MCPServer``); the demo config runs it as
``module: salon.demo.notebook_server`` with ``NOTEBOOK_FILE`` naming its JSON file
(default ``notebook.json`` in its working directory). Tools: ``write_note``,
``read_notes``, ``forget_note``. Any MCP client can use it, not only Salon.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mcp.server.mcpserver import MCPServer

MAX_NOTES = 200
MAX_CHARS = 1000

app = MCPServer("notebook")


def _file() -> Path:
    return Path(os.environ.get("NOTEBOOK_FILE", "notebook.json"))


def _load() -> list[str]:
    try:
        notes = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(n) for n in notes] if isinstance(notes, list) else []


def _save(notes: list[str]) -> None:
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary file, then rename: a crash never leaves half a notebook.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".notebook-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(notes, out, ensure_ascii=False)
    os.replace(tmp, path)


@app.tool()
def write_note(text: str) -> str:
    """Write a note into the notebook; says its number."""
    text = " ".join(text.split())[:MAX_CHARS]
    if not text:
        return "Nothing to write."
    notes = _load()
    if len(notes) >= MAX_NOTES:
        return f"The notebook is full ({MAX_NOTES} notes); forget one first."
    notes.append(text)
    _save(notes)
    return f"Written as note {len(notes)}."


@app.tool()
def read_notes() -> str:
    """Every note in the notebook, numbered."""
    notes = _load()
    if not notes:
        return "The notebook is empty."
    return "\n".join(f"{i}. {note}" for i, note in enumerate(notes, 1))


@app.tool()
def forget_note(number: int) -> str:
    """Tear out note ``number`` (as read_notes numbers them)."""
    notes = _load()
    if not 1 <= number <= len(notes):
        return f"There is no note {number} (the notebook has {len(notes)})."
    gone = notes.pop(number - 1)
    _save(notes)
    return f"Forgot note {number}: {gone}"


if __name__ == "__main__":
    app.run()
