"""Problems as ``file:line: key.path: message`` lines, found through a map of the YAML.

Pydantic reports a key path; :class:`LineMap` turns it into the line of that key
(or of its nearest ancestor). Validation errors are reworded where pydantic's
own words would mislead: union tags dropped from paths, the choices of a
discriminator listed, a close spelling suggested for an unknown key.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from salon.config.base import ConfigProblems, Loc
from salon.config.models import SalonConfig

_MAX_ERRORS = 50  # a garbage file could otherwise produce thousands of lines


class LineMap:
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


def format_validation(
    exc: ValidationError, data: dict[str, Any], lines: LineMap, source: str
) -> str:
    """Every problem in ``exc`` as a located line (see :func:`join_errors`)."""
    errors: list[tuple[int, str]] = []
    for err in exc.errors():
        raw_loc: Loc = tuple(err["loc"])
        loc = _data_loc(raw_loc, data)
        msg = err["msg"].removeprefix("Value error, ")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigProblems):
            for sub_loc, sub_msg in cause.problems:
                errors.append(located((*loc, *sub_loc), sub_msg, lines, source))
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
        errors.append(located(loc, msg, lines, source))
    return join_errors(errors)


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


def located(loc: Loc, msg: str, lines: LineMap, source: str) -> tuple[int, str]:
    """``(line, "source:line: key.path: msg")`` for a problem at ``loc``."""
    line = lines.line(loc)
    key = ".".join(str(p) for p in loc) or "(top level)"
    return line, f"{source}:{line}: {key}: {msg}"


def join_errors(errors: list[tuple[int, str]]) -> str:
    """The problems as one message, a line each, in file order (at most 50)."""
    ordered = [msg for _, msg in sorted(errors, key=lambda e: e[0])]
    if len(ordered) > _MAX_ERRORS:
        extra = len(ordered) - _MAX_ERRORS
        ordered = [*ordered[:_MAX_ERRORS], f"... and {extra} more errors"]
    return "\n".join(ordered)
