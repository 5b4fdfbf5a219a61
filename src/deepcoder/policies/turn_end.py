"""The chat template's end-of-turn token, and the check that a tokenizer's ``eos_token`` is it.

Training supervises the end of each assistant turn through ``tokenizer.eos_token`` (span
rendering) and generation stops at ``tokenizer.eos_token_id``. Both are right only when the eos
token is what the chat template writes after an assistant message: a base checkpoint (eos
``<|endoftext|>``) with a ChatML template (turns end in ``<|im_end|>``) would train no end of
turn and stop on a token it never learned. The terminator is read off the template itself.
"""

from __future__ import annotations

from typing import Any

PROBE = "deepcoder-end-of-turn-probe"


def turn_terminator(tokenizer: Any) -> str | None:
    """The special token the chat template writes right after an assistant message's content;
    None when there is no template or it writes no special token there."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that refuses this conversation tells us nothing
        return None
    after = text[text.rfind(PROBE) + len(PROBE) :].lstrip(" ")
    specials = {str(t) for t in tokenizer.all_special_tokens} | {str(t) for t in tokenizer.get_added_vocab()}
    found = [token for token in specials if token and after.startswith(token)]
    return max(found, key=len) if found else None


def check_eos_is_turn_end(tokenizer: Any, name: str, option: str) -> None:
    """Refuse a tokenizer whose eos is not its template's turn terminator, naming the fix."""
    terminator = turn_terminator(tokenizer)
    if terminator is not None and tokenizer.eos_token != terminator:
        raise ValueError(
            f"{name}: tokenizer eos_token {tokenizer.eos_token!r} is not the chat template's end-of-turn token "
            f"{terminator!r} (a base checkpoint?): end of turn would be neither trained nor stopped at; "
            f"set {option}={terminator}"
        )


def set_eos_token(tokenizer: Any, token: str, option: str) -> None:
    """Make ``token`` (an existing vocabulary entry) the tokenizer's eos."""
    if token not in tokenizer.get_vocab():
        raise ValueError(f"{option}={token!r} is not a token of this tokenizer's vocabulary")
    tokenizer.eos_token = token
