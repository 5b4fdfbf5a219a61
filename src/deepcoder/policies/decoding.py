"""How a model policy decodes, stated in full: no value is left for a checkpoint's
``generation_config.json`` to fill in (Qwen's ships ``repetition_penalty`` 1.05–1.1, ``top_k`` 20,
``temperature`` 0.7, and transformers fills unset values from it), so greedy means argmax.

``stop`` is the protocol's rule: a turn ends at an ``Observation:`` that starts a line (the
environment writes observations; :func:`deepcoder.protocol.parsing.truncate_at_observation` cuts
at the same place), never at ``print('Observation: …')`` or a mention mid-thought.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from transformers import GenerationConfig

LINE_START_OBSERVATION = "\nObservation:"


@dataclass(frozen=True)
class Decoding:
    """Greedy when ``temperature`` is 0; ``top_k`` 0 and ``repetition_penalty`` 1 switch those off."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = (LINE_START_OBSERVATION,)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def generation_config(self, tokenizer: Any, stop: bool = True) -> GenerationConfig:
        """Every decoding value explicit; end of turn is the tokenizer's eos (the template's terminator).
        ``stop=False`` leaves the stop strings out (a saved checkpoint's config: they need the tokenizer
        passed to ``generate``)."""
        sampling = (
            {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": 0.0, "typical_p": 1.0}
            if self.sampling
            else {}  # greedy applies no sampling warper, so none can be inherited either
        )
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.sampling,
            **sampling,
            repetition_penalty=self.repetition_penalty,
            encoder_repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_new_tokens=0,
            num_beams=1,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            stop_strings=(list(self.stop) or None) if stop else None,
        )

    def report(self, tokenizer: Any) -> dict[str, Any]:
        """The values ``report.json`` records (``stop`` as a list, the eos token by name)."""
        return {**asdict(self), "stop": list(self.stop), "do_sample": self.sampling, "eos_token": tokenizer.eos_token}
