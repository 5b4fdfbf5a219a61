"""Agent tools: a sandboxed Python executor, HumanEval-style grading and a stdlib-docs retriever.

Exports are resolved lazily (PEP 562) so the sandbox's fork server, which imports
``deepcoder.tools.fork_server``, does not pay for the parent-side modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ExecutionResult": "executor",
    "PythonExecutor": "executor",
    "SandboxUnavailable": "executor",
    "TestOutcome": "grading",
    "run_tests": "grading",
    "Retriever": "retriever",
    "Snippet": "retriever",
    "PythonTool": "tool",
    "RetrieveTool": "tool",
    "Tool": "tool",
    "ToolResult": "tool",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
