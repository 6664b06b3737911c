"""The params schema: a module per section of params.yaml, and the rules they share (schema.py)."""
