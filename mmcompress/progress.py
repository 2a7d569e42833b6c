"""Console output: stage lines and progress bars with ETA, on stderr so that stdout stays machine-readable.

On a terminal a live bar; in a log (CI, a pipe) one line per 20% with the ETA, so long work still shows.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)
QUIET_SECONDS = 3.0  # in a log, work shorter than this prints no progress lines


@contextmanager
def _live_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    columns = [TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as p:
        task = p.add_task(description, total=total, info="")

        def update(done: int, total: int | None = None, info: str = "") -> None:
            p.update(task, completed=done, info=info, **({"total": total} if total else {}))

        yield update


@contextmanager
def _log_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    state = {"total": total, "next": 0.2, "t0": time.perf_counter()}

    def update(done: int, total: int | None = None, info: str = "") -> None:
        state["total"] = total or state["total"]
        if not state["total"]:
            return
        frac = done / state["total"]
        elapsed = time.perf_counter() - state["t0"]
        if frac >= state["next"] and frac < 1 and elapsed >= QUIET_SECONDS:
            eta = elapsed / frac - elapsed
            console.print(f"  {description}: {done}/{state['total']} {info}  {elapsed:.0f} s, eta {eta:.0f} s")
            state["next"] = (int(frac * 5) + 1) / 5

    yield update


def bar(description: str, total: int | None = None):
    """Context manager yielding update(done, total=None, info=""); total may be given late."""
    return (_live_bar if console.is_terminal else _log_bar)(description, total)


def stage_line(name: str, status: str, detail: str = "") -> None:
    style = {"cached": "dim", "loaded": "dim", "done": "green", "failed": "red"}.get(status, "bold")
    console.print(f"  [{style}]{status:>6}[/{style}]  {name}" + (f"  [dim]{detail}[/dim]" if detail else ""))
