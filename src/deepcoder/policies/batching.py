"""Many prompts as one left-padded batch, and each row's own turn cut back out of the output.

Left padding keeps every prompt's last token in the last column, where generation continues;
the attention mask hides the pads and ``generate`` derives each row's position ids from it
(``cumsum(mask) − 1``), so a padded row sees the same positions as it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of ``rows`` padded on the left to the longest."""
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError("left_pad: every row needs at least one token")
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def generated_length(row: torch.Tensor, eos_id: int | None, pad_id: int | None) -> int:
    """How many of ``row``'s new tokens the model wrote: through its first eos, else up to the pads
    ``generate`` appends once a row has stopped (at a stop string) while others go on."""
    tokens = row.tolist()
    if eos_id is not None and eos_id in tokens:
        return tokens.index(eos_id) + 1
    length = len(tokens)
    while pad_id is not None and length and tokens[length - 1] == pad_id:
        length -= 1
    return length
