"""The downstream test of the CGN paper: does a classifier trained on counterfactuals ignore spurious cues?

Training sets are teacher or student counterfactuals, or factual (biased) teacher composites whose texture and
background follow the shape's class. The out-of-distribution test set here is made of teacher composites whose
mechanisms draw their classes independently, from their own seed stream, so no test image's inputs were seen
in training; a domain can bring its own (mnist.real_digits: real digits in random colours). Nothing here knows
a dataset: the classifier comes from a factory, the number of classes from the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from skdcgn.counterfactuals.composite import COMPOSITE_RANGE, render_all
from skdcgn.counterfactuals.inputs import draw_inputs
from skdcgn.evaluation.classifier import ClassifierFactory, score_classifier, train_classifier
from skdcgn.settings.compose import MaskChanges
from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.shards.format import encode_images
from skdcgn.teachers.base import Mechanism, Teacher
from skdcgn.utils.seeds import generator, stream_seed



@dataclass(frozen=True)
class HardPart:
    """Which test images are the hard part, from the classes their texture and background drew (e.g. in
    double-colored MNIST, digits painted in their background's colour); scored as `accuracy_<name>`."""

    name: str
    select: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]


class Labelled(NamedTuple):
    images: torch.Tensor  # uint8 (N, 3, H, W), quantised exactly as shards store images
    labels: torch.Tensor  # (N,) the shape's class
    hard: torch.Tensor | None = None  # (N,) bool: the hard part of a test set, where its domain knows one
    hard_name: str = "hard"


@dataclass(frozen=True)
class Classifier:
    """What the protocol trains: a model factory, for this many classes, on this device."""

    make_model: ClassifierFactory
    num_classes: int
    device: torch.device | str = "cpu"


def quantised(images: torch.Tensor) -> torch.Tensor:
    """Float composites in [-1, 1] -> uint8 (N, 3, H, W): an in-memory set equals one read back from shards."""
    return torch.from_numpy(encode_images(images, COMPOSITE_RANGE)).permute(0, 3, 1, 2).contiguous()


def composite_images(mechanisms: dict[str, Mechanism], inputs: dict, shifts: dict[str, torch.Tensor] | None = None,
                     changes: MaskChanges = MaskChanges(), device: torch.device | str = "cpu") -> Labelled:
    """Composites labelled with the shape's class."""
    return Labelled(quantised(render_all(mechanisms, inputs, shifts=shifts, changes=changes, device=device)),
                    inputs["shape"][1])


def factual_set(teacher: Teacher, n: int, seed: int) -> Labelled:
    """Biased data: texture and background follow the shape's class, so they alone predict the label."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "factual"), factual=True,
                         truncation=teacher.truncation)
    return composite_images(teacher.mechanisms(), inputs, device=teacher.device)


def ood_test_set(teacher: Teacher, n: int, seed: int, hard: HardPart | None = None) -> Labelled:
    """Teacher composites whose mechanisms draw independent classes, from held-out seeds."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "test"),
                         truncation=teacher.truncation)
    test = composite_images(teacher.mechanisms(), inputs, device=teacher.device)
    if hard is None:
        return test
    return test._replace(hard=hard.select(inputs["texture"][1], inputs["background"][1]), hard_name=hard.name)


def train_and_test(train: Labelled, test: Labelled, settings: EvaluateSettings, seed: int, classifier: Classifier,
                   on_epoch=None, on_batch=None) -> tuple[dict[str, float], torch.Tensor]:
    """OOD accuracies (all, and the hard part when the test set has one) and the confusion matrix (rows true,
    columns predicted) of a classifier trained on `train`."""
    model = train_classifier(train.images, train.labels, classifier.make_model, classifier.num_classes, settings,
                             stream_seed(seed, "classifier"), classifier.device, on_epoch, on_batch)
    accuracy, confusion = score_classifier(model, test.images, test.labels, classifier.num_classes)
    scores = {"accuracy": accuracy}
    if test.hard is not None and test.hard.any():
        scores[f"accuracy_{test.hard_name}"] = score_classifier(model, test.images[test.hard], test.labels[test.hard],
                                                         classifier.num_classes)[0]
    return scores, confusion


def real_vs_counterfactual(real: Labelled, counterfactual: Labelled, settings: EvaluateSettings, seed: int,
                           classifier: Classifier, on_epoch=None, on_batch=None) -> dict[str, float]:
    """Can a classifier tell counterfactuals from real images (the SKDCGN paper's Table 1 question)? As many of
    each, shuffled by the seed; half to train a two-class real (0) vs counterfactual (1) classifier, half to
    test it. Test accuracy near 0.5: indistinguishable; near 1: the counterfactuals give themselves away."""
    n = min(len(real.labels), len(counterfactual.labels))
    order = torch.randperm(2 * n, generator=torch.Generator().manual_seed(stream_seed(seed, "real-vs-cf")))
    images = torch.cat([real.images[:n], counterfactual.images[:n]])[order]
    labels = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])[order]
    model = train_classifier(images[:n], labels[:n], classifier.make_model, 2, settings,
                             stream_seed(seed, "real-vs-cf classifier"), classifier.device, on_epoch, on_batch)
    return {"train_accuracy": score_classifier(model, images[:n], labels[:n], 2)[0],
            "test_accuracy": score_classifier(model, images[n:], labels[n:], 2)[0]}
