"""One ReAct episode: ask the policy, parse, run the tool, append the Observation, grade.

The same loop serves the teacher at generation time and the student at evaluation time, so a
trajectory and an evaluation episode are built by identical code; the batched runner
(:mod:`deepcoder.agent.batch_loop`) advances the same :class:`~deepcoder.agent.episode.Episode`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from deepcoder.agent.episode import Episode
from deepcoder.protocol.parsing import ParsedTurn
from deepcoder.protocol.prompts import system_prompt, task_prompt
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

    def start(self, policy: Any, problem: Problem, sample: int = 0, seed: int | None = None) -> Episode:
        """A new episode of ``problem`` for ``policy`` (the record names its provider, model and fingerprint)."""
        return Episode(problem, self.initial_messages(problem), set(self.tools), self.max_steps, policy, sample, seed)

    def run(
        self,
        policy: Policy,
        problem: Problem,
        sample: int = 0,
        on_step: Callable[[Episode], None] | None = None,
    ) -> TrajectoryRecord:
        """Play one episode; never raises for a policy failure (it becomes the record's ``error``).
        ``on_step`` sees the episode as soon as each step is complete (its observation included)."""
        episode = self.start(policy, problem, sample)
        while not episode.done:
            try:
                completion = policy.complete(episode.messages, problem=problem)
            except Exception as exc:  # a backend failure is data, not a crash of the whole run
                episode.fail(exc)
                break
            turn = episode.take(completion)
            if turn is not None:
                episode.observe(*self.observe(turn))
            if on_step is not None:
                on_step(episode)
        return episode.record(self.grade(problem, episode.final_answer))

    def observe(self, turn: ParsedTurn) -> tuple[str, bool]:
        """The Observation text, and whether the tool ran without an error."""
        if turn.error is not None:
            return FORMAT_REMINDER.format(error=turn.error), False
        try:
            result = self.tools[turn.tool](turn.tool_input)
        except Exception as exc:  # a broken tool is an observation, not a lost episode
            return f"Error: the {turn.tool} tool failed: {type(exc).__name__}: {exc}", False
        return result.text, result.ok

    def grade(self, problem: Problem, final_answer: str | None) -> dict[str, Any]:
        """``passed`` and ``error`` of ``final_answer`` on the problem's tests (None without tests)."""
        if not problem.tests:
            return {"passed": None, "error": None}
        if final_answer is None:
            return {"passed": False, "error": "no final answer"}
        outcome = run_tests(
            self.executor, final_answer, problem.tests, problem.entry_point, timeout_s=self.test_timeout_s
        )
        return {"passed": outcome.passed, "error": outcome.error}
