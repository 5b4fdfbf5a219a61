"""A local transformers model as the policy: the trained student at evaluation, or a local teacher."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from deepcoder.teachers.base import Completion, Message

if TYPE_CHECKING:
    from deepcoder.problems import Problem


class HFPolicy:
    """Greedy (``temperature=0``) or sampled generation with the KV cache, stopping at the end of
    the assistant turn or at a hallucinated ``Observation:``.

    The prompt is rendered with the same chat template as the training data, plus the generation
    prompt, so the student continues exactly where its training targets began.
    """

    provider = "hf"

    def __init__(self, model: str | None, max_new_tokens: int = 512, temperature: float = 0.0, top_p: float = 1.0,
                 stop: Sequence[str] = ("Observation:",), device: str = "auto", seed: int = 0,
                 lm: torch.nn.Module | None = None, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        if not model:
            raise ValueError("teacher.model is not set: pass student=DIR (a train.py output's student/ folder) "
                             "or teacher.model=HUB_ID_OR_PATH")
        self.model = str(model)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.stop, self.seed = list(stop), seed
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.fingerprint = None
        if lm is None:  # load now, so a wrong path fails before any episode runs
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            lm = AutoModelForCausalLM.from_pretrained(self.model)
        self._lm, self._tokenizer = lm.to(self.device).eval(), tokenizer

    @classmethod
    def from_model(cls, lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, name: str = "in-memory",
                   **kwargs: object) -> "HFPolicy":
        """Wrap an already loaded model (tests, or evaluation right after training)."""
        return cls(name, device=str(next(lm.parameters()).device), lm=lm, tokenizer=tokenizer, **kwargs)

    def complete(self, messages: Sequence[Message], *, problem: "Problem") -> Completion:
        lm, tokenizer = self._lm, self._tokenizer
        start = time.perf_counter()
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
        sampling = self.temperature > 0
        if sampling:
            torch.manual_seed(self.seed)
        with torch.inference_mode():
            output = lm.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=sampling,
                temperature=self.temperature if sampling else None, top_p=self.top_p if sampling else None,
                top_k=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                stop_strings=self.stop or None, tokenizer=tokenizer,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        completion = tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(completion, int(inputs["input_ids"].shape[1]), int(new_tokens.shape[0]),
                          time.perf_counter() - start)
