"""A local transformers model as the policy: the trained student at evaluation, or a local teacher."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from deepcoder.policies.base import Completion, Message
from deepcoder.policies.batching import generated_length, left_pad
from deepcoder.policies.decode_loop import BatchDecoder, supports
from deepcoder.policies.decoding import LINE_START_OBSERVATION, Decoding
from deepcoder.policies.row_sampling import row_sampler
from deepcoder.policies.turn_end import check_eos_is_turn_end, set_eos_token

if TYPE_CHECKING:
    from deepcoder.problems import Problem


class HFPolicy:
    """Greedy (``temperature=0``) or sampled generation with the KV cache, stopping at the end of
    the assistant turn or at a hallucinated ``Observation:`` that starts a line (the parser's rule).

    Every decoding parameter is explicit (:class:`~deepcoder.policies.decoding.Decoding`): nothing
    is inherited from the checkpoint's ``generation_config.json`` except, when ``max_new_tokens`` is
    null, the length ``train.py`` saved there from the model config. A tokenizer whose eos is not
    the chat template's end-of-turn token is refused (``eos_token`` maps it).

    The prompt is rendered with the same chat template as the training data, plus the generation
    prompt, so the student continues exactly where its training targets began. Sampling is seeded
    per call (``seed``, default the configured one) inside a forked RNG, so a sampled episode
    depends only on its own seed. :meth:`complete_batch` draws ``n`` turns from one prompt in one
    ``generate`` call (``num_return_sequences``): every sample's first turn shares the prompt.
    :meth:`complete_many` writes the next turn of many conversations together (the batched episode
    runner, :mod:`deepcoder.agent.batch_loop`): with our own decode loop
    (:mod:`deepcoder.policies.decode_loop`: stopped rows leave the batch, and inside
    :meth:`prefix_cache` a turn reuses the KV of the tokens an earlier turn already read), or one
    left-padded ``generate`` call for models with sliding-window layers.
    """

    provider = "hf"

    def __init__(
        self,
        model: str | None,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        stop: Sequence[str] = (LINE_START_OBSERVATION,),
        eos_token: str | None = None,
        device: str = "auto",
        seed: int = 0,
        lm: PreTrainedModel | None = None,
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
        self.seed = seed
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.fingerprint = None
        if lm is None:  # load now, so a wrong path fails before any episode runs
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            lm = AutoModelForCausalLM.from_pretrained(self.model)
        if tokenizer is None:
            raise ValueError("HFPolicy: a model given in memory (lm=) needs its tokenizer= too")
        if eos_token is not None:
            set_eos_token(tokenizer, eos_token, "policy.eos_token")
        check_eos_is_turn_end(tokenizer, self.model, "policy.eos_token")
        if max_new_tokens is None:  # the student's own (train.py saves model.max_new_tokens there), else 512
            max_new_tokens = getattr(lm.generation_config, "max_new_tokens", None) or 512
        self.decoding = Decoding(int(max_new_tokens), temperature, top_p, top_k, repetition_penalty, tuple(stop))
        torch.nn.Module.to(lm, self.device)  # in place (PreTrainedModel.to's wrapper hides its signature)
        self._lm: PreTrainedModel = lm.eval()
        self._tokenizer: PreTrainedTokenizerBase = tokenizer
        self._generation_config = self.decoding.generation_config(tokenizer)
        self._decoder = BatchDecoder(lm, tokenizer, self.decoding) if supports(lm) else None

    @property
    def max_new_tokens(self) -> int:
        return self.decoding.max_new_tokens

    @property
    def temperature(self) -> float:
        return self.decoding.temperature

    @property
    def stop(self) -> list[str]:
        return list(self.decoding.stop)

    @property
    def decoding_report(self) -> dict[str, object]:
        """The decoding parameters, as ``report.json`` records them."""
        return self.decoding.report(self._tokenizer)

    @classmethod
    def from_model(
        cls, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str = "in-memory", **kwargs: Any
    ) -> HFPolicy:
        """Wrap an already loaded model (tests, or evaluation right after training)."""
        return cls(name, device=str(next(lm.parameters()).device), lm=lm, tokenizer=tokenizer, **kwargs)

    @property
    def lm(self) -> PreTrainedModel:
        return self._lm

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    @property
    def sampling(self) -> bool:
        return self.decoding.sampling

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
            # A complete generation_config: the checkpoint's own generation_config.json fills only
            # values left unset, and here none are (see deepcoder.policies.decoding).
            config = copy.deepcopy(self._generation_config)
            config.num_return_sequences = n
            generator = cast(GenerationMixin, lm)  # every causal LM that AutoModelForCausalLM loads
            output = generator.generate(**inputs, generation_config=config, tokenizer=tokenizer)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        latency = (time.perf_counter() - start) / n
        completions = []
        pad = tokenizer.pad_token_id
        for row in output[:, prompt_tokens:]:  # shorter rows of a batch are padded after they stop
            generated = int((row != pad).sum()) if n > 1 and pad is not None else int(row.shape[0])
            completions.append(
                Completion(str(tokenizer.decode(row, skip_special_tokens=True)), prompt_tokens, generated, latency)
            )
        return completions

    @property
    def decode_counts(self) -> dict[str, int] | None:
        """Our decode loop's running totals: prompt tokens ``prefilled``, prompt tokens ``reused`` from
        the KV of earlier rows, rows ``decoded`` by its steps (None for a model that keeps ``generate``)."""
        return dict(self._decoder.counts) if self._decoder is not None else None

    def prefix_cache(self) -> Any:
        """A block inside which :meth:`complete_many` keeps each turn's KV for the next turn of the same
        conversation and for prompts that share its start; the weights must not change inside it."""
        return self._decoder.reusing() if self._decoder is not None else nullcontext()

    def complete_many(
        self, conversations: Sequence[Sequence[Message]], *, seeds: Sequence[int] | None = None
    ) -> list[Completion]:
        """The next turn of each conversation, decoded together.

        Each row stops on its own (end of turn, a line-start ``Observation:``, ``max_new_tokens``).
        Greedy rows are the turns :meth:`complete` writes (up to float rounding of the batched
        matmuls; tested equal in fp32). Sampled rows need ``seeds``, one per row: each row draws from
        its own generator (:mod:`deepcoder.policies.row_sampling`), so a turn depends on its seed only,
        not on the batch, but is a different draw than :meth:`complete`'s.
        """
        if not conversations:
            return []
        if self.sampling and (seeds is None or len(seeds) != len(conversations)):
            raise ValueError(f"complete_many: sampling needs one seed per conversation ({len(conversations)})")
        tokenizer = self._tokenizer
        start = time.perf_counter()
        rows = []
        for messages in conversations:
            text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            rows.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        if self._decoder is not None:
            turns = self._decoder.decode(rows, seeds if self.sampling else None)
            latency = (time.perf_counter() - start) / len(rows)
            return [
                Completion(str(tokenizer.decode(turn, skip_special_tokens=True)), len(prompt), len(turn), latency)
                for prompt, turn in zip(rows, turns)
            ]
        return self._generate_padded(rows, start, seeds)

    def _generate_padded(self, rows: list[list[int]], start: float, seeds: Sequence[int] | None) -> list[Completion]:
        """One ``generate`` call over the left-padded rows, each row cut back to what it wrote."""
        tokenizer = self._tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        input_ids, attention_mask = left_pad(rows, pad)
        extra: dict[str, Any] = {}
        if self.sampling:  # per-row streams inside greedy decoding (see row_sampling): no sampling flags
            config = dataclasses.replace(self.decoding, temperature=0.0).generation_config(tokenizer)
            extra["logits_processor"] = row_sampler(self.decoding, seeds or [], self.device)
        else:
            config = copy.deepcopy(self._generation_config)
        config.pad_token_id = pad
        with torch.inference_mode():
            generator = cast(GenerationMixin, self._lm)
            output = generator.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                generation_config=config,
                tokenizer=tokenizer,
                **extra,
            )
        latency = (time.perf_counter() - start) / len(rows)
        completions = []
        for prompt, row in zip(rows, output[:, input_ids.shape[1] :]):
            length = generated_length(row, tokenizer.eos_token_id, pad)
            text = str(tokenizer.decode(row[:length], skip_special_tokens=True))
            completions.append(Completion(text, len(prompt), length, latency))
        return completions
