"""``teacher=openai``: any OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI) by ``base_url``.

The key comes from ``OPENAI_API_KEY`` when set; local servers that need none get a placeholder.
With ``top_logprobs=k`` the request asks for the top-k log-probabilities of every generated token
and the step records them (``step["logprobs"]``) for later logit distillation; they cover the
content tokens, not a reasoning channel a server returns separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from deepcoder.policies.chat_api import ChatAPITeacher


class OpenAITeacher(ChatAPITeacher):
    """``extra_body`` passes server-specific parameters through (vLLM's ``top_k``, ``chat_template_kwargs``)."""

    provider = "openai"
    key_env = "OPENAI_API_KEY"
    key_required = False
    sdk = openai

    def __init__(
        self, model: str, *, top_logprobs: int | None = None, extra_body: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if top_logprobs is not None and not 0 <= top_logprobs <= 20:
            raise ValueError(f"teacher.top_logprobs must be in 0..20 (the API's range), got {top_logprobs}")
        self.top_logprobs = top_logprobs
        self.extra_body = dict(extra_body) if extra_body else None
        super().__init__(model, **kwargs)

    def _request_options(self) -> dict[str, Any]:
        wants_logprobs = self.top_logprobs is not None
        return {
            "logprobs": True if wants_logprobs else None,
            "top_logprobs": self.top_logprobs,
            "extra_body": self.extra_body,
        }
