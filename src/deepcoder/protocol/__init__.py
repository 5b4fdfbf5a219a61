"""The ReAct text protocol both sides speak: the prompts that teach it and the parser of a model turn."""
