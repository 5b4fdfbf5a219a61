"""Watch the agent solve one problem: each turn as it ends, coloured by span, the tool's output, the grade.

``python -m deepcoder.solve [KEY=VALUE …] PROBLEM [--json] [--entry-point NAME]``

KEY=VALUE are ``evaluate.py``'s overrides (``student=DIR``, ``policy=reference``,
``policy.temperature=0.8``, ``problems=humaneval``, ``agent.max_steps=…``, ``seed=…``). PROBLEM is a
problem id of the configured ``problems=`` source (``sample/count_vowels``, with ``problems=humaneval``
``HumanEval/0``), graded by its tests; or the text of a new problem — a signature with a docstring, or
prose with ``--entry-point NAME`` — which has no tests and is not graded. It is played by the batched
runner (:func:`deepcoder.agent.batch_loop.run_episodes`), so it is the episode ``evaluate.py`` plays for
sample 0 of that problem (same seed; sampled, at its default ``batch_size`` > 1). Turns are drawn in the span colours of
``python -m deepcoder.show`` (reason, action, answer; observations in the observation colour).
``--json`` prints JSON Lines instead: ``{"type": "step", …}`` per turn as it ends, then
``{"type": "episode", …}`` with the whole record (``passed``, ``test_error``, ``stop_reason``, …).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.text import Text

from deepcoder.agent.batch_loop import run_episodes
from deepcoder.agent.episode import Episode
from deepcoder.problems import Problem
from deepcoder.run.cli import USER_ERRORS, one_line
from deepcoder.spans.view import COLOURS

OVERRIDE = re.compile(r"^[+~]?[A-Za-z_][\w.@/-]*=")
DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.M)


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides (``key=value``) and the rest."""
    overrides = [arg for arg in argv if OVERRIDE.match(arg)]
    return overrides, [arg for arg in argv if not OVERRIDE.match(arg)]


def conf_dir() -> Path:
    """``conf/`` of the working directory, else of the checkout this module runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "conf" / "evaluate.yaml").is_file():
            return root / "conf"
    raise ValueError("no conf/evaluate.yaml here or in this checkout: run from the repository root")


def compose(overrides: list[str]) -> DictConfig:
    """``evaluate.py``'s config with ``overrides``, composed as its command line would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return hydra_compose("evaluate", overrides)


def find_problem(cfg: DictConfig, text: str, entry_point: str | None) -> Problem:
    """The problem with id ``text`` in ``cfg.problems``, or a new, ungraded problem whose prompt is ``text``."""
    from hydra.utils import instantiate

    if not any(c.isspace() for c in text.strip()):  # one word: an id
        problems = instantiate(cfg.problems)
        found = [p for p in problems if p.id == text.strip()]
        if not found:
            near = ", ".join(p.id for p in problems[:3])
            raise ValueError(
                f"no problem {text.strip()!r} in problems={cfg.problems.source} (ids such as {near}): pass "
                "problems=humaneval for HumanEval/N, problems=synthetic problems.split=… for synthetic ids, "
                "or the problem's text"
            )
        return found[0]
    names = DEF.findall(text)
    name = entry_point or (names[0] if names else None)
    if name is None:
        raise ValueError("the problem text names no function (def NAME(…)): add --entry-point NAME")
    return Problem("cli/problem", text.strip("\n"), name, "", None, "cli", "unknown", "cli")


def check_policy(cfg: DictConfig) -> None:
    """A student path is checked at once (the same check as ``evaluate.py``)."""
    from deepcoder.run.checks import check_student

    if str(cfg.policy.get("_target_", "")).endswith("HFPolicy") and cfg.policy.get("model"):
        check_student(str(cfg.policy.model), "student" if cfg.get("student") else "policy.model")


def turn_text(step: dict[str, Any], text: str) -> Text:
    """The assistant turn, each recorded segment in its span's colour."""
    out = Text()
    for start, end, label in step["segments"]:
        out.append(text[start:end], style=COLOURS.get(label, COLOURS["reason"]))
    if not step["segments"]:
        out.append(text, style=COLOURS["reason"])
    return out


def run(cfg: DictConfig, problem: Problem, as_json: bool) -> dict[str, Any]:
    """Play the episode, printing each step as it ends, then the grade; returns the record."""
    from hydra.utils import instantiate

    console = Console(highlight=False)
    policy = instantiate(cfg.policy)
    agent = instantiate(cfg.agent)
    if not as_json:
        console.rule(f"{problem.id} · {policy.provider}/{policy.model}")
        console.print(Text(agent.initial_messages(problem)[1]["content"], style=COLOURS["prompt"]))

    def show(episode: Episode) -> None:
        step = episode.steps[-1]
        if as_json:
            print(json.dumps({"type": "step", "index": episode.turn - 1, **step}, ensure_ascii=False), flush=True)
            return
        console.rule(f"turn {episode.turn}", style="dim")
        text = [m for m in episode.messages if m["role"] == "assistant"][-1]["content"]
        console.print(turn_text(step, text))
        if step["observation"] is not None:
            console.print(Text(f"Observation:\n{step['observation']}", style=COLOURS["observation"]))

    record = run_episodes(policy, [problem], agent=agent, batch_size=1, seed=int(cfg.seed), on_step=show)[0]
    if as_json:
        print(json.dumps({"type": "episode", **record}, ensure_ascii=False), flush=True)
    else:
        console.rule("result")
        console.print(grade_line(record))
    return record


def grade_line(record: dict[str, Any]) -> Text:
    """Passed or failed (with the test error), or ungraded; the stop reason, turns and tokens."""
    if record["error"]:
        verdict = Text(f"policy error: {record['error']}", style="bold red")
    elif record["passed"] is None:
        verdict = Text("not graded (no tests)", style="bold")
    elif record["passed"]:
        verdict = Text("PASSED", style="bold green")
    else:
        verdict = Text(f"FAILED: {record['test_error']}", style="bold red")
    usage = record["usage"]
    return verdict + Text(
        f"  · stop {record['stop_reason']} · {len(record['steps'])} turns · "
        f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens · {record['wall_s']:.1f} s"
    )


def main(argv: list[str] | None = None) -> None:
    overrides, rest = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m deepcoder.solve", description=__doc__.splitlines()[0])
    parser.add_argument("problem", help="a problem id of problems=… or the text of a new problem")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one step per line, then the episode")
    parser.add_argument("--entry-point", help="the function to write, for prose problem text")
    args = parser.parse_args(rest)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `… --json | head` ends quietly
    try:
        cfg = compose(overrides)
        check_policy(cfg)
        problem = find_problem(cfg, args.problem, args.entry_point)
        run(cfg, problem, args.json)
    except USER_ERRORS as exc:
        raise SystemExit(f"error: {one_line(exc)}") from None


if __name__ == "__main__":
    main()
