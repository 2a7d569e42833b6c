"""Module-name patterns: which layers pruning touches (`layers`, `drop_layers`) and which modules int8 variants
keep float (`keep_float`).

A pattern is a glob (`*` any run of characters, `?` one: `vision_model.encoder.layers.1*`), or a regular
expression after `re:` matched against the whole name (`re:.*layers\\.[0-3]`); a leading `!` makes it exclude.
One precedence rule: **the last pattern that matches a name decides**; a name no pattern matches is chosen only
when every pattern excludes (`["!*.layers.0"]`: every layer but the first).
"""
from __future__ import annotations

import fnmatch
import re

from mmcompress.errors import RecipeError


def _compile(pattern: str, where: str) -> tuple[bool, re.Pattern]:
    exclude = pattern.startswith("!")
    body = pattern[1:] if exclude else pattern
    if body.startswith("re:"):
        try:
            return exclude, re.compile(body[3:])
        except re.error as e:
            raise RecipeError(f"{where}: {pattern!r} is not a valid regular expression ({e}); write e.g. "
                              f"'re:.*layers\\.[0-3]'") from None
    return exclude, re.compile(fnmatch.translate(body))


def select(names: list[str], patterns: list[str], where: str) -> list[str]:
    """The names the patterns choose, in their order (the last matching pattern decides)."""
    compiled = [_compile(p, where) for p in patterns]
    default = all(ex for ex, _ in compiled)
    out = []
    for name in names:
        chosen = default
        for exclude, rx in compiled:
            if rx.fullmatch(name):
                chosen = not exclude
        if chosen:
            out.append(name)
    return out


def check(patterns: list[str]) -> None:
    """Raise ValueError naming a pattern that does not compile (for recipe validation)."""
    for p in patterns:
        try:
            _compile(p, "")
        except RecipeError as e:
            raise ValueError(str(e).removeprefix(": ")) from None
