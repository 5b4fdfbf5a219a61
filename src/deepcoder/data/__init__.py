"""Trajectories → rendered, span-labelled token sequences → batches."""
