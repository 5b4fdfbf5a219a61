"""Teacher-forced metrics of a student on held-out teacher trajectories.

* **Per-span perplexity and next-token accuracy**: each trajectory is rendered and labelled
  exactly as for training (:func:`deepcoder.spans.render.render_trajectory`) and scored by the
  training path's :func:`deepcoder.training.chunked_loss.chunked_span_loss` (no full-vocabulary logits);
  per span (``reason``, ``action``, ``answer``) ``perplexity = exp(mean CE)`` over all its tokens.
* **First-action agreement**: the student's greedy first turn, given the same system and task
  messages as the teacher, is parsed by the agent's parser and compared with the teacher's first
  step. *Same tool*: both call the same tool, or both give a final answer. *Agreement*: same tool
  and an equivalent input: Python code (and final-answer programs) with the same AST (comments,
  formatting and quoting ignored; text compared with whitespace collapsed when either side does
  not parse), retrieve queries equal up to case and whitespace.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from deepcoder.core.names import SPAN_INDEX, SPAN_NAMES, TRAINED_SPANS
from deepcoder.protocol.parsing import parse_turn
from deepcoder.records.schema import as_record
from deepcoder.spans.labels import SpanStrategy
from deepcoder.spans.render import render_trajectory
from deepcoder.training.chunked_loss import chunked_span_loss

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def span_metrics(
    model: PreTrainedModel,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    strategy: SpanStrategy,
    chunk_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """``{span: {"perplexity", "accuracy", "tokens"}}`` for each trained span and ``all`` of them."""
    device = next(model.parameters()).device
    backbone = getattr(model, model.base_model_prefix)
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"span_metrics needs a causal LM with a linear output head, got {type(head).__name__}")
    weights = torch.ones(len(SPAN_NAMES))
    totals = {span: [0.0, 0, 0] for span in sorted(TRAINED_SPANS)}  # CE sum, correct, tokens
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for record in records:
            example = render_trajectory(tokenizer, as_record(record), strategy)
            ids, labels, spans = (
                torch.tensor([values], device=device)
                for values in (example.input_ids, example.labels, example.span_ids)
            )
            hidden = backbone(input_ids=ids).last_hidden_state
            result = chunked_span_loss(
                hidden[:, :-1], head.weight, labels[:, 1:], spans[:, 1:], weights, bias=head.bias, chunk_size=chunk_size
            )
            for span, total in totals.items():
                mask = result.span_ids == SPAN_INDEX[span]
                total[0] += float(result.token_loss[mask].sum())
                total[1] += int(result.correct[mask].sum())
                total[2] += int(mask.sum())
    model.train(was_training)
    totals["all"] = [sum(t[i] for t in totals.values()) for i in range(3)]
    return {
        span: {
            "perplexity": math.exp(ce / count) if count else float("nan"),
            "accuracy": correct / count if count else float("nan"),
            "tokens": count,
        }
        for span, (ce, correct, count) in totals.items()
    }


def first_move(turn_text: str, tools: set[str]) -> tuple[str, str] | None:
    """``(tool or "final_answer", input)`` of a turn, or ``None`` when it parses as neither."""
    turn = parse_turn(turn_text, tools)
    if turn.is_final:
        return "final_answer", turn.final_answer or ""
    if turn.is_action:
        return turn.tool or "", turn.tool_input or ""
    return None


def _normal_code(code: str) -> str:
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return " ".join(code.split())


def equivalent_inputs(tool: str, a: str, b: str) -> bool:
    """Equivalence of two inputs to ``tool``, as defined in the module docstring."""
    if tool == "retrieve":
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return _normal_code(a) == _normal_code(b)


def first_action_agreement(policy: Any, records: Sequence[dict[str, Any]], tools: set[str]) -> dict[str, Any]:
    """How often a model policy's first turn matches the teacher's (same tool; same tool and input).

    Only the records' messages reach the policy (``problem=None``), as for any model backend.
    """
    records = [r for r in records if len(r["messages"]) > 2 and r["messages"][2]["role"] == "assistant"]
    same_tool = agree = parsed = 0
    for record in records:
        teacher = first_move(record["messages"][2]["content"], tools)
        completion = policy.complete(record["messages"][:2], problem=None)
        student = first_move(completion.text, tools)
        parsed += student is not None
        if teacher is None or student is None or teacher[0] != student[0]:
            continue
        same_tool += 1
        agree += equivalent_inputs(teacher[0], teacher[1], student[1])
    n = len(records)
    return {
        "n": n,
        "first_turn_parsed": parsed / n if n else 0.0,
        "first_tool_agreement": same_tool / n if n else 0.0,
        "first_action_agreement": agree / n if n else 0.0,
    }
