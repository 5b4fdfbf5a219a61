"""``make demo``: the whole pipeline offline — generate → train → evaluate — through the real CLIs.

Each stage runs as the command a user would type, so the demo exercises exactly the documented
entry points. Writes ``outputs/demo/summary.json`` and prints one table at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepcoder.utils.jsonl import write_json

ROOT = Path(__file__).resolve().parents[2]
console = Console()


def stage(script: str, *overrides: str) -> None:
    command = [sys.executable, str(ROOT / script), *overrides]
    console.rule(f"[bold]{script} {' '.join(overrides)}")
    subprocess.run(command, cwd=ROOT, check=True)


def main(out: Path = ROOT / "outputs" / "demo", heldout_limit: int = 5) -> dict:
    started = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    stage("generate.py", "teacher=reference", "problems=sample", f"output_dir={out / 'generate'}")
    stage("train.py", "experiment=demo", "model=tiny", "loss=sad",
          f"data.trajectories={out / 'generate' / 'trajectories.jsonl'}", f"output_dir={out / 'train'}")
    student = out / "train" / "student"
    stage("evaluate.py", f"student={student}", "problems=sample", f"output_dir={out / 'eval_train'}")
    stage("evaluate.py", f"student={student}", "problems=humaneval", f"problems.limit={heldout_limit}",
          f"output_dir={out / 'eval_heldout'}")
    generated = _read(out / "generate" / "report.json")
    trained = _read(out / "train" / "metrics.json")
    on_train = _read(out / "eval_train" / "report.json")
    heldout = _read(out / "eval_heldout" / "report.json")
    summary = {
        "n_trajectories": generated["n_trajectories"],
        "n_passed": generated["n_passed"],
        "train_pass_at_1": on_train["pass_at_1"],
        "heldout_pass_at_1": heldout["pass_at_1"],
        "train_action_validity": on_train["action_validity"],
        "heldout_action_validity": heldout["action_validity"],
        "loss_start": trained["start"],
        "loss_end": trained["end"],
        "train_steps": trained["steps"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "summary.json", summary)
    console.print(_table(summary, on_train["n"], heldout["n"]))
    return summary


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _table(summary: dict, n_train: int, n_heldout: int) -> Table:
    table = Table(title="DeepCoder demo (teacher=reference, model=tiny, loss=sad)")
    table.add_column("what")
    table.add_column("start", justify="right")
    table.add_column("end / value", justify="right")
    table.add_row("trajectories generated / passed", "", f"{summary['n_trajectories']} / {summary['n_passed']}")
    for span in ("loss", "loss_reason", "loss_action", "loss_answer"):
        key = f"train/{span}"
        if key in summary["loss_start"]:
            table.add_row(f"training {span} ({summary['train_steps']} steps)",
                          f"{summary['loss_start'][key]:.3f}", f"{summary['loss_end'][key]:.3f}")
    table.add_row(f"student pass@1, trained problems (n={n_train})", "", f"{summary['train_pass_at_1']:.2f}")
    table.add_row(f"student pass@1, held-out HumanEval (n={n_heldout})", "", f"{summary['heldout_pass_at_1']:.2f}")
    table.add_row("student action validity, trained / held-out", "",
                  f"{summary['train_action_validity']:.2f} / {summary['heldout_action_validity']:.2f}")
    table.add_row("seconds", "", f"{summary['seconds']}")
    return table


if __name__ == "__main__":
    main()
