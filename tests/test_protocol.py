"""Evaluation data from real digits: disjoint parts, colours frozen by the seed, the hard same-colour part."""

import os

import pytest
import torch

from pipeline.downstream import alongside
from skdcgn.evaluation.protocol import Classifier, factual_set, real_vs_counterfactual
from skdcgn.mnist.digit_cnn import DigitCNN
from skdcgn.mnist.idx import load_mnist_test
from skdcgn.mnist.real_digits import mnist_sets
from skdcgn.mnist.variants import digit_masks
from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.mnist.palette import BACKGROUND_RGB, as_unit_range
from skdcgn.teachers.synthetic import SyntheticTeacher

TEST_SIZE = 3000


@pytest.fixture(scope="module")
def mnist(real_data):
    return real_data.mnist


@pytest.fixture(scope="module")
def split(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """All the split's digits: the full test split or its first 5,000, whichever was fetched."""
    return load_mnist_test(mnist, download=False)


@pytest.fixture(scope="module")
def sets(mnist):
    return mnist_sets(mnist, "double_colored", TEST_SIZE, seed=0)


def test_factual_and_test_parts_are_disjoint_and_complete(sets, split):
    factual, test = sets
    digits, labels = split
    n_factual = len(labels) - TEST_SIZE
    assert len(factual.labels) == n_factual and len(test.labels) == TEST_SIZE
    assert torch.equal(torch.cat([factual.labels, test.labels]), labels)
    # Each image's digit pixels are exactly the mask of its own digit: the first digits are factual, the last
    # TEST_SIZE test. (Same-colour images are left out: there digit and background differ only by noise.)
    for part, own in ((factual, digits[:n_factual]), (test, digits[n_factual:])):
        keep = ~part.hard
        painted = (part.images != part.images[:, :, :1, :1]).any(dim=1, keepdim=True).float()
        assert torch.equal(painted[keep], digit_masks(own)[keep])


def test_factual_background_follows_the_label_and_test_background_does_not(sets):
    factual, test = sets
    corner = lambda s: s.images[:, :, 0, 0].float() / 127.5 - 1  # noqa: E731 - a pixel that is never digit
    palette = as_unit_range(BACKGROUND_RGB)
    assert (corner(factual) - palette[factual.labels]).abs().max() < 0.1
    agrees = (corner(test) - palette[test.labels]).abs().max(dim=1).values < 0.1
    assert 0.05 < agrees.float().mean() < 0.15  # random colours: about one in ten by chance


def test_colours_are_frozen_by_the_seed(sets, mnist):
    again = mnist_sets(mnist, "double_colored", TEST_SIZE, seed=0)
    assert all(torch.equal(a.images, b.images) for a, b in zip(sets, again))
    other = mnist_sets(mnist, "double_colored", TEST_SIZE, seed=1)
    assert not torch.equal(other[1].images, sets[1].images)


def test_blurred_real_masks_change_the_edges_and_keep_digits_and_colours(sets, mnist, split):
    blurred = mnist_sets(mnist, "double_colored", TEST_SIZE, seed=0, mask_blur=0.45)
    digits, _ = split
    n_factual = len(digits) - TEST_SIZE
    for part, soft, own in zip(sets, blurred, (digits[:n_factual], digits[n_factual:])):
        assert torch.equal(part.labels, soft.labels) and torch.equal(part.hard, soft.hard)
        change = (digit_masks(own, blur=0.45) - digit_masks(own)).abs()
        unchanged = (change == 0).expand_as(part.images)
        assert torch.equal(part.images[unchanged], soft.images[unchanged])
        # Where a tenth of a pixel changed sides, it shows (but for digits painted in their background's colour).
        visible = (change[:, 0] > 0.1) & ~part.hard[:, None, None]
        moved = (part.images != soft.images).any(dim=1)
        assert visible.sum() > 1000 and moved[visible].float().mean() > 0.95


def test_same_colour_part_is_about_a_tenth(sets):
    hard = sets[1].hard
    assert hard is not None and 0.07 < hard.float().mean() < 0.13


def test_test_size_must_leave_a_factual_part(mnist, split):
    every = len(split[1])
    with pytest.raises(ValueError, match=f"allowed: 1..{every - 1}"):
        mnist_sets(mnist, "double_colored", every, seed=0)


def test_a_classifier_tells_obvious_counterfactuals_from_real_images_and_not_real_from_real():
    teacher = SyntheticTeacher()
    real, more_real = factual_set(teacher, 300, seed=0), factual_set(teacher, 300, seed=1)
    protocol = EvaluateSettings(epochs=2, batch_size=32)
    classifier = Classifier(DigitCNN, teacher.num_classes)
    dark = real_vs_counterfactual(real, more_real._replace(images=more_real.images // 4), protocol, 0, classifier)
    alike = real_vs_counterfactual(real, more_real, protocol, 0, classifier)
    assert dark["train_accuracy"] > 0.95 and dark["test_accuracy"] > 0.95
    assert abs(alike["test_accuracy"] - 0.5) < 0.1  # the same distribution: no better than a coin


def test_a_classifier_trained_alongside_in_its_own_process_is_the_one_trained_here():
    """evaluate trains its second classifier in a helper process (pipeline.downstream.alongside) where there are
    the cores: the same bytes of result as here, from another process."""
    teacher = SyntheticTeacher()
    real, other = factual_set(teacher, 200, seed=0), factual_set(teacher, 200, seed=1)
    protocol = EvaluateSettings(epochs=1, batch_size=32)
    classifier = Classifier(DigitCNN, teacher.num_classes)
    with alongside(real_vs_counterfactual, real, other, protocol, 0, classifier) as there, alongside(os.getpid) as pid:
        here = real_vs_counterfactual(real, other, protocol, 0, classifier)
    assert there() == here
    assert (pid() != os.getpid()) == (len(os.sched_getaffinity(0)) >= 2)
