"""``peers.py``'s training section: our Lightning ``sft`` step against TRL's ``SFTTrainer`` on one batch.

The batch is ours: reference-teacher trajectories on synthetic problems, rendered and collated by the
training data module (``conf/data``) with the model's tokenizer, so only assistant tokens carry
labels. TRL gets the same rows (padding removed; its collator pads them back to the same length)
with an ``assistant_masks`` column set where our labels are: TRL's own dataset preparation turns it
into its labels, as ``assistant_only_loss=True`` would from a chat template with ``{% generation %}``
markers (Qwen2.5's has none, and TRL refuses that flag on rows already tokenized). Both train the
same randomly initialised model (``tiny``, or
Qwen2.5-0.5B's widths with 2 layers and the exact tokenizer) in fp32 with AdamW at the config's
learning rate, constant, one row group per step, the same batch every step.

Per method: median wall and CPU seconds of an optimiser step (forward, backward, AdamW) after one
warm-up step, tokens/s over the batch's real (non-pad) tokens, and the peak extra resident memory
of the whole run after the model, batch and trainer are built (AdamW state included, both sides).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from loss import cap_address_space, measured
from peer_common import missing

from deepcoder.run.generate import generate
from deepcoder.run.resolvers import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
MODELS = {"tiny": ["model=tiny"], "qwen-0.5b-2l": ["model=qwen-0.5b", "model.random_init=true", "model.num_layers=2"]}


def write_trajectories(directory: Path, problems: int) -> Path:
    """Reference-teacher trajectories on ``problems`` synthetic problems (offline, through the sandbox)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("generate", ["problems=synthetic", f"problems.n={problems}", f"output_dir={directory}"])
    with contextlib.redirect_stdout(sys.stderr):  # its report tables: stdout is the benchmark's table
        generate(cfg)
    return directory / "trajectories.jsonl"


def setup(spec: dict):
    """The train config, the model and its tokenizer, and our training batch for ``spec``."""
    register_resolvers()  # model=qwen-*'s learning rate: ${lora_or_full:...}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            [
                *MODELS[spec["model"]],
                "loss=sft",
                "seed=0",
                f"data.trajectories={spec['trajectories']}",
                f"data.batch_size={spec['rows']}",
                f"data.max_length={spec['max_length']}",
                "data.val_fraction=0",
                "data.cache=false",
            ],
        )
    model, tokenizer = instantiate(cfg.model).load(seed=0)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, span=instantiate(cfg.span), loss=instantiate(cfg.loss))
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    return cfg, model, tokenizer, batch


class Clock:
    """Wall and CPU seconds of each step; the first (warm-up) is left out of the medians."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._started = (0.0, 0.0)

    def start(self) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])

    def medians(self) -> dict[str, float]:
        return {"seconds": statistics.median(self.wall[1:]), "cpu_seconds": statistics.median(self.cpu[1:])}


class LightningClock(L.Callback):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_batch_start(self, *args) -> None:
        self.clock.start()

    def on_train_batch_end(self, *args) -> None:
        self.clock.stop()


def ours(cfg, model, tokenizer, batch, steps: int, clock: Clock, workdir: Path):
    """``train.py``'s module and optimiser around the model, in a plain CPU fp32 Lightning trainer."""
    module = instantiate(cfg.module)(model, instantiate(cfg.loss), instantiate(cfg.optimizer), None, teacher=None)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=steps + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[LightningClock(clock)],
        default_root_dir=str(workdir),
    )
    loader = torch.utils.data.DataLoader([batch] * (steps + 1), batch_size=None)
    return lambda: trainer.fit(module, train_dataloaders=loader)


def trl(cfg, model, tokenizer, batch, steps: int, clock: Clock, workdir: Path):
    """TRL's SFTTrainer on the same rows, assistant-only labels from our labels' mask."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class TrlClock(TrainerCallback):
        def on_step_begin(self, *args, **kwargs) -> None:
            clock.start()

        def on_step_end(self, *args, **kwargs) -> None:
            clock.stop()

    rows = []
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        n = int(mask.sum())
        rows.append({"input_ids": ids[:n].tolist(), "assistant_masks": (labels[:n] != -100).int().tolist()})
    config = SFTConfig(
        output_dir=str(workdir),
        per_device_train_batch_size=len(rows),
        max_steps=steps + 1,
        learning_rate=float(cfg.optimizer.lr),
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=float(cfg.optimizer.get("weight_decay", 0.0)),
        max_length=None,
        use_cpu=True,
        bf16=False,
        fp16=False,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[TrlClock()],
    )
    return trainer.train


RUNNERS = {"ours": ours, "trl": trl}


def measure_train(spec: dict) -> dict:
    """One method on one model: step seconds (wall, CPU), tokens per step, peak extra MiB."""
    if spec["method"] == "trl" and missing("trl"):
        return {"note": f"skipped: {missing('trl')}"}
    if spec.get("memory_gb"):
        cap_address_space(spec["memory_gb"])
    torch.manual_seed(0)
    cfg, model, tokenizer, batch = setup(spec)
    clock = Clock()
    with tempfile.TemporaryDirectory() as workdir:
        run = RUNNERS[spec["method"]](cfg, model, tokenizer, batch, spec["steps"], clock, Path(workdir))
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its metrics: stdout is the table's
            result = measured(run, lambda: None, 1)
    shape = tuple(batch["input_ids"].shape)
    return {
        **result,
        **clock.medians(),
        "tokens": int(batch["attention_mask"].sum()),
        "extra": {"rows": shape[0], "length": shape[1], "steps": len(clock.wall)},
    }
