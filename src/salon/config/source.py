"""Reading the YAML source: parsed with a line map, duplicate keys refused, ``${VAR}`` filled in."""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import yaml

from salon._exceptions import ConfigError
from salon.config.base import Loc
from salon.config.report import LineMap, join_errors, located

# A default may itself hold one ``${VAR}`` (``${A:-x/${B}/y}``), expanded in turn.
_VAR_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\{[^{}]*\})*))?\}")
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(root: yaml.Node, source: str) -> list[tuple[int, str]]:
    """Keys given twice in one mapping (PyYAML would silently keep the last one).

    Checked on the composed nodes, before merge keys (``<<: *anchor``) are
    flattened, so overriding a merged key stays allowed.
    """
    errors: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:  # iterative and visit-once, as in LineMap
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


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], LineMap]:
    """The top-level mapping of ``text`` and where each key is; ConfigError if unusable."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the config file is empty", path=source)
        duplicates = _duplicate_keys(node, source)
        if duplicates:
            raise ConfigError(join_errors(duplicates), path=source)
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
    return data, LineMap(node)


def substitute_env(data: dict[str, Any], lines: LineMap, source: str) -> None:
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
                    errors.append(located((*path, key), msg, lines, source))
    if errors:
        raise ConfigError(join_errors(errors), path=source)


def _expand(match: re.Match[str], missing: list[str]) -> str:
    escaped, name, default = match.groups()
    if escaped:
        return match.group(0)[1:]
    value = os.environ.get(name)
    if value is None and default is not None:
        return _VAR_RE.sub(functools.partial(_expand, missing=missing), default)
    if value is None:
        missing.append(name)
        return ""
    return value
