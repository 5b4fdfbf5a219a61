"""Every command in the README's ``bash`` blocks runs as written, or is skipped here with its reason.

Commands are extracted from README.md (continuation lines joined, comments dropped). Each one is
either in RUN (executed in README order, with ``python`` this interpreter, in a scratch folder
holding the root scripts, ``conf/``, ``experiments/`` and ``outputs/demo`` from the small demo
layout) or in SKIP with the reason it cannot run in CI (real models, API keys, GPUs, placeholders
such as ``…`` or ``DIR``, minutes of work covered elsewhere). A README command in neither list,
or a listed command no longer in the README, fails the first test: nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PLACEHOLDER = "placeholder (…, DIR, MODEL, <time>): a pattern to fill in, not a command to run"
REAL_MODEL = "loads a real Qwen model from the hub or trains one on a GPU"
API = "needs an API key or a running model server"
DEMO = "minutes of CPU; make demo's driver is tested shrunk in test_demo.py"
SOLVE = "the small test layout's 3-step student writes 512-token turns (minutes of CPU); test_solve.py runs these paths"

SKIP = {
    "make demo": DEMO,
    "make demo-compare": DEMO,
    "make experiment": "hours of CPU (4 arms x 3 seeds of the demo's training); its driver runs shrunk in "
    "test_experiment.py (slow)",
    "make test": "runs the whole suite, this file included",
    "python train.py loss=sad model=qwen-1.5b data.trajectories=outputs/he/trajectories.jsonl "
    "output_dir=outputs/qwen15-sad": REAL_MODEL,
    "HF_HUB_OFFLINE=1 python train.py model=qwen-0.5b model.random_init=true model.num_layers=2 "
    "trainer.precision=bf16-mixed trainer.max_steps=2 data.trajectories=outputs/small/trajectories.jsonl "
    "output_dir=outputs/q05-random": "a 166 M-parameter model on 2 CPU cores for minutes; the same offline path "
    "runs in test_real_model_pipeline.py (slow)",
    "python evaluate.py student=outputs/q05-random/student problems=sample problems.limit=2 policy.max_new_tokens=64 "
    "output_dir=outputs/q05-random/eval": "needs the random-init Qwen student of the command above",
    "make lint": "what .ci/run runs before the tests, on every submission",
    "make format": "rewrites the checkout's files",
    "make test-fast": "runs the suite, this file included",
    ".venv/bin/pre-commit install": "writes the checkout's git hooks",
    "python train.py loss=sad loss.observation=0.1 'data.mask_steps=[tool_error]' data.trajectories=…": PLACEHOLDER,
    "python train.py loss=sad loss.step_decay=0.8 loss.normalize=weights data.trajectories=…": PLACEHOLDER,
    "python train.py -m experiment=observation_supervision data.trajectories=…": PLACEHOLDER,
    "python evaluate.py student=outputs/qwen15-sad/student problems=humaneval output_dir=outputs/qwen15-sad/eval": (
        "needs the real-model student of the train.py command above"
    ),
    "python experiments/compare.py outputs/qwen15-sad --teacher outputs/teacher-eval --out outputs/qwen15-compare": (
        "needs the real-model run above (the same layout is tested in test_compare_layouts.py)"
    ),
    "python train.py -m loss=sad loss.reason=0.25,0.5,1.0 data.trajectories=…": PLACEHOLDER,
    "export GROQ_API_KEY=…": API,
    "python generate.py teacher=groq problems=humaneval num_workers=16 output_dir=outputs/he-groq": API,
    "python generate.py teacher=openai teacher.base_url=http://localhost:8000/v1 teacher.model=MODEL …": API,
    "python generate.py teacher=vllm-r1 …": API,
    "python generate.py teacher=vllm-qwen …": API,
    "python train.py loss=sad_kd data.trajectories=outputs/he-qwen/trajectories.jsonl": (
        "needs the vLLM teacher's trajectories with logprobs (teacher=vllm-qwen above)"
    ),
    "python generate.py -m teacher=groq problems=humaneval shard=0,1,2 num_shards=3 num_workers=8": API,
    "python -m deepcoder.generation.merge outputs/he outputs/multirun/generate/<time>/{0,1,2}": PLACEHOLDER,
    "python evaluate.py student=DIR problems=humaneval output_dir=…": PLACEHOLDER,
    "python evaluate.py student=DIR problems=humaneval samples=10 'k=[1,5,10]' policy.temperature=0.8 "
    "teacher_forced.path=outputs/teacher-eval/episodes.jsonl output_dir=…": PLACEHOLDER,
    "python train.py data.packing=true …": PLACEHOLDER,
    "python train.py data.group_by_length=true …": PLACEHOLDER,
    "python train.py data.filters.dedupe=program data.filters.max_tokens=4096 data.filters.min_reason_tokens=20 …": (
        PLACEHOLDER
    ),
    "python train.py data.curriculum.pacing=root data.curriculum.full_at_step=500 …": PLACEHOLDER,
    "python train.py model=qwen-1.5b trainer=gpu loss=sad data.trajectories=… output_dir=outputs/q15": REAL_MODEL,
    "python train.py … trainer=ddp trainer.devices=4": REAL_MODEL,
    "python train.py … trainer=fsdp": REAL_MODEL,
    "python train.py -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=8 "
    "trainer=ddp trainer.devices=8 trainer.num_nodes=4 …": "submits SLURM jobs on GPU nodes",
    "python train.py … model.lora=true model.gradient_checkpointing=true": PLACEHOLDER,
    "python train.py … output_dir=DIR ckpt_path=last": PLACEHOLDER + "; tested in test_kill_resume.py",
    "python train.py -m experiment=sad_vs_sft data.trajectories=… logger=wandb": PLACEHOLDER,
    "python train.py -m hparams_search=optuna hydra.sweeper.n_trials=50 …": PLACEHOLDER,
    "python train.py logger=wandb …": PLACEHOLDER + "; tested in test_cluster_logs.py",
    "python train.py … callbacks=early_stopping": PLACEHOLDER,
    "python -m deepcoder.solve student=outputs/demo/sad/train/student problems=synthetic problems.split=heldout "
    "synthetic/heldout/0/1": SOLVE,
    "python -m deepcoder.solve student=outputs/demo/sad/train/student --json agent.max_steps=2 "
    '\'def add(a, b): """Return the sum of a and b."""\'': SOLVE,
    "python train.py model=qwen-0.5b trainer=gpu loss=sad_kd mode=on_policy mode.lambda=0.5 "
    "distill_teacher.name_or_path=Qwen/Qwen2.5-7B-Instruct distill_teacher.torch_dtype=bfloat16 "
    "mode.problems.source=synthetic mode.problems.n=1000 mode.max_new_tokens=512 "
    "data.trajectories=outputs/demo/generate/trajectories.jsonl output_dir=outputs/q05-on-policy": REAL_MODEL,
    "python train.py mode=on_policy loss=sad_kd distill_teacher.name_or_path=outputs/demo/sad/train/student "
    "mode.problems.source=synthetic mode.problems.n=1000 trainer.max_steps=50 "
    "data.trajectories=outputs/demo/generate/trajectories.jsonl output_dir=outputs/demo-on-policy": (
        "about a minute per step on 2 CPU cores after make demo; the same command, shrunk, runs in "
        "test_on_policy.py (slow, e2e)"
    ),
}
RUN = [
    "python generate.py teacher=reference problems=humaneval num_workers=4 output_dir=outputs/he",
    "python evaluate.py policy=reference problems=humaneval output_dir=outputs/teacher-eval",
    "python generate.py teacher=reference problems=sample problems.limit=4 output_dir=outputs/small",
    "python -m deepcoder.show outputs/demo/generate/trajectories.jsonl --index 0",
    "python -m deepcoder.show outputs/demo/generate/trajectories.jsonl --index 0 --json",
    "python -m deepcoder.spans.importers hotpotqa.json imported.jsonl",
    "python -m deepcoder.records.schema imported.jsonl",
    "python -m deepcoder.solve policy=reference sample/count_vowels",
    "python experiments/compare.py outputs/demo/sad outputs/demo/sft --teacher outputs/demo/teacher "
    "--out outputs/demo/compare",
    "python -m deepcoder.show outputs/demo/generate/trajectories.jsonl --mask-steps parse_error,tool_error",
]


def readme_commands() -> list[str]:
    """The commands of the README's ``bash`` blocks, in order, each on one line without its comment."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            command = re.split(r"\s+#\s|^#", line, maxsplit=1)[0].strip()
            if command:
                commands.append(" ".join(command.split()))
    return commands


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    unlisted = [c for c in commands if c not in SKIP and c not in RUN]
    assert not unlisted, f"README commands neither run nor skipped here: {unlisted}"
    stale = [c for c in [*SKIP, *RUN] if c not in commands]
    assert not stale, f"listed here but no longer in the README: {stale}"
    assert [c for c in commands if c in RUN] == RUN  # run in README order


@pytest.fixture(scope="module")
def scratch(demo_layout, tmp_path_factory):
    """A folder laid out like the repository root after ``make demo``."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("train.py", "generate.py", "evaluate.py", "conf", "experiments"):
        (root / name).symlink_to(ROOT / name)
    (root / "outputs").mkdir()
    shutil.copytree(demo_layout, root / "outputs" / "demo")
    shutil.copy(ROOT / "tests" / "fixtures" / "fireact" / "hotpotqa_alpaca.json", root / "hotpotqa.json")
    return root


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_commands_run_as_written(scratch):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is this venv's
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    for command in RUN:
        result = subprocess.run(
            ["bash", "-c", command], cwd=scratch, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    assert (scratch / "outputs" / "he" / "trajectories.jsonl").exists()
    assert (scratch / "outputs" / "demo" / "compare" / "comparison.md").exists()
    assert not (scratch / "outputs" / "generate").exists()  # explicit output_dir: no stray Hydra folder
