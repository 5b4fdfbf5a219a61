"""BM25 retriever over standard-library docstrings, cached on disk."""

from __future__ import annotations

import pytest

from deepcoder.tools import Retriever, RetrieveTool, Snippet


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("retriever-cache")


@pytest.fixture(scope="module")
def retriever(cache_dir):
    return Retriever(cache_dir=cache_dir)


def test_builds_cache_and_finds_counter(retriever):
    results = retriever.search("count hashable items")
    assert retriever.loaded_from_cache is False and retriever.cache_path.exists()
    assert len(results) == 3 and all(isinstance(s, Snippet) for s in results)
    assert "collections.Counter" in [s.source for s in results]
    assert [s.score for s in results] == sorted((s.score for s in results), reverse=True)
    assert all(len(s.text) <= retriever.max_chars_per_snippet + 3 for s in results)


def test_finds_common_functions(retriever):
    assert "heapq.heappush" in [s.source for s in retriever.search("push item onto heap", k=5)]
    assert "math.gcd" in [s.source for s in retriever.search("greatest common divisor", k=5)]


def test_cache_is_reused_without_rebuild(retriever, cache_dir):
    retriever.search("sort")  # make sure the cache exists
    mtime = retriever.cache_path.stat().st_mtime_ns
    second = Retriever(cache_dir=cache_dir)
    assert second.search("count hashable items") == retriever.search("count hashable items")
    assert second.loaded_from_cache is True
    assert second.cache_path.stat().st_mtime_ns == mtime


def test_env_var_sets_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPCODER_CACHE", str(tmp_path))
    assert Retriever().cache_dir == tmp_path / "retriever"


def test_deterministic_and_empty_queries(retriever):
    assert retriever.search("split string by regex", k=5) == retriever.search("split string by regex", k=5)
    assert retriever.search("") == [] and retriever.search("zzqqxx") == []


def test_retrieve_tool_formats_blocks(retriever):
    tool = RetrieveTool(retriever, k=2)
    result = tool("count hashable items")
    assert result.ok and result.text.startswith("[") and result.text.count("\n\n[") == 1
    assert tool("zzqqxx").text == "(no results)"
