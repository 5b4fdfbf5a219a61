"""Policies that write agent turns: API teachers, the offline reference teacher, local HF models."""

from deepcoder.policies.base import Completion, Policy
from deepcoder.utils.text import count_words
from deepcoder.policies.reference import ReferenceTeacher

__all__ = ["Completion", "Policy", "ReferenceTeacher", "count_words"]
