"""`salon agent list | show | add | remove` and `salon reload`.

`add` / `remove` edit the YAML file in place: every comment, blank line, quote
and the order of the keys they do not touch stay as they were; the result is
validated with the real loader first, and a refused edit leaves the file
byte-for-byte unchanged.
"""

from __future__ import annotations

import difflib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from salon.cli import agents_cmd, pidfile
from salon.cli.agents_cmd import splice
from salon.cli.main import app
from salon.config import load_config

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


@pytest.fixture(params=["example", "commented"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of examples/salon.yaml, or of the purpose-written one, in tmp_path."""
    path = tmp_path / "salon.yaml"
    if request.param == "example":
        shutil.copyfile(EXAMPLE, path)
    else:
        path.write_text(COMMENTED, encoding="utf-8")
    return path


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


# ------------------------------------------------------------ add then remove


@pytest.mark.parametrize(
    "options",
    [
        ["--backend", "openai", "--model", "qwen2.5", "--label", "Coder"],
        ["--backend", "http", "--base-url", "http://127.0.0.1:9000", "--description", "a: b"],
        ["--backend", "python", "--entry", "salon.demo.clock:Clock"],
    ],
)
def test_add_then_remove_keeps_the_file(config: Path, options: list[str]) -> None:
    before = config.read_text(encoding="utf-8")
    code, out = _salon("agent", "add", "coder", *options, "-c", config)
    assert code == 0, out
    added = config.read_text(encoding="utf-8")

    # Only lines added, all of them one block: the new agent at the end of `agents:`,
    # before the next section's comments.
    changes = _changes(before, added)
    assert [tag for tag, _, _ in changes] == ["insert"], changes
    block = "".join(changes[0][2])
    assert block.startswith("  coder:\n"), block
    assert "#" not in block  # no comment moved into (or out of) it
    assert added.index("  coder:") < added.index("teams:")
    assert "coder" in load_config(config).agents

    code, out = _salon("agent", "remove", "coder", "-c", config)
    assert code == 0, out
    assert config.read_text(encoding="utf-8") == before


def test_add_lands_before_the_next_sections_header(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    shutil.copyfile(EXAMPLE, path)
    assert _salon("agent", "add", "coder", "-c", path)[0] == 0
    text = path.read_text(encoding="utf-8")
    # The assistant's commented-out options stay with it, the team header with `teams:`.
    assert text.index("# max_tool_calls_per_round") < text.index("  coder:")
    assert text.index("  coder:") < text.index("# A team has its own user")


def test_add_creates_home_and_soul(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    data_dir = tmp_path / "data"
    code, out = _salon(
        "agent", "add", "poet", "--persona", "You write haiku.", "-c", path, "-d", data_dir
    )
    assert code == 0, out
    home = data_dir / "agents" / "poet"
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / "SOUL.md").read_text(encoding="utf-8") == "You write haiku."
    assert "No gateway runs from" in out
    # Removed, then added again: the home and its SOUL.md were kept and are reused.
    assert _salon("agent", "remove", "poet", "-c", path, "-d", data_dir)[0] == 0
    assert (home / "SOUL.md").exists()
    code, out = _salon("agent", "add", "poet", "--persona", "Other.", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert (home / "SOUL.md").read_text(encoding="utf-8") == "You write haiku."
    assert "kept the SOUL.md already there" in out


def test_add_keeps_the_file_mode(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    path.chmod(0o640)
    assert _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    assert path.stat().st_mode & 0o777 == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_crlf_file_keeps_its_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    assert _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    raw = path.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert _salon("agent", "remove", "coder", "-c", path, "-d", tmp_path / "d")[0] == 0
    assert path.read_bytes() == COMMENTED.replace("\n", "\r\n").encode()


def test_a_file_changed_meanwhile_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _commented(tmp_path)
    validate = agents_cmd._validate

    def validate_then_someone_edits(*args: Any) -> Any:
        result = validate(*args)
        path.write_text(COMMENTED + "# edited by hand meanwhile\n", encoding="utf-8")
        return result

    monkeypatch.setattr(agents_cmd, "_validate", validate_then_someone_edits)
    code, out = _salon("agent", "add", "coder", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert "changed while it was being edited" in out
    assert path.read_text(encoding="utf-8") == COMMENTED + "# edited by hand meanwhile\n"


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("agent_id", "options", "says"),
    [
        ("Bad Id", [], "invalid agent id 'Bad Id'"),  # the loader's own error
        ("-x", [], "invalid agent id"),
        ("echo", [], "'echo' is already an agent"),
        ("pair", [], "'pair' is already a team"),
        ("scout", [], "'scout' is a peer"),
        ("coder", ["--backend", "openai"], "agents.coder.backend.model"),  # model missing
        ("coder", ["--model", "gpt"], "--model: not an option of the echo backend"),
        ("coder", ["--backend", "telepathy"], "use one of echo, openai, http, python"),
    ],
)
def test_add_refuses_and_leaves_the_file(
    tmp_path: Path, agent_id: str, options: list[str], says: str
) -> None:
    path = _commented(tmp_path)
    data_dir = tmp_path / "data"
    # `--` so that an id starting with '-' is taken as the id.
    code, out = _salon("agent", "add", "-c", path, "-d", data_dir, *options, "--", agent_id)
    assert code == 2, out
    assert says in out
    assert path.read_text(encoding="utf-8") == COMMENTED
    assert not data_dir.exists()


def test_invalid_id_error_points_at_the_line(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "add", "Bad", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert f"{path}:" in out and "agents.Bad" in out
    assert "is unchanged" in out


def test_remove_refuses_while_named_and_lists_each_reference(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "researcher", "-c", path, "-d", tmp_path / "d")
    assert code == 2, out
    lines = COMMENTED.splitlines()
    for where, line in (
        ("routes[0].agent", '  - match: {room: "#news:localhost"}   # the news room'),
        ("teams.pair.agents", "    agents:"),
        ("agents.writer.can_delegate_to", "    can_delegate_to:"),
    ):
        assert f"{where} (line {lines.index(line) + 1})" in out
    assert "--force" in out
    assert path.read_text(encoding="utf-8") == COMMENTED

    code, out = _salon("agent", "remove", "writer", "-c", path, "-d", tmp_path / "d")
    assert code == 2, out
    assert "teams.pair.lead" in out and "default_agent" in out
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_remove_unknown_or_peer_is_refused(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "nobody", "-c", path, "-d", tmp_path / "d")
    assert code == 2 and "unknown agent 'nobody'" in out
    code, out = _salon("agent", "remove", "scout", "-c", path, "-d", tmp_path / "d")
    assert code == 2 and "is a peer" in out
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_refused_when_the_result_would_not_load(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text("# only one\nagents:\n  solo:  # the one\n    backend: echo\n")
    before = path.read_text()
    code, out = _salon("agent", "remove", "solo", "-c", path, "-d", tmp_path / "d")
    assert code == 2
    assert "at least one agent is required" in out
    assert path.read_text() == before


# ----------------------------------------------------------------- --force


def test_force_removes_the_references_and_says_which(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "researcher", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed route 0 (to researcher)" in out
    assert "removed researcher from the members of team pair" in out
    assert "removed researcher from the delegates of writer" in out
    assert "Kept its home dir" in out and "Matrix room" in out

    after = path.read_text(encoding="utf-8")
    cfg = load_config(path)
    assert "researcher" not in cfg.agents
    assert cfg.teams["pair"].agents == ["writer"]
    assert [r.agent for r in cfg.routes] == ["echo"]
    assert cfg.agents["writer"].can_delegate_to == ["echo"]
    # Exactly these lines deleted: the agent's block (its own comments with it, up to
    # the blank line before the next header) and one line per reference; every other
    # comment, including the commented-out agent after the removed one, stays in place.
    expected = COMMENTED
    for gone in (
        "      - researcher   # asks for facts\n",
        "".join(RESEARCHER_BLOCK[:-1]),
        "      - researcher   # the fact checker\n",
        '  - match: {room: "#news:localhost"}   # the news room\n    agent: researcher\n',
    ):
        assert expected.count(gone) == 1
        expected = expected.replace(gone, "")
    assert after == expected
    assert "  # old agent, kept for reference:\n" in after


def test_force_clears_lead_and_default_agent_and_drops_an_empty_team(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    code, out = _salon("agent", "remove", "writer", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed the lead of team pair (now its first member, researcher)" in out
    assert "cleared default_agent" in out
    cfg = load_config(path)
    assert cfg.default_agent is None
    assert cfg.teams["pair"].lead is None and cfg.teams["pair"].agents == ["researcher"]
    after = path.read_text(encoding="utf-8")
    assert "# The end: settings left at their defaults." in after  # after default_agent

    code, out = _salon("agent", "remove", "researcher", "--force", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "removed team pair (no members left)" in out
    cfg = load_config(path)
    assert cfg.teams == {} and set(cfg.agents) == {"echo"}
    assert [r.agent for r in cfg.routes] == ["echo"]
    after = path.read_text(encoding="utf-8")
    for comment in ("# Teams answer as one.", "# First match wins.", "# The end:", "# old agent"):
        assert comment in after


# --------------------------------------------------------------- list, show


def test_list_shows_agents_teams_and_peers(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    skills = tmp_path / "agents" / "echo" / "skills"
    skills.mkdir(parents=True)
    (skills / "a.md").write_text("one")
    (skills / "b.md").write_text("two")
    code, out = _salon("agent", "list", "-c", path, "-d", tmp_path)
    assert code == 0, out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(rows) == {"writer", "researcher", "echo", "pair", "scout"}
    assert "openai qwen2.5" in rows["writer"] and "openai llama3" in rows["researcher"]
    assert "│ 2 " in rows["echo"]
    assert "team" in rows["pair"] and "peer" in rows["scout"]


def test_show_lists_identity_home_soul_skills_cron(tmp_path: Path) -> None:
    path = _commented(tmp_path)
    home = tmp_path / "agents" / "researcher"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "facts.md").write_text("Cite sources.")
    (home / "SOUL.md").write_text("You dig.")
    code, out = _salon("agent", "show", "researcher", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "@salon_researcher:localhost" in out
    assert "#salon-researcher:localhost" in out
    assert str(home) in out
    assert "present (8 bytes)" in out
    assert "facts.md (13 bytes)" in out
    assert "cron digest" in out and "0 9 * * *" in out and "Summarise the news" in out


def test_show_hides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "salon.yaml"
    path.write_text(
        "homeserver: {url: http://127.0.0.1:8008, server_name: example.org}\n"
        "agents:\n"
        "  up:\n"
        "    backend:\n"
        "      type: http\n"
        "      base_url: https://user:hunter2@upstream.example/v1\n"
        "      headers: {Authorization: Bearer s3cr3t}\n"
        "      token_env: UP_TOKEN\n"
    )
    code, out = _salon("agent", "show", "up", "-c", path, "-d", tmp_path)
    assert code == 0, out
    assert "hunter2" not in out and "s3cr3t" not in out
    assert "Authorization: ***" in out and "UP_TOKEN" in out
    assert "@salon_up:example.org" in out  # from the roster of the homeserver


# ------------------------------------------------------------------ reload

CHILD = """
import signal, sys, time
from pathlib import Path
from salon.cli import agents_cmd, pidfile

data_dir, marker, trap = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "trap"
if trap:
    signal.signal(signal.SIGHUP, lambda *_: marker.write_text("reloaded"))
with pidfile.holding(data_dir, "run"):
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path]]:
    """A stand-in for a running gateway: holds <data_dir>/salon.pid; with ``trap``
    it writes a marker file on SIGHUP. Yields (data dir, marker)."""
    trap = getattr(request, "param", "trap")
    data_dir, marker = tmp_path / "data", tmp_path / "hup"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(marker), trap],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield data_dir, marker
        assert proc.poll() is None, "the stand-in gateway died"
    finally:
        proc.kill()
        proc.wait()


def _wait_for(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_reload_signals_the_running_gateway(gateway: tuple[Path, Path]) -> None:
    data_dir, marker = gateway
    code, out = _salon("reload", "--data-dir", data_dir)
    assert code == 0, out
    assert "Asked salon run (pid" in out
    assert _wait_for(marker)


def test_reload_finds_the_gateway_through_the_config(
    gateway: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, marker = gateway
    path = tmp_path / "salon.yaml"
    path.write_text(f"data_dir: {data_dir}\nagents: {{e: {{backend: echo}}}}\n")
    code, out = _salon("reload", "-c", path)
    assert code == 0, out
    assert _wait_for(marker)


def test_reload_without_a_gateway_says_not_running(tmp_path: Path) -> None:
    code, out = _salon("reload", "--data-dir", tmp_path)
    assert code == 1
    assert f"Salon is not running from {tmp_path}" in out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("gateway", ["no-trap"], indirect=True)
def test_reload_spares_a_gateway_without_a_sighup_handler(gateway: tuple[Path, Path]) -> None:
    data_dir, _ = gateway
    code, out = _salon("reload", "--data-dir", data_dir)
    assert code == 1
    assert "does not reload on SIGHUP" in out
    # The fixture checks it still runs: SIGHUP's default action would have ended it.
    info = pidfile.running(data_dir)
    assert info is not None and pidfile.handles_signal(info.pid, signal.SIGHUP) is False


def test_add_and_remove_tell_the_running_gateway(
    gateway: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir, marker = gateway
    path = _commented(tmp_path)
    code, out = _salon("agent", "add", "coder", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert "Asked salon run (pid" in out and "to reload its config" in out
    assert _wait_for(marker)
    marker.unlink()
    code, out = _salon("agent", "remove", "coder", "-c", path, "-d", data_dir)
    assert code == 0, out
    assert _wait_for(marker)
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pidfile.path(tmp_path).write_text(
        f'{{"pid": {proc.pid}, "command": "run", "started_ms": 0, "cmdline": ["x"]}}'
    )
    code, out = _salon("reload", "--data-dir", tmp_path)
    assert code == 1 and "stale pid file" in out
    assert not pidfile.path(tmp_path).exists()


# ------------------------------------------------------------------ splice


def test_splice_keeps_lines_the_writer_would_change() -> None:
    original = "a: null   # spelled out\nb: 1\n"
    noop = "a:   # spelled out\nb: 1\n"  # what ruamel writes back
    edited = "a:   # spelled out\nb: 1\nc: 2\n"
    assert splice(original, noop, edited) == "a: null   # spelled out\nb: 1\nc: 2\n"
    # An edit of a line the writer changes cannot be spliced.
    assert splice(original, noop, "a: 3\nb: 1\n") is None


def test_pid_of_this_process_handles_what_it_traps() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    old = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        assert pidfile.handles_signal(os.getpid(), signal.SIGUSR1) is True
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert pidfile.handles_signal(os.getpid(), signal.SIGUSR2) is False
