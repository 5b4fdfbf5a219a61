"""One assistant turn from a chat-completions message: reasoning, content, tool calls, logprobs.

Where reasoning lands (decision): providers return it in three shapes — inline
``<think>…</think>`` in the content (DeepSeek-R1 raw, Groq ``reasoning_format=raw``), a separate
``message.reasoning`` (Groq ``parsed``/``include_reasoning``, gpt-oss, recent vLLM) or
``message.reasoning_content`` (vLLM/SGLang reasoning parsers, DeepSeek's API). A separate channel
is kept apart in :class:`~deepcoder.policies.base.Completion` ``.reasoning`` and the agent loop
writes the turn as ``<think>\\n{reasoning}\\n</think>\\n\\n{content}`` (``Completion.turn``): the
parser reads the block as the step's reasoning, the assistant message keeps it, so the rendered
chat holds it and the span labeller marks it ``reason`` and trains on it — one format for all.
(Content that already opens with ``<think>`` is kept as it is.)

Native tool calls (a server that answers with ``tool_calls`` instead of text) are written into
the same text protocol (``Action: NAME`` + ``Action Input:`` fenced block), so the parser, the
sandbox and the span labels see one shape whichever way the model chose.
"""

from __future__ import annotations

import json
from typing import Any

from deepcoder.core.names import BYTES_PREFIX


def reasoning_of(message: Any) -> str | None:
    """The separate reasoning channel of an SDK message object, if it has one."""
    for name in ("reasoning", "reasoning_content"):
        value = getattr(message, name, None)
        if value is None and getattr(message, "model_extra", None):
            value = message.model_extra.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def tool_calls_text(tool_calls: Any) -> str:
    """Native tool calls written in the ReAct text protocol, one ``Action:`` block each."""
    blocks = []
    for call in tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:
            continue
        blocks.append(f"Action: {function.name}\nAction Input:\n```python\n{_tool_input(function.arguments)}\n```")
    return "\n".join(blocks)


def _tool_input(arguments: str | None) -> str:
    """A call's input: the one string argument (``{"code": "…"}``), else the raw JSON text."""
    try:
        parsed = json.loads(arguments or "")
    except json.JSONDecodeError:
        return (arguments or "").strip()
    if isinstance(parsed, dict) and len(parsed) == 1 and isinstance(next(iter(parsed.values())), str):
        return next(iter(parsed.values())).strip()
    return json.dumps(parsed)


def top_logprobs_of(choice: Any) -> list[dict[str, Any]] | None:
    """Per generated token: ``{"token", "logprob", "top": [[token, logprob], …]}``; None when not returned.

    A token is stored as the server names it (its text, or vLLM's ``token_id:N``), except one whose
    text holds U+FFFD — part of a multi-byte character, decoded lossily — which is stored as
    ``bytes:HEX`` from the API's ``bytes`` field, so it can still be mapped to a token id.
    """
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [
        {
            "token": _token(item),
            "logprob": item.logprob,
            "top": [[_token(alt), alt.logprob] for alt in (item.top_logprobs or [])],
        }
        for item in content
    ]


def _token(item: Any) -> str:
    raw = getattr(item, "bytes", None)
    return f"{BYTES_PREFIX}{bytes(raw).hex()}" if "\ufffd" in item.token and raw else item.token


def with_reasoning(content: str, reasoning: str | None) -> str:
    """The turn as the agent records it: a separate reasoning channel inlined as a leading think block."""
    if not reasoning or content.lstrip().startswith("<think>"):
        return content
    return f"<think>\n{reasoning}\n</think>\n\n{content}"
