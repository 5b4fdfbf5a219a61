"""Builds the agent and its tools from one flat config (the ``agent=`` Hydra group)."""

from __future__ import annotations

from collections.abc import Sequence

from deepcoder.agent.loop import Agent
from deepcoder.tools import PythonExecutor, PythonTool, Retriever, RetrieveTool


def build_agent(
    tools: Sequence[str] = ("python", "retrieve"),
    max_steps: int = 4,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_output_chars: int = 2000,
    test_timeout_s: float = 10.0,
    retrieve_k: int = 3,
    isolation: str | None = None,
) -> Agent:
    """An agent with the named tools; ``timeout_s`` and ``memory_mb`` bound every sandboxed run.
    ``isolation``: None (namespaces, or ``$DEEPCODER_SANDBOX_ISOLATION``) or ``process``, the weaker
    opt-in for machines without user namespaces (warned on every run)."""
    executor = PythonExecutor(
        timeout_s=timeout_s, memory_mb=memory_mb, max_output_chars=max_output_chars, isolation=isolation
    )
    available = {
        "python": lambda: PythonTool(executor),
        "retrieve": lambda: RetrieveTool(Retriever(), k=retrieve_k),
    }
    unknown = sorted(set(tools) - set(available))
    if unknown:
        raise ValueError(f"agent.tools: unknown tool(s) {unknown}; available: {sorted(available)}")
    return Agent([available[name]() for name in tools], executor, max_steps=max_steps, test_timeout_s=test_timeout_s)
