"""The bottom layer: names every stage shares (span labels, label constants, schema version).
It imports nothing of the project, so anything may import it."""
