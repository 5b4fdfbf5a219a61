"""``peers.py``'s loss section: one forward + backward of each loss on the same inputs.

Inputs are ``loss.py``'s (``[1, N, H]`` hidden states, a ``[V, H]`` projection with gradients, random
labels and reason/action spans, every position supervised; a live teacher's hidden states and
projection for the distillation losses; stored top-20 + sampled-token logprobs for ``kd_topk``) and
so is the measurement (``loss.measured``: peak extra resident memory of the first pass, best wall and
CPU seconds). Every method starts from the hidden states: the ones that build full logits pay for
them, the chunked ones project per chunk.

Values that are the same function are checked equal (:data:`SAME_FUNCTION`): plain CE, our ``sft``
(``sad`` with equal span weights) and torchtune's chunked CE; our forward-KL ``kd`` and torchtune's
``ForwardKLWithChunkedOutputLoss`` (which is the teacher's cross-entropy, KL plus the teacher's
entropy: the entropy is subtracted after the measurement); our ``jsd`` and TRL's
``generalized_jsd_loss`` (β = 0.5).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from loss import cap_address_space, inputs, measured
from peer_common import missing, needs_cuda

from deepcoder.losses import Divergence, TopKLogprobs
from deepcoder.training.chunked_loss import TeacherHead, chunked_span_loss

Data = dict[str, torch.Tensor]
EQUAL = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])  # prompt, reason, action, observation, answer
SAD = torch.tensor([0.0, 0.5, 1.0, 0.0, 1.0])  # reasoning at half weight, as loss.py measures it
TORCHTUNE_CHUNKS = 8  # torchtune's default num_output_chunks, as its recipes use it
SAME_FUNCTION = (("ce", "sft", "torchtune_ce"), ("kd", "torchtune_fkl"), ("jsd", "trl_gjsd"))


@dataclass(frozen=True)
class Method:
    label: str
    inputs: str  # loss.inputs' kind: "sad" (no teacher), "kd" (live teacher), "kd_topk"
    loss: Callable[[Data, int], torch.Tensor] | None  # None: a GPU-only peer, always skipped here with its reason
    unavailable: Callable[[], str | None] = lambda: None
    offset: Callable[[Data, int], float] = lambda data, chunk: 0.0  # subtracted from the value for the checks


def ours(
    weights: torch.Tensor, teacher: str | None = None, kind: str = "forward_kl"
) -> Callable[[Data, int], torch.Tensor]:
    def loss(data: Data, chunk: int) -> torch.Tensor:
        head: TeacherHead | TopKLogprobs | None = None
        if teacher == "live":
            head = TeacherHead(data["teacher_hidden"], data["teacher_weight"])
        elif teacher == "topk":
            head = TopKLogprobs(data["teacher_ids"], data["teacher_logprobs"])
        return chunked_span_loss(
            data["hidden"],
            data["weight"],
            data["labels"],
            data["spans"],
            weights,
            chunk_size=chunk,
            teacher=head,
            divergence=Divergence(kind),
        ).loss

    return loss


def plain_ce(data: Data, chunk: int) -> torch.Tensor:
    logits = data["hidden"] @ data["weight"].T
    return F.cross_entropy(logits.flatten(0, 1), data["labels"].flatten())


def chunk_logits(hidden: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    """The student's (or, under no_grad, teacher's) logits as torchtune's recipes build them."""
    return [h @ weight.T for h in hidden.chunk(TORCHTUNE_CHUNKS, dim=1)]


def torchtune_ce(data: Data, chunk: int) -> torch.Tensor:
    from torchtune.modules.loss import CEWithChunkedOutputLoss

    return CEWithChunkedOutputLoss(TORCHTUNE_CHUNKS)(chunk_logits(data["hidden"], data["weight"]), data["labels"])


def torchtune_fkl(data: Data, chunk: int) -> torch.Tensor:
    from torchtune.modules.loss import ForwardKLWithChunkedOutputLoss

    with torch.no_grad():
        teacher = chunk_logits(data["teacher_hidden"], data["teacher_weight"])
    student = chunk_logits(data["hidden"], data["weight"])
    return ForwardKLWithChunkedOutputLoss(TORCHTUNE_CHUNKS)(student, teacher, data["labels"])


def teacher_entropy(data: Data, chunk: int) -> float:
    """Mean entropy of the teacher's distributions: torchtune's forward KL minus this is KL(P‖S)."""
    total = 0.0
    with torch.no_grad():
        for h in data["teacher_hidden"][0].split(chunk):
            log_t = F.log_softmax(h @ data["teacher_weight"].T, dim=-1)
            total += float(-(log_t.exp() * log_t).sum())
    return total / data["labels"].numel()


def trl_gjsd(data: Data, chunk: int) -> torch.Tensor:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    logits = data["hidden"] @ data["weight"].T
    with torch.no_grad():
        teacher = data["teacher_hidden"] @ data["teacher_weight"].T
    return GKDTrainer.generalized_jsd_loss(logits, teacher, labels=data["labels"], beta=0.5)


METHODS = {
    "ce": Method("F.cross_entropy, full logits (base)", "sad", plain_ce),
    "sft": Method("ours sft (chunked, equal weights)", "sad", ours(EQUAL)),
    "sad": Method("ours sad (chunked, reason 0.5)", "sad", ours(SAD)),
    "torchtune_ce": Method(
        "torchtune CEWithChunkedOutputLoss", "sad", torchtune_ce, unavailable=lambda: missing("torchtune")
    ),
    "liger_flce": Method("Liger FusedLinearCrossEntropy", "sad", None, lambda: needs_cuda("liger_kernel")),
    "kd": Method("ours kd (chunked, live teacher)", "kd", ours(EQUAL, "live")),
    "torchtune_fkl": Method(
        "torchtune ForwardKLWithChunkedOutput",
        "kd",
        torchtune_fkl,
        unavailable=lambda: missing("torchtune"),
        offset=teacher_entropy,
    ),
    "jsd": Method("ours jsd b=0.5 (chunked, live)", "kd", ours(EQUAL, "live", "jsd")),
    "trl_gjsd": Method("TRL generalized_jsd_loss, full", "kd", trl_gjsd, unavailable=lambda: missing("trl")),
    "liger_jsd": Method("Liger FusedLinearJSD", "kd", None, lambda: needs_cuda("liger_kernel")),
    "kd_topk": Method("ours kd_topk (chunked, stored top-20)", "kd_topk", ours(EQUAL, "topk")),
}


def measure_loss(spec: dict) -> dict:
    """One method at one size: ``peak_mib``, ``seconds``, ``cpu_seconds``, ``value`` (or ``note`` / ``error``)."""
    method = METHODS[spec["method"]]
    reason = method.unavailable()
    if reason or method.loss is None:
        return {"note": f"skipped: {reason}"}
    if spec.get("memory_gb"):
        cap_address_space(spec["memory_gb"])
    vocab, hidden, chunk = spec["vocab"], spec["hidden"], spec["chunk_size"]
    torch.manual_seed(0)
    try:
        loss_of = method.loss
        loss_of(inputs(64, vocab, hidden, method.inputs), chunk).backward()  # warm-up
        data = inputs(spec["tokens"], vocab, hidden, method.inputs)
        values: list[float] = []

        def step() -> None:
            loss = loss_of(data, chunk)
            loss.backward()
            values.append(loss.item())

        def reset() -> None:
            data["hidden"].grad = data["weight"].grad = None

        result: dict = measured(step, reset, spec["repeats"])
        del step, reset
        data["hidden"].grad = data["weight"].grad = None
        result["value"] = values[0] - method.offset(data, chunk)
        result["tokens"] = spec["tokens"]
        return result
    except (MemoryError, RuntimeError) as error:  # the address-space cap: this run does not fit
        cap = f"over the {spec['memory_gb']} GiB cap: " if spec.get("memory_gb") else ""
        return {"error": f"failed, {cap}{str(error).strip().splitlines()[0][:70]}"}
