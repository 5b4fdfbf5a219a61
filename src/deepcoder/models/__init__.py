"""Student models: the locally built tiny Qwen2 and real Qwen2.5 checkpoints."""
