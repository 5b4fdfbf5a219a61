"""The live teacher of ``loss=kd``/``sad_kd``: a local model, frozen, beside the student.

``distill_teacher`` (its own config group) is a :class:`LiveTeacher`: a hub id or local directory (``name_or_path``,
e.g. ``Qwen/Qwen2.5-7B-Instruct`` or a trained ``student/``), or any model spec of the
``model=`` group (``spec``, e.g. ``${model}`` with another ``seed``: a tiny teacher for tests).
It must speak the student's language token for token: the same tokenizer vocabulary, and an
output layer of the same size. Qwen2.5 pads its output layer differently per size (151,936
rows up to 3B, 152,064 from 7B; the tokenizer has 151,665 tokens): a larger teacher layer whose
extra rows lie past every token id is cut to the student's rows, which only drops padding.

:func:`build_teacher` is the startup check. Without a live teacher, a distillation loss uses the
top-k logprobs stored in the trajectories (``teacher=openai teacher.top_logprobs=k``; the data
module aligns them and refuses those of another tokenizer); with neither — Groq returns no
logprobs — it fails at once, naming the cause.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from deepcoder.losses import SpanLoss

log = logging.getLogger(__name__)


class FrozenTeacher:
    """A teacher model in eval mode with no gradients; gives hidden states and its output projection.

    Not an ``nn.Module`` attribute of the LightningModule on purpose: its weights stay out of the
    student's checkpoints, optimiser and DDP/FSDP wrapping.
    """

    def __init__(self, model: PreTrainedModel, name: str, vocab_rows: int) -> None:
        self.model, self.name = model.eval().requires_grad_(False), name
        head = model.get_output_embeddings()
        self.weight = head.weight[:vocab_rows]
        self.bias = None if head.bias is None else head.bias[:vocab_rows]

    def to(self, device: torch.device) -> FrozenTeacher:
        if self.weight.device != device:
            self.model.to(device)
            head = self.model.get_output_embeddings()
            rows = self.weight.shape[0]
            self.weight = head.weight[:rows]
            self.bias = None if head.bias is None else head.bias[:rows]
        return self

    @torch.no_grad()
    def hidden_states(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The last hidden states ``[B, T, H_teacher]`` for the student's inputs."""
        return self.model.get_decoder()(**inputs, use_cache=False).last_hidden_state


@dataclass
class LiveTeacher:
    """Where the live teacher comes from; with neither ``name_or_path`` nor ``spec`` there is none."""

    name_or_path: str | None = None
    spec: Any = None
    torch_dtype: str = "auto"
    seed: int = 1

    @property
    def configured(self) -> bool:
        return self.name_or_path is not None or self.spec is not None

    def load(self, student: PreTrainedModel, student_tokenizer: Any, student_name: str) -> FrozenTeacher:
        if self.name_or_path is not None and self.spec is not None:
            raise ValueError("distill_teacher: give name_or_path or spec, not both")
        if self.spec is not None:
            model, tokenizer = self.spec.load(seed=self.seed)
            name = f"{getattr(self.spec, 'name', '') or type(self.spec).__name__} (seed {self.seed})"
        elif self.name_or_path is not None:
            from deepcoder.models.pretrained import PretrainedModel

            model, tokenizer = PretrainedModel(self.name_or_path, torch_dtype=self.torch_dtype).load()
            name = self.name_or_path
        else:
            raise ValueError("distill_teacher: set name_or_path or spec to load a live teacher")
        rows = check_compatible(model, tokenizer, name, student, student_tokenizer, student_name)
        return FrozenTeacher(model, name, rows)


def check_compatible(
    teacher: PreTrainedModel,
    teacher_tokenizer: Any,
    teacher_name: str,
    student: PreTrainedModel,
    student_tokenizer: Any,
    student_name: str,
) -> int:
    """Refuse a teacher that does not share the student's vocabulary; return the rows to use."""
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()), key=str)[:3]
        raise ValueError(
            f"teacher {teacher_name!r} has a different tokenizer than student {student_name!r} "
            f"({len(teacher_vocab)} vs {len(student_vocab)} tokens; e.g. {differing}): "
            "token-level distillation needs one shared vocabulary"
        )
    teacher_rows = teacher.get_output_embeddings().weight.shape[0]
    student_rows = student.get_output_embeddings().weight.shape[0]
    if teacher_rows < student_rows or (teacher_rows > student_rows and student_rows < len(student_vocab)):
        raise ValueError(
            f"teacher {teacher_name!r} has a vocabulary of {teacher_rows} and student "
            f"{student_name!r} of {student_rows} output rows: the sizes must match (a larger "
            f"teacher is accepted only when its extra rows are padding past all {len(student_vocab)} "
            "token ids)"
        )
    return student_rows


def build_teacher(
    loss: SpanLoss,
    live: LiveTeacher | None,
    student: PreTrainedModel,
    tokenizer: Any,
    student_name: str,
    trajectories: str | Path,
) -> FrozenTeacher | None:
    """The frozen live teacher of a distillation loss; None for CE losses and for stored top-k logprobs
    (the batches carry those); a clear error when the loss has no teacher distribution at all."""
    if not loss.distills:
        if live is not None and live.configured:
            log.warning("loss=%s is cross-entropy: its teacher is not loaded (kd, sad_kd use one)", loss.name)
        return None
    if live is not None and live.configured:
        return live.load(student, tokenizer, student_name)
    providers, with_logprobs = _teacher_providers(Path(trajectories))
    if with_logprobs:
        if loss.temperature != 1.0:
            raise ValueError(
                f"loss.temperature={loss.temperature}: the top-k logprobs stored in {trajectories} "
                "support temperature 1 only (softening needs the teacher's whole distribution)"
            )
        log.info("loss=%s distils from the top-k logprobs stored in %s", loss.name, trajectories)
        return None
    source = (
        f"{trajectories} was written by {', '.join(sorted(providers)) or 'no teacher'}"
        f"{' (Groq returns no logprobs)' if 'groq' in providers else ''}"
    )
    raise ValueError(
        f"loss={loss.name} ({loss.divergence}) needs the teacher's token distribution and has none: "
        f"no live teacher is configured, and {source}, which carries no top-k logprobs. Set "
        "distill_teacher.name_or_path=… (a local model with the student's tokenizer), generate with "
        "teacher=openai teacher.top_logprobs=k, or use loss=sad, which needs only the text."
    )


def _teacher_providers(path: Path) -> tuple[set[str], bool]:
    """The teacher providers of a trajectory file, and whether any step stored top-k logprobs (read up to
    the first such step only: a file with logprobs can be gigabytes, and then the providers do not matter)."""
    providers: set[str] = set()
    if not path.exists():
        return providers, False
    with path.open() as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line: the datamodule reports bad records with their line number
            providers.add(str((record.get("teacher") or {}).get("provider", "unknown")))
            if any(step.get("logprobs") for step in record.get("steps") or []):
                return providers, True
    return providers, False
