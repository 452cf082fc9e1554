"""`salon agent list | show | add | remove` and `salon reload`.

``add`` and ``remove`` edit the config file in place with ruamel.yaml's
round-trip mode, so its comments, key order and quoting stay as they were:

- the indentation is the one that writes the untouched file back unchanged
  (tried among the usual ones; a file no setting reproduces is still edited,
  with a warning that some other lines get re-indented);
- ruamel keeps a comment with the value just before it, so the comments after
  an agent's last value that belong to what follows it (a header of the next
  section, at the agent's own indentation or less) are moved onto whatever
  now comes before that: adding an agent at the end of ``agents:`` does not
  put it under the next section's header, and removing one does not take the
  next section's header away with it;
- the result is validated with the real loader before anything is written,
  and written atomically (temp file + rename, same mode), only if nobody
  changed the file in the meantime.

Then the running gateway is asked to reload (SIGHUP, see :func:`reload`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from salon._exceptions import SalonError
from salon.agents.profile import SOUL, AgentProfile
from salon.agents.skills import skills, skills_dir
from salon.cli import pidfile
from salon.cli.output import console, err, error_line
from salon.config import HomeserverConfig, load_config, parse_config, read_persona
from salon.config.loader import resolve_entry_point
from salon.config.models import SalonConfig
from salon.ids import AgentId
from salon.roster import Roster

app = typer.Typer(help="The agents of a config: list, show, add, remove.", no_args_is_help=True)

DEFAULT_CONFIG = Path("examples/salon.yaml")
DEFAULT_DATA_DIR = Path("salon-data")
# `salon up` supplies the homeserver section of a config without one; this is its server.
UP_SERVER_NAME = "localhost"
BACKENDS = ("echo", "openai", "http", "python")

ConfigArg = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The salon.yaml (default: the demo config `salon up` runs).",
        show_default=False,
    ),
]
DataDirArg = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Where the agents' home dirs are and the gateway runs from (default: the"
        " config's data_dir with --config, else salon-data, as `salon up`).",
        show_default=False,
    ),
]


class EditRefused(SalonError):
    """An edit of the config file that is not made (the file is unchanged)."""


# ---------------------------------------------------------------- the YAML document


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _differing_lines(a: str, b: str) -> int:
    matcher = SequenceMatcher(None, a.splitlines(), b.splitlines(), autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    )


def splice(original: str, noop: str, edited: str) -> str | None:
    """The changes from ``noop`` to ``edited`` applied to ``original``.

    ``noop`` is the unedited document as the YAML writer writes it, which may differ
    from ``original`` (the file as written) in a few lines: ruamel cannot reproduce
    every spelling (``null`` written as nothing, the comment after an anchor moved).
    Splicing leaves every line the edit does not touch exactly as it was. None if
    a change falls on a line the writer writes differently.
    """
    o, n, e = (text.splitlines(keepends=True) for text in (original, noop, edited))
    to_o: dict[int, int] = {}
    for a, b, size in SequenceMatcher(None, n, o, autojunk=False).get_matching_blocks():
        to_o.update((a + k, b + k) for k in range(size))
    out: list[str] = []
    pos = 0  # the next line of the original to copy
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, n, e, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:  # lines of noop replaced or deleted: they must be as in the original
            span = [to_o.get(i) for i in range(i1, i2)]
            first = span[0]
            if first is None or span != list(range(first, first + len(span))):
                return None
            start, end = first, first + len(span)
        else:  # lines inserted before noop's line i1: between two lines kept as written
            before = to_o.get(i1 - 1) if i1 > 0 else -1
            after = to_o.get(i1) if i1 < len(n) else len(o)
            if before is None or after is None or after != before + 1:
                return None
            start = end = after
        if start < pos:
            return None
        out += o[pos:start] + e[j1:j2]
        pos = end
    out += o[pos:]
    return "".join(out)


def _same_data(a: str, b: str) -> bool:
    safe = YAML(typ="safe", pure=True)
    try:
        return bool(safe.load(a) == safe.load(b))
    except YAMLError:
        return False


@dataclass
class Document:
    """A config file loaded for editing, and how to write it back as it was written."""

    path: Path
    raw: str  # the file's text as read (line endings kept)
    data: CommentedMap
    yaml: YAML
    noop: str  # the unedited document as the writer writes it
    reformatted: int = 0  # lines outside the edit the last text() writes differently

    @classmethod
    def read(cls, path: Path) -> Document:
        """Load ``path`` (which the loader accepts) for a round-trip edit."""
        with open(path, encoding="utf-8", newline="") as f:
            raw = f.read()
        text = raw.replace("\r\n", "\n")
        try:
            _, indent, block_seq = load_yaml_guess_indent(text)
        except YAMLError as e:
            raise EditRefused(f"{path}: cannot read it for editing: {e}") from None
        indent = indent or 2
        offset = block_seq or 0
        # The indentation that writes the file back as it is (new lines get it too).
        tries = [(indent, max(indent, offset + 2), offset)]
        tries += [(m, s, o) for m in (2, 4) for s, o in ((2, 0), (4, 2), (4, 0), (3, 1), (6, 4))]
        best: tuple[int, YAML, Any, str] | None = None
        for mapping, sequence, off in tries:
            yaml = _yaml(mapping, sequence, off)
            data = yaml.load(text)
            noop = _dump(yaml, data)
            diff = _differing_lines(text, noop)
            if best is None or diff < best[0]:
                best = (diff, yaml, data, noop)
            if diff == 0:
                break
        assert best is not None
        _, yaml, data, noop = best
        if not isinstance(data, CommentedMap):
            raise EditRefused(f"{path}: the top level is not a mapping")
        return cls(path, raw, data, yaml, noop)

    def text(self) -> str:
        """The file's text with the edits made so far: the lines they do not touch as
        they were (if the writer alone would change some, they are spliced in)."""
        original = self.raw.replace("\r\n", "\n")
        edited = _dump(self.yaml, self.data)
        out = edited
        self.reformatted = 0
        if self.noop != original:
            spliced = splice(original, self.noop, edited)
            if spliced is not None and _same_data(spliced, edited):
                out = spliced
            else:
                self.reformatted = _differing_lines(original, self.noop)
        return out.replace("\n", "\r\n") if "\r\n" in self.raw else out

    def mapping(self, key: str) -> CommentedMap | None:
        """The top-level mapping ``key`` (None if absent or not a mapping)."""
        value = self.data.get(key)
        return value if isinstance(value, CommentedMap) else None

    def line_of(self, container: Any, key: Any) -> int | None:
        """1-based line of ``container[key]`` in the file, when known."""
        with contextlib.suppress(Exception):
            if isinstance(container, CommentedMap):
                return int(container.lc.key(key)[0]) + 1
            if isinstance(container, CommentedSeq):
                return int(container.lc.item(key)[0]) + 1
        return None


# ------------------------------------------- comments that follow a value, kept on edits
#
# ruamel keeps the comment lines (and blank lines) after a value as one token on the
# deepest last scalar before them: "the tail". Its first segment is the comment on
# the value's own line, except after a block scalar (`|`, `>`), where every line is
# a full line.


@dataclass
class _Tail:
    eol: str | None  # the comment on the value's own line ('' none); None: block scalar
    lines: list[str]  # full lines after it, each with its indentation, without newline
    token: CommentToken | None = field(default=None, repr=False)


def _is_block(node: Any) -> bool:
    return (
        isinstance(node, CommentedMap | CommentedSeq)
        and bool(_keys(node))
        and not node.fa.flow_style()
    )


def _keys(container: Any) -> list[Any]:
    """The keys (indexes) written in ``container``: not those a ``<<:`` merge brings."""
    if isinstance(container, CommentedMap):
        return [key for key, _ in container.non_merged_items()]
    return list(range(len(container)))


def _last_key(container: CommentedMap | CommentedSeq) -> Any:
    return _keys(container)[-1]


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any]:
    node = container[key]
    while _is_block(node):
        container, key = node, _last_key(node)
        node = container[key]
    return container, key


def _slot_index(container: Any) -> int:
    return 0 if isinstance(container, CommentedSeq) else 2


def _read_tail(container: Any, key: Any) -> _Tail:
    container, key = _tail_slot(container, key)
    block = isinstance(container[key], LiteralScalarString | FoldedScalarString)
    entry = container.ca.items.get(key)
    index = _slot_index(container)
    token = entry[index] if entry and len(entry) > index else None
    if token is None:
        return _Tail(None if block else "", [], None)
    value = token.value
    segments = value.split("\n")
    if value.endswith("\n"):
        segments.pop()
    head, rest = (segments[0], segments[1:]) if segments else ("", [])
    if block:
        column = getattr(token, "column", 0) or 0
        first = " " * column + head if head else ""
        return _Tail(None, [first, *rest], token)
    return _Tail(head, rest, token)


def _write_tail(container: Any, key: Any, tail: _Tail) -> None:
    container, key = _tail_slot(container, key)
    body = "".join(line + "\n" for line in tail.lines)
    value = body  # after a block scalar every line is a full line
    if tail.eol is not None and (tail.eol or body):
        value = tail.eol + "\n" + body
    index = _slot_index(container)
    entry = container.ca.items.setdefault(key, [None, None, None, None])
    if not value:
        entry[index] = None
    elif tail.token is not None and tail.eol:
        tail.token.value = value  # keeps the column of the comment on the value's line
    else:
        entry[index] = CommentToken(value, CommentMark(0), None)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _item_column(container: Any) -> int:
    col = getattr(container.lc, "col", None)
    return int(col) if col is not None else 0


def _split(lines: list[str], column: int) -> tuple[list[str], list[str], list[str]]:
    """(own, blanks, following): ``following`` starts at the first comment line at
    ``column`` or left of it (what comes next, not this item), ``blanks`` are the
    blank lines just before it (or at the end, when nothing follows)."""
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith("#") and _indent(line) <= column
        ),
        len(lines),
    )
    blank = start
    while blank > 0 and not lines[blank - 1].strip():
        blank -= 1
    return lines[:blank], lines[blank:start], lines[start:]


def _attach_before(container: Any, index: int, lines: list[str]) -> None:
    """Put comment lines just before item ``index`` of ``container`` (or at its end)."""
    if not lines:
        return
    if index > 0:
        prev = _keys(container)[index - 1]
        tail = _read_tail(container, prev)
        if tail.lines and not tail.lines[-1].strip():
            while lines and not lines[0].strip():
                lines = lines[1:]
        tail.lines = [*tail.lines, *lines]
        _write_tail(container, prev, tail)
        return
    if container.ca.comment is None:
        container.ca.comment = [None, []]
    if container.ca.comment[1] is None:
        container.ca.comment[1] = []
    for line in lines:
        text = line.strip()
        mark = CommentMark(_indent(line) if text else 0)
        container.ca.comment[1].append(CommentToken(text + "\n", mark, None))


def _delete(container: Any, key: Any) -> list[str]:
    """Delete ``container[key]`` keeping the comments after it that belong to what
    follows; returns them if the container is left empty (for the caller to place)."""
    keys = _keys(container)
    index = keys.index(key)
    _, blanks, following = _split(_read_tail(container, key).lines, _item_column(container))
    del container[key]
    leftover = [*blanks, *following] if following else []
    if not _keys(container):
        return leftover
    _attach_before(container, index, leftover)
    return []


def _delete_key(parent: Any, key: Any) -> None:
    """Delete ``parent[key]``; comments it leaves over go where it was."""
    index = _keys(parent).index(key)
    leftover = _delete(parent, key)
    if leftover and _keys(parent):
        _attach_before(parent, index, leftover)


def _append(container: CommentedMap, key: str, value: CommentedMap) -> None:
    """Add ``key: value`` at the end of a block mapping, before the comments that
    come after its last item but belong to what follows it."""
    if not _is_block(container):
        container[key] = value
        return
    last = _last_key(container)
    tail = _read_tail(container, last)
    own, blanks, following = _split(tail.lines, _item_column(container))
    container[key] = value
    if following:
        tail.lines = [*own, *blanks]
        _write_tail(container, last, tail)
    if blanks or following:
        _write_tail(container, key, _Tail("", [*blanks, *following]))


# ------------------------------------------------------------------- references


@dataclass(frozen=True)
class Reference:
    """A place in the config that names an agent."""

    where: str  # key path, e.g. ``teams.desk.agents``
    line: int | None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def references(doc: Document, agent_id: str) -> list[Reference]:
    """Every place that names ``agent_id``: routes, teams (members, lead), agents'
    ``can_delegate_to`` and team backends, ``default_agent``."""
    found: list[Reference] = []
    data = doc.data
    routes = data.get("routes")
    for i, route in enumerate(_as_list(routes)):
        if isinstance(route, dict) and route.get("agent") == agent_id:
            found.append(Reference(f"routes[{i}].agent", doc.line_of(routes, i)))
    teams: CommentedMap = doc.mapping("teams") or CommentedMap()
    for team_id, team in teams.items():
        if not isinstance(team, dict) or team_id == agent_id:
            continue
        members = team.get("agents")
        if agent_id in _as_list(members):
            found.append(Reference(f"teams.{team_id}.agents", doc.line_of(team, "agents")))
        if team.get("lead") == agent_id:
            found.append(Reference(f"teams.{team_id}.lead", doc.line_of(team, "lead")))
    agents: CommentedMap = doc.mapping("agents") or CommentedMap()
    for other_id, agent in agents.items():
        if not isinstance(agent, dict) or other_id == agent_id:
            continue
        if agent_id in _as_list(agent.get("can_delegate_to")):
            where = f"agents.{other_id}.can_delegate_to"
            found.append(Reference(where, doc.line_of(agent, "can_delegate_to")))
        backend = agent.get("backend")
        if isinstance(backend, dict) and backend.get("type") == "team":
            if agent_id in _as_list(backend.get("members")):
                where = f"agents.{other_id}.backend.members"
                found.append(Reference(where, doc.line_of(backend, "members")))
            if backend.get("lead") == agent_id:
                found.append(
                    Reference(f"agents.{other_id}.backend.lead", doc.line_of(backend, "lead"))
                )
    if data.get("default_agent") == agent_id:
        found.append(Reference("default_agent", doc.line_of(data, "default_agent")))
    return found


def _without(container: Any, key: Any, agent_id: str) -> bool:
    """Remove every ``agent_id`` from the list ``container[key]``; False: it is left empty
    (then nothing is removed, for the caller to decide)."""
    items = container[key]
    positions = [i for i, v in enumerate(items) if v == agent_id]
    if len(positions) == len(items):
        return False
    for i in reversed(positions):
        leftover = _delete(items, i)
        assert not leftover  # the list is not empty
    return True


def _detach(doc: Document, agent_id: str) -> tuple[list[str], list[str]]:
    """Remove every reference to ``agent_id`` (see :func:`references`); returns what was
    done, and the teams left without members (to be removed in turn)."""
    done: list[str] = []
    emptied: list[str] = []
    data = doc.data
    routes = data.get("routes")
    if isinstance(routes, list):
        for i in reversed(range(len(routes))):
            route = routes[i]
            if isinstance(route, dict) and route.get("agent") == agent_id:
                leftover = _delete(routes, i)
                done.append(f"removed route {i} (to {agent_id})")
                if leftover:  # the last route: drop the empty `routes:` too
                    index = _keys(data).index("routes")
                    _delete_key(data, "routes")
                    _attach_before(data, index, leftover)
    teams = doc.mapping("teams") or CommentedMap()
    for team_id, team in list(teams.items()):
        if not isinstance(team, dict) or team_id == agent_id:
            continue
        if agent_id in _as_list(team.get("agents")):
            if _without(team, "agents", agent_id):
                done.append(f"removed {agent_id} from the members of team {team_id}")
            else:
                emptied.append(team_id)
                continue
        if team.get("lead") == agent_id:
            _delete_key(team, "lead")
            members = _as_list(team.get("agents"))
            first = f" (now its first member, {members[0]})" if members else ""
            done.append(f"removed the lead of team {team_id}{first}")
    agents = doc.mapping("agents") or CommentedMap()
    for other_id, agent in list(agents.items()):
        if not isinstance(agent, dict) or other_id == agent_id:
            continue
        if agent_id in _as_list(agent.get("can_delegate_to")):
            if not _without(agent, "can_delegate_to", agent_id):
                # Only it: an empty list (delegates to nobody), not none (to everyone).
                targets = agent["can_delegate_to"]
                rest: list[str] = []
                while len(targets):
                    rest = _delete(targets, len(targets) - 1) or rest
                empty = CommentedSeq()
                empty.fa.set_flow_style()
                agent["can_delegate_to"] = empty
                _attach_before(agent, _keys(agent).index("can_delegate_to"), rest)
            done.append(f"removed {agent_id} from the delegates of {other_id}")
        backend = agent.get("backend")
        if isinstance(backend, dict) and backend.get("type") == "team":
            if agent_id in _as_list(backend.get("members")):
                if _without(backend, "members", agent_id):
                    done.append(f"removed {agent_id} from the members of team {other_id}")
                else:
                    emptied.append(other_id)
                    continue
            if backend.get("lead") == agent_id:
                lead = _as_list(backend.get("members"))[0]
                backend["lead"] = lead
                done.append(f"made {lead} the lead of team {other_id} instead")
    if data.get("default_agent") == agent_id:
        _delete_key(data, "default_agent")
        done.append("cleared default_agent")
    return done, emptied


def _remove_entry(doc: Document, agent_id: str) -> None:
    """Delete the agent (or team) ``agent_id`` itself."""
    for section in ("agents", "teams"):
        entries = doc.mapping(section)
        if entries is not None and agent_id in entries:
            leftover = _delete(entries, agent_id)
            if section == "teams" and not _keys(entries):  # the last team: `teams:` goes
                index = _keys(doc.data).index(section)
                _delete_key(doc.data, section)
                _attach_before(doc.data, index, leftover)
            return


def remove_agent(doc: Document, agent_id: str) -> list[str]:
    """Remove ``agent_id`` and (the caller has checked ``--force``) every reference to
    it; a team left without members goes too, with its references. Returns what was
    done besides removing the agent."""
    done: list[str] = []
    queue = [agent_id]
    removed: set[str] = set()
    while queue:
        current = queue.pop(0)
        if current in removed:
            continue
        removed.add(current)
        if current != agent_id:
            done.append(f"removed team {current} (no members left)")
        _remove_entry(doc, current)
        steps, emptied = _detach(doc, current)
        done += steps
        queue += emptied
    return done


# ----------------------------------------------------------------- config facts


@dataclass(frozen=True)
class Setup:
    """What an agent command works on: the config file, its config and the data dir."""

    path: Path
    config: SalonConfig
    data_dir: Path

    def home(self, agent_id: str) -> Path:
        """The agent's home dir, as the gateway builds it."""
        return self.data_dir / "agents" / agent_id


def _setup(config: Path | None, data_dir: Path | None) -> Setup:
    path = config or DEFAULT_CONFIG
    cfg = load_config(path)
    if data_dir is None:
        data_dir = Path(cfg.data_dir) if config is not None else DEFAULT_DATA_DIR
    return Setup(path, cfg, data_dir)


def _roster(cfg: SalonConfig) -> Roster:
    if cfg.homeserver is None:  # a config for `salon up`, which supplies the homeserver
        homeserver = HomeserverConfig(url="http://localhost:8008", server_name=UP_SERVER_NAME)
        cfg = cfg.model_copy(update={"homeserver": homeserver})
    return Roster.from_config(cfg)


def _backend_summary(backend: Any) -> str:
    kind = getattr(backend, "type", "?")
    if kind == "openai":
        return f"openai {backend.model}"
    if kind == "http":
        return f"http {_safe_url(backend.base_url)}"
    if kind == "python":
        return f"python {backend.entry}"
    if kind == "team":
        return f"team ({backend.mode}): {', '.join(backend.members)}; lead {backend.lead}"
    return str(kind)


_SECRET_KEY = re.compile(r"key|token|secret|passw|auth|cookie|credential", re.IGNORECASE)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secrets masked: header values, keys that name a secret (but not
    ``*_env``, which name a variable), passwords in URLs."""
    if isinstance(value, dict):
        if key == "headers":
            return {k: "***" for k in value}
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and not key.endswith("_env"):
            return "***"
        return _safe_url(value) if "://" in value else value
    return value


def _inline(value: Any) -> str:
    """``value`` as YAML flow style, roughly: ``{type: http, headers: {A: ***}}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "null" if value is None else str(value)


# ---------------------------------------------------------------------- output


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(error_line(message), highlight=False)
    return typer.Exit(code)


def _say(message: str) -> None:
    """Print ``message`` (rich markup; what came from the config is escaped in it)."""
    console.print(message, highlight=False, emoji=False)


def _cells(*values: str) -> list[Text]:
    """Table cells taken literally: no markup, no ``:emoji:`` codes."""
    return [Text(value) for value in values]


def _tell_gateway(data_dir: Path) -> None:
    """Ask the gateway running from ``data_dir`` to reload, and say what happened."""
    try:
        result = pidfile.reload(data_dir)
    except OSError as e:
        _say(f"Could not signal the gateway of {escape(str(data_dir))}: {escape(str(e))}.")
        return
    if result.sent and result.info is not None:
        _say(f"Asked {escape(result.info.label)} to reload its config.")
    elif result.info is not None:
        _say(
            f"{escape(result.info.label)} does not reload on SIGHUP (it predates hot reload):"
            " restart it to apply the change."
        )
    else:
        _say(
            f"No gateway runs from {escape(str(data_dir))}: the change applies when it"
            " starts (for a `salon up`, give its --data-dir)."
        )


# -------------------------------------------------------------------- commands


@app.command("list")
def list_agents(config: ConfigArg = None, data_dir: DataDirArg = None) -> None:
    """Agents and teams of the config (backend, description, skills), then peers."""
    try:
        setup = _setup(config, data_dir)
    except SalonError as e:
        raise _fail(str(e)) from None
    cfg = setup.config
    table = Table("id", "kind", "label", "backend", "description", "skills")
    for column in table.columns:
        column.overflow = "fold"
    for agent_id, agent in cfg.agents.items():
        kind = "team" if getattr(agent.backend, "type", "") == "team" else "agent"
        count = "-" if kind == "team" else str(len(skills(setup.home(agent_id))))
        summary = _backend_summary(agent.backend)
        table.add_row(
            *_cells(agent_id, kind, agent.display_label, summary, agent.description, count)
        )
    for peer_id, peer in cfg.peers.items():
        where = f"elsewhere: {peer.user_id}"
        table.add_row(*_cells(peer_id, "peer", peer.display_label, where, peer.description, "-"))
    console.print(table)


def _rows(setup: Setup, agent_id: str) -> Iterator[tuple[str, str]]:
    """``show``'s lines: (what, value), values already escaped."""
    cfg = setup.config
    agent = cfg.agents[agent_id]
    backend = agent.backend
    team = getattr(backend, "type", "") == "team"
    yield ("id", escape(agent_id) + (" (team)" if team else ""))
    yield ("label", escape(agent.display_label))
    yield ("description", escape(agent.description) or "[dim](none)[/]")
    member = _roster(cfg).member(agent_id)
    note = "" if cfg.homeserver is not None else " [dim](as `salon up` names it)[/]"
    yield ("user", escape(member.user_id) + note)
    yield ("room", escape(member.room_alias) + note)
    if team:
        yield ("members", escape(", ".join(backend.members)))  # type: ignore[union-attr]
        yield ("lead", escape(backend.lead))  # type: ignore[union-attr]
        yield ("mode", escape(backend.mode))  # type: ignore[union-attr]
    else:
        dumped = redact(backend.model_dump(mode="json", exclude_defaults=True))
        dumped = {"type": getattr(backend, "type", "?"), **dumped}
        yield ("backend", escape(_inline(dumped)[1:-1]))
    if agent.matrix is not None:
        yield ("matrix", "credentials configured [dim](not shown)[/]")
    if agent.can_delegate_to is not None:
        yield ("delegates to", escape(", ".join(agent.can_delegate_to)) or "nobody")
    home = setup.home(agent_id)
    yield ("home", escape(str(home)) + ("" if home.is_dir() else " [dim](not created yet)[/]"))
    soul = home / SOUL
    if soul.is_file():
        yield ("SOUL.md", f"present ({soul.stat().st_size} bytes)")
    else:
        persona = read_persona(agent)
        first = (persona or "").strip().splitlines()[0][:80] if persona else ""
        yield ("SOUL.md", "absent" + (f"; config persona: {escape(first)}" if first else ""))
    found = skills(home)
    listing = ", ".join(f"{name} ({size} bytes)" for name, size in found)
    yield ("skills", escape(listing) if found else f"none ({escape(str(skills_dir(home)))}/*.md)")
    for job in agent.cron:
        room = job.room or member.room_alias
        prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:59] + "…"
        yield (
            f"cron {escape(job.id)}",
            escape(f"{job.schedule} ({job.timezone}) → {room}, catch_up {job.catch_up}: {prompt}"),
        )
    if not agent.cron:
        yield ("cron", "none")


@app.command("show")
def show(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent or team id.")],
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """One agent: its config (no secrets), user and room, home dir, SOUL.md, skills, cron."""
    try:
        setup = _setup(config, data_dir)
        if agent_id not in setup.config.agents:
            if agent_id in setup.config.peers:
                peer = setup.config.peers[agent_id]
                _say(f"{escape(agent_id)} is a peer, hosted by another gateway: {peer.user_id}")
                return
            known = ", ".join(setup.config.agents)
            raise _fail(f"unknown agent {agent_id!r} (known: {known})", 1)
        rows = list(_rows(setup, agent_id))
    except SalonError as e:
        raise _fail(str(e)) from None
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        _say(f"[bold]{escape(key.ljust(width))}[/]  {value}")


def _validate(doc: Document, text: str, what: str) -> SalonConfig:
    try:
        return parse_config(
            text.replace("\r\n", "\n"),
            source=str(doc.path),
            base_dir=doc.path.resolve().parent,
        )
    except SalonError as e:
        raise EditRefused(f"{doc.path} is unchanged: {what}, it would not load:\n{e}") from None


def write_atomic(path: Path, text: str, expected: str) -> None:
    """Replace ``path``'s content with ``text`` (temp file + rename, same mode), only
    if it still holds ``expected``."""
    target = path.resolve()
    with open(target, encoding="utf-8", newline="") as f:
        if f.read() != expected:
            raise EditRefused(f"{path} changed while it was being edited; run the command again")
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _new_agent(
    backend: str,
    label: str | None,
    description: str | None,
    model: str | None,
    base_url: str | None,
    entry: str | None,
) -> CommentedMap:
    wrong = [
        flag
        for flag, value, allowed in (
            ("--model", model, ("openai",)),
            ("--base-url", base_url, ("openai", "http")),
            ("--entry", entry, ("python",)),
        )
        if value is not None and backend not in allowed
    ]
    if wrong:
        raise EditRefused(f"{', '.join(wrong)}: not an option of the {backend} backend")
    agent = CommentedMap()
    if label is not None:
        agent["label"] = label
    if description is not None:
        agent["description"] = description
    spec = CommentedMap()
    spec["type"] = backend
    for key, value in (("base_url", base_url), ("model", model), ("entry", entry)):
        if value is not None:
            spec[key] = value
    agent["backend"] = spec
    return agent


def _default_soul(agent_id: str, label: str | None, description: str | None) -> str:
    name = label or agent_id.title()
    about = f" {description.strip().rstrip('.')}." if description else ""
    return f"You are {name}, an agent in a Matrix chat.{about}\n"


@app.command("add")
def add(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The new agent's id.")],
    label: Annotated[str | None, typer.Option(help="How people see it (default: Id).")] = None,
    description: Annotated[
        str | None, typer.Option(help="What it does (the router reads it).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="echo, openai, http or python.", case_sensitive=False)
    ] = "echo",
    model: Annotated[str | None, typer.Option(help="openai: the model name.")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="openai / http: the endpoint.")
    ] = None,
    entry: Annotated[
        str | None, typer.Option(help="python: the factory, 'package.module:Factory'.")
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option(help="Its persona, written to <home>/SOUL.md (default: a short one)."),
    ] = None,
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """Add an agent to the config file, with its home dir and SOUL.md; reload the gateway.

    The file is edited in place: its comments, order and quoting are kept. The
    result is checked with the loader before it is written.
    """
    backend = backend.lower()
    if backend not in BACKENDS:
        raise _fail(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    try:
        setup = _setup(config, data_dir)
        doc = Document.read(setup.path)
        cfg = setup.config
        if agent_id in cfg.agents:
            what = "a team" if agent_id in cfg.teams else "an agent"
            raise EditRefused(f"{agent_id!r} is already {what} of {setup.path}")
        if agent_id in cfg.peers:
            raise EditRefused(f"{agent_id!r} is a peer of {setup.path} (another gateway's agent)")
        agents = doc.mapping("agents")
        if agents is None:
            raise EditRefused(f"{setup.path}: no `agents:` mapping to add to")
        _append(agents, agent_id, _new_agent(backend, label, description, model, base_url, entry))
        text = doc.text()
        _validate(doc, text, f"with agent {agent_id!r} added")
        home = setup.home(agent_id)
        AgentProfile(AgentId(agent_id), agent_id, "", home).ensure_home()
        soul = home / SOUL
        wrote_soul = False
        with contextlib.suppress(FileExistsError):
            fd = os.open(soul, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(
                    persona if persona is not None else _default_soul(agent_id, label, description)
                )
            wrote_soul = True
        write_atomic(setup.path, text, doc.raw)
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{e}", 1) from None
    _say(f"[green]✓[/] Added agent {escape(agent_id)} to {escape(str(setup.path))}.")
    if doc.reformatted:
        _say(f"[yellow]note:[/] {doc.reformatted} other lines were re-indented by the YAML writer.")
    if entry is not None:
        try:
            resolve_entry_point(entry)
        except ValueError as e:  # the gateway's environment may have it; say so, not refuse
            _say(f"[yellow]note:[/] --entry {escape(entry)}: {escape(str(e))} (here).")
    if wrote_soul:
        _say(f"Its home is {escape(str(home))}, with a new SOUL.md.")
    else:
        extra = " (--persona not written)" if persona is not None else ""
        _say(f"Its home is {escape(str(home))}; kept the SOUL.md already there{extra}.")
    _tell_gateway(setup.data_dir)


@app.command("remove")
def remove(
    agent_id: Annotated[str, typer.Argument(metavar="ID", help="The agent or team to remove.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove the routes, team places and default_agent naming it."
        ),
    ] = False,
    config: ConfigArg = None,
    data_dir: DataDirArg = None,
) -> None:
    """Remove an agent (or team) from the config file; reload the gateway.

    Refused while routes, teams, delegation lists or default_agent name it, unless
    --force, which removes those too. Its home dir and Matrix room are kept.
    """
    try:
        setup = _setup(config, data_dir)
        cfg = setup.config
        if agent_id not in cfg.agents:
            if agent_id in cfg.peers:
                raise EditRefused(
                    f"{agent_id!r} is a peer (hosted by another gateway): edit `peers:` in"
                    f" {setup.path}"
                )
            known = ", ".join(cfg.agents)
            raise EditRefused(f"unknown agent {agent_id!r} (known: {known})")
        doc = Document.read(setup.path)
        refs = references(doc, agent_id)
        if refs and not force:
            lines = "\n".join(
                f"  {ref.where}" + (f" (line {ref.line})" if ref.line else "") for ref in refs
            )
            raise EditRefused(
                f"{agent_id} is still named by:\n{lines}\n"
                f"{setup.path} is unchanged; edit those, or remove them too with --force"
            )
        done = remove_agent(doc, agent_id)
        text = doc.text()
        _validate(doc, text, f"without {agent_id!r}")
        write_atomic(setup.path, text, doc.raw)
    except SalonError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"{e}", 1) from None
    _say(f"[green]✓[/] Removed {escape(agent_id)} from {escape(str(setup.path))}.")
    for step in done:
        _say(f"  {escape(step)}")
    if doc.reformatted:
        _say(f"[yellow]note:[/] {doc.reformatted} other lines were re-indented by the YAML writer.")
    _say(
        f"Kept its home dir {escape(str(setup.home(agent_id)))} and its Matrix room"
        " (with its history); it leaves the Space list."
    )
    _tell_gateway(setup.data_dir)


def reload(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", "-d", help="Where `salon up` keeps its state.")
    ] = DEFAULT_DATA_DIR,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="A salon.yaml run with `salon run`: use its data_dir instead."
        ),
    ] = None,
) -> None:
    """Ask the running `salon up` / `salon run` to re-read its config (SIGHUP)."""
    try:
        if config is not None:
            data_dir = Path(load_config(config).data_dir)
        result = pidfile.reload(data_dir)
    except SalonError as e:
        raise _fail(str(e)) from None
    except PermissionError as e:
        raise _fail(f"cannot signal the Salon of {data_dir}: {e}", 1) from None
    if result.info is None:
        stale = f" (removed the stale pid file of {result.stale.label})" if result.stale else ""
        err.print(f"Salon is not running from {escape(str(data_dir))}{stale}.", highlight=False)
        raise typer.Exit(1)
    if not result.sent:
        raise _fail(
            f"{result.info.label} does not reload on SIGHUP (it predates hot reload);"
            " restart it to apply a config change",
            1,
        )
    _say(
        f"[green]✓[/] Asked {escape(result.info.label)} to reload its config;"
        " `salon logs` says what it applied or refused."
    )
