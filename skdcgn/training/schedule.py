"""Learning-rate schedules, as factors of the base rate per step (for torch's LambdaLR)."""

from __future__ import annotations

import math
from typing import Callable


def lr_factor(decay: str, steps: int) -> Callable[[int], float]:
    """`constant`: 1 throughout; `cosine`: from 1 down to 0 at `steps`, half a cosine."""
    if decay == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
