"""The trajectory record: its schema, reading trajectory files, and the metrics of episodes."""
