"""Generates docs/recipe.md from the schema in recipe.py: `python -m mmcompress.recipe_docs > docs/recipe.md`.
A test fails when the file and the schema disagree."""
from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mmcompress import recipe as R

HEADER = """# Recipe reference

Generated from `mmcompress/recipe.py` by `make docs`; do not edit by hand. Unknown keys are errors.
`mmcompress validate recipe.yaml` checks a recipe without running it.
"""


def _type(ann) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type(a) for a in args if a is not type(None)) + (" or null" if type(None) in args else "")
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map {_type(args[0])} → {_type(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"[{ann.__name__}](#{ann.__name__.lower()})"
    return getattr(ann, "__name__", str(ann))


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "(see section)" if isinstance(value, BaseModel) else f"`{value}`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{field.default}`" if field.default is not None else "null"


def _models(model: type[BaseModel], seen: list) -> None:
    if model in seen:
        return
    seen.append(model)
    for field in model.model_fields.values():
        for sub in _nested(field.annotation):
            _models(sub, seen)


def _nested(ann) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in typing.get_args(ann) for m in _nested(a)]


def render() -> str:
    out = [HEADER]
    seen: list = []
    _models(R.Recipe, seen)
    for model in seen:
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ and model not in (R.Strict,) else ""
        out.append(f"## {model.__name__}\n")
        if doc and not doc.startswith("Usage docs") and model.__doc__ is not BaseModel.__doc__:
            out.append(doc + "\n")
        out.append("| key | type | default | description |\n|---|---|---|---|")
        for name, field in model.model_fields.items():
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            marked = [m for m in field.metadata if hasattr(m, "choices")]  # a registry's names (RuntimeChoices)
            kind = " \\| ".join(f"`{c}`" for c in marked[0].choices()) if marked else _type(field.annotation)
            out.append(f"| `{name}` | {kind} | {_default(field)} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
