"""Test infrastructure that tests and benchmarks share: the scripted chat-completions server."""
