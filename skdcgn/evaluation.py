"""The downstream test of the CGN paper: does a classifier trained on counterfactuals ignore colour?

Training sets (teacher or student counterfactuals, factual biased data) and the out-of-distribution test set
are all composites of mechanisms. The test set draws every IM's class independently (random colours) from its
own seed stream, so no test image's inputs were ever seen in training.
"""

from __future__ import annotations

from functools import partial

import torch

from skdcgn.classifier import evaluate_classifier, train_classifier
from skdcgn.compose import COMPOSITE_RANGE, Mechanism, draw_inputs, render_all
from skdcgn.seeds import generator, stream_seed
from skdcgn.shards import encode_images
from skdcgn.teachers.base import Teacher

Labelled = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N, 3, H, W), labels (N,)


def teacher_mechanisms(teacher: Teacher) -> dict[str, Mechanism]:
    return {im: partial(teacher, im) for im in teacher.z_dims}


def composite_images(mechanisms: dict[str, Mechanism], inputs: dict) -> Labelled:
    """Composites labelled with the shape's class, quantised exactly as shards store them, so an in-memory
    dataset and one read back from shards are the same data."""
    images = encode_images(render_all(mechanisms, inputs), COMPOSITE_RANGE)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), inputs["shape"][1]


def factual_set(teacher: Teacher, n: int, seed: int) -> Labelled:
    """Biased data: texture and background follow the digit's class, so colour alone predicts the label."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "factual"), factual=True)
    return composite_images(teacher_mechanisms(teacher), inputs)


def ood_test_set(teacher: Teacher, n: int, seed: int) -> Labelled:
    """Teacher composites with independent random colours, from held-out seeds."""
    inputs = draw_inputs(n, teacher.z_dims, teacher.num_classes, generator(seed, "test"))
    return composite_images(teacher_mechanisms(teacher), inputs)


def train_and_test(train: Labelled, test: Labelled, *, epochs: int, batch_size: int, lr: float, gamma: float,
                   seed: int, on_epoch=None) -> tuple[float, torch.Tensor]:
    """OOD accuracy and confusion matrix (rows true, columns predicted) of a classifier trained on `train`."""
    model = train_classifier(train[0], train[1], epochs=epochs, batch_size=batch_size, lr=lr, gamma=gamma,
                             seed=stream_seed(seed, "classifier"), on_epoch=on_epoch)
    return evaluate_classifier(model, test[0], test[1])
