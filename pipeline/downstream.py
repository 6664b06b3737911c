"""The classifier protocol as the reference and evaluate stages run it: same test set, same seeds, progress.

This is where the generic protocol (skdcgn.evaluation) meets a domain: the CGN paper's digit CNN judges the
counterfactuals, and the real digits of `evaluate.data: mnist` (skdcgn.mnist) are the OOD test set of a teacher
that mirrors an MNIST variant.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from pipeline.common import THREADS_ENV, env_count, exit_on_error, setup_torch, stage_args
from pipeline.params import Params
from skdcgn.evaluation.protocol import (Classifier, Labelled, factual_set, ood_test_set, real_vs_counterfactual,
                                        train_and_test)
from skdcgn.mnist.digit_cnn import DigitCNN
from skdcgn.mnist.idx import MnistUnavailable
from skdcgn.mnist.real_digits import hard_part, mnist_sets
from skdcgn.mnist.variants import VARIANTS
from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.teachers.base import Teacher
from skdcgn.teachers.registry import make_teacher
from skdcgn.utils.processes import die_with
from skdcgn.utils.progress import progress


def stage_setup() -> tuple[Params, torch.device, Teacher, str | None]:
    """Where reference and evaluate start: the params, the stage's device, the teacher on it, and the line that
    says why the classifier protocol is skipped (None where it can judge this teacher, see protocol_skipped)."""
    params, _ = stage_args(with_im=False)
    device = setup_torch()
    with exit_on_error():
        teacher = make_teacher(params.teacher).to(device)
    return params, device, teacher, protocol_skipped(teacher)


def evaluation_sets(params: Params, teacher: Teacher, with_factual: bool) -> tuple[Labelled | None, Labelled]:
    """(factual training set, or None when not asked for, and the OOD test set) from `evaluate.data`. Teacher
    data: the factual set has as many images as the counterfactual sets. Real digits: the part not tested on."""
    settings = params.evaluate
    mnist_variant = teacher.mirrors if teacher.mirrors in VARIANTS else None
    with exit_on_error(MnistUnavailable):
        if settings.data == "mnist":
            if mnist_variant is None:
                raise ValueError(f"evaluate.data mnist needs a teacher that mirrors an MNIST variant "
                                 f"({', '.join(VARIANTS)}); this {teacher.kind} teacher mirrors none; allowed: "
                                 f"evaluate.data teacher")
            factual, test = mnist_sets(Path(settings.mnist_dir), mnist_variant, settings.test_size, params.seed,
                                       Path(settings.textures_dir), settings.real_mask_blur)
            return (factual if with_factual else None), test
        hard = hard_part(mnist_variant) if mnist_variant else None
        test = ood_test_set(teacher, settings.test_size, params.seed, hard)
        return (factual_set(teacher, params.compose.n, params.seed) if with_factual else None), test


def protocol_skipped(teacher: Teacher) -> str | None:
    """None where the digit-classifier protocol can judge this teacher's counterfactuals; else the line that
    the metrics carry in place of its accuracies."""
    if teacher.draws_digits:
        return None
    return (f"skipped: the CGN paper's digit-classifier protocol judges digit teachers (synthetic, cgn-mnist); "
            f"this {teacher.kind} teacher's images are not digits")


def classifier_for(teacher: Teacher, device: torch.device) -> Classifier:
    """The CGN paper's digit CNN, one output per teacher class."""
    return Classifier(DigitCNN, teacher.num_classes, device)


def scores_on_test(name: str, train: Labelled, test: Labelled, params: Params,
                   classifier: Classifier) -> tuple[dict, torch.Tensor]:
    images = len(train.labels)
    with classifier_progress(f"classifier on {name} ({images} images)", images, params.evaluate) as callbacks:
        return train_and_test(train, test, params.evaluate, params.seed, classifier, **callbacks)


def real_or_counterfactual(real: Labelled, counterfactual: Labelled, params: Params,
                           classifier: Classifier) -> dict[str, float]:
    images = min(len(real.labels), len(counterfactual.labels))  # real_vs_counterfactual trains on this many
    with classifier_progress("real vs counterfactual classifier", images, params.evaluate) as callbacks:
        return real_vs_counterfactual(real, counterfactual, params.evaluate, params.seed, classifier, **callbacks)


@contextmanager
def classifier_progress(description: str, images: int, settings: EvaluateSettings) -> Iterator[dict]:
    """A classifier's progress by batch (a bar in a terminal; in a log, a line every half epoch), with the mean
    loss of the last whole epoch."""
    batches = math.ceil(images / settings.batch_size)
    loss: dict[str, float] = {}
    with progress(description, settings.epochs * batches, every=max(1, batches // 2)) as advance:
        yield {"on_epoch": lambda epoch, value: loss.update(loss=value), "on_batch": lambda: advance(**loss)}


@contextmanager
def alongside(function: Callable, *args) -> Iterator[Callable[[], object]]:
    """Runs `function(*args)` in a process of its own while the block runs, where the machine has the cores for
    both (SKDCGN_THREADS each), else here after the block; yields what returns its result. Same result either
    way: the process is set up as a stage (threads, kernels, deterministic algorithms) and dies with this one."""
    if len(os.sched_getaffinity(0)) < 2 * env_count(THREADS_ENV, default=1, minimum=1):
        yield lambda: function(*args)
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_stage_process,
                             initargs=(os.getpid(),)) as pool:
        yield pool.submit(function, *args).result


def _stage_process(parent: int) -> None:
    die_with(parent)
    setup_torch()


def write_confusion(path: Path, confusion: torch.Tensor | None) -> None:
    """One (actual, predicted) row per test image: the layout DVC's confusion template reads. None (the protocol
    was skipped): the header alone, so that the stage's declared plot exists and draws nothing."""
    lines = ["actual,predicted"]
    for actual, row in enumerate([] if confusion is None else confusion.tolist()):
        for predicted, count in enumerate(row):
            lines += [f"{actual},{predicted}"] * count
    Path(path).write_text("\n".join(lines) + "\n")
