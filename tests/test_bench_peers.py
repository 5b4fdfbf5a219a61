"""benchmarks/peers.py (issue #17) at --quick sizes: one table, equal values where the losses are the
same function, and every peer either measured (installed: the bench extra) or skipped with the reason."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from conftest import ROOT


@pytest.fixture(scope="module")
def bench():
    """The benchmark's modules (they import each other as scripts do: benchmarks/ on the path)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield {name: importlib.import_module(name) for name in ("peers", "peer_common", "peer_losses")}
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def table_rows(out: str) -> dict[tuple[str, str], list[str]]:
    """(block, method label) → the rest of the line, from the printed table."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from peers import BLOCK, METHOD

    sys.path.remove(str(ROOT / "benchmarks"))
    rows = {}
    for line in out.splitlines():
        if line.startswith(("loss ", "train ", "generate ")) and not line.split()[1].endswith(":"):
            rows[(line[:BLOCK].strip(), line[BLOCK : BLOCK + METHOD].strip())] = line[BLOCK + METHOD :].split()
    return rows


def without(monkeypatch, bench, *modules: str) -> None:
    """Make ``modules`` look uninstalled to the benchmark."""
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name in modules:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(bench["peer_common"].importlib, "import_module", fake)


def test_quick_defaults_yield_to_explicit_flags(bench):
    args = bench["peers"].parse(["--quick", "--tokens", "96"])
    assert (args.tokens, args.vocab, args.models) == ("96", 2048, "tiny")


def test_quick_loss_table_measures_every_available_peer_and_checks_equal_values(bench, capsys):
    peers, common, losses = bench["peers"], bench["peer_common"], bench["peer_losses"]
    assert peers.main(["--quick", "--sections", "loss", "--tokens", "64"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    for tokens in ("64",):
        base = rows[(f"loss {tokens}", losses.METHODS["ce"].label)]
        assert base[1] == "1.000" and base[3] == "1.000"  # the base row's own ratios
        for key, method in losses.METHODS.items():
            cells = rows[(f"loss {tokens}", method.label[:39])]
            reason = method.unavailable()
            if reason or method.loss is None:
                assert " ".join(cells).endswith(f"skipped: {reason}")
            else:
                assert float(cells[2]) >= 0 and float(cells[4]) >= 0, key  # measured: numbers, not "-"
    checks = [line for line in out.splitlines() if line.startswith("loss") and line.endswith(("equal", "MISMATCH"))]
    assert checks and all(line.endswith(": equal") for line in checks)
    assert any("sft" in line and "ce " in line for line in checks)  # ours sft against F.cross_entropy, always
    if not common.missing("torchtune"):
        assert sum("torchtune_ce" in line or "torchtune_fkl" in line for line in checks) == 2
    if not common.missing("trl"):
        assert sum("trl_gjsd" in line for line in checks) == 1


def test_a_missing_peer_is_skipped_and_said_and_left_out_of_the_checks(bench, monkeypatch, capsys):
    without(monkeypatch, bench, "torchtune", "trl")
    peers, losses = bench["peers"], bench["peer_losses"]
    assert losses.measure_loss({"method": "torchtune_ce"}) == {
        "note": "skipped: not installed (pip install torchtune, or the bench extra)"
    }
    assert peers.main(["--quick", "--sections", "loss", "--tokens", "64"]) == 0
    out = capsys.readouterr().out
    row = " ".join(table_rows(out)[("loss 64", losses.METHODS["trl_gjsd"].label)])
    assert row.endswith("skipped: not installed (pip install trl, or the bench extra)")
    assert "torchtune" not in out.split("\n", 2)[1]  # not among the versions
    assert not any("torchtune_ce" in line or "trl_gjsd" in line for line in out.splitlines() if "equal" in line)


def test_a_peer_that_fails_to_import_says_why(bench, tmp_path, monkeypatch):
    (tmp_path / "broken_peer.py").write_text("raise ImportError('needs libfoo.so')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    common = bench["peer_common"]
    assert common.missing("broken_peer") == "installed but fails to import: needs libfoo.so"
    assert common.missing("json") is None
    if not torch.cuda.is_available():
        assert common.needs_cuda("liger_kernel").startswith("needs CUDA (GPU kernels); this machine has none")


def test_values_that_differ_fail_the_run(bench):
    peers, common = bench["peers"], bench["peer_common"]
    rows = [
        common.Row("loss 64", "a", value=1.0, extra={"key": "ce"}),
        common.Row("loss 64", "b", value=1.0 + 1e-6, extra={"key": "sft"}),
        common.Row("loss 64", "c", value=1.01, extra={"key": "torchtune_ce"}),
        common.Row("loss 64", "d", value=0.5, extra={"key": "kd"}),
    ]
    assert peers.checks(rows) == ["loss 64: ce 1.000000, sft 1.000001, torchtune_ce 1.010000: MISMATCH"]
    assert peers.checks(rows[:2]) == ["loss 64: ce 1.000000, sft 1.000001: equal"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sections", "loss,trian"], "--sections loss,trian: unknown ['trian']; choose from loss, train, generate"),
        (["--models", "tiny,qwen"], "--models tiny,qwen: unknown ['qwen']; choose from tiny, qwen-0.5b-2l"),
        (["--tokens", "1k"], "--tokens 1k: give positive token counts, comma-separated, e.g. 1024,4096"),
    ],
)
def test_a_bad_flag_is_a_one_line_error(bench, capsys, flags, message):
    with pytest.raises(SystemExit):
        bench["peers"].parse(flags)
    assert message in capsys.readouterr().err


@pytest.mark.e2e
def test_a_loss_measurement_runs_in_a_fresh_capped_process(bench):
    common, losses = bench["peer_common"], bench["peer_losses"]
    spec = {"section": "loss", "method": "sft", "tokens": 64, "vocab": 2048, "hidden": 32}
    result = common.in_fresh_process(ROOT / "benchmarks" / "peers.py", {**spec, "chunk_size": 32, "repeats": 1})
    assert result["seconds"] > 0 and result["tokens"] == 64 and "peak_mib" in result
    here = losses.measure_loss({**spec, "chunk_size": 32, "repeats": 1})
    assert here["value"] == pytest.approx(result["value"], rel=1e-6)  # same inputs, same seed, same loss
    tight = common.in_fresh_process(
        ROOT / "benchmarks" / "peers.py",
        {**spec, "method": "ce", "tokens": 4096, "vocab": 151_936, "chunk_size": 32, "repeats": 1, "memory_gb": 1.5},
    )
    assert tight["error"].startswith("failed, over the 1.5 GiB cap")


@pytest.mark.slow
@pytest.mark.e2e  # the trajectories go through the sandbox's processes
def test_quick_run_of_every_section_prints_one_table(bench, capsys):
    peers, common = bench["peers"], bench["peer_common"]
    assert peers.main(["--quick"]) == 0
    rows = table_rows(capsys.readouterr().out)
    trl = rows[("train tiny 2x256", "TRL SFTTrainer, assistant-only (base)")]
    ours = rows[("train tiny 2x256", "ours Lightning sft step")]
    assert float(ours[6].replace(",", "")) > 0  # tokens/s
    if common.missing("trl"):
        assert " ".join(trl).startswith("- - - - - - - skipped: not installed (pip install trl")
    else:
        assert float(trl[6].replace(",", "")) > 0 and trl[1] == "1.000"
    for method in ("HF generate, one per prompt (base)", "HF generate, one batch (left pad)"):
        assert float(rows[("generate tiny 2x4", method)][6].replace(",", "")) > 0
    assert float(rows[("generate tiny 2x4", "ours evaluation_generate (batched turn)")][6].replace(",", "")) > 0
    assert " ".join(rows[("generate tiny 2x4", "vLLM")]).endswith(common.needs_cuda("vllm"))
