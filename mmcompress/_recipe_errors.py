"""Turning pydantic's validation errors into `file:line key.path: what is wrong; what to write instead`."""
from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from mmcompress import _yaml


class CrossFieldError(ValueError):
    """Raised by model validators to point at a key path other than the model's own location."""

    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def _model_at(root: type[BaseModel], path: tuple, data: Any) -> type[BaseModel] | None:
    """The schema model that holds the key at `path` (for 'did you mean' hints); unions are resolved by the
    data's discriminator value (e.g. `quantize: static` -> StaticVariant)."""
    model: Any = root
    ann: Any = None
    cur = data
    for part in path[:-1]:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(part, int):
            model = _inner_model(ann, cur)
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        ann = field.annotation
        model = _inner_model(ann, cur)
    return model


def _inner_model(ann: Any, value: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation (through list/Optional/Annotated/Union) that fits `value`."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    found = []
    for arg in getattr(ann, "__args__", ()) or ():
        m = _inner_model(arg, value)
        if m is not None:
            found.append(m)
    for m in found:
        tag = m.model_fields.get("quantize")
        if tag is not None and isinstance(value, dict) and value.get("quantize") in getattr(tag.annotation, "__args__", ()):
            return m
    return found[0] if found else None


def _data_path(loc: tuple, data: Any) -> tuple:
    """pydantic's loc with union tags dropped: walk the data, keeping only parts that exist in it."""
    out: tuple = ()
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            out += (part,)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out += (part,)
        elif isinstance(cur, dict) and isinstance(part, str) and part not in cur and loc[-1] == part:
            out += (part,)  # a missing or extra key: name it
    return out


def where_for(path: tuple, origins: dict) -> str | None:
    for n in range(len(path), -1, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return None


def _explain(root: type[BaseModel], err: dict, path: tuple, data: Any) -> str:
    kind, msg = err["type"], err["msg"]
    value = err.get("input")
    key = path[-1] if path else None
    if kind == "extra_forbidden":
        model = _model_at(root, path, data)
        names = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(names)}"
        return f"unknown key '{key}'; {hint}"
    if kind == "missing":
        return "required key is missing; add it (see docs/recipe.md)"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected.replace(' or ', ', ')}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing the key '{err.get('ctx', {}).get('discriminator', '').strip(chr(39))}' that says which kind this is"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{msg.lower() if msg[:1].isupper() else msg} (got {shown})"


def _sort_key(where: str) -> tuple:
    line = where.rsplit(":", 1)[-1]
    return (0, int(line)) if line.isdigit() else (1, 0)


def describe(e: ValidationError, root: type[BaseModel], data: Any, origins: dict, filename: str) -> str:
    """Every problem, one per line, sorted by line: `file:line key.path: message`."""
    problems = []
    for err in e.errors():
        ctx_err = err.get("ctx", {}).get("error")
        if isinstance(ctx_err, CrossFieldError):
            path = _data_path(ctx_err.path, data) or ctx_err.path
            text = ctx_err.message
        else:
            loc = tuple(err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc += (err["ctx"]["discriminator"].strip("'"),)
            path = _data_path(loc, data)
            text = _explain(root, err, path, data)
        where = where_for(path, origins) or filename
        problems.append((_sort_key(where), f"{where} {_yaml.format_path(path) or '(top level)'}: {text}"))
    problems.sort(key=lambda p: p[0])
    return "\n".join(dict.fromkeys(text for _, text in problems))
