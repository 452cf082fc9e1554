"""The configs the `salon agent` tests edit, and how they run the command."""

from __future__ import annotations

import difflib
from pathlib import Path

from typer.testing import CliRunner

from salon.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "salon.yaml"
runner = CliRunner()

# Written by hand for these tests: comments at every level and indentation, blank
# lines, single- and double-quoted strings, an anchor with a merge key and an alias,
# a block scalar, block and flow sequences, a commented-out agent, a cron job, a
# peer, routes, a team, default_agent, and ruamel's two known misspellings (a
# comment after an anchor, an explicit `null`), which must survive too.
COMMENTED = """\
# A config written by hand, to prove `salon agent add/remove` keep every comment.
#
# It has comments at every level, blank lines, quoted strings, an anchor,
# a block scalar, block sequences and a commented-out agent.

x-local: &local   # an anchor the agents reuse
  type: openai
  base_url: "http://127.0.0.1:11434/v1"   # double-quoted
  model: 'qwen2.5'                         # single-quoted
  api_key_env: null

space:
  alias: "salon"
  name: 'The Salon'   # quoted on purpose

access:
  allowed_users:
    - "@*:localhost"      # everyone here
    - '@bob:example.org'
  admins: []

agents:
  # ---- the writers ----
  writer:
    label: "Writer"
    description: 'Drafts prose: essays, "letters" and notes'
    persona: |
      You write clearly.

      You never use jargon.
    backend: *local
    can_delegate_to:
      - researcher   # asks for facts
      - echo

  # ---- the researchers ----
  researcher:
    label: Researcher
    description: Finds facts   # short
    cron:
      - id: digest
        schedule: "0 9 * * *"   # every morning
        prompt: Summarise the news
    backend:
      <<: *local
      model: "llama3"
      # temperature: 0.2
      # max_tokens: 4096

    # its own trailing note, indented like its keys

  # old agent, kept for reference:
  # translator:
  #   backend: {type: echo}

  echo:
    backend: {type: echo, prefix: "echo: "}   # flow mapping
    # prefix could be anything

# Teams answer as one.
teams:
  pair:
    agents:
      - writer
      - researcher   # the fact checker
    mode: coordinate
    lead: writer

# First match wins.
routes:
  - match: {room: "#news:localhost"}   # the news room
    agent: researcher
  - match:
      user: "@bob:example.org"
    agent: echo

default_agent: writer   # who answers by default

peers:
  scout: "@salon_scout:example.org"   # hosted elsewhere

# The end: settings left at their defaults.
# turns:
#   concurrency: 32
"""

# The lines of COMMENTED that belong to the researcher (its own comments included).
RESEARCHER_BLOCK = COMMENTED[
    COMMENTED.index("  researcher:\n") : COMMENTED.index("  # old agent")
].splitlines(keepends=True)


def _commented(tmp_path: Path) -> Path:
    path = tmp_path / "salon.yaml"
    path.write_text(COMMENTED, encoding="utf-8")
    return path


def _salon(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _changes(before: str, after: str) -> list[tuple[str, list[str], list[str]]]:
    """The differing runs of lines: (tag, lines before, lines after)."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        (tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    ]
