"""Isolation modes: namespaces by default, a refusal that says how to opt out, and the weaker
process-only mode that warns on every run."""

from __future__ import annotations

import logging

import pytest
from hydra.utils import instantiate

from deepcoder.tools import PythonExecutor, SandboxUnavailable, isolation

from conftest import compose_config


def test_refuses_to_start_without_namespaces(monkeypatch):
    monkeypatch.setattr(isolation, "_probe_result", "unshare: Operation not permitted")
    monkeypatch.delenv("DEEPCODER_SANDBOX_ISOLATION", raising=False)
    with pytest.raises(SandboxUnavailable) as info:
        PythonExecutor()
    message = str(info.value)
    assert "Operation not permitted" in message and "DEEPCODER_SANDBOX_ISOLATION=process" in message
    assert "isolation='process'" in message


def test_process_isolation_is_an_explicit_opt_in_that_warns_every_run(monkeypatch, caplog):
    monkeypatch.setattr(isolation, "_probe_result", "no user namespaces")
    monkeypatch.setenv("DEEPCODER_SANDBOX_ISOLATION", "process")
    with caplog.at_level(logging.WARNING, logger="deepcoder.tools.executor"), PythonExecutor(timeout_s=2.0) as ex:
        assert ex.isolation == "process"
        assert ex.run("print(1)").stdout == "1\n"
        assert ex.run("print(2)").stdout == "2\n"
        timed_out = ex.run("while True:\n    pass", timeout_s=0.5)
    assert timed_out.timed_out
    warnings = [r for r in caplog.records if "process-only isolation" in r.getMessage()]
    assert len(warnings) == 3


def test_isolation_argument_is_checked():
    with pytest.raises(ValueError):
        PythonExecutor(isolation="container")


@pytest.mark.skipif(isolation.namespaces_unavailable_reason() is not None, reason="no namespaces here")
def test_namespaces_are_the_default_here(monkeypatch):
    monkeypatch.delenv("DEEPCODER_SANDBOX_ISOLATION", raising=False)
    with PythonExecutor() as ex:
        assert ex.isolation == "namespaces"
        assert ex.run("print(1)").stdout == "1\n"


def test_the_agent_config_key_selects_the_isolation(caplog):
    """``agent.isolation=process`` reaches the executor that runs the tool and grades."""
    agent = instantiate(compose_config("generate", "agent.isolation=process", "agent.tools=[python]").agent)
    with caplog.at_level(logging.WARNING, logger="deepcoder.tools.executor"):
        assert agent.executor.isolation == "process"
        assert agent.executor.run("print(1)").stdout.strip() == "1"
    assert any("process-only isolation" in r.getMessage() for r in caplog.records)
    agent.executor.close()
    default = instantiate(compose_config("generate").agent).executor
    assert default.isolation == "namespaces"
    default.close()
