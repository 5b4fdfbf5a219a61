"""The one interface every policy implements: messages in, text out, usage and latency recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from deepcoder.policies.reasoning import with_reasoning

if TYPE_CHECKING:
    from deepcoder.problems import Problem

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One model turn. ``reasoning`` holds a provider's separate reasoning channel, if any;
    ``logprobs`` the top-k log-probabilities of the content's tokens where the server returns them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    reasoning: str | None = None
    logprobs: list[dict[str, Any]] | None = None

    @property
    def turn(self) -> str:
        """The assistant message the agent records: separate reasoning inlined as a ``<think>`` block."""
        return with_reasoning(self.text, self.reasoning)


class Policy(Protocol):
    """Writes the next assistant turn.

    ``problem`` is passed for the offline reference teacher only; a model backend must use
    nothing but ``messages``, exactly as a remote API would.
    """

    provider: str
    model: str

    def complete(self, messages: Sequence[Message], *, problem: Problem) -> Completion: ...
