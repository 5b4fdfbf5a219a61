"""Coding problems: the data model, loaders, validation, selection and stats."""

from deepcoder.problems.loaders import (
    SOURCES,
    ProblemFormatError,
    humaneval_difficulty,
    load_file,
    load_humaneval,
    load_problems,
    load_sample,
    select,
)
from deepcoder.problems.problem import Problem, doctest_examples, prompt_docstring
from deepcoder.problems.stats import format_stats, stats

__all__ = [
    "Problem",
    "ProblemFormatError",
    "SOURCES",
    "load_sample",
    "load_humaneval",
    "load_file",
    "load_problems",
    "select",
    "stats",
    "format_stats",
    "humaneval_difficulty",
    "prompt_docstring",
    "doctest_examples",
]
