"""Progress of an evaluation: a bar on a terminal, plain log lines elsewhere (SLURM logs, pipes).

Off a terminal a line goes to the log every ``log_every_s`` seconds and at the end: episodes
done/total, passed and the pass rate so far, episodes per minute and the time left.
"""

from __future__ import annotations

import logging
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deepcoder.generation.progress import RunStats
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.utils.console import console

log = logging.getLogger(__name__)


class EvaluationProgress:
    """A context manager; call :meth:`add` with each finished episode."""

    def __init__(self, total: int, resumed: int = 0, log_every_s: float = 30.0) -> None:
        self.stats = RunStats(total=total, started=time.perf_counter())
        self.resumed, self.log_every_s = resumed, log_every_s
        self._last = self.stats.started
        self._bar = Progress(
            TextColumn("[bold]evaluate"),
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            TextColumn("[green]pass {task.fields[passed]}[/]"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._bar.add_task("evaluate", total=total, passed=0)

    def add(self, record: TrajectoryRecord) -> None:
        self.stats.add(record)
        self._bar.update(self._task, advance=1, passed=self.stats.passed)
        now = time.perf_counter()
        if not console.is_terminal and (now - self._last >= self.log_every_s or self.stats.done == self.stats.total):
            self._last = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        s = self.stats
        rate = 60 * s.done / (now - s.started) if now > s.started else 0.0
        eta = s.eta_s(now)
        return (
            f"evaluate: {s.done}/{s.total} episodes{f' (+{self.resumed} resumed)' if self.resumed else ''}, "
            f"{s.passed} passed ({s.passed / s.done:.1%}), {s.errors} errors, {rate:.1f} episodes/min, "
            f"ETA {'?' if eta is None else f'{eta:.0f} s'}"
        )

    def __enter__(self) -> EvaluationProgress:
        log.info("evaluate: %d episodes to run, %d already done", self.stats.total, self.resumed)
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()
