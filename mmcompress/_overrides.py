"""`--set key.path=value` overrides, applied to the parsed YAML before validation."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from mmcompress import _yaml
from mmcompress.errors import RecipeError

PATH_KEYS = {("teacher", "hf"), ("data", "path"), ("data", "classes_file")}
_TOKEN = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def _override_path(key: str, arg: str) -> tuple:
    parts, pos = [], 0
    for m in _TOKEN.finditer(key):
        if m.start() != pos and key[pos:m.start()] != ".":
            break
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(key) or not parts or not isinstance(parts[0], str):
        raise RecipeError(f"--set {arg}: '{key}' is not a key path; write it like teacher.hf or "
                          f"export.variants[1].quantize")
    return tuple(parts)


def apply(data: dict, origins: dict, arg: str) -> None:
    """--set key.path=value: value is parsed as YAML (numbers, true/false, null, [lists], {maps})."""
    if "=" not in arg:
        raise RecipeError(f"--set {arg}: expected key.path=value, e.g. --set teacher.hf=/models/clip")
    key, raw = arg.split("=", 1)
    path = _override_path(key.strip(), arg)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {arg}: the value is not valid YAML ({e})") from None
    if path in PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute() and Path(value).exists():
        value = str(Path(value).resolve())  # a path typed on the command line is relative to where you are
    cur = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:i + 1])} does not exist in the recipe")
            cur = cur[part]
            continue
        if not isinstance(cur, dict):
            raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:i])} is not a mapping")
        cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise RecipeError(f"--set {arg}: {_yaml.format_path(path)} does not exist in the recipe")
    elif not isinstance(cur, dict):
        raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:-1])} is not a mapping")
    cur[last] = value
    for p in [p for p in origins if p[:len(path)] == path]:
        del origins[p]
    origins[path] = f"--set {arg}"


