"""The classifier protocol as the reference and evaluate stages run it: same test set, same seeds, progress."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.params import Params
from skdcgn.evaluation import Labelled, train_and_test
from skdcgn.progress import progress


def accuracy_on_test(name: str, train: Labelled, test: Labelled, params: Params) -> tuple[float, torch.Tensor]:
    settings = params.evaluate
    with progress(f"classifier on {name} ({len(train[1])} images)", settings.epochs, every=1) as advance:
        return train_and_test(train, test, epochs=settings.epochs, batch_size=settings.batch_size,
                              lr=settings.lr, gamma=settings.gamma, seed=params.seed,
                              on_epoch=lambda epoch, loss: advance(loss=loss))


def write_confusion(path: Path, confusion: torch.Tensor) -> None:
    """One (actual, predicted) row per test image: the layout DVC's confusion template reads."""
    lines = ["actual,predicted"]
    for actual, row in enumerate(confusion.tolist()):
        for predicted, count in enumerate(row):
            lines += [f"{actual},{predicted}"] * count
    Path(path).write_text("\n".join(lines) + "\n")
