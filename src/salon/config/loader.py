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

import importlib
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from salon._exceptions import ConfigError
from salon.config.models import AgentConfig, SalonConfig
from salon.config.report import LineMap, format_validation, join_errors, located
from salon.config.source import parse_yaml, substitute_env

__all__ = ["load_config", "parse_config", "read_persona", "resolve_entry_point"]

_PERSONA_SUFFIXES = (".md", ".txt")


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
    data, lines = parse_yaml(text, source)
    # `x-` keys hold YAML anchors to reuse (as in docker compose); they are not settings.
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    substitute_env(data, lines, source)
    try:
        config = SalonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation(exc, data, lines, source), path=source) from None
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


def _resolve(config: SalonConfig, base: Path, lines: LineMap, source: str) -> SalonConfig:
    """Fill in what depends on the environment and the config file's location."""
    update: dict[str, Any] = {}
    errors: list[tuple[int, str]] = []
    hs = config.homeserver
    if hs is not None and hs.registration_shared_secret_env:
        secret = os.environ.get(hs.registration_shared_secret_env)
        if secret is None:
            loc = ("homeserver", "registration_shared_secret_env")
            msg = f"environment variable {hs.registration_shared_secret_env!r} is not set"
            errors.append(located(loc, msg, lines, source))
        else:
            fields = {"registration_shared_secret": secret, "registration_shared_secret_env": None}
            update["homeserver"] = hs.model_copy(update=fields)
    sqlite_path = config.store.sqlite_path
    if config.store.is_sqlite and sqlite_path != ":memory:" and not Path(sqlite_path).is_absolute():
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
            errors.append(located(("agents", agent_id, "persona"), msg, lines, source))
    errors += _check_hooks(config, lines, source)
    if errors:
        raise ConfigError(join_errors(errors), path=source)
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


def _check_hooks(config: SalonConfig, lines: LineMap, source: str) -> list[tuple[int, str]]:
    """Import every ``select_agent`` hook now, so a broken one fails the load."""
    errors: list[tuple[int, str]] = []
    for i, entry in enumerate(config.select_agent):
        try:
            hook = resolve_entry_point(entry)
        except ValueError as exc:
            errors.append(located(("select_agent", i), str(exc), lines, source))
            continue
        if not callable(hook):
            msg = f"{entry!r} is not callable (a hook is a function of (context, agents))"
            errors.append(located(("select_agent", i), msg, lines, source))
    return errors


def _looks_like_path(value: str) -> bool:
    value = value.strip()
    return "\n" not in value and (value.endswith(_PERSONA_SUFFIXES) or "/" in value)
