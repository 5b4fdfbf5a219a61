"""Agent-facing tool wrappers: turn a tool input string into a deterministic Observation text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deepcoder.tools.executor import PythonExecutor
from deepcoder.tools.retriever import Retriever


@dataclass(frozen=True)
class ToolResult:
    """`text` is the Observation shown to the agent."""

    text: str
    ok: bool
    timed_out: bool = False


class Tool(Protocol):
    name: str
    description: str

    def __call__(self, tool_input: str) -> ToolResult: ...


class PythonTool:
    """Runs the agent's program in the sandbox; the observation is its output and error."""

    name = "python"
    description = (
        "Runs a Python program in a sandbox and returns what it prints. "
        "No files, network or input(); only pure standard library modules (math, re, collections, "
        "itertools, functools, heapq, typing, ...) can be imported."
    )

    def __init__(self, executor: PythonExecutor):
        self.executor = executor

    def __call__(self, tool_input: str) -> ToolResult:
        result = self.executor.run(tool_input)
        text = result.stdout
        if result.error is not None:
            text = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}Error: {result.error}"
        elif not text:
            text = "(no output)"
        return ToolResult(text=text, ok=result.ok, timed_out=result.timed_out)


class RetrieveTool:
    """Looks up standard-library documentation snippets relevant to a query."""

    name = "retrieve"
    description = "Searches the Python standard library documentation for a short query."

    def __init__(self, retriever: Retriever, k: int = 3):
        self.retriever = retriever
        self.k = k

    def __call__(self, tool_input: str) -> ToolResult:
        snippets = self.retriever.search(tool_input, k=self.k)
        if not snippets:
            return ToolResult(text="(no results)", ok=True)
        return ToolResult(text="\n\n".join(f"[{s.source}] {s.text}" for s in snippets), ok=True)
