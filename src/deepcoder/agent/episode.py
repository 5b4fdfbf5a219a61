"""One episode's state, advanced a turn at a time: the sequential loop and the batched runner share it,
so an episode is recorded by the same code however it was played."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from deepcoder.agent.seeds import trajectory_id
from deepcoder.core.names import SCHEMA_VERSION
from deepcoder.protocol.parsing import ParsedTurn, parse_turn
from deepcoder.protocol.prompts import observation_message
from deepcoder.records.schema import TrajectoryRecord

if TYPE_CHECKING:
    from deepcoder.policies.base import Completion
    from deepcoder.problems import Problem


class Episode:
    """The messages and steps so far; ``done`` once it answered, failed or used ``max_steps`` turns.

    ``seed`` is the episode's sampling seed (turn ``t`` is drawn with ``derive_seed(seed, t)``);
    ``policy``'s provider, model and fingerprint are written into the record when it is made (an API
    policy learns its fingerprint from its replies).
    """

    def __init__(
        self,
        problem: Problem,
        messages: list[dict[str, str]],
        tools: set[str],
        max_steps: int,
        policy: Any,
        sample: int = 0,
        seed: int | None = None,
    ) -> None:
        self.problem, self.messages, self.tools, self.max_steps = problem, messages, tools, max_steps
        self.policy, self.sample, self.seed = policy, sample, seed
        self.steps: list[dict[str, Any]] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.latency, self.stop = 0.0, "max_steps"
        self.final_answer: str | None = None
        self.error: str | None = None
        self.finished = False
        self.started = time.perf_counter()

    @property
    def turn(self) -> int:
        """How many assistant turns the episode has (the index of the next one)."""
        return len(self.steps)

    @property
    def done(self) -> bool:
        return self.finished or len(self.steps) >= self.max_steps

    def fail(self, exc: BaseException) -> None:
        """The policy raised: a backend failure is data (the record's ``error``), not a crash of the run."""
        self.error, self.stop, self.finished = f"{type(exc).__name__}: {exc}", "error", True

    def take(self, completion: Completion) -> ParsedTurn | None:
        """Record the policy's turn; returns it when it asks for a tool, None when the episode ended
        (a final answer) — after a non-final turn, call :meth:`observe` before the next turn."""
        self.usage["prompt_tokens"] += completion.prompt_tokens
        self.usage["completion_tokens"] += completion.completion_tokens
        self.latency += completion.latency_s
        turn = parse_turn(completion.turn, self.tools)  # separate reasoning arrives as <think>
        self.messages.append({"role": "assistant", "content": turn.text})
        step = _step_record(turn)
        step["raw"] = completion.turn if completion.turn != turn.text else None  # exactly as received
        if completion.logprobs is not None:
            step["logprobs"] = completion.logprobs
        self.steps.append(step)
        if turn.is_final:
            self.final_answer, self.stop, self.finished = turn.final_answer, "final_answer", True
            return None
        return turn

    def observe(self, observation: str, tool_ok: bool) -> None:
        """The environment's answer to the last turn, appended as the next user message."""
        self.steps[-1]["observation"], self.steps[-1]["tool_ok"] = observation, tool_ok
        self.messages.append({"role": "user", "content": observation_message(observation)})

    def record(self, graded: dict[str, Any]) -> TrajectoryRecord:
        """The finished episode as a trajectory record, with ``graded``'s ``passed`` and ``error``."""
        provider, model = self.policy.provider, self.policy.model
        fingerprint = getattr(self.policy, "fingerprint", None)
        problem = self.problem
        return {
            "schema_version": SCHEMA_VERSION,
            "trajectory_id": trajectory_id(problem.id, provider, model, self.sample),
            "problem_id": problem.id,
            "category": problem.category,
            "difficulty": problem.difficulty,
            "teacher": {"provider": provider, "model": model, "fingerprint": fingerprint},
            "messages": self.messages,
            "steps": self.steps,
            "final_answer": self.final_answer,
            "passed": graded["passed"],
            "test_error": graded["error"],
            "stop_reason": self.stop,
            "error": self.error,
            "usage": self.usage,
            "latency_s": round(self.latency, 4),
            "wall_s": round(time.perf_counter() - self.started, 4),
        }


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
