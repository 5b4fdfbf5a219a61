"""A local transformers model as the policy: the trained student at evaluation, or a local teacher."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from deepcoder.policies.base import Completion, Message

if TYPE_CHECKING:
    from deepcoder.problems import Problem


class HFPolicy:
    """Greedy (``temperature=0``) or sampled generation with the KV cache, stopping at the end of
    the assistant turn or at a hallucinated ``Observation:``.

    The prompt is rendered with the same chat template as the training data, plus the generation
    prompt, so the student continues exactly where its training targets began. Sampling is seeded
    per call (``seed``, default the configured one) inside a forked RNG, so a sampled episode
    depends only on its own seed. :meth:`complete_batch` draws ``n`` turns from one prompt in one
    ``generate`` call (``num_return_sequences``): every sample's first turn shares the prompt.
    """

    provider = "hf"

    def __init__(
        self,
        model: str | None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = ("Observation:",),
        device: str = "auto",
        seed: int = 0,
        lm: torch.nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        if not model:
            raise ValueError(
                "teacher.model is not set: pass student=DIR (a train.py output's student/ folder) "
                "or teacher.model=HUB_ID_OR_PATH"
            )
        if temperature < 0:
            raise ValueError(f"policy.temperature must be >= 0, got {temperature}")
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
    def from_model(
        cls, lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, name: str = "in-memory", **kwargs: object
    ) -> HFPolicy:
        """Wrap an already loaded model (tests, or evaluation right after training)."""
        return cls(name, device=str(next(lm.parameters()).device), lm=lm, tokenizer=tokenizer, **kwargs)

    @property
    def lm(self) -> torch.nn.Module:
        return self._lm

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    @property
    def sampling(self) -> bool:
        return self.temperature > 0

    def complete(self, messages: Sequence[Message], *, problem: Problem, seed: int | None = None) -> Completion:
        return self.complete_batch(messages, 1, problem=problem, seed=seed)[0]

    def complete_batch(
        self, messages: Sequence[Message], n: int, *, problem: Problem, seed: int | None = None
    ) -> list[Completion]:
        """``n`` continuations of one prompt in one ``generate`` call (identical when greedy)."""
        lm, tokenizer = self._lm, self._tokenizer
        start = time.perf_counter()
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(self.seed if seed is None else seed)
            output = lm.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=self.sampling,
                temperature=self.temperature if self.sampling else None,
                top_p=self.top_p if self.sampling else None,
                top_k=None,
                num_return_sequences=n,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=self.stop or None,
                tokenizer=tokenizer,
            )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        latency = (time.perf_counter() - start) / n
        completions = []
        pad = tokenizer.pad_token_id
        for row in output[:, prompt_tokens:]:  # shorter rows of a batch are padded after they stop
            generated = int((row != pad).sum()) if n > 1 and pad is not None else int(row.shape[0])
            completions.append(
                Completion(tokenizer.decode(row, skip_special_tokens=True), prompt_tokens, generated, latency)
            )
        return completions
