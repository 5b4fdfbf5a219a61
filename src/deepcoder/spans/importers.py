"""Import FireAct-style ReAct transcripts as DeepCoder trajectory records.

Two input shapes, in a JSON array or JSONL (detected from the content, not the suffix):

- Alpaca: ``{instruction, input, output}``; ``output`` is the whole transcript of
  ``Thought:`` / ``Action:`` / ``Observation:`` lines. It is split into assistant turns
  (everything between observations) and user ``Observation: …`` messages.
- chat: ``{"messages": [...]}``: a first user message, assistant turns, and later user
  messages that start with ``Observation:``.

The records render and train like our own: the messages are kept as they are (the first
message may be the user's question: there is no system prompt to invent), each assistant turn
gets a step whose ``segments`` come from :class:`ReactSpans`, so ``span=structured`` labels
them too, and ``passed`` is FireAct's ``reward = True/False`` from the last observation.
Usage and latency are unknown and left out. Errors name the file, the line (JSONL) or list
index (JSON array) and the field.

CLI: ``python -m deepcoder.spans.importers IN OUT.jsonl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import uuid
from pathlib import Path
from typing import Any

from deepcoder.core.names import SCHEMA_VERSION
from deepcoder.protocol.parsing import strip_fence
from deepcoder.protocol.prompts import OBSERVATION_PREFIX
from deepcoder.records.schema import TrajectoryRecord
from deepcoder.spans.text_spans import ReactSpans
from deepcoder.utils.jsonl import read_jsonl, write_jsonl

KEYWORD_RE = re.compile(r"^(?:Thought|Action|Action Input|Final Answer|Observation)(?: \d+)?:", re.MULTILINE)
OBSERVATION_RE = re.compile(r"^Observation(?: \d+)?:")
THOUGHT_RE = re.compile(r"^Thought(?: \d+)?:[ \t]*")
CALL_RE = re.compile(r"^Action(?: \d+)?:[ \t]*(?P<tool>[\w.-]+)\[(?P<input>.*)\]\s*\Z", re.DOTALL)
NAMED_RE = re.compile(r"^Action(?: \d+)?:[ \t]*(?P<tool>\S+)[^\n]*(?:\nAction Input:(?P<input>.*))?\Z", re.DOTALL)
FINAL_RE = re.compile(r"^Final Answer:")
REWARD_RE = re.compile(r"reward\s*=\s*(True|False)\b")
ROLES = ("system", "user", "assistant")
SPANS = ReactSpans()


def read_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for each object of a JSON array (``file[index]``) or JSONL (``file:line``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return [(f"{path}:{number}", record) for number, record in read_jsonl(path)]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, col {exc.colno})") from None
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}[{index}]: expected a JSON object, got {type(item).__name__}")
    return [(f"{path}[{index}]", item) for index, item in enumerate(items)]


def split_transcript(output: str) -> list[dict[str, str]]:
    """Alpaca ``output`` → alternating assistant turns and user ``Observation:`` messages."""
    starts = sorted({0, *(m.start() for m in KEYWORD_RE.finditer(output))})
    messages: list[dict[str, str]] = []
    for start, end in zip(starts, [*starts[1:], len(output)]):
        piece = output[start:end]
        role = "user" if OBSERVATION_RE.match(piece) else "assistant"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += piece
        else:
            messages.append({"role": role, "content": piece})
    return [{"role": m["role"], "content": m["content"].strip()} for m in messages if m["content"].strip()]


def alpaca_messages(record: dict[str, Any], where: str) -> list[dict[str, str]]:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{where}: field '{key}': expected a string")
    if not isinstance(record.get("input", ""), str):
        raise ValueError(f"{where}: field 'input': expected a string")
    prompt = "\n\n".join(part.strip() for part in (record["instruction"], record.get("input", "")) if part.strip())
    turns = split_transcript(record["output"])
    if not any(m["role"] == "assistant" and KEYWORD_RE.search(m["content"]) for m in turns):
        raise ValueError(f"{where}: field 'output': no Thought:/Action:/Final Answer: lines")
    return [{"role": "user", "content": prompt}, *turns]


def chat_messages(record: dict[str, Any], where: str) -> list[dict[str, str]]:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: field 'messages': expected a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"{where}: field 'messages[{i}].role': expected one of {list(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"{where}: field 'messages[{i}].content': expected a string")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: field 'messages': no assistant message")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def parse_step(content: str, observation: str | None) -> dict[str, Any]:
    """One assistant turn as a step: thought, ``action {tool, input}``, observation, segments."""
    segments = SPANS.assistant_segments({}, 0, content)
    text = {
        label: "".join(content[s.start : s.end] for s in segments if s.label == label).strip()
        for label in ("reason", "action", "answer")
    }
    call = CALL_RE.match(text["action"]) or NAMED_RE.match(text["action"])
    action = None
    if call:
        given = call.group("input") or ""
        action = {"tool": call.group("tool"), "input": given if call.re is CALL_RE else strip_fence(given)}
    return {
        "thought": THOUGHT_RE.sub("", text["reason"]),
        "action": action,
        "observation": observation,
        "final_answer": strip_fence(FINAL_RE.sub("", text["answer"])) if text["answer"] else None,
        "segments": [list(dataclasses.astuple(s)) for s in segments],
    }


def to_trajectory(messages: list[dict[str, str]], source: Path, index: int) -> TrajectoryRecord:
    """Our trajectory record for one imported conversation (``index``: its position in ``source``)."""
    steps = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            after = messages[i + 1] if i + 1 < len(messages) else None
            observation = None
            if after is not None and after["role"] == "user" and after["content"].startswith(OBSERVATION_PREFIX):
                observation = after["content"][len(OBSERVATION_PREFIX) :].strip()
            steps.append(parse_step(message["content"], observation))
    final_answer = None
    for step in steps:
        final_answer = step.pop("final_answer") or final_answer
        if step["action"] and step["action"]["tool"] == "finish":
            final_answer = step["action"]["input"]
    reward = REWARD_RE.search(messages[-1]["content"]) if messages[-1]["role"] == "user" else None
    return {
        "schema_version": SCHEMA_VERSION,
        "trajectory_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"deepcoder-import:{source.name}:{index}")),
        "problem_id": f"{source.stem}/{index}",
        "teacher": {"provider": "imported", "model": source.stem, "fingerprint": None},
        "source": {"file": source.name, "index": index},
        "messages": messages,
        "steps": steps,
        "final_answer": final_answer,
        "passed": reward.group(1) == "True" if reward else None,
        "error": None,
    }


def convert(record: dict[str, Any], source: str | Path, index: int, where: str) -> TrajectoryRecord:
    """One FireAct record (Alpaca or chat, autodetected) as our trajectory record."""
    if "messages" in record:
        messages = chat_messages(record, where)
    elif "instruction" in record or "output" in record:
        messages = alpaca_messages(record, where)
    else:
        raise ValueError(f"{where}: expected the fields 'instruction' and 'output' (Alpaca) or 'messages' (chat)")
    return to_trajectory(messages, Path(source), index)


def import_file(path: str | Path) -> list[TrajectoryRecord]:
    """Every record of a FireAct file as our trajectory records; the first bad record raises."""
    return [convert(record, path, index, where) for index, (where, record) in enumerate(read_records(path))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.spans.importers", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="FireAct file: Alpaca JSON array / JSONL, or chat JSONL")
    parser.add_argument("output", help="our trajectories JSONL to write")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    args = parser.parse_args(argv)
    if Path(args.output).exists() and not args.force:
        raise SystemExit(f"error: {args.output} exists: pass --force to overwrite it, or choose another output file")
    blocking = next((p for p in Path(args.output).parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise SystemExit(f"error: cannot write {args.output}: {blocking} is a file, not a directory")
    try:
        records = import_file(args.input)
        write_jsonl(records, args.output)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"imported {len(records)} trajectories from {args.input} to {args.output}")


if __name__ == "__main__":
    main()
