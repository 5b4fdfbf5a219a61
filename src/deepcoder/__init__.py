"""DeepCoder: Structured Agent Distillation of a reasoning coding agent into a small student."""

__version__ = "0.1.0"
