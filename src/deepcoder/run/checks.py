"""One validation pass at the start of each stage: every mistake a user can make in a config becomes
one ``ValueError`` naming the value, the problem and the fix, before anything slow or costly runs.

``check_argv`` runs before Hydra (missing extras, an output_dir Hydra could not create); the
``check_<stage>`` functions run on the composed config; ``check_problems`` and ``check_supervised``
on what the config loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepcoder.models.hub import hub_unavailable

# (override prefix, module it needs, the fix)
EXTRAS = (
    ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper", "pip install -e '.[sweep]' (hydra-optuna-sweeper)"),
    ("hydra/sweeper=optuna", "hydra_plugins.hydra_optuna_sweeper", "pip install -e '.[sweep]' (hydra-optuna-sweeper)"),
    ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "pip install -e '.[sweep]' (submitit)"),
    ("hydra/launcher=submitit", "hydra_plugins.hydra_submitit_launcher", "pip install -e '.[sweep]' (submitit)"),
)
log = logging.getLogger(__name__)


def check_argv(stage: str, argv: Sequence[str]) -> str | None:
    """The first problem with the command line that Hydra would report badly (or not at all)."""
    for arg in argv:
        for prefix, module, fix in EXTRAS:
            if arg.startswith(prefix) and not _importable(module):
                return f"{arg} needs {module.split('.')[-1]}, which is not installed: {fix}"
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "output_dir" and value and "${" not in value and "," not in value:
            try:
                check_output_dir(value)
            except ValueError as exc:
                return str(exc)
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def check_output_dir(path: str | Path) -> None:
    """``path`` is a directory this process can create or write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir={path} is a file, not a directory: choose another output_dir")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output_dir={path}: {existing} is a file, so no directory can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir={path}: {existing} is not writable (permission denied): choose another one")


def check_missing(cfg: DictConfig) -> None:
    """No ``???`` left: e.g. ``teacher=openai`` needs ``teacher.model``."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(
            f"{', '.join(missing)} must be set (the chosen config leaves it ???): pass "
            + " ".join(f"{key}=VALUE" for key in missing)
        )


def check_limit(cfg: DictConfig) -> None:
    limit = OmegaConf.select(cfg, "problems.limit")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"problems.limit={limit} selects no problem: use a number >= 1, or null for all")


def check_problems(problems: Sequence[Any], cfg: DictConfig) -> None:
    """At least one problem to run: an empty file or filters that match nothing are an error, not an
    empty result."""
    if len(problems):
        return
    source = OmegaConf.select(cfg, "problems.path") or OmegaConf.select(cfg, "problems.source")
    filters = {
        key: OmegaConf.select(cfg, f"problems.{key}")
        for key in ("categories", "difficulties", "ids")
        if OmegaConf.select(cfg, f"problems.{key}")
    }
    raise ValueError(
        f"problems: {source} gives no problem{f' with {filters}' if filters else ''}: "
        "check the file (one problem per line) and the problems.* filters"
    )


def check_generate(cfg: DictConfig) -> None:
    check_missing(cfg)
    check_output_dir(cfg.output_dir)
    check_limit(cfg)


def check_train(cfg: DictConfig) -> None:
    check_missing(cfg)
    check_output_dir(cfg.output_dir)
    max_steps, max_epochs = int(cfg.trainer.get("max_steps", -1)), cfg.trainer.get("max_epochs")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"trainer.max_steps={max_steps} trains nothing: use a number of steps >= 1")
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise ValueError(f"trainer.max_epochs={max_epochs} trains nothing: use a number of epochs >= 1, or -1")
    if max_steps == -1 and max_epochs == -1:
        raise ValueError(
            f"trainer.max_steps=-1 with trainer.max_epochs={max_epochs} never stops: "
            "set trainer.max_steps=N or trainer.max_epochs=N"
        )
    _check_trajectory_file(Path(cfg.data.trajectories))
    ckpt = cfg.get("ckpt_path")
    if ckpt and ckpt not in ("last", "best", "hpc") and not Path(ckpt).is_file():
        raise ValueError(f"ckpt_path={ckpt}: no such checkpoint file; ckpt_path=last resumes the newest in output_dir")
    folder = Path(OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath") or Path(cfg.output_dir) / "checkpoints")
    if ckpt == "last" and not any(folder.glob("*.ckpt")):
        log.warning("ckpt_path=last: no checkpoint in %s yet, so training starts from step 0", folder)


def _check_trajectory_file(path: Path) -> None:
    if path.is_dir():
        hint = " (use DIR/trajectories.jsonl)" if (path / "trajectories.jsonl").exists() else ""
        raise ValueError(f"data.trajectories={path} is a directory{hint}: pass the trajectories .jsonl file")
    if not path.exists():
        raise ValueError(
            f"data.trajectories={path}: no such file: run generate.py first, or pass the path of a trajectories.jsonl"
        )
    if not path.read_bytes().strip():
        raise ValueError(
            f"data.trajectories={path} is empty: no trajectory to train on (did generate.py finish? "
            f"python -m deepcoder.records.schema {path} checks a file)"
        )


def check_supervised(datamodule: Any) -> None:
    """The training set has tokens to learn from: records without an assistant turn (or cut off
    by ``data.max_length`` before the first) would train at loss 0 and save an untrained student."""
    supervised = datamodule.supervised_tokens()  # from the columns: no token list is built
    if not supervised:
        raise ValueError(
            f"data.trajectories={datamodule.path}: nothing to supervise — none of its {len(datamodule.train_set)} "
            "training examples has an assistant token within data.max_length (records need an assistant turn): "
            "check the file with python -m deepcoder.records.schema, or raise data.max_length"
        )


def check_evaluate(cfg: DictConfig) -> None:
    check_missing(cfg)
    check_output_dir(cfg.output_dir)
    check_limit(cfg)
    policy = cfg.get("policy", cfg.get("teacher"))
    if policy is not None and str(policy.get("_target_", "")).endswith("HFPolicy") and policy.get("model"):
        check_student(str(policy.model), "student" if cfg.get("student") else "teacher.model")


def check_student(value: str, key: str = "student") -> None:
    """A model folder with a config and a tokenizer, or a hub id that can be reached; a train.py
    output_dir points to its ``student/``. A typo fails at once rather than after the hub's retries."""
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            if (path / "student" / "config.json").is_file():
                raise ValueError(f"{key}={value} is a train.py output_dir: pass {key}={path / 'student'}")
            raise ValueError(
                f"{key}={value} has no config.json, so it is not a model folder: pass the student/ folder "
                "that train.py writes (OUTPUT_DIR/student)"
            )
        if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            raise ValueError(
                f"{key}={value} has no tokenizer (tokenizer.json / tokenizer_config.json): pass the student/ "
                "folder that train.py writes, which holds the model with its tokenizer"
            )
        return
    if path.exists():
        raise ValueError(f"{key}={value} is a file: pass the student/ folder that train.py writes")
    if value.startswith((".", "/", "~")) or value.count("/") != 1:  # a hub id is ORG/NAME
        raise ValueError(f"{key}={value}: no such directory (train.py writes the student to OUTPUT_DIR/student)")
    check_hub_id(value, key)


def check_hub_id(repo_id: str, key: str) -> None:
    """A Hugging Face hub id is in the local cache, or the hub answers for it within a few seconds."""
    reason = hub_unavailable(repo_id)
    if reason is not None:
        raise ValueError(f"{key}={repo_id}: no such directory, and it {reason}: check the path, or download it first")
