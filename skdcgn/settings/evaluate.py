"""`evaluate`: the classifier protocol."""

from __future__ import annotations

from typing import Literal

from skdcgn.settings.schema import Count, Positive, Settings


class EvaluateSettings(Settings):
    """`evaluate`: the CGN paper's classifier protocol, tested on random-colour (OOD) images."""

    data: Literal["teacher", "mnist"] = "teacher"
    mnist_dir: str = "mnist"
    textures_dir: str = "textures"
    test_size: Count = 2000
    epochs: Count = 5
    batch_size: Count = 64
    lr: Positive = 1.0  # Adadelta
    gamma: Positive = 0.7  # StepLR per epoch
