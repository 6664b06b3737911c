"""The downstream test of the CGN paper: does a classifier trained on counterfactuals ignore colour?

Training sets (teacher or student counterfactuals, factual biased data) and the out-of-distribution test set are
built here. The test set comes from one of two sources:
- `teacher`: teacher composites whose mechanisms draw their classes independently (random colours), from their
  own seed stream, so no test image's inputs were ever seen in training. Offline; the synthetic default.
- `mnist`: real MNIST digits coloured as the dataset the teacher mirrors (skdcgn.cgn_data). One part of the digits
  makes the factual (colour-biased) training set, the disjoint rest the test set, with random colours frozen by
  the seed. This is the paper's measurement.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch

from skdcgn.cgn_data import colourise, load_textures, same_colour
from skdcgn.classifier import evaluate_classifier, train_classifier
from skdcgn.compose import COMPOSITE_RANGE, Mechanism, draw_inputs, render_all
from skdcgn.masks import MaskChanges
from skdcgn.mnist import load_mnist_test
from skdcgn.seeds import generator, stream_seed
from skdcgn.shards import encode_images
from skdcgn.teachers.base import Teacher

SOURCES = ("teacher", "mnist")


class Labelled(NamedTuple):
    images: torch.Tensor  # uint8 (N, 3, H, W), quantised exactly as shards store images
    labels: torch.Tensor  # (N,) the digit's class
    # (N,) bool: foreground and background got the same colour, so only colour noise separates digit and
    # background (`cgn_data.same_colour`). The hard part of the test; None where the variant has no such notion.
    same_colour: torch.Tensor | None = None


def quantised(images: torch.Tensor) -> torch.Tensor:
    """Float composites in [-1, 1] -> uint8 (N, 3, H, W): an in-memory set equals one read back from shards."""
    return torch.from_numpy(encode_images(images, COMPOSITE_RANGE)).permute(0, 3, 1, 2).contiguous()


def teacher_mechanisms(teacher: Teacher) -> dict[str, Mechanism]:
    return {im: partial(teacher, im) for im in teacher.z_dims}


def composite_images(mechanisms: dict[str, Mechanism], inputs: dict,
                     shifts: dict[str, torch.Tensor] | None = None, changes: MaskChanges = MaskChanges()) -> Labelled:
    """Composites labelled with the shape's class."""
    return Labelled(quantised(render_all(mechanisms, inputs, shifts=shifts, changes=changes)), inputs["shape"][1])


def factual_set(teacher: Teacher, n: int, seed: int) -> Labelled:
    """Biased data: texture and background follow the digit's class, so colour alone predicts the label."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "factual"), factual=True)
    return composite_images(teacher_mechanisms(teacher), inputs)


def ood_test_set(teacher: Teacher, n: int, seed: int) -> Labelled:
    """Teacher composites with independent random colours, from held-out seeds."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "test"))
    hard = same_colour(teacher.variant, inputs["texture"][1], inputs["background"][1])
    return composite_images(teacher_mechanisms(teacher), inputs)._replace(same_colour=hard)


def mnist_sets(mnist_dir: Path, variant: str, test_size: int, seed: int,
               textures_dir: Path | None = None) -> tuple[Labelled, Labelled]:
    """(factual training set, OOD test set) from real digits: the first len - test_size digits, coloured by their
    label, and the last test_size, coloured at random. Disjoint by construction."""
    digits, labels = load_mnist_test(Path(mnist_dir))
    if not 0 < test_size < len(labels):
        raise ValueError(f"evaluate.test_size must leave digits for the factual set: {mnist_dir} holds "
                         f"{len(labels)} digits; allowed: 1..{len(labels) - 1}")
    textures = load_textures(Path(textures_dir)) if variant == "wildlife" else None
    split = len(labels) - test_size
    factual = _coloured(digits[:split], labels[:split], labels[:split], labels[:split], variant,
                        generator(seed, "factual", "colours"), textures)
    rng = generator(seed, "test", "colours")
    fg, bg = (torch.randint(10, (test_size,), generator=rng) for _ in range(2))
    test = _coloured(digits[split:], labels[split:], fg, bg, variant, rng, textures)
    return factual, test


def _coloured(digits, labels, fg, bg, variant, rng, textures) -> Labelled:
    images = quantised(colourise(digits, fg, bg, variant, rng, textures))
    return Labelled(images, labels, same_colour(variant, fg, bg))


def train_and_test(train: Labelled, test: Labelled, *, epochs: int, batch_size: int, lr: float, gamma: float,
                   seed: int, on_epoch=None) -> tuple[dict[str, float], torch.Tensor]:
    """OOD accuracies (all, and the same-colour part when the test set has one) and the confusion matrix (rows
    true, columns predicted) of a classifier trained on `train`."""
    model = train_classifier(train.images, train.labels, epochs=epochs, batch_size=batch_size, lr=lr, gamma=gamma,
                             seed=stream_seed(seed, "classifier"), on_epoch=on_epoch)
    accuracy, confusion = evaluate_classifier(model, test.images, test.labels)
    scores = {"accuracy": accuracy}
    if test.same_colour is not None and test.same_colour.any():
        hard = test.same_colour
        scores["accuracy_same_colour"] = evaluate_classifier(model, test.images[hard], test.labels[hard])[0]
    return scores, confusion


def real_vs_counterfactual(real: Labelled, counterfactual: Labelled, *, epochs: int, batch_size: int, lr: float,
                           gamma: float, seed: int, on_epoch=None) -> dict[str, float]:
    """Can a classifier tell counterfactuals from real images (the SKDCGN paper's Table 1 question)? As many of
    each, shuffled by the seed; half to train a real (0) vs counterfactual (1) classifier, half to test it.
    Test accuracy near 0.5: indistinguishable; near 1: the counterfactuals give themselves away."""
    n = min(len(real.labels), len(counterfactual.labels))
    order = torch.randperm(2 * n, generator=torch.Generator().manual_seed(stream_seed(seed, "real-vs-cf")))
    images = torch.cat([real.images[:n], counterfactual.images[:n]])[order]
    labels = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])[order]
    model = train_classifier(images[:n], labels[:n], epochs=epochs, batch_size=batch_size, lr=lr, gamma=gamma,
                             seed=stream_seed(seed, "real-vs-cf classifier"), on_epoch=on_epoch)
    return {"train_accuracy": evaluate_classifier(model, images[:n], labels[:n])[0],
            "test_accuracy": evaluate_classifier(model, images[n:], labels[n:])[0]}
