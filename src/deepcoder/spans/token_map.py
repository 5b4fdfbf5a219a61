"""Token strings as an OpenAI-compatible server returns them → the student tokenizer's ids.

A server's ``logprobs`` name tokens in one of three forms, all accepted:

- ``token_id:N`` — vLLM with ``return_tokens_as_token_ids=true``: the id itself, no guesswork
  (``conf/teacher/vllm-qwen.yaml`` asks for it);
- ``bytes:HEX`` — written by :func:`deepcoder.policies.reasoning.top_logprobs_of` for a token
  that is not whole UTF-8 (part of a multi-byte character), from the API's ``bytes`` field;
- the decoded text (``" def"``) — what most servers send; looked up by its UTF-8 bytes. Text
  with U+FFFD (a partial character decoded lossily) cannot be mapped and is reported as such.

Lookup by bytes needs a byte-level BPE tokenizer (Qwen2.5, Llama 3, GPT-2 and the tiny one),
where every token is a distinct byte string; other tokenizers take the ``token_id:`` form only.
"""

from __future__ import annotations

from functools import cached_property

from tokenizers import decoders
from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode

from deepcoder.core.names import BYTES_PREFIX, TOKEN_ID_PREFIX

_TO_BYTE = {char: byte for byte, char in bytes_to_unicode().items()}  # byte-level BPE's alphabet, reversed


class TokenMap:
    """Maps a server's token strings to the student's ids (None where a token has no id)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self._added = set(tokenizer.added_tokens_encoder)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.byte_level = backend is not None and isinstance(backend.decoder, decoders.ByteLevel)

    def token_bytes(self, token: str) -> bytes:
        """The bytes a vocabulary entry stands for: a special token's text, a regular one through the byte alphabet."""
        if token in self._added or any(char not in _TO_BYTE for char in token):
            return token.encode("utf-8")
        return bytes(_TO_BYTE[char] for char in token)

    @cached_property
    def _ids_by_bytes(self) -> dict[bytes, int]:
        """Every token's bytes → its id (a regular token wins a clash with a special one: it comes later)."""
        vocab = self.tokenizer.get_vocab()
        ordered = [
            *((t, i) for t, i in vocab.items() if t in self._added),
            *((t, i) for t, i in vocab.items() if t not in self._added),
        ]
        return {self.token_bytes(token): index for token, index in ordered}

    def id_of(self, token: str) -> int | None:
        """The student id of one server token string, or None when it has none."""
        if token.startswith(TOKEN_ID_PREFIX):
            index = int(token[len(TOKEN_ID_PREFIX) :])
            return index if 0 <= index < self.vocab_size else None
        if token.startswith(BYTES_PREFIX):
            return self._by_bytes(bytes.fromhex(token[len(BYTES_PREFIX) :]))
        if "\ufffd" in token:
            return None  # a partial UTF-8 character decoded lossily: its bytes are gone
        return self._by_bytes(token.encode("utf-8"))

    def _by_bytes(self, data: bytes) -> int | None:
        if not self.byte_level:
            raise ValueError(
                f"stored logprobs name tokens by their text, and the student's tokenizer "
                f"({type(self.tokenizer).__name__}) is not byte-level BPE, so text cannot be mapped "
                "to its ids: regenerate with teacher.extra_body.return_tokens_as_token_ids=true (vLLM)"
            )
        return self._ids_by_bytes.get(data)
