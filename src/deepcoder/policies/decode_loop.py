"""Our own batched decode loop for :meth:`HFPolicy.complete_many`: rows leave the batch the moment they
stop, and a conversation's next turn reuses the KV cache of the tokens it shares with an earlier row.

``generate`` over a left-padded batch runs until its longest row stops (a stopped row is still
computed, padded) and re-reads every conversation from its first token at every turn. Here:

- **prefill** runs row by row on top of the longest cached prefix of that row's tokens (the
  episode's previous turn, or the system prompt another row already read), without padding;
- **decode** runs the live rows together, one token per step over the left-padded cache, and a row
  that ends (end of turn, a stop string ending in its last token, ``max_new_tokens``) is dropped
  from the batch and its cache at once;
- rows of one call share prefixes among themselves; across calls, a row's KV (prompt and turn) is
  kept while a :meth:`BatchDecoder.reusing` block is open, for the next turn (the batched runner
  opens one per run; the weights must not change inside it).

Decoding is ``generate``'s: the repetition penalty over the row's prompt and turn, then the per-row
sampler (:mod:`deepcoder.policies.row_sampling`), then argmax; greedy turns equal those of one
``generate`` per conversation up to float rounding (tested equal in fp32). Only models whose every
layer attends to the whole context qualify (:func:`supports`): a sliding-window cache cannot be cut
and re-stacked this way, and such models keep ``generate``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from deepcoder.policies.decoding import Decoding
from deepcoder.policies.row_sampling import RowGumbelNoise, row_warpers

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [kv_heads, tokens, head_dim]
ROOM = 256  # spare positions a growing cache layer allocates: one copy per this many decode steps


def supports(lm: PreTrainedModel) -> bool:
    """True when every layer of ``lm`` is plain full attention (a decoder with a ``DynamicCache``)."""
    config = lm.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    sliding = getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None)
    return not sliding and set(layer_types) == {"full_attention"}


class PrefixStore:
    """The KV of the rows one call decoded, found again by the longest common token prefix."""

    def __init__(self) -> None:
        self.entries: list[tuple[np.ndarray, KV]] = []

    def match(self, tokens: np.ndarray) -> tuple[int, KV | None]:
        """The longest prefix of ``tokens`` some entry holds (at most all but the last token) and its KV."""
        best, best_kv = 0, None
        for cached, kv in self.entries:
            n = min(len(cached), len(tokens) - 1)
            if n <= best:
                continue
            differ = np.flatnonzero(cached[:n] != tokens[:n])
            shared = int(differ[0]) if differ.size else n
            if shared > best:
                best, best_kv = shared, kv
        return best, best_kv


class StopCheck:
    """``generate``'s stop strings: a row stops when one of them ends inside its newest token (the
    prompt's tail counts, as ``generate`` sees prompt and turn as one sequence)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str]) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.window = max((len(s) for s in stops), default=0) + 2  # tokens: each is at least one character

    def hit(self, tokens: list[int]) -> bool:
        if not self.stops:
            return False
        tail = tokens[-self.window :]
        text = str(self.tokenizer.decode(tail, skip_special_tokens=False))
        if not any(s in text for s in self.stops):
            return False
        before = len(str(self.tokenizer.decode(tail[:-1], skip_special_tokens=False)))
        return any(s in text and text.rfind(s) + len(s) > before for s in self.stops)


class BatchDecoder:
    """Decodes many prompts (token ids) into their turns (token ids): see the module docstring."""

    def __init__(self, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, decoding: Decoding) -> None:
        self.lm, self.decoding = lm, decoding
        self.eos = tokenizer.eos_token_id
        self.stop_check = StopCheck(tokenizer, decoding.stop)
        self.store: PrefixStore | None = None
        # tokens prefilled, tokens read from the store instead, rows computed by decode steps
        self.counts = {"prefilled": 0, "reused": 0, "decoded": 0}
        forward = inspect.signature(lm.forward).parameters
        self.cache_kw = "cache" if "cache" in forward else "past_key_values"  # transformers 5 renamed it
        self.penalty = (
            RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty) if decoding.repetition_penalty != 1 else None
        )

    @contextmanager
    def reusing(self) -> Iterator[None]:
        """Keep each call's KV for the next call's shared prefixes until the block ends."""
        self.store = PrefixStore()
        try:
            yield
        finally:
            self.store = None

    @torch.inference_mode()
    def decode(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None = None) -> list[list[int]]:
        """Each prompt's new tokens (through its eos or stop string, at most ``max_new_tokens``)."""
        device = next(self.lm.parameters()).device
        rows = [list(p) for p in prompts]
        if not rows or any(len(row) == 0 for row in rows):
            raise ValueError("BatchDecoder.decode: every prompt needs at least one token")
        warpers = row_warpers(self.decoding) if self.decoding.sampling else []
        noise = RowGumbelNoise(seeds or [], device) if self.decoding.sampling else None
        known = PrefixStore()  # the kept rows of earlier calls, then this call's rows as they are read
        known.entries = list(self.store.entries) if self.store is not None else []
        kvs, logits = zip(*(self._prefill(np.asarray(row, dtype=np.int64), known, device) for row in rows))
        cache, mask = _stack(list(kvs), device)
        del kvs, known  # the rows' own copies: the batch cache holds them now
        positions = torch.tensor([len(row) for row in rows], device=device)
        live = list(range(len(rows)))
        generated: list[list[int]] = [[] for _ in rows]
        kept: dict[int, KV] = {}
        scores = torch.cat(logits)
        while True:
            chosen = self._choose(scores, [rows[i] for i in live], warpers, noise).tolist()
            stay = []
            for slot, (i, token) in enumerate(zip(live, chosen)):
                rows[i].append(token)
                generated[i].append(token)
                stopped = token == self.eos or len(generated[i]) >= self.decoding.max_new_tokens
                if not (stopped or self.stop_check.hit(rows[i])):
                    stay.append(slot)
                elif self.store is not None:  # every token but the newest has its KV in the cache
                    kept[i] = _row_kv(cache, slot, int(mask[slot].sum()))
            if not stay:
                break
            if len(stay) < len(live):
                index = torch.tensor(stay, device=device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                live = [live[s] for s in stay]
                if noise is not None:
                    noise.keep(stay)
            self.counts["decoded"] += len(live)
            last = torch.tensor([[rows[i][-1]] for i in live], device=device)
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            output = self.lm(
                input_ids=last,
                attention_mask=mask,
                position_ids=positions[:, None],
                use_cache=True,
                **{self.cache_kw: cache},
            )
            positions = positions + 1
            scores = output.logits[:, -1, :]
        if self.store is not None:
            self.store.entries = [(np.asarray(rows[i][:-1], dtype=np.int64), kept[i]) for i in sorted(kept)]
        return generated

    def _prefill(self, tokens: np.ndarray, known: PrefixStore, device: torch.device) -> tuple[KV, torch.Tensor]:
        """The row's KV and last logits, reading only what ``known`` does not already hold; the row's KV
        then joins ``known`` (a later row of the same call may share its start: the system prompt)."""
        shared, kv = known.match(tokens)
        self.counts["prefilled"] += len(tokens) - shared
        self.counts["reused"] += shared
        seeded = [(k[None, :, :shared], v[None, :, :shared]) for k, v in kv] if kv is not None and shared else None
        cache = DynamicCache(ddp_cache_data=seeded) if seeded else DynamicCache()
        new = torch.as_tensor(tokens[shared:], device=device)[None]
        output = self.lm(
            input_ids=new,
            position_ids=torch.arange(shared, len(tokens), device=device)[None],
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
        )
        row_kv = [(keys[0], values[0]) for keys, values in _layers(cache)]
        known.entries.append((tokens, row_kv))
        return row_kv, output.logits[:, -1, :]

    def _choose(
        self, logits: torch.Tensor, rows: list[list[int]], warpers: list[Any], noise: RowGumbelNoise | None
    ) -> torch.Tensor:
        """``generate``'s greedy step: fp32 scores, the repetition penalty, the per-row sampler, argmax."""
        scores = logits.float()
        if self.penalty is not None or noise is not None:
            ids = _self_padded(rows, scores.device)
            if self.penalty is not None:
                scores = self.penalty(ids, scores)
            for warper in [*warpers, *([noise] if noise is not None else [])]:
                scores = warper(ids, scores)
        return scores.argmax(dim=-1)


class _RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` whose buffers keep ``ROOM`` spare positions: a decode step writes its position
    in place instead of copying the whole cache (``torch.cat``: a sixth of the CPU time at 16 rows)."""

    room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        keys, values = self.keys, self.values  # None before the first update (is_initialized: transformers 5)
        if keys is None or values is None or not getattr(self, "is_initialized", True) or keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        length, new = keys.shape[-2], key_states.shape[-2]
        room = self.room
        if room is None or room[0].data_ptr() != keys.data_ptr() or room[0].shape[-2] < length + new:
            size = length + new + ROOM
            room = (
                keys.new_empty((*keys.shape[:-2], size, keys.shape[-1])),
                values.new_empty((*values.shape[:-2], size, values.shape[-1])),
            )
            room[0][..., :length, :], room[1][..., :length, :] = keys, values
            self.room = room
        room[0][..., length : length + new, :], room[1][..., length : length + new, :] = key_states, value_states
        self.keys, self.values = room[0][..., : length + new, :], room[1][..., : length + new, :]
        return self.keys, self.values


class _RoomyCache(DynamicCache):
    """A ``DynamicCache`` of :class:`_RoomyLayer` seeded with the given keys and values."""

    def __init__(self, kv: KV) -> None:
        layers = [_RoomyLayer() for _ in kv]
        Cache.__init__(self, layers=list[Any](layers))
        for layer, (keys, values) in zip(layers, kv):
            layer.update(keys, values)


def _stack(kvs: list[KV], device: torch.device) -> tuple[DynamicCache, torch.Tensor]:
    """One left-padded batch cache from rows' caches, and the attention mask that hides the pads."""
    width = max(k.shape[1] for k, _ in (kv[0] for kv in kvs))
    mask = torch.zeros(len(kvs), width, dtype=torch.long, device=device)
    layers = []
    for layer in range(len(kvs[0])):
        keys, values = kvs[0][layer]
        batch_keys = keys.new_zeros((len(kvs), keys.shape[0], width, keys.shape[2]))
        batch_values = values.new_zeros((len(kvs), values.shape[0], width, values.shape[2]))
        for row, kv in enumerate(kvs):
            k, v = kv[layer]
            batch_keys[row, :, width - k.shape[1] :] = k
            batch_values[row, :, width - v.shape[1] :] = v
            mask[row, width - k.shape[1] :] = 1
        layers.append((batch_keys, batch_values))
    return _RoomyCache(layers), mask


def _row_kv(cache: DynamicCache, slot: int, length: int) -> KV:
    """A copy of one row's last ``length`` cached positions (its own, left of them are pads)."""
    return [(keys[slot, :, -length:].clone(), values[slot, :, -length:].clone()) for keys, values in _layers(cache)]


def _layers(cache: DynamicCache) -> KV:
    """The keys and values ``[batch, kv_heads, tokens, head_dim]`` of every layer of a full-attention cache."""
    return [(cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)) for layer in cast(Any, cache.layers)]


def _self_padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """The rows' tokens as one tensor, each padded with its own first token: a token the row already
    has, so the repetition penalty (a set operation) sees exactly the row's tokens."""
    width = max(len(row) for row in rows)
    return torch.tensor([[row[0]] * (width - len(row)) + row for row in rows], device=device)
