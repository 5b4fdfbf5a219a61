"""Generation through an API teacher that fails in every way: each problem ends as exactly one record,
and the API key reaches no file the run writes and no log line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from deepcoder.agent.factory import build_agent
from deepcoder.generation import generate_trajectories
from deepcoder.policies.groq import GroqTeacher
from deepcoder.problems import Problem, load_sample
from deepcoder.run.generate import generate
from deepcoder.testing.chat_server import ChatServer, Reply, Script
from deepcoder.utils.jsonl import read_jsonl

from conftest import ROOT

KEY = "gsk_DISTINCTIVE_fake_key_7c1e0b9a"
N_PROBLEMS = 4


def solving_script(problems: list[Problem]) -> Script:
    """The teacher of a careful agent: run the reference solution once, then answer with it."""

    def script(body: dict) -> Reply:
        task = next(m["content"] for m in body["messages"] if m["role"] == "user")
        problem = next(p for p in problems if p.prompt.strip() in task)
        code = problem.reference_solution.strip()
        if not any(m["role"] == "assistant" for m in body["messages"]):
            return Reply(
                f"Thought: I will define it and run it.\nAction: python\nAction Input:\n"
                f"```python\n{code}\nprint('defined')\n```",
                reasoning="The reference approach works.",
            )
        return Reply(f"Thought: It runs.\nFinal Answer:\n```python\n{code}\n```")

    return script


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", KEY)


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_sample()[:N_PROBLEMS]


@pytest.fixture(scope="module")
def agent():
    return build_agent(tools=("python",), max_steps=3)


def problem_ids(path: Path) -> list[str]:
    return [record["problem_id"] for _, record in read_jsonl(path)]


# (fault, how many, retry-after): recovered by the SDK, the limiter or the 413 shrink → no error record;
# malformed or empty → an error record that a rerun retries.
FAULTS = [
    ("429", 3, 0.2),
    ("500", 2, None),
    ("timeout", 1, None),
    ("413", 2, None),
    ("truncated", 2, None),
    ("empty", 2, None),
]


@pytest.mark.parametrize("fault,times,retry_after", FAULTS, ids=[f[0] for f in FAULTS])
def test_every_fault_leaves_each_problem_exactly_once(fault, times, retry_after, problems, agent, tmp_path):
    with ChatServer(solving_script(problems), api_key=KEY) as chat:
        teacher = GroqTeacher("openai/gpt-oss-120b", base_url=chat.url, timeout_s=0.5, max_retries=2)
        chat.inject(fault, times=times, retry_after=retry_after, delay_s=1.0)
        report = generate_trajectories(problems, teacher, agent, tmp_path, num_workers=2)
        ids = problem_ids(tmp_path / "trajectories.jsonl")
        assert sorted(ids) == sorted(p.id for p in problems)  # each exactly once
        records = [r for _, r in read_jsonl(tmp_path / "trajectories.jsonl")]
        errors = [r["error"] for r in records if r["error"]]
        if fault in ("truncated", "empty"):
            kind = "MalformedCompletion" if fault == "truncated" else "EmptyCompletion"
            assert len(errors) == times and all(e.startswith(kind) for e in errors)
            report = generate_trajectories(problems, teacher, agent, tmp_path, num_workers=2)  # retries them
            assert report["n_retried"] == times
        else:
            assert errors == []
        assert report["n_trajectories"] == N_PROBLEMS and report["n_errors"] == 0 and report["n_passed"] == N_PROBLEMS
        assert sorted(set(problem_ids(tmp_path / "trajectories.jsonl"))) == sorted(p.id for p in problems)
        if fault == "429":
            assert teacher.limiter.n_rate_limited == times


def test_a_problem_that_finally_fails_is_an_error_record(problems, agent, tmp_path):
    with ChatServer(solving_script(problems), api_key=KEY) as chat:
        teacher = GroqTeacher("openai/gpt-oss-120b", base_url=chat.url, max_retries=1)
        chat.inject("500", times=2)  # the first request and its one SDK retry
        report = generate_trajectories(problems, teacher, agent, tmp_path, num_workers=1)
    records = {r["problem_id"]: r for _, r in read_jsonl(tmp_path / "trajectories.jsonl")}
    failed = [r for r in records.values() if r["error"]]
    assert len(records) == N_PROBLEMS and len(failed) == 1 and report["n_errors"] == 1
    assert failed[0]["error"].startswith("InternalServerError") and failed[0]["stop_reason"] == "error"


def test_the_key_reaches_no_file_and_no_log(problems, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    with ChatServer(solving_script(problems), api_key=KEY) as chat:
        chat.inject("429", retry_after=0.1)
        chat.inject("500")
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "generate",
                [
                    "teacher=groq",
                    f"teacher.base_url={chat.url}",
                    "problems.limit=3",
                    "agent.tools=[python]",
                    "num_workers=2",
                    f"output_dir={tmp_path}",
                ],
            )
        report = generate(cfg)
        assert chat.stats.authorizations == {f"Bearer {KEY}"}  # the key was really sent
    assert report["n_trajectories"] == 3 and report["n_errors"] == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"trajectories.jsonl", "report.json", "config.yaml"} <= {p.name for p in written}
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    captured = capfd.readouterr()
    assert caplog.records and KEY not in caplog.text
    assert KEY not in captured.out and KEY not in captured.err


@pytest.mark.e2e
@pytest.mark.slow
def test_a_killed_api_run_resumes_to_every_problem_exactly_once(tmp_path):
    """generate.py with teacher=groq against the server (faults on), kill -9 mid-run, resume."""
    problems = load_sample()
    with ChatServer(solving_script(problems), api_key=KEY, latency_s=0.2) as chat:
        chat.inject("429", retry_after=0.2)
        chat.inject("500")
        command = [
            sys.executable,
            str(ROOT / "generate.py"),
            "teacher=groq",
            f"teacher.base_url={chat.url}",
            "agent.tools=[python]",
            "num_workers=2",
            f"output_dir={tmp_path}",
        ]
        env = {**os.environ, "GROQ_API_KEY": KEY}
        path = tmp_path / "trajectories.jsonl"
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if path.exists() and path.read_bytes().count(b"\n") >= 4:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        assert process.wait() == -signal.SIGKILL  # killed mid-way, not finished
        assert len(problem_ids(path)) < len(problems)
        resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    ids = problem_ids(path)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(p.id for p in problems)
    assert KEY.encode() not in path.read_bytes()
