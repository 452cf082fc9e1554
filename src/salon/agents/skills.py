"""Per-agent skills: ``<home>/skills/*.md``, joined into the system prompt after
the persona, in name order, under a size cap.

The files are looked at on every turn (a listing and one ``stat`` each) and read
again only when one was added, removed or changed, so an edited skill applies to
the next turn without a restart, and a skill set over the cap is warned about
once per change rather than on every turn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger("salon.agents.skills")

SKILLS_DIR = "skills"
SUFFIX = ".md"
# All skills of one agent together, in bytes; the files past it are left out.
MAX_SKILLS_BYTES = 32 * 1024

# (name, mtime in ns, size) of each skill file, in name order: a change of any means a re-read.
_Signature = tuple[tuple[str, int, int], ...]


def skills_dir(home: Path) -> Path:
    """Where an agent's skills live."""
    return home / SKILLS_DIR


def _files(home: Path) -> list[tuple[str, os.stat_result]]:
    """The skill files (regular ``*.md`` files, hidden ones aside), in name order."""
    try:
        entries = list(os.scandir(skills_dir(home)))
    except OSError:
        return []  # no skills dir: no skills
    found = []
    for entry in entries:
        if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
            continue
        try:
            if entry.is_file():
                found.append((entry.name, entry.stat()))
        except OSError:
            continue  # gone since the listing
    return sorted(found, key=lambda f: f[0])


def skills(home: Path) -> list[tuple[str, int]]:
    """Every skill file of the agent whose home is ``home``: (file name, size in
    bytes), in the order they join the prompt (those over the cap included)."""
    return [(name, stat.st_size) for name, stat in _files(home)]


@dataclass
class SkillSet:
    """The skills part of one agent's system prompt, re-read only when a file changed."""

    cap_bytes: int = MAX_SKILLS_BYTES
    _signature: _Signature | None = field(default=None, init=False, repr=False)
    _prompt: str | None = field(default=None, init=False, repr=False)

    def prompt(self, home: Path) -> str | None:
        """The skills joined (blank line between them), or None without any.

        Files are taken in name order while their total size stays within the cap;
        the first one that would pass it and every one after it are left out, with
        one warning (until the files change).
        """
        files = _files(home)
        signature = tuple((name, s.st_mtime_ns, s.st_size) for name, s in files)
        if signature != self._signature:
            self._prompt = self._read(home, files)
            self._signature = signature
        return self._prompt

    def _read(self, home: Path, files: list[tuple[str, os.stat_result]]) -> str | None:
        texts: list[str] = []
        total = 0
        skipped: list[str] = []
        for name, _ in files:
            if skipped:
                skipped.append(name)
                continue
            try:
                raw = (skills_dir(home) / name).read_bytes()
            except OSError:
                continue  # gone since the listing
            if total + len(raw) > self.cap_bytes:
                skipped.append(name)
                continue
            total += len(raw)
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                log.warning("skills.not_utf8", home=str(home), skill=name)
                continue
            if text:
                texts.append(text)
        if skipped:
            log.warning(
                "skills.over_cap",
                home=str(home),
                cap_bytes=self.cap_bytes,
                used_bytes=total,
                skipped=skipped,
            )
        return "\n\n".join(texts) or None
