"""Console output: stage lines and progress bars with ETA, on stderr so that stdout stays machine-readable."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


@contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """Yields update(done, total=None, info=""): moves the bar (total may be given late). Transient."""
    columns = [TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as p:
        task = p.add_task(description, total=total, info="")

        def update(done: int, total: int | None = None, info: str = "") -> None:
            p.update(task, completed=done, info=info, **({"total": total} if total else {}))

        yield update


def stage_line(name: str, status: str, detail: str = "") -> None:
    style = {"cached": "dim", "done": "green", "failed": "red"}.get(status, "")
    console.print(f"  [{style}]{status:>6}[/{style}]  {name}" + (f"  [dim]{detail}[/dim]" if detail else ""))
