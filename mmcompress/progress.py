"""Console output: stage lines and progress bars with ETA, on stderr so that stdout stays machine-readable.

On a terminal a live bar; in a log (CI, a pipe) one line per 20% with the ETA, and a line with the latest
news at least every HEARTBEAT_SECONDS while updates keep coming (the planner judges and times candidates for
minutes after its sensitivity step reached 100%), so long work still shows.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)
QUIET_SECONDS = 3.0  # in a log, work shorter than this prints no progress lines
HEARTBEAT_SECONDS = 30.0  # in a log, an update this long after the last line printed is printed


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
    t0 = time.perf_counter()
    state = {"total": total, "next": 0.2, "printed": t0}

    def update(done: int, total: int | None = None, info: str = "") -> None:
        state["total"] = total or state["total"]
        now = time.perf_counter()
        elapsed = now - t0
        frac = done / state["total"] if state["total"] else None
        if frac is not None and state["next"] <= frac < 1 and elapsed >= QUIET_SECONDS:
            eta = elapsed / frac - elapsed
            console.print(f"  {description}: {done}/{state['total']} {info}  {elapsed:.0f} s, eta {eta:.0f} s")
            state["next"], state["printed"] = (int(frac * 5) + 1) / 5, now
        elif now - state["printed"] >= HEARTBEAT_SECONDS:  # past 100%, or no total: still say what is happening
            console.print(f"  {description}: {info or done}  {elapsed:.0f} s")
            state["printed"] = now

    yield update


def bar(description: str, total: int | None = None):
    """Context manager yielding update(done, total=None, info=""); total may be given late."""
    return (_live_bar if console.is_terminal else _log_bar)(description, total)


def stage_line(name: str, status: str, detail: str = "") -> None:
    style = {"cached": "dim", "loaded": "dim", "done": "green", "failed": "red"}.get(status, "bold")
    console.print(f"  [{style}]{status:>6}[/{style}]  {name}" + (f"  [dim]{detail}[/dim]" if detail else ""))
