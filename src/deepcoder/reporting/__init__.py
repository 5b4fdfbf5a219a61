"""Experiment reporting: load runs and evaluations, bootstrap CIs over problems, tables and plots."""
