"""Many episodes at once: every live episode of a batch advances one turn per step of the loop.

Each step asks the policy for the next turn of all live episodes together — one batched decode
for a policy with ``complete_many`` (:class:`~deepcoder.policies.hf.HFPolicy`, which inside its
``prefix_cache`` block reuses each episode's KV from the turn before), else
one ``complete`` call per episode, run in threads (chat APIs wait on the network; the reference
teacher is instant). The turns' tool calls then run in parallel in the sandbox, finished episodes
leave and are graded in the background, and waiting episodes take their places (continuous
batching), so the batch stays full until the queue is empty. Episodes are built by the same
:class:`~deepcoder.agent.episode.Episode` as the one-at-a-time loop: greedy episodes are the same.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from deepcoder.agent.episode import Episode
from deepcoder.agent.seeds import derive_seed

if TYPE_CHECKING:
    from deepcoder.agent.loop import Agent
    from deepcoder.policies.base import Completion
    from deepcoder.problems import Problem


def run_episodes(
    policy: Any,
    problems: Sequence[Problem],
    *,
    agent: Agent,
    batch_size: int = 16,
    samples: int = 1,
    seed: int = 0,
    only: Collection[tuple[str, int]] | None = None,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[Episode], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """Play ``samples`` episodes of each problem with at most ``batch_size`` live at a time.

    - ``policy``: any policy; with ``complete_many(conversations, seeds=…)`` turns are batched.
    - ``agent``: tools, sandbox, ``max_steps`` and grading (:func:`deepcoder.agent.factory.build_agent`).
    - ``samples``, ``seed``: sample ``s`` of problem ``p`` has the episode seed
      ``derive_seed(seed, p.id, s)`` and draws turn ``t`` with ``derive_seed(episode_seed, t)``
      (the seeds of ``evaluate.py``); greedy policies ignore them.
    - ``only``: the ``(problem_id, sample)`` pairs to play (default: all), e.g. those a resumed run lacks.
    - ``on_episode``: called (in this thread) with each record as soon as it is graded.
    - ``on_step``: called with an episode each time one of its steps is complete (observation included).
    - ``should_stop``: checked before each new episode starts; once true, no episode starts and the
      live ones are played to the end (a Ctrl-C handler's flag).
    - ``workers``: threads for tool calls, grading and per-episode policy calls (default ``batch_size``).

    Returns the finished records (each with its ``sample``) in (problem, sample) order. A policy
    that raises ends that episode with an ``error`` record (batched: every episode of that call).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    queue = deque(
        (problem, sample)
        for problem in problems
        for sample in range(samples)
        if only is None or (problem.id, sample) in only
    )
    order = {(problem.id, sample): i for i, (problem, sample) in enumerate(queue)}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    grading: list[tuple[Episode, Future]] = []

    def harvest(wait: bool) -> None:
        for episode, future in [item for item in grading if wait or item[1].done()]:
            grading.remove((episode, future))
            record: dict[str, Any] = {**episode.record(future.result()), "sample": episode.sample}
            done[(episode.problem.id, episode.sample)] = record
            if on_episode is not None:
                on_episode(record)

    live: list[Episode] = []
    reuse = getattr(policy, "prefix_cache", nullcontext)  # a local model keeps each episode's KV between turns
    with ThreadPoolExecutor(workers or batch_size, thread_name_prefix="episodes") as pool, reuse():
        while queue or live:
            while queue and len(live) < batch_size and not (should_stop and should_stop()):
                problem, sample = queue.popleft()
                live.append(agent.start(policy, problem, sample, derive_seed(seed, problem.id, sample)))
            if not live:
                break
            acting = []
            for episode, completion in zip(live, _next_turns(policy, live, pool)):
                if isinstance(completion, BaseException):
                    episode.fail(completion)
                elif (turn := episode.take(completion)) is not None:
                    acting.append((episode, turn))
            for (episode, _), observed in zip(acting, pool.map(lambda item: agent.observe(item[1]), acting)):
                episode.observe(*observed)
            if on_step is not None:
                for episode in live:
                    if episode.steps and episode.error is None:
                        on_step(episode)
            for episode in [episode for episode in live if episode.done]:
                grading.append((episode, pool.submit(agent.grade, episode.problem, episode.final_answer)))
            live = [episode for episode in live if not episode.done]
            harvest(wait=False)
        harvest(wait=True)
    return [done[key] for key in sorted(done, key=order.__getitem__)]


def _next_turns(policy: Any, live: list[Episode], pool: ThreadPoolExecutor) -> list[Completion | BaseException]:
    """The next turn of every live episode (or the exception its policy call raised)."""
    sampling = bool(getattr(policy, "sampling", False))
    seeds = [derive_seed(episode.seed, episode.turn) for episode in live] if sampling else None
    if hasattr(policy, "complete_many"):
        try:
            return list(policy.complete_many([episode.messages for episode in live], seeds=seeds))
        except Exception as exc:  # a failed batch is data for each of its episodes
            return [exc] * len(live)

    def ask(i: int) -> Completion | BaseException:
        extra = {"seed": seeds[i]} if seeds is not None else {}
        try:
            return policy.complete(live[i].messages, problem=live[i].problem, **extra)
        except Exception as exc:  # a backend failure is data, not a crash of the whole run
            return exc

    return list(pool.map(ask, range(len(live))))
