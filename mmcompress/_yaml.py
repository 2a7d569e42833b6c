"""YAML loading that remembers where each key and item came from, so errors can name the line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmcompress.errors import RecipeError

Path_ = tuple  # key path: ('export', 'variants', 1, 'quantize')
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it: ~10x faster


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], filename: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise RecipeError(f"{filename}:{key.start_mark.line + 1} {format_path(path) or '(top level)'}: a key "
                                  f"must be a plain name, not a {'list' if isinstance(key, yaml.SequenceNode) else 'mapping'}")
            if key.value in first:  # PyYAML keeps the last silently; a recipe must not say two things
                raise RecipeError(f"{filename}:{key.start_mark.line + 1} {format_path(path + (key.value,))}: key "
                                  f"written twice (first at line {first[key.value]}); keep one")
            first[key.value] = key.start_mark.line + 1
            sub = path + (key.value,)
            lines[sub] = key.start_mark.line + 1
            _walk(value, sub, lines, filename)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, filename)


def load_with_lines(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML text; return (data, {key path: 1-based line})."""
    loader = _Loader(text)  # one parse: the node tree gives the lines, constructing it gives the data
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is not None:
            line = mark.line + 1
        else:  # a ReaderError (a character YAML does not allow) has only a position
            line = text[:max(0, int(getattr(e, "position", 0) or 0))].count("\n") + 1
        where = f"{filename}:{line}"
        if isinstance(e, yaml.reader.ReaderError):
            problem = f"character {e.character!r} is not allowed ({e.reason})"
        else:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{where}: not valid YAML: {problem}; check indentation and quoting near that line") from None
    except RecursionError:
        raise RecipeError(f"{filename}: nested too deeply to be a recipe") from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines, filename)
    return data, lines


def load_file(path: str | Path) -> tuple[Any, dict[Path_, int]]:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{p}: no such recipe file; pass the path of a YAML recipe (see recipes/)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[:e.start].count(b"\n") + 1
        raise RecipeError(f"{p}:{line}: not UTF-8 text ({e.reason}); save the recipe as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{p}: cannot read the recipe ({e.strerror}); check the path and its permissions") from None
    return load_with_lines(text, str(p))


def format_path(path: Path_) -> str:
    """('export', 'variants', 1, 'quantize') -> 'export.variants[1].quantize'"""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
