"""Trajectory generation: the durable, resumable, sharded runner, its report, and merging shards."""

from deepcoder.generation.runner import generate_trajectories

__all__ = ["generate_trajectories"]
