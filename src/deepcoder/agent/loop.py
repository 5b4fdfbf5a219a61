"""One ReAct episode: ask the policy, parse, run the tool, append the Observation, grade.

The same loop serves the teacher at generation time and the student at evaluation time, so a
trajectory and an evaluation episode are built by identical code.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepcoder.core.names import SCHEMA_VERSION
from deepcoder.protocol.parsing import ParsedTurn, parse_turn
from deepcoder.protocol.prompts import observation_message, system_prompt, task_prompt
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.tools import PythonExecutor, Tool, run_tests

if TYPE_CHECKING:
    from deepcoder.policies.base import Policy
    from deepcoder.problems import Problem

FORMAT_REMINDER = (
    "Error: {error}. Reply with 'Thought:' then either 'Action:' and 'Action Input:', "
    "or 'Final Answer:' with the complete program in a ```python block."
)


class Agent:
    """Runs episodes with a fixed tool set and grades final answers in the sandbox."""

    def __init__(
        self, tools: Sequence[Tool], executor: PythonExecutor, max_steps: int = 4, test_timeout_s: float = 10.0
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"agent.max_steps must be >= 1, got {max_steps}")
        self.tools = {tool.name: tool for tool in tools}
        self.executor = executor
        self.max_steps = max_steps
        self.test_timeout_s = test_timeout_s
        self.system = system_prompt(list(tools))

    def initial_messages(self, problem: Problem) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": task_prompt(problem.prompt, problem.entry_point)},
        ]

    def run(self, policy: Policy, problem: Problem, sample: int = 0) -> TrajectoryRecord:
        """Play one episode; never raises for a policy failure (it becomes the record's ``error``)."""
        started = time.perf_counter()
        messages = self.initial_messages(problem)
        steps: list[dict[str, Any]] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        latency, final_answer, error, stop = 0.0, None, None, "max_steps"
        for _ in range(self.max_steps):
            try:
                completion = policy.complete(messages, problem=problem)
            except Exception as exc:  # a backend failure is data, not a crash of the whole run
                error, stop = f"{type(exc).__name__}: {exc}", "error"
                break
            usage["prompt_tokens"] += completion.prompt_tokens
            usage["completion_tokens"] += completion.completion_tokens
            latency += completion.latency_s
            turn = parse_turn(completion.turn, set(self.tools))  # separate reasoning arrives as <think>
            messages.append({"role": "assistant", "content": turn.text})
            step = _step_record(turn)
            step["raw"] = completion.turn if completion.turn != turn.text else None  # exactly as received
            if completion.logprobs is not None:
                step["logprobs"] = completion.logprobs
            steps.append(step)
            if turn.is_final:
                final_answer, stop = turn.final_answer, "final_answer"
                break
            observation, step["tool_ok"] = self._observe(turn)
            step["observation"] = observation
            messages.append({"role": "user", "content": observation_message(observation)})
        graded = self._grade(problem, final_answer)
        return {
            "schema_version": SCHEMA_VERSION,
            "trajectory_id": trajectory_id(problem.id, policy.provider, policy.model, sample),
            "problem_id": problem.id,
            "category": problem.category,
            "difficulty": problem.difficulty,
            "teacher": {
                "provider": policy.provider,
                "model": policy.model,
                "fingerprint": getattr(policy, "fingerprint", None),
            },
            "messages": messages,
            "steps": steps,
            "final_answer": final_answer,
            "passed": graded["passed"],
            "test_error": graded["error"],
            "stop_reason": stop,
            "error": error,
            "usage": usage,
            "latency_s": round(latency, 4),
            "wall_s": round(time.perf_counter() - started, 4),
        }

    def _observe(self, turn: ParsedTurn) -> tuple[str, bool]:
        """The Observation text, and whether the tool ran without an error."""
        if turn.error is not None:
            return FORMAT_REMINDER.format(error=turn.error), False
        try:
            result = self.tools[turn.tool](turn.tool_input)
        except Exception as exc:  # a broken tool is an observation, not a lost episode
            return f"Error: the {turn.tool} tool failed: {type(exc).__name__}: {exc}", False
        return result.text, result.ok

    def _grade(self, problem: Problem, final_answer: str | None) -> dict[str, Any]:
        if not problem.tests:
            return {"passed": None, "error": None}
        if final_answer is None:
            return {"passed": False, "error": "no final answer"}
        outcome = run_tests(
            self.executor, final_answer, problem.tests, problem.entry_point, timeout_s=self.test_timeout_s
        )
        return {"passed": outcome.passed, "error": outcome.error}


def _step_record(turn: ParsedTurn) -> dict[str, Any]:
    """A step as stored: the parsed fields plus the labelled character segments of the turn."""
    return {
        "thought": turn.thought,
        "action": {"tool": turn.tool, "input": turn.tool_input} if turn.is_action else None,
        "observation": None,
        "tool_ok": None,
        "parse_error": turn.error,
        "segments": [dataclasses.astuple(s) for s in turn.segments],
    }


def trajectory_id(problem_id: str, provider: str, model: str, sample: int) -> str:
    """Stable across reruns, so resumed and repeated runs name the same episode the same way."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"deepcoder:{problem_id}:{provider}:{model}:{sample}"))
