"""The ``logprobs`` an OpenAI-compatible server would return for a reply, from a local causal LM.

A server scores every token it generates and returns the k most likely at each step; vLLM names
a token by ``tokenizer.decode([id])`` (or ``token_id:N`` with ``return_tokens_as_token_ids``)
and, like OpenAI, gives its UTF-8 ``bytes``. :class:`ServedLogprobs` reproduces that for a
scripted :class:`~deepcoder.testing.chat_server.Reply`, teacher-forced through a local model
after the chat's generation prompt, so tests serve a real model's distributions through
:class:`~deepcoder.testing.chat_server.ChatServer` (``logprobs=``) and can check stored-logprob
distillation against that model's own top-k.

A reply with reasoning is generated as an R1-style model does — the prompt ends in ``<think>\\n``,
the model writes ``{reasoning}\\n</think>\\n\\n{content}`` — and the server parses the reasoning
out. ``reasoning_logprobs`` says whether the returned logprobs cover the reasoning tokens too
(vLLM's do) or only the content (a server that hides the reasoning); either way the content is
scored after the reasoning, as it was generated.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from deepcoder.spans.token_map import TokenMap
from deepcoder.testing.chat_server import Reply


class ServedLogprobs:
    """Callable ``(messages, reply, k) → entries`` in the chat-completions ``logprobs.content`` shape."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        as_token_ids: bool = False,
        reasoning_logprobs: bool = True,
    ) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.as_token_ids, self.reasoning_logprobs = as_token_ids, reasoning_logprobs
        self.token_map = TokenMap(tokenizer)

    @torch.no_grad()
    def __call__(self, messages: list[dict[str, Any]], reply: Reply, k: int) -> list[dict[str, Any]]:
        prompt = str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        scored = reply.content or ""
        if reply.reasoning:
            prompt += "<think>\n"
            thinking = f"{reply.reasoning}\n</think>\n\n"
            prompt, scored = (prompt, thinking + scored) if self.reasoning_logprobs else (prompt + thinking, scored)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = [*self.tokenizer(scored, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        logits = self.model(input_ids=torch.tensor([prompt_ids + reply_ids])).logits[0]
        log_probs = F.log_softmax(logits[len(prompt_ids) - 1 : -1].float(), dim=-1)
        top = log_probs.topk(k, dim=-1) if k else None
        entries = []
        for n, index in enumerate(reply_ids):
            alternatives = (
                [] if top is None else [self._entry(int(i), float(v)) for i, v in zip(top.indices[n], top.values[n])]
            )
            entries.append({**self._entry(index, float(log_probs[n, index])), "top_logprobs": alternatives})
        return entries

    def _entry(self, index: int, logprob: float) -> dict[str, Any]:
        raw = self.token_map.token_bytes(str(self.tokenizer.convert_ids_to_tokens(index)))
        name = f"token_id:{index}" if self.as_token_ids else self.tokenizer.decode([index])
        return {"token": name, "logprob": logprob, "bytes": list(raw)}
