"""Small shared helpers: cache paths, JSONL I/O, seeding."""
