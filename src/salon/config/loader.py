"""Load ``salon.yaml`` into a :class:`SalonConfig`, with errors that point at lines.

A minimal config::

    homeserver: {url: http://127.0.0.1:8008, server_name: localhost}
    agents:
      echo:
        backend: {type: echo}

String values may use ``${VAR}`` or ``${VAR:-default}`` (``$${`` is a literal
``${``). Top-level keys starting with ``x-`` are ignored, so they can hold YAML
anchors to reuse (``x-local: &local {type: openai, ...}``, then ``backend: *local``).

Every problem is raised as one :class:`ConfigError` whose message has a line per
problem, like::

    salon.yaml:14: agents.coder.backend.type: Input should be 'echo', 'openai', …
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from salon._exceptions import ConfigError
from salon.config.models import AgentConfig, ConfigProblems, Loc, SalonConfig

__all__ = ["load_config", "parse_config", "read_persona", "resolve_entry_point"]

_VAR_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PERSONA_SUFFIXES = (".md", ".txt")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_ERRORS = 50  # a garbage file could otherwise produce thousands of lines


def load_config(path: str | Path) -> SalonConfig:
    """Read and validate the config file at ``path``; raise ConfigError if it is unusable."""
    source = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found", path=source) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file", path=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}", path=source) from exc
    return parse_config(text, source=source, base_dir=file.resolve().parent)


def parse_config(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> SalonConfig:
    """Validate config ``text``; relative paths in it are taken from ``base_dir`` (or cwd)."""
    base = (base_dir or Path.cwd()).resolve()
    data, lines = _parse_yaml(text, source)
    # `x-` keys hold YAML anchors to reuse (as in docker compose); they are not settings.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    _substitute_env(data, lines, source)
    try:
        config = SalonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, data, lines, source), path=source) from None
    return _resolve(config, base, lines, source)


def read_persona(agent: AgentConfig) -> str | None:
    """The agent's persona text: the file's content if ``persona`` names a file, else itself."""
    persona = agent.persona
    if persona is None:
        return None
    path = Path(persona)
    if _looks_like_path(persona) and path.is_absolute() and path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{persona}: cannot read persona file: {exc}", path=persona) from exc
    return persona


class _LineMap:
    """Key path → 1-based line of the key (or list item) in the YAML source."""

    def __init__(self, root: yaml.Node) -> None:
        self.root_line = root.start_mark.line + 1
        self.lines: dict[tuple[str, ...], int] = {}
        seen: set[int] = set()
        stack: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)]
        # Iterative and visit-once: aliases may make the node graph cyclic or huge.
        while stack:
            path, node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    key_path = (*path, str(key.value))
                    self.lines.setdefault(key_path, key.start_mark.line + 1)
                    stack.append((key_path, value))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    self.lines.setdefault((*path, str(i)), item.start_mark.line + 1)
                    stack.append(((*path, str(i)), item))

    def line(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        path = tuple(str(part) for part in loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.root_line


def _duplicate_keys(root: yaml.Node, source: str) -> list[tuple[int, str]]:
    """Keys given twice in one mapping (PyYAML would silently keep the last one).

    Checked on the composed nodes, before merge keys (``<<: *anchor``) are
    flattened, so overriding a merged key stays allowed.
    """
    errors: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:  # iterative and visit-once, as in _LineMap
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                stack.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    continue
                line = key.start_mark.line + 1
                earlier = first.get((key.tag, key.value))
                if earlier is None:
                    first[(key.tag, key.value)] = line
                    continue
                msg = f"{source}:{line}: duplicate key {key.value!r} (also at line {earlier})"
                errors.append((line, msg))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return errors


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], _LineMap]:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the config file is empty", path=source)
        duplicates = _duplicate_keys(node, source)
        if duplicates:
            raise ConfigError(_join(duplicates), path=source)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        msg = f"{source}:{line}: unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError(msg, path=source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}:" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{source}:{where} {problem}", path=source) from None
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply", path=source) from None
    # PyYAML raises plain errors on some inputs (a bad date, very deep nesting).
    except Exception as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}", path=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        kind = "nothing" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{source}: expected a mapping of settings, found {kind}", path=source)
    return data, _LineMap(node)


def _substitute_env(data: dict[str, Any], lines: _LineMap, source: str) -> None:
    """Replace ``${VAR}`` in every string value in place; report all missing variables."""
    errors: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, dict | list):
                stack.append(((*path, key), value))
            elif isinstance(value, str) and "${" in value:
                missing: list[str] = []
                node[key] = _VAR_RE.sub(functools.partial(_expand, missing=missing), value)
                for name in missing:
                    msg = f"environment variable {name!r} is not set (and has no :-default)"
                    errors.append(_located((*path, key), msg, lines, source))
    if errors:
        raise ConfigError(_join(errors), path=source)


def _expand(match: re.Match[str], missing: list[str]) -> str:
    escaped, name, default = match.groups()
    if escaped:
        return match.group(0)[1:]
    value = os.environ.get(name, default)
    if value is None:
        missing.append(name)
        return ""
    return value


def _resolve(config: SalonConfig, base: Path, lines: _LineMap, source: str) -> SalonConfig:
    """Fill in what depends on the environment and the config file's location."""
    update: dict[str, Any] = {}
    errors: list[tuple[int, str]] = []
    hs = config.homeserver
    if hs is not None and hs.registration_shared_secret_env:
        secret = os.environ.get(hs.registration_shared_secret_env)
        if secret is None:
            loc = ("homeserver", "registration_shared_secret_env")
            msg = f"environment variable {hs.registration_shared_secret_env!r} is not set"
            errors.append(_located(loc, msg, lines, source))
        else:
            fields = {"registration_shared_secret": secret, "registration_shared_secret_env": None}
            update["homeserver"] = hs.model_copy(update=fields)
    sqlite_path = config.store.sqlite_path
    if sqlite_path != ":memory:" and not Path(sqlite_path).is_absolute():
        url = "sqlite:///" + str(base / sqlite_path)
        update["store"] = config.store.model_copy(update={"url": url})
    if not Path(config.data_dir).is_absolute():
        update["data_dir"] = str(base / config.data_dir)
    agents = dict(config.agents)
    for agent_id, agent in agents.items():
        name = (agent.persona or "").strip()
        if not _looks_like_path(name):
            continue
        path = base / name
        if path.is_file():
            agents[agent_id] = agent.model_copy(update={"persona": str(path.resolve())})
        elif name.endswith(_PERSONA_SUFFIXES) and not any(c.isspace() for c in name):
            # A bare file name: a typo in it must not silently become the prompt.
            msg = f"persona file not found: {path}"
            errors.append(_located(("agents", agent_id, "persona"), msg, lines, source))
    errors += _check_hooks(config, lines, source)
    if errors:
        raise ConfigError(_join(errors), path=source)
    # model_copy keeps the private agent ids and skips re-validation of what passed.
    return config.model_copy(update={**update, "agents": agents})


def resolve_entry_point(entry: str) -> Any:
    """The object ``pkg.mod:attr.path`` names; ValueError saying why it cannot be had."""
    module_name, sep, attr_path = entry.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"{entry!r} is not of the form 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # a plugin's import may fail in any way
        msg = f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        raise ValueError(msg) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    return obj


def _check_hooks(config: SalonConfig, lines: _LineMap, source: str) -> list[tuple[int, str]]:
    """Import every ``select_agent`` hook now, so a broken one fails the load."""
    errors: list[tuple[int, str]] = []
    for i, entry in enumerate(config.select_agent):
        try:
            hook = resolve_entry_point(entry)
        except ValueError as exc:
            errors.append(_located(("select_agent", i), str(exc), lines, source))
            continue
        if not callable(hook):
            msg = f"{entry!r} is not callable (a hook is a function of (context, agents))"
            errors.append(_located(("select_agent", i), msg, lines, source))
    return errors


def _looks_like_path(value: str) -> bool:
    value = value.strip()
    return "\n" not in value and (value.endswith(_PERSONA_SUFFIXES) or "/" in value)


def _format_validation(
    exc: ValidationError, data: dict[str, Any], lines: _LineMap, source: str
) -> str:
    errors: list[tuple[int, str]] = []
    for err in exc.errors():
        raw_loc: Loc = tuple(err["loc"])
        loc = _data_loc(raw_loc, data)
        msg = err["msg"].removeprefix("Value error, ")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigProblems):
            for sub_loc, sub_msg in cause.problems:
                errors.append(_located((*loc, *sub_loc), sub_msg, lines, source))
            continue
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the discriminator key itself and list the choices plainly.
            loc = (*loc, str(err["ctx"]["discriminator"]).strip("'"))
            head, _, last = ", ".join(map(repr, _union_tags(raw_loc))).rpartition(", ")
            choices = f"{head} or {last}" if head else last
            if err["type"] == "union_tag_invalid":
                msg = f"Input should be {choices}"
            else:
                msg = f"Field required (one of {choices})"
        elif err["type"] == "extra_forbidden":
            msg += _suggestion(raw_loc)
        if loc and loc[-1] == "[key]":
            loc, msg = loc[:-1], f"invalid key: {msg}"
        errors.append(_located(loc, msg, lines, source))
    return _join(errors)


def _data_loc(loc: Loc, data: Any) -> Loc:
    """Drop the union tags pydantic inserts (``backend.openai.model`` → ``backend.model``)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue
        if isinstance(data, str) and data == part:  # `backend: openai` shorthand
            continue
        out.append(part)
        data = data.get(part) if isinstance(data, dict) else None
    return tuple(out)


def _suggestion(loc: Loc) -> str:
    """`` (did you mean 'agents'?)`` for a misspelt key, found by walking the schema."""
    tp: Any = SalonConfig
    for part in loc[:-1]:
        tp = _schema_step(tp, part)
    model = _as_model(tp)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _schema_step(tp: Any, part: str | int) -> Any:
    """The type found under key ``part`` of type ``tp`` (None when unknown)."""
    model = _as_model(tp)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field else None
    origin, args = get_origin(tp), get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    # A discriminated union: pydantic puts the tag into the error location.
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            field = arg.model_fields.get("type")
            if field and get_args(field.annotation) == (part,):
                return arg
    return None


def _as_model(tp: Any) -> type[BaseModel] | None:
    """``tp`` itself if it is a model, or the one model in ``Model | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    models = [a for a in get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 and type(None) in get_args(tp) else None


def _union_tags(loc: Loc) -> list[str]:
    """The tags of the discriminated union found at ``loc`` in the schema."""
    tp: Any = SalonConfig
    for part in loc:
        tp = _schema_step(tp, part)
    tags = []
    for member in get_args(tp):
        field = member.model_fields.get("type") if _as_model(member) else None
        tags += [str(arg) for arg in get_args(field.annotation)] if field else []
    return tags


def _located(loc: Loc, msg: str, lines: _LineMap, source: str) -> tuple[int, str]:
    line = lines.line(loc)
    key = ".".join(str(p) for p in loc) or "(top level)"
    return line, f"{source}:{line}: {key}: {msg}"


def _join(errors: list[tuple[int, str]]) -> str:
    ordered = [msg for _, msg in sorted(errors, key=lambda e: e[0])]
    if len(ordered) > _MAX_ERRORS:
        extra = len(ordered) - _MAX_ERRORS
        ordered = [*ordered[:_MAX_ERRORS], f"... and {extra} more errors"]
    return "\n".join(ordered)
