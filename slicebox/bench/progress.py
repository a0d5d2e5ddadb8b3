"""Rich progress bars for a suite run: one bar for the suite, one line for the run in flight.

with SuiteProgressBars() as on_progress:
    results = run_suite(workloads, slices, precisions, quick=True,
                        progress_callback=on_progress)
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from slicebox.bench.suite import SuiteProgress


class SuiteProgressBars:
    """A context manager whose value is a ``progress_callback`` for `run_suite`."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.suite_task: TaskID | None = None
        self.run_task: TaskID | None = None

    def __enter__(self) -> SuiteProgressBars:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, event: SuiteProgress) -> None:
        if self.suite_task is None or self.run_task is None:
            self.suite_task = self.progress.add_task("suite", total=event.total)
            self.run_task = self.progress.add_task("", total=None)
        cell = f"{event.workload} on {event.slice} in {event.precision}"
        if event.phase == "start":
            self.progress.update(self.run_task, description=f"  {cell}: starting")
        elif event.phase == "progress":
            quality = "" if event.quality is None else f", quality {event.quality:.3f}"
            self.progress.update(
                self.run_task, description=f"  {cell}: {event.samples or 0:,} samples{quality}"
            )
        else:
            status = event.result.status if event.result else "done"
            self.progress.update(self.run_task, description=f"  {cell}: {status}")
            self.progress.advance(self.suite_task)
