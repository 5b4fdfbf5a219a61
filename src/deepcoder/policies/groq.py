"""``teacher=groq``: Groq's chat API through the official ``groq`` SDK (key: ``GROQ_API_KEY``).

Groq serves no logprobs. Reasoning models answer in the shape ``reasoning_format`` asks for
(``raw``: inline ``<think>``; ``parsed``: ``message.reasoning``; ``hidden``: none), gpt-oss models
with ``include_reasoning``; both land in the step as its reasoning (:mod:`.reasoning`).
"""

from __future__ import annotations

from typing import Any, Literal

import groq

from deepcoder.policies.chat_api import ChatAPITeacher


class GroqTeacher(ChatAPITeacher):
    """``base_url=None`` uses ``$GROQ_BASE_URL`` or https://api.groq.com (the SDK adds ``/openai/v1``)."""

    provider = "groq"
    key_env = "GROQ_API_KEY"
    sdk = groq

    def __init__(
        self,
        model: str,
        *,
        reasoning_format: Literal["raw", "parsed", "hidden"] | None = None,
        include_reasoning: bool | None = None,
        reasoning_effort: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.reasoning_format, self.include_reasoning = reasoning_format, include_reasoning
        self.reasoning_effort = reasoning_effort
        super().__init__(model, **kwargs)

    def _request_options(self) -> dict[str, Any]:
        return {
            "reasoning_format": self.reasoning_format,
            "include_reasoning": self.include_reasoning,
            "reasoning_effort": self.reasoning_effort,
        }
