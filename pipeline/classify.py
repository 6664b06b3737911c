"""The classifier protocol as the reference and evaluate stages run it: same data, same seeds, progress."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.common import exit_on_error
from pipeline.params import Params
from skdcgn.evaluation import (Labelled, factual_set, mnist_sets, ood_test_set, real_vs_counterfactual,
                               train_and_test)
from skdcgn.mnist import MnistUnavailable
from skdcgn.progress import progress
from skdcgn.teachers.base import Teacher


def evaluation_sets(params: Params, teacher: Teacher, with_factual: bool) -> tuple[Labelled | None, Labelled]:
    """(factual training set, or None when not asked for, and the OOD test set) from `evaluate.data`. Teacher
    data: the factual set has as many images as the counterfactual sets. Real digits: the part not tested on."""
    settings = params.evaluate
    with exit_on_error(MnistUnavailable):
        if settings.data == "mnist":
            factual, test = mnist_sets(Path(settings.mnist_dir), teacher.variant, settings.test_size, params.seed,
                                       Path(settings.textures_dir))
            return (factual if with_factual else None), test
        test = ood_test_set(teacher, settings.test_size, params.seed)
        return (factual_set(teacher, params.compose.n, params.seed) if with_factual else None), test


def scores_on_test(name: str, train: Labelled, test: Labelled, params: Params) -> tuple[dict, torch.Tensor]:
    with progress(f"classifier on {name} ({len(train.labels)} images)", params.evaluate.epochs, every=1) as advance:
        return train_and_test(train, test, **protocol(params), on_epoch=lambda epoch, loss: advance(loss=loss))


def real_or_counterfactual(real: Labelled, counterfactual: Labelled, params: Params) -> dict[str, float]:
    with progress("real vs counterfactual classifier", params.evaluate.epochs, every=1) as advance:
        return real_vs_counterfactual(real, counterfactual, **protocol(params),
                                      on_epoch=lambda epoch, loss: advance(loss=loss))


def protocol(params: Params) -> dict:
    """The CGN paper's classifier training settings, from `evaluate` and the run's seed."""
    settings = params.evaluate
    return {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr, "gamma": settings.gamma,
            "seed": params.seed}


def write_confusion(path: Path, confusion: torch.Tensor) -> None:
    """One (actual, predicted) row per test image: the layout DVC's confusion template reads."""
    lines = ["actual,predicted"]
    for actual, row in enumerate(confusion.tolist()):
        for predicted, count in enumerate(row):
            lines += [f"{actual},{predicted}"] * count
    Path(path).write_text("\n".join(lines) + "\n")
