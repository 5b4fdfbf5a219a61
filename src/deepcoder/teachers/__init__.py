"""Policies that write agent turns: API teachers, the offline reference teacher, local HF models."""

from deepcoder.teachers.base import Completion, Policy, count_words
from deepcoder.teachers.reference import ReferenceTeacher

__all__ = ["Completion", "Policy", "ReferenceTeacher", "count_words"]
