"""YAML loading that remembers where each key and item came from, so errors can name the line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmcompress.errors import RecipeError

Path_ = tuple  # key path: ('export', 'variants', 1, 'quantize')


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            lines[sub] = key.start_mark.line + 1
            _walk(value, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines)


def load_with_lines(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML text; return (data, {key path: 1-based line})."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{filename}:{mark.line + 1}" if mark else filename
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError(f"{where}: not valid YAML: {problem}; check indentation and quoting near that line") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def load_file(path: str | Path) -> tuple[Any, dict[Path_, int]]:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{p}: no such recipe file; pass the path of a YAML recipe (see recipes/)")
    return load_with_lines(p.read_text(), str(p))


def format_path(path: Path_) -> str:
    """('export', 'variants', 1, 'quantize') -> 'export.variants[1].quantize'"""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
