"""The rich progress display of the toolkit's long steps: one bar per table with rows/s and time
left, on stderr, shown only on a terminal (logs and pipes get the steps' summary lines instead)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RowsPerSecondColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


class TableProgress:
    """Bars keyed by table name, created on a table's first report."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def update(self, table: str, done: int, total: int) -> None:
        task = self._tasks.get(table)
        if task is None:
            task = self._tasks[table] = self._progress.add_task(table, total=total, completed=done)
        self._progress.update(task, completed=done, total=total)


@contextmanager
def table_progress(verb: str) -> Iterator[TableProgress]:
    console = Console(stderr=True)
    with Progress(
        TextColumn(f"{verb} {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecondColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        yield TableProgress(progress)
