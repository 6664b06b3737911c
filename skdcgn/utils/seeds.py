"""Independent random streams derived from the one seed in params.yaml.

Every consumer (training samples of each IM, held-out samples, counterfactuals, the test set) gets its own
stream named by a path, so that changing how many samples one consumer draws never shifts another's.
"""

import hashlib

import torch


def stream_seed(seed: int, *names: str) -> int:
    digest = hashlib.sha256("/".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def generator(seed: int, *names: str) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, *names))
