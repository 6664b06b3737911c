"""Sample shards on disk: WebDataset tars plus a manifest that proves them complete (format.py says what a
dataset directory holds); writing them, validating them once, reading them, streaming them into training."""
