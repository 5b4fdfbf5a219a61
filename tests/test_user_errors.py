"""Every mistake a researcher makes in a week ends as one line naming the value, the problem and the
fix, with a non-zero exit, never a traceback (unless HYDRA_FULL_ERROR=1), a silent success or a
long wait: nothing to supervise, empty inputs, step and limit ranges, student dirs, missing extras,
outputs that cannot be written, Ctrl-C, broken pipes, overwrites."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deepcoder.run.checks import check_argv
from deepcoder.run.evaluate import evaluate
from deepcoder.run.generate import generate
from deepcoder.run.train import train

from conftest import ROOT
from conftest import compose_config as config

FIREACT = ROOT / "tests" / "fixtures" / "fireact" / "hotpotqa_gpt.jsonl"


def cli(script: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """A root script or ``-m module`` run as a user would, stdout not a terminal."""
    command = [sys.executable, *([str(ROOT / script)] if script.endswith(".py") else ["-m", script])]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, **kwargs)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The stage failed with one error line that holds every needle, and no traceback."""
    assert result.returncode not in (0, None), result.stdout[-1000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr[-2000:]
    for needle in needles:
        assert needle in line, line
    return line


def wait_for_a_line(path, process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until ``path`` holds a finished record (the run is under way, with most of it still to do)."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text().count("\n")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.02)


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate(config("generate", "problems.limit=2", f"output_dir={out}"))
    return out / "trajectories.jsonl"


def train_config(trajectories, out, *extra):
    return config(
        "train",
        f"data.trajectories={trajectories}",
        "data.val_fraction=0",
        "data.max_length=256",
        "callbacks=none",
        "logger=none",
        f"output_dir={out}",
        *extra,
    )


# 3. nothing to supervise, empty files


def test_records_without_an_assistant_turn_are_refused_before_training(trajectories, tmp_path):
    records = [json.loads(line) for line in trajectories.read_text().splitlines()]
    for record in records:  # valid records, but only the prompt: nothing the student could learn
        record["messages"] = [m for m in record["messages"] if m["role"] != "assistant"]
        record["steps"] = []
    silent = tmp_path / "no_assistant.jsonl"
    silent.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match="nothing to supervise"):
        train(train_config(silent, tmp_path / "out", "trainer.max_steps=2"))
    assert not (tmp_path / "out" / "student").exists()


def test_an_empty_trajectory_file_says_it_is_empty(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"empty.jsonl is empty: no trajectory to train on"):
        train(train_config(empty, tmp_path / "out"))
    with pytest.raises(ValueError, match=r"is a directory .*use DIR/trajectories.jsonl|is a directory"):
        train(train_config(tmp_path, tmp_path / "out"))


# 5. step and problem ranges


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.max_steps=0"], "trainer.max_steps=0 trains nothing"),
        (["trainer.max_steps=-1", "trainer.max_epochs=-1"], "never stops"),
    ],
)
def test_step_ranges_that_train_nothing_or_forever_are_refused(trajectories, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(train_config(trajectories, tmp_path / "out", *overrides))
    assert not (tmp_path / "out" / "student").exists()


def test_no_problems_is_an_error_not_an_empty_result(tmp_path):
    with pytest.raises(ValueError, match="problems.limit=0 selects no problem"):
        generate(config("generate", "problems.limit=0", f"output_dir={tmp_path / 'g'}"))
    empty = tmp_path / "problems.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="gives no problem"):
        evaluate(
            config(
                "evaluate",
                "policy=reference",
                "problems=jsonl",
                f"problems.path={empty}",
                f"output_dir={tmp_path / 'e'}",
            )
        )
    assert not (tmp_path / "e" / "report.json").exists()


# 4. student= mistakes


@pytest.fixture(scope="module")
def student_run(trajectories, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    train(train_config(trajectories, out, "trainer.max_steps=1"))
    return out


def test_student_mistakes_name_the_fix(student_run, tmp_path):
    def refused(student: str) -> str:
        with pytest.raises(ValueError) as error:
            evaluate(config("evaluate", f"student={student}", "problems.limit=1", f"output_dir={tmp_path / 'e'}"))
        return str(error.value)

    assert f"pass student={student_run / 'student'}" in refused(str(student_run))  # the train dir, not its student/
    assert "no such directory" in refused(str(tmp_path / "missing" / "student"))
    no_tokenizer = tmp_path / "bare"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text((student_run / "student" / "config.json").read_text())
    assert "has no tokenizer" in refused(str(no_tokenizer))
    started = time.monotonic()
    assert "no such directory" in refused("outptus-sad")  # a bare typo: no hub round trips
    assert time.monotonic() - started < 5


# 8. missing extras


def test_a_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "optuna" in name else real(name, *a))
    problem = check_argv("train", ["-m", "hparams_search=optuna", "data.trajectories=x"])
    assert (
        problem.startswith("hparams_search=optuna needs hydra_optuna_sweeper")
        and "pip install -e '.[sweep]'" in problem
    )


# 9. what used to end in a traceback


@pytest.mark.e2e
def test_cli_mistakes_are_one_line(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line_error(
        cli("generate.py", "teacher=openai", f"output_dir={tmp_path / 'g'}"), "teacher.model", "teacher.model="
    )
    one_line_error(cli("generate.py", f"output_dir={a_file}"), f"output_dir={a_file} is a file")
    one_line_error(cli("generate.py", f"output_dir={a_file / 'sub'}"), f"{a_file} is a file")
    one_line_error(cli("deepcoder.show", str(tmp_path)), "is a directory")
    one_line_error(cli("deepcoder.spans.importers", str(FIREACT), str(a_file / "out.jsonl")), f"{a_file} is a file")
    one_line_error(cli("deepcoder.spans.importers", str(FIREACT), str(a_file)), "exists: pass --force")
    assert a_file.read_text() == "x"
    assert cli("deepcoder.spans.importers", str(FIREACT), str(a_file), "--force").returncode == 0
    full = cli(
        "generate.py", "problems.limit=0", f"output_dir={tmp_path / 'g'}", env={**os.environ, "HYDRA_FULL_ERROR": "1"}
    )
    assert full.returncode != 0 and "Traceback" in full.stderr  # the traceback, when asked for


@pytest.mark.e2e
def test_ctrl_c_in_generate_finishes_in_flight_and_exits_130_in_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "generate.py"), "problems=humaneval", f"output_dir={tmp_path}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_a_line(tmp_path / "trajectories.jsonl", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted (Ctrl-C)")
    done = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert 0 < len(done) < 164 and all(json.loads(line) for line in done)


@pytest.mark.e2e
def test_show_into_a_closed_pipe_ends_quietly(trajectories):
    process = subprocess.Popen(
        [sys.executable, "-m", "deepcoder.show", str(trajectories), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # `| head` that has already exited
    _, stderr = process.communicate(timeout=120)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr[-2000:]


def test_a_busy_output_dir_is_one_line_naming_the_other_run(tmp_path):
    from deepcoder.generation.store import OutputLock

    with OutputLock(tmp_path / "g"):  # another generate.py writing there now
        line = one_line_error(
            cli("generate.py", "problems.limit=1", f"output_dir={tmp_path / 'g'}"), "another generation run"
        )
    assert f"(pid {os.getpid()})" in line and "use another output_dir" in line
