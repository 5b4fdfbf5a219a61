"""Names shared across the pipeline: span labels, the ignored-label value, the trajectory
schema version and how stored teacher tokens are spelt.

Labels: ``prompt`` (system prompt, task, chat scaffolding), ``reason`` (Thought text and
``<think>`` blocks), ``action`` (``Action:`` line and its input), ``observation`` (tool output
sent back by the environment) and ``answer`` (``Final Answer:`` and the program). Only
``reason``, ``action`` and ``answer`` tokens are ever trained on.
"""

from __future__ import annotations

SPAN_NAMES: tuple[str, ...] = ("prompt", "reason", "action", "observation", "answer")
SPAN_INDEX: dict[str, int] = {name: i for i, name in enumerate(SPAN_NAMES)}
TRAINED_SPANS: frozenset[str] = frozenset({"reason", "action", "answer"})

IGNORE_INDEX = -100  # a label that is not trained on (PyTorch's cross-entropy default)

SCHEMA_VERSION = 1  # the trajectory record version the agent and the importers write

TOKEN_ID_PREFIX = "token_id:"  # a stored token given by its id (vLLM's return_tokens_as_token_ids)
BYTES_PREFIX = "bytes:"  # a stored token given by its bytes (hex): its text lost some
