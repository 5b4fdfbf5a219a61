"""Live progress of a generation run: done / passed / failed / errors, tokens per second, ETA.

On a terminal it is a rich progress bar; elsewhere (a SLURM log, a pipe) the same numbers go
to the log every ``log_every_s`` seconds, so a batch job still shows where it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deepcoder.records.schema import TrajectoryRecord
from deepcoder.utils.console import console as default_console

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    """Counts over the records finished in this run (resumed ones are not counted)."""

    total: int
    started: float
    done: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    tokens: int = 0

    def add(self, record: TrajectoryRecord) -> None:
        self.done += 1
        if record.get("error"):
            self.errors += 1
        elif record.get("passed"):
            self.passed += 1
        else:
            self.failed += 1
        usage = record.get("usage") or {}
        self.tokens += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))

    def tokens_per_s(self, now: float) -> float:
        return self.tokens / (now - self.started) if now > self.started else 0.0

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the rate so far (None before the first record)."""
        if not self.done:
            return None
        return (now - self.started) / self.done * (self.total - self.done)


class GenerationProgress:
    """A context manager; call :meth:`add` with each finished record."""

    def __init__(
        self,
        total: int,
        console: Console | None = None,
        log_every_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.stats = RunStats(total=total, started=clock())
        self.console = console or default_console
        self.log_every_s = log_every_s
        self._last_log = self.stats.started
        columns = (
            TextColumn("[bold]generate"),
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            TextColumn(
                "[green]pass {task.fields[passed]}[/] fail {task.fields[failed]} "
                "[red]err {task.fields[errors]}[/] · {task.fields[tokens_per_s]:,.0f} tok/s"
            ),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self._progress = Progress(*columns, console=self.console, disable=not self.console.is_terminal)
        self._task = self._progress.add_task("generate", total=total, passed=0, failed=0, errors=0, tokens_per_s=0.0)

    def add(self, record: TrajectoryRecord) -> None:
        self.stats.add(record)
        now = self.clock()
        self._progress.update(
            self._task,
            advance=1,
            passed=self.stats.passed,
            failed=self.stats.failed,
            errors=self.stats.errors,
            tokens_per_s=self.stats.tokens_per_s(now),
        )
        if not self.console.is_terminal and (
            now - self._last_log >= self.log_every_s or self.stats.done == self.stats.total
        ):
            self._last_log = now
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """The progress as one log line."""
        s = self.stats
        eta = s.eta_s(now)
        per_min = 60 * s.done / (now - s.started) if now > s.started else 0.0
        return (
            f"generate: {s.done}/{s.total} done, {s.passed} passed, {s.failed} failed, {s.errors} errors, "
            f"{s.tokens_per_s(now):.0f} tok/s, pass rate {s.passed / max(s.done, 1):.0%}, {per_min:.1f}/min, "
            f"ETA {'?' if eta is None else f'{eta:.0f} s'}"
        )

    def __enter__(self) -> GenerationProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
