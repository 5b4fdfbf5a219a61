"""Generation: shards, resume after SIGKILL, the lock, merge, the report and its quality metrics."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from deepcoder.agent.factory import build_agent
from deepcoder.generation import generate_trajectories
from deepcoder.generation.merge import merge_shards
from deepcoder.generation.progress import GenerationProgress
from deepcoder.generation.quality import explanation_words, has_code_action, has_reasoning, has_think, quality
from deepcoder.generation.report import error_kind
from deepcoder.generation.shards import select_shard, shard_of
from deepcoder.generation.store import OutputLock
from deepcoder.policies import ReferenceTeacher
from deepcoder.problems import load_problems
from deepcoder.records.schema import Trajectory, TrajectoryRecord, check_record
from deepcoder.run.generate import generate
from deepcoder.utils.jsonl import read_jsonl

from conftest import ROOT

TIMING = {"latency_s", "wall_s"}


def config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("generate", list(overrides))


def records(path: Path) -> list[dict]:
    return [record for _, record in read_jsonl(path)]


def without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in TIMING}


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=["python"])


@pytest.fixture(scope="module")
def sample():
    return load_problems("sample")


@pytest.fixture(scope="module")
def shard_dirs(tmp_path_factory, agent, sample):
    """The sample set generated as 3 shards, and once unsharded for comparison."""
    root = tmp_path_factory.mktemp("shards")
    teacher = ReferenceTeacher()
    for i in range(3):
        generate_trajectories(sample, teacher, agent, root / f"shard{i}", num_workers=2, shard=i, num_shards=3)
    generate_trajectories(sample, teacher, agent, root / "whole", num_workers=2)
    return root


# --- shards -------------------------------------------------------------------------------------


def test_shards_are_disjoint_cover_the_set_and_depend_on_the_id_only():
    problems = load_problems("humaneval")
    parts = [select_shard(problems, i, 3) for i in range(3)]
    ids = [{p.id for p in part} for part in parts]
    assert sum(map(len, ids)) == len(problems) == len(set.union(*ids))
    assert all(40 <= len(part) <= 70 for part in parts)  # balanced on average
    assert [p.id for p in select_shard(problems[::-1], 1, 3)] == [p.id for p in parts[1]][::-1]  # order-free
    subset = problems[:20]  # another problem set (or limit) keeps each problem in its shard
    assert all(shard_of(p.id, 3) == next(i for i in range(3) if p.id in ids[i]) for p in subset)
    assert select_shard(problems, 0, 1) == problems


@pytest.mark.parametrize("shard,num_shards", [(3, 3), (-1, 2), (0, 0)])
def test_a_bad_shard_is_refused_naming_the_keys(shard, num_shards):
    with pytest.raises(ValueError, match="shard"):
        select_shard([], shard, num_shards)


def test_each_shard_writes_its_manifest_and_only_its_problems(shard_dirs, sample):
    seen = []
    for i in range(3):
        manifest = json.loads((shard_dirs / f"shard{i}" / "manifest.json").read_text())
        ids = [r["problem_id"] for r in records(shard_dirs / f"shard{i}" / "trajectories.jsonl")]
        assert manifest["shard"] == i and manifest["num_shards"] == 3 and sorted(manifest["problem_ids"]) == sorted(ids)
        assert all(shard_of(pid, 3) == i for pid in ids)
        seen += ids
    assert sorted(seen) == sorted(p.id for p in sample)


# --- merge --------------------------------------------------------------------------------------


def test_merge_joins_shards_into_the_unsharded_dataset(shard_dirs, tmp_path):
    report = merge_shards([shard_dirs / f"shard{i}" for i in range(3)], tmp_path / "merged")
    merged = {r["problem_id"]: r for r in records(tmp_path / "merged" / "trajectories.jsonl")}
    whole = {r["problem_id"]: r for r in records(shard_dirs / "whole" / "trajectories.jsonl")}
    assert merged.keys() == whole.keys() and len(merged) == 16
    assert all(without_timing(merged[pid]) == without_timing(whole[pid]) for pid in whole)
    assert report["missing"] == report["missing_shards"] == report["duplicates"] == []
    assert report["n_problems"] == report["n_trajectories"] == report["n_passed"] == 16
    assert json.loads((tmp_path / "merged" / "report.json").read_text())["quality"]["overall"]["n"] == 16
    assert not list((tmp_path / "merged").glob("*.tmp"))
    with pytest.raises(FileExistsError, match="--overwrite"):
        merge_shards([shard_dirs / "shard0"], tmp_path / "merged")


def test_the_typed_record_view_declares_the_schema_and_every_field_generate_writes(shard_dirs):
    declared = set(TrajectoryRecord.__annotations__)
    assert set(Trajectory.model_fields) <= declared
    written = {key for record in records(shard_dirs / "whole" / "trajectories.jsonl") for key in record}
    assert written <= declared, f"TrajectoryRecord lacks {sorted(written - declared)}"


def test_merge_prefers_a_good_record_and_reports_duplicates_and_missing(shard_dirs, tmp_path):
    failed, short = tmp_path / "failed0", tmp_path / "short1"
    shutil.copytree(shard_dirs / "shard0", failed)
    shutil.copytree(shard_dirs / "shard1", short)
    lines = (failed / "trajectories.jsonl").read_text().splitlines()
    bad = json.loads(lines[0]) | {"error": "RateLimitError: Error code: 429", "passed": False}
    (failed / "trajectories.jsonl").write_text("\n".join([json.dumps(bad), *lines[1:]]) + "\n")
    short_lines = (short / "trajectories.jsonl").read_text().splitlines()
    (short / "trajectories.jsonl").write_text("\n".join(short_lines[1:]) + "\n")  # a problem never finished
    report = merge_shards([failed, shard_dirs / "shard0", short], tmp_path / "merged")
    ids = [r["problem_id"] for r in records(tmp_path / "merged" / "trajectories.jsonl")]
    assert len(ids) == len(set(ids)) and report["n_errors"] == 0
    assert report["replaced_errors"] == [bad["problem_id"]]
    assert sorted(report["duplicates"]) == sorted(json.loads(line)["problem_id"] for line in lines[1:])
    assert report["missing"] == [json.loads(short_lines[0])["problem_id"]]
    assert report["repeated_shards"] == [0] and report["missing_shards"] == [2]  # shard 2 was not given


def test_merge_refuses_mixed_teachers_and_names_a_torn_shard(shard_dirs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(shard_dirs / "shard1", other)
    rows = records(other / "trajectories.jsonl")
    (other / "trajectories.jsonl").write_text(
        "".join(json.dumps(r | {"teacher": {"provider": "groq", "model": "x"}}) + "\n" for r in rows)
    )
    with pytest.raises(ValueError, match="different teachers.*groq/x"):
        merge_shards([shard_dirs / "shard0", other], tmp_path / "merged")
    torn = tmp_path / "torn"
    shutil.copytree(shard_dirs / "shard0", torn)
    with (torn / "trajectories.jsonl").open("a") as handle:
        handle.write('{"problem_id": "half')
    with pytest.raises(ValueError, match=r"(?s)torn/trajectories.jsonl:\d+: invalid JSON.*rerun generate.py"):
        merge_shards([torn], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


@pytest.mark.e2e
def test_merge_cli_exit_code_says_whether_the_set_is_complete(shard_dirs, tmp_path):
    def merge(*dirs: Path, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deepcoder.generation.merge", str(out), *map(str, dirs)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    complete = merge(*(shard_dirs / f"shard{i}" for i in range(3)), out=tmp_path / "all")
    assert complete.returncode == 0, complete.stderr
    assert "quality" in complete.stdout and len(records(tmp_path / "all" / "trajectories.jsonl")) == 16
    partial = merge(shard_dirs / "shard0", shard_dirs / "shard1", out=tmp_path / "part")
    assert partial.returncode == 1 and "shards missing [2]" in partial.stderr


@pytest.mark.e2e
def test_hydra_multirun_runs_each_shard_into_its_own_dir_and_they_merge(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "generate.py"),
            "-m",
            "shard=0,1",
            "num_shards=2",
            "problems.limit=6",
            "agent.tools=[python]",
            f"paths.output_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifests = sorted(tmp_path.glob("multirun/generate/*/*/manifest.json"))
    assert [json.loads(m.read_text())["shard"] for m in manifests] == [0, 1]
    report = merge_shards([m.parent for m in manifests], tmp_path / "merged")
    assert report["n_trajectories"] == 6 and report["missing"] == [] and report["missing_shards"] == []


# --- durability ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_dataset(tmp_path):
    """kill -9 mid-run, twice, then resume: the same problems, each exactly once, every line whole."""
    args = ["problems=humaneval", "problems.limit=30", "num_workers=2", "agent.tools=[python]"]
    generate(config(*args, f"output_dir={tmp_path / 'whole'}"))
    whole = {r["problem_id"]: r for r in records(tmp_path / "whole" / "trajectories.jsonl")}
    out = tmp_path / "killed"
    command = [sys.executable, str(ROOT / "generate.py"), *args, f"output_dir={out}"]
    kills = 0
    for kill_at in (6, 15):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        path = out / "trajectories.jsonl"
        while process.poll() is None and time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b"\n") >= kill_at:
                os.kill(process.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        process.wait()
    assert kills == 2  # both runs were killed mid-way, not finished
    assert len(path.read_bytes().splitlines()) < len(whole)
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["n_resumed"] >= 15 and report["n_trajectories"] == len(whole)
    lines = path.read_text().splitlines()
    killed = [json.loads(line) for line in lines]  # every line is whole JSON
    assert sorted(r["problem_id"] for r in killed) == sorted(whole)  # each problem exactly once
    assert all(without_timing(r) == without_timing(whole[r["problem_id"]]) for r in killed)


def test_a_second_run_on_the_same_output_dir_is_refused(tmp_path, agent, sample):
    with OutputLock(tmp_path), pytest.raises(RuntimeError, match=f"another generation run \\(pid {os.getpid()}\\)"):
        generate_trajectories(sample[:1], ReferenceTeacher(), agent, tmp_path)
    generate_trajectories(sample[:1], ReferenceTeacher(), agent, tmp_path)  # released with its holder


def test_a_directory_holds_one_shard_only(shard_dirs, agent, sample):
    with pytest.raises(ValueError, match="holds shard 0 of 3, not shard 1 of 3; give each shard its own output_dir"):
        generate_trajectories(sample, ReferenceTeacher(), agent, shard_dirs / "shard0", shard=1, num_shards=3)


class InterruptedTeacher(ReferenceTeacher):
    """Slow episodes; one problem's raises KeyboardInterrupt, as Ctrl-C would in the main loop."""

    def __init__(self, interrupt: str) -> None:
        super().__init__()
        self.interrupt = interrupt

    def complete(self, messages, *, problem):
        time.sleep(0.2)
        if problem.id == self.interrupt:
            raise KeyboardInterrupt
        return super().complete(messages, problem=problem)


def test_ctrl_c_keeps_the_episodes_in_flight_and_drops_the_queued(tmp_path, agent, sample):
    teacher = InterruptedTeacher(interrupt=sample[0].id)
    with pytest.raises(KeyboardInterrupt):
        generate_trajectories(sample, teacher, agent, tmp_path, num_workers=2)
    ids = [r["problem_id"] for r in records(tmp_path / "trajectories.jsonl")]
    assert sample[1].id in ids and sample[0].id not in ids  # in flight at the interrupt: finished and kept
    assert len(ids) <= 3  # the queued episodes never started
    report = generate_trajectories(sample[:6], ReferenceTeacher(), agent, tmp_path, num_workers=2)
    assert report["n_resumed"] == len(ids) and report["n_trajectories"] == 6


class RateLimitError(Exception):
    """Named like the SDKs' exception, as the loop records it."""


class FlakyTeacher(ReferenceTeacher):
    """The reference teacher, except that the problems in ``fail`` always hit a 429."""

    def __init__(self, fail: set[str]) -> None:
        super().__init__()
        self.fail = fail

    def complete(self, messages, *, problem):
        if problem.id in self.fail:
            raise RateLimitError("Error code: 429 - rate limit exceeded, retries exhausted")
        return super().complete(messages, problem=problem)


class CrashingAgent:
    """An agent whose episode raises for one problem (a bug, not a policy failure)."""

    def __init__(self, agent, crash: str) -> None:
        self.agent, self.crash = agent, crash

    def initial_messages(self, problem):
        return self.agent.initial_messages(problem)

    def run(self, policy, problem):
        if problem.id == self.crash:
            raise OSError("sandbox fork server died")
        return self.agent.run(policy, problem)


def test_errors_are_records_retried_on_resume_and_never_duplicated(tmp_path, agent, sample):
    problems = sample[:4]
    report = generate_trajectories(
        problems, FlakyTeacher({problems[0].id}), CrashingAgent(agent, problems[1].id), tmp_path, num_workers=2
    )
    assert report["n_trajectories"] == 4 and report["n_errors"] == 2
    assert report["errors_by_kind"]["rate_limit"] == 1 and report["errors_by_kind"]["other"] == 1
    for number, record in read_jsonl(tmp_path / "trajectories.jsonl"):
        check_record(record, f"line {number}")  # crashed episodes are schema-valid records too
    report = generate_trajectories(problems, ReferenceTeacher(), agent, tmp_path)
    assert report["n_retried"] == 2 and report["n_new"] == 2 and report["n_errors"] == 0 and report["n_passed"] == 4
    ids = [r["problem_id"] for r in records(tmp_path / "trajectories.jsonl")]
    assert sorted(ids) == sorted(p.id for p in problems)  # the error records were replaced, not appended to


# --- report and quality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error,kind",
    [
        ("RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached'}}", "rate_limit"),
        ("APITimeoutError: Request timed out.", "timeout"),
        ("APIStatusError: Error code: 413 - {'error': {'message': 'Request too large'}}", "too_large"),
        ("InternalServerError: Error code: 500 - {'error': 'boom'}", "server_error"),
        ("APIConnectionError: Connection error.", "connection"),
        ("JSONDecodeError: Expecting value: line 1 column 1 (char 0)", "malformed"),
        ("EmptyCompletionError: the model returned empty content", "malformed"),
        ("AuthenticationError: Error code: 401", "auth"),
        ("NotFoundError: Error code: 404 - model `x` does not exist", "not_found"),
        ("RateLimitRetriesExhausted: 429 5 times for one request: Rate limit reached", "rate_limit"),
        ("RequestTooLarge: 413 with max_tokens=64: Request too large on tokens per minute, rate limit", "too_large"),
        ("EmptyCompletion: m returned an empty completion (finish_reason=stop)", "malformed"),
        ("MalformedCompletion: the response has no choices: '{}'", "malformed"),
        ("KeyError: 'choices'", "other"),
    ],
)
def test_error_kind_from_the_recorded_exception_text(error, kind):
    assert error_kind(error) == kind


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def test_quality_measures_follow_their_definitions():
    fence = "```python\ndef f():\n    return 1\n```"
    action = "<think>try it</think>\nThought: run it\nAction: python\nAction Input:\n" + fence
    r1 = {
        "messages": [
            turn("assistant", action),
            turn("assistant", f"Thought: It returns one as required by the task.\nFinal Answer:\n{fence}"),
        ],
        "steps": [
            {"thought": "try it\nrun it", "action": {"tool": "python", "input": "def f(): ..."}},
            {"thought": "It returns one", "action": None},
        ],
        "final_answer": "def f():\n    return 1",
        "passed": True,
        "error": None,
        "usage": {"prompt_tokens": 100, "completion_tokens": 50},
    }
    r2 = {
        "messages": [turn("assistant", f"Final Answer:\n{fence}\nok")],
        "steps": [{"thought": "", "action": {"tool": "retrieve", "input": "sorted"}}, {"thought": "", "action": None}],
        "final_answer": "def f():\n    return 1",
        "passed": False,
        "error": None,
        "usage": {"prompt_tokens": 10, "completion_tokens": 30},
    }
    r3 = {"messages": [], "steps": [], "final_answer": None, "passed": False, "error": "RateLimitError: 429"}
    assert has_reasoning(r1) and has_think(r1) and has_code_action(r1) and explanation_words(r1) == 8
    assert not has_reasoning(r2) and not has_think(r2) and not has_code_action(r2) and explanation_words(r2) == 1
    summary = quality([r1, r2, r3])
    assert summary == {
        "n": 3,
        "n_errors": 1,
        "pass_rate": 0.3333,
        "with_reasoning": 0.5,
        "with_think": 0.5,
        "with_code_action": 0.5,
        "with_explanation": 0.5,
        "mean_steps": 2.0,
        "mean_prompt_tokens": 55.0,
        "mean_completion_tokens": 40.0,
        "mean_tokens": 95.0,
    }


def test_report_carries_quality_per_category_and_difficulty(shard_dirs, sample):
    report = json.loads((shard_dirs / "whole" / "report.json").read_text())
    assert report["quality"]["overall"]["n"] == 16
    assert set(report["quality"]["by_category"]) == {p.category for p in sample}
    assert set(report["quality"]["by_difficulty"]) == {"easy", "medium", "hard"}
    overall = report["quality"]["overall"]
    assert overall["with_reasoning"] == overall["with_code_action"] == overall["with_explanation"] == 1.0
    assert overall["mean_steps"] == 2.0 and report["tokens"]["completion_tokens"] > 0
    assert report["trajectories_per_min"] > 0 and report["tokens_per_s"] > 0


def test_progress_counts_tokens_per_second_and_eta_with_a_clock(caplog):
    caplog.set_level(logging.INFO, logger="deepcoder.generation.progress")
    now = [100.0]
    with GenerationProgress(total=4, clock=lambda: now[0], log_every_s=0.0) as progress:
        for passed, error in ((True, None), (False, None), (False, "APITimeoutError: x"), (True, None)):
            now[0] += 2.0
            progress.add({"passed": passed, "error": error, "usage": {"prompt_tokens": 30, "completion_tokens": 10}})
            if progress.stats.done == 2:
                assert progress.stats.eta_s(now[0]) == 4.0 and progress.stats.tokens_per_s(now[0]) == 20.0
    stats = progress.stats
    assert (stats.done, stats.passed, stats.failed, stats.errors, stats.tokens) == (4, 2, 1, 1, 160)
    assert "4/4 done, 2 passed, 1 failed, 1 errors, 20 tok/s, pass rate 50%" in caplog.text  # not a terminal: logged


def test_a_local_model_teacher_plays_batched_and_writes_the_one_at_a_time_records(tmp_path, sample):
    """teacher=hf: ``num_workers`` episodes decoded together give the records of one episode at a
    time (greedy), in the same schema (no ``sample`` key), and a rerun finds nothing left to do."""
    from deepcoder.models.tiny import TinyModel
    from deepcoder.policies.hf import HFPolicy

    lm, tokenizer = TinyModel().load(seed=0)
    teacher = HFPolicy.from_model(lm, tokenizer, name="tiny", max_new_tokens=8, stop=("e", "\nObservation:"))
    agent = build_agent(tools=["python"], max_steps=2)
    problems = sample[:5]
    expected = {p.id: agent.run(teacher, p) for p in problems}
    before = teacher.decode_counts
    report = generate_trajectories(problems, teacher, agent, tmp_path, num_workers=3)
    assert report["n_new"] == 5 and teacher.decode_counts["decoded"] > before["decoded"]  # the batched loop ran
    written = {r["problem_id"]: r for _, r in read_jsonl(tmp_path / "trajectories.jsonl")}
    strip = lambda r: json.loads(json.dumps({k: v for k, v in r.items() if k not in TIMING}))  # noqa: E731
    assert {k: strip(r) for k, r in written.items()} == {k: strip(r) for k, r in expected.items()}
    assert generate_trajectories(problems, teacher, agent, tmp_path, num_workers=3)["n_new"] == 0
