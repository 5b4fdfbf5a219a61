"""Evaluation helpers above the agent: per-episode sampling policies and teacher-forced span metrics."""
