"""The messages the agent sends: system prompt with tool descriptions, task, observations.

Observations go back as ``user`` messages that start with ``Observation:``. A ``tool`` role would
be rendered differently by every chat template (Qwen2.5 wraps it in ``<tool_response>``); a user
turn renders the same everywhere, so training and inference see identical text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepcoder.tools import Tool

OBSERVATION_PREFIX = "Observation:"

SYSTEM_TEMPLATE = """You are a coding agent. Solve the task step by step, using tools to check your work.

Tools:
{tools}

Answer in this format:
Thought: your reasoning
Action: the tool to use, one of [{names}]
Action Input:
```python
the tool input
```
You will then get an Observation with the tool's output. Repeat Thought/Action as needed, then finish with:
Thought: your reasoning
Final Answer:
```python
the complete program
```"""

TASK_TEMPLATE = """Write the Python function `{entry_point}`:
```python
{prompt}
```"""


def system_prompt(tools: Sequence[Tool]) -> str:
    """The system message: the protocol and one line per tool."""
    lines = "\n".join(f"- {tool.name}: {tool.description}" for tool in tools)
    return SYSTEM_TEMPLATE.format(tools=lines, names=", ".join(tool.name for tool in tools))


def task_prompt(prompt: str, entry_point: str) -> str:
    """The first user message: the function to write."""
    return TASK_TEMPLATE.format(entry_point=entry_point, prompt=prompt.strip("\n"))


def observation_message(text: str) -> str:
    """The user message that carries a tool's output back to the model."""
    return f"{OBSERVATION_PREFIX}\n{text}"
