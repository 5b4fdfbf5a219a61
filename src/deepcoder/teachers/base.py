"""The one interface every policy implements: messages in, text out, usage and latency recorded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from deepcoder.problems import Problem

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One model turn. ``reasoning`` holds a provider's separate reasoning channel, if any."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    reasoning: str | None = None


class Policy(Protocol):
    """Writes the next assistant turn.

    ``problem`` is passed for the offline reference teacher only; a model backend must use
    nothing but ``messages``, exactly as a remote API would.
    """

    provider: str
    model: str

    def complete(self, messages: Sequence[Message], *, problem: "Problem") -> Completion: ...


_WORD_RE = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """A tokenizer-free size estimate (words and punctuation marks), for backends without one."""
    return len(_WORD_RE.findall(text))
