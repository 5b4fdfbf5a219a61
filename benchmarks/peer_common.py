"""What ``peers.py``'s sections share: which peer libraries are importable (and why not), the
machine's description, running one measurement in a fresh process, and the table's rows.

A peer that is missing is never an error: its rows print ``skipped: <reason>`` (``pip install -e
'.[bench]'`` installs them all). Each measurement can run in a fresh subprocess (the full run: peak
resident memory then belongs to that method alone) or in this process (``--quick`` and the tests).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

# The peers' import names and the distribution that ships them (the `bench` extra in pyproject.toml).
PEERS = {"torchtune": "torchtune", "trl": "trl", "liger_kernel": "liger-kernel", "vllm": "vllm"}


def missing(module: str) -> str | None:
    """Why ``module`` cannot be used here (``None``: it can). Import errors are reported, not raised."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == module:
            return f"not installed (pip install {PEERS.get(module, module)}, or the bench extra)"
        return f"installed but fails to import: {str(error).strip().splitlines()[-1][:100]}"
    return None


def needs_cuda(module: str) -> str:
    """Why a CUDA-only peer (Liger's Triton kernels, vLLM) is skipped: this table measures the CPU."""
    if not torch.cuda.is_available():
        return f"needs CUDA (GPU kernels); this machine has none{'' if not missing(module) else ', nor ' + module}"
    return missing(module) or "CUDA present, but this table measures the CPU; GPU rows are not implemented"


def version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # a peer's import may fail in ways we only report
        return "-"


def machine() -> str:
    """CPU model, cores, torch's threads, memory, load average, library versions."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "?",
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = " ".join(f"{m}={version(m)}" for m in ("torch", "transformers", "lightning", *PEERS) if not missing(m))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {memory_kib / 2**20:.0f} GiB RAM, "
        f"{gpu}; load average {load} (1/5/15 min)\n{versions}"
    )


@dataclass
class Row:
    """One line of the table: a measurement, a skip or a failure (``note``), and its block's base."""

    block: str
    method: str
    peak_mib: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    tokens: int | None = None  # tokens per step / per run, for tokens/s
    value: float | None = None  # the loss value, for the equality checks
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def in_fresh_process(script: Path, spec: dict) -> dict:
    """Run ``script --worker SPEC`` and return its last stdout line (JSON); a crash becomes an ``error``."""
    done = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(spec)], capture_output=True, text=True, env=os.environ
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return {"error": f"worker exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def row_from(block: str, method: str, result: dict) -> Row:
    """A worker's result as a row (``error`` → note)."""
    fields = {k: result[k] for k in asdict(Row("", "")) if k in result and k not in ("block", "method")}
    if "error" in result:
        fields["note"] = str(result["error"])
    return Row(block, method, **fields)
