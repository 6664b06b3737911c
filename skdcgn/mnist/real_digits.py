"""The CGN paper's measurement on real digits: MNIST test digits coloured as the variant the teacher mirrors.

One part of the digits makes the factual (colour-biased) training set, the disjoint rest the out-of-distribution
test set, with random colours frozen by the seed. The hard part of a double-colored test set is the digits
painted in their background's colour.
"""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.evaluation.protocol import HardPart, Labelled, quantised
from skdcgn.mnist.idx import load_mnist_test
from skdcgn.mnist.variants import NUM_CLASSES, colourise, load_textures, same_colour
from skdcgn.utils.seeds import generator


def hard_part(variant: str) -> HardPart:
    """The same-colour images of a test set of `variant` (none outside double_colored)."""
    return HardPart("same_colour", lambda fg, bg: same_colour(variant, fg, bg))


def mnist_sets(mnist_dir: Path, variant: str, test_size: int, seed: int, textures_dir: Path | None = None,
               mask_blur: float = 0.0) -> tuple[Labelled, Labelled]:
    """(factual training set, OOD test set) from real digits: the first len - test_size digits, coloured by their
    label, and the last test_size, coloured at random. Disjoint by construction. `mask_blur` softens both sets'
    mask edges (variants.digit_masks); the colours drawn do not depend on it."""
    digits, labels = load_mnist_test(Path(mnist_dir))
    if not 0 < test_size < len(labels):
        raise ValueError(f"evaluate.test_size must leave digits for the factual set: {mnist_dir} holds "
                         f"{len(labels)} digits; allowed: 1..{len(labels) - 1}")
    textures = load_textures(Path(textures_dir)) if variant == "wildlife" else None
    split = len(labels) - test_size
    factual = _coloured(digits[:split], labels[:split], labels[:split], labels[:split], variant,
                        generator(seed, "factual", "colours"), textures, mask_blur)
    rng = generator(seed, "test", "colours")
    fg, bg = (torch.randint(NUM_CLASSES, (test_size,), generator=rng) for _ in range(2))
    test = _coloured(digits[split:], labels[split:], fg, bg, variant, rng, textures, mask_blur)
    return factual, test


def _coloured(digits, labels, fg, bg, variant, rng, textures, mask_blur) -> Labelled:
    images = quantised(colourise(digits, fg, bg, variant, rng, textures, mask_blur))
    return Labelled(images, labels, same_colour(variant, fg, bg), "same_colour")
