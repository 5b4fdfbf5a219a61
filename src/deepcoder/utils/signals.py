"""Stop at a safe point: SIGINT and SIGTERM are noted, and the work in flight finishes first.

Inside ``deferred_signals()`` the first Ctrl-C or SIGTERM only sets ``received``; the caller
checks it between units of work (an episode, a training step) and raises :class:`SignalStop`
once what is in flight is saved. A second Ctrl-C stops at once. A signal can thus never be
swallowed inside a unit of work (an ``except Exception`` in a library) and the run never exits 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class SignalStop(SystemExit):
    """Stopped by ``signame`` at a safe point; the exit status is 128 + the signal number."""

    def __init__(self, signum: int, hint: str = "what finished is saved") -> None:
        super().__init__(128 + signum)
        self.signame, self.hint = signal.Signals(signum).name, hint


class DeferredSignals:
    def __init__(self, hint: str = "what finished is saved", chain_sigterm: bool = False) -> None:
        self.received: int | None = None
        self.hint, self.chain_sigterm = hint, chain_sigterm
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self.received = None
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.received = signum
        previous = self._previous.get(signum)
        if self.chain_sigterm and signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)  # e.g. Lightning's, which tells the other DDP ranks

    def check(self) -> None:
        """Raise :class:`SignalStop` if a signal came."""
        if self.received is not None:
            raise SignalStop(self.received, self.hint)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


@contextmanager
def deferred_signals(hint: str = "what finished is saved") -> Iterator[DeferredSignals]:
    signals = DeferredSignals(hint)
    signals.install()
    try:
        yield signals
    finally:
        signals.restore()
