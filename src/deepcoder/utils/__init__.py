"""Small shared helpers: cache paths, durable JSON/JSONL I/O, console tables."""
