"""Imports run one way: every package of ``deepcoder`` has a rank, and a module may import only its
own package or packages ranked below it. Same-rank neighbours do not import each other, and no
import cycle exists anywhere, between packages or between modules (imports inside functions and
under ``TYPE_CHECKING`` included: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src"
# Bottom to top, following the data flow. A package may import the ones before it.
LAYERS = [
    "core",  # shared names: spans, IGNORE_INDEX, schema version, token prefixes
    "utils",  # I/O, paths, console, text sizes
    "problems",  # the problem model and its loaders
    "tools",  # the sandbox and the retriever
    "records",  # the trajectory record: schema, reading, episode metrics
    "protocol",  # the ReAct text protocol: prompts and the turn parser
    "policies",  # LLM backends behind one interface
    "agent",  # the ReAct loop
    "generation",  # problems × teacher → trajectories.jsonl
    "models",  # student models and tokenizers
    "spans",  # records → span-labelled tokens
    "losses",  # the loss math (the pure reference function)
    "data",  # labelled tokens → batches
    "training",  # the LightningModule, chunked loss, distillation teacher, callbacks
    "evaluation",  # sampling policies, teacher-forced metrics
    "reporting",  # comparing runs
    "testing",  # servers that tests and benchmarks share
    "run",  # the stages as functions of a config
    "show",  # the CLI that shows a rendered trajectory
    "solve",  # the CLI that streams one episode
]
# Imports allowed against the rule, each with its reason. Keep this list short.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool) -> set[str]:
    """Every ``deepcoder`` module that module ``name`` imports, absolute or relative, at any depth."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == "deepcoder"}


MODULES = {module_name(path): path for path in sorted((SRC / "deepcoder").rglob("*.py"))}
GRAPH = {
    name: {
        m for m in imported_modules(path.read_text(), name, path.name == "__init__.py") if m in MODULES and m != name
    }
    for name, path in MODULES.items()
}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_layer():
    missing = sorted({layer(m) for m in MODULES} - set(LAYERS) - {""})
    assert not missing, f"add these packages to LAYERS in the right place: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m)))
def test_imports_point_down(module):
    rank = LAYERS.index(layer(module))
    upward = sorted(
        target
        for target in GRAPH[module]
        if layer(target)
        and LAYERS.index(layer(target)) >= rank
        and layer(target) != layer(module)
        and (module, target) not in EXCEPTIONS
    )
    assert not upward, f"{module} imports a same-rank or higher layer: {upward}"


def test_no_import_cycles():
    """Depth-first search over the module graph; a back edge is a cycle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target] if target in path else [node, target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_relative_imports():
    source = "def f():\n    from ..training import module\n    import deepcoder.spans.render\n"
    found = imported_modules(source, "deepcoder.core.names", is_package=False)
    assert {"deepcoder.training.module", "deepcoder.spans.render"} <= found
