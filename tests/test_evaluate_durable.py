"""evaluate.py is durable like generate.py: episodes kept as they finish, a rerun with the same
output_dir runs only what is missing, report.json always matches episodes.jsonl (or says it is
partial), another policy in the same output_dir is refused, and Ctrl-C / SIGTERM stop after the
episode in flight with a non-zero exit and one line, never a traceback or exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deepcoder.run.evaluate import evaluate
from deepcoder.utils.jsonl import read_jsonl

from conftest import ROOT
from conftest import compose_config as config


def lines(path) -> list[dict]:
    return [record for _, record in read_jsonl(path)]


def test_rerun_runs_only_missing_episodes_and_keeps_report_consistent(tmp_path):
    evaluate(config("evaluate", "policy=reference", "problems.limit=2", f"output_dir={tmp_path}"))
    first = lines(tmp_path / "episodes.jsonl")
    report = evaluate(config("evaluate", "policy=reference", "problems.limit=4", f"output_dir={tmp_path}"))
    episodes = lines(tmp_path / "episodes.jsonl")
    assert episodes[:2] == first  # kept, not rerun
    assert len(episodes) == 4 == report["n"] == report["n_episodes"] and not report.get("partial")
    assert len({e["problem_id"] for e in episodes}) == 4


def test_an_error_episode_is_retried_and_a_torn_line_repaired(tmp_path):
    evaluate(config("evaluate", "policy=reference", "problems.limit=2", f"output_dir={tmp_path}"))
    path = tmp_path / "episodes.jsonl"
    records = lines(path)
    records[0]["error"] = "RuntimeError: boom"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"problem_id": "torn', encoding="utf-8")
    report = evaluate(config("evaluate", "policy=reference", "problems.limit=2", f"output_dir={tmp_path}"))
    assert report["n_passed"] == 2 and [e.get("error") for e in lines(path)] == [None, None]


def test_another_policy_in_the_same_output_dir_is_refused(tmp_path):
    evaluate(config("evaluate", "policy=reference", "problems.limit=1", f"output_dir={tmp_path}"))
    with pytest.raises(ValueError, match="holds episodes of another evaluation .*use another output_dir"):
        evaluate(config("evaluate", "policy=reference", "policy.model=other", f"output_dir={tmp_path}"))
    assert (tmp_path / "report.json").exists()  # the old report still matches the untouched episodes


@pytest.mark.e2e
@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_episode_in_flight_and_a_rerun_finishes(tmp_path, signum, status):
    out = tmp_path / "eval"
    args = ["policy=reference", "problems=humaneval", f"output_dir={out}"]
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "evaluate.py"), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((out / "episodes.jsonl").exists() and (out / "episodes.jsonl").read_text().count("\n")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"stopped by {signal.Signals(signum).name}: finished episodes")
    report = json.loads((out / "report.json").read_text())
    done = lines(out / "episodes.jsonl")
    assert report["partial"] is True and report["n_episodes_expected"] == 164
    assert 0 < report["n_episodes"] == len(done) < 164
    final = evaluate(config("evaluate", *args))
    assert final["n"] == 164 == len(lines(out / "episodes.jsonl")) and "partial" not in final
    assert final["n_passed"] == 164
