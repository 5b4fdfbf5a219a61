"""benchmarks/gpu.py runs end to end without CUDA at a tiny width (the GPU numbers need a GPU)."""

from __future__ import annotations

import importlib.util
import math

from conftest import ROOT


def test_gpu_benchmark_runs_on_cpu_at_a_tiny_width(capsys):
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.main(["--tiny", "--steps", "1", "--batch", "1", "--length", "32"])
    lines = capsys.readouterr().out.splitlines()
    rows = {
        line.split()[0]: line.split()[1:]
        for line in lines
        if line.split() and line.split()[0] in ("hf", "sft", "sad", "sad_kd")
    }
    assert set(rows) == {"hf", "sft", "sad", "sad_kd"}
    assert all(float(row[0]) > 0 and math.isfinite(float(row[1])) for row in rows.values())
    assert float(rows["hf"][-1]) == 1.0
    assert benchmark.gpu_peak("NVIDIA H100 80GB HBM3") == 989e12 and benchmark.gpu_peak("Tesla T4") is None
