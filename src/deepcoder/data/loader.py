"""A training DataLoader whose place in the epoch is saved in Lightning checkpoints.

Lightning (2.x) stores ``state_dict()`` of every train loader that has one in the checkpoint
(``FitLoop.on_save_checkpoint`` → ``CombinedLoader._state_dicts``) and, when it restarts from
that checkpoint, calls ``load_state_dict()`` before it first iterates the loader
(``FitLoop.setup_data``). The state is the epoch and the number of batches the training loop has
received from this loader, counted where they leave it, after any worker prefetching. On load,
the batch sampler skips that many batches of the same (seeded) epoch plan, so training continues
with the identical batch sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from deepcoder.data.windows import WindowBatchSampler


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`WindowBatchSampler` with ``state_dict`` / ``load_state_dict``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sampler = self.batch_sampler
        if not isinstance(sampler, WindowBatchSampler):
            raise TypeError(f"ResumableDataLoader needs a WindowBatchSampler, got {type(sampler).__name__}")
        self.window_sampler = sampler  # batch_sampler (fixed after __init__), typed as what it is
        self._position: tuple[int, int] | None = None  # (epoch, batches delivered) of the running iteration

    # torch's stub has __iter__ return its private _BaseDataLoaderIter; a generator serves the loop.
    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.window_sampler
        epoch, delivered = sampler.epoch, sampler.skip
        self._position = (epoch, delivered)
        for batch in super().__iter__():
            delivered += 1
            self._position = (epoch, delivered)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, delivered = self._position or (self.window_sampler.epoch, self.window_sampler.skip)
        return {"epoch": epoch, "batches": delivered}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, delivered = int(state["epoch"]), int(state["batches"])
        if delivered >= len(self):  # saved at the end of an epoch: the next one starts afresh
            epoch, delivered = epoch + 1, 0
        self.window_sampler.set_epoch(epoch)
        self.window_sampler.skip = delivered
        self._position = None
