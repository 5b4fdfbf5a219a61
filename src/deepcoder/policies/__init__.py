"""Policies that write agent turns: API teachers, the offline reference teacher, local HF models."""

from deepcoder.policies.base import Completion, Policy
from deepcoder.policies.reference import ReferenceTeacher
from deepcoder.utils.text import count_words

__all__ = ["Completion", "Policy", "ReferenceTeacher", "count_words"]
