"""The ReAct agent shared by teacher generation and student evaluation."""
