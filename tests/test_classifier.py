"""The digit CNN: its size, that its protocol learns, and that a seed pins the result down bit for bit."""

import pytest
import torch

from skdcgn.evaluation.classifier import score_classifier, train_classifier
from skdcgn.mnist.digit_cnn import DigitCNN
from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.shards.format import decode_images

torch.set_num_threads(1)


def pattern_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, 32, 32): class k is a fixed coarse 4x4 colour pattern (same for every seed) plus noise."""
    templates = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 255
    templates = templates.repeat_interleave(8, 2).repeat_interleave(8, 3)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    noisy = templates[labels] + 40 * torch.randn(n, 3, 32, 32, generator=gen)
    return noisy.round().clamp(0, 255).to(torch.uint8), labels


def train(images, labels, seed: int, device="cpu", on_epoch=None, on_batch=None, **settings):
    protocol = EvaluateSettings(**{"epochs": 2, **settings})
    return train_classifier(images, labels, DigitCNN, 10, protocol, seed, device, on_epoch, on_batch)


def evaluate_classifier(model, images, labels, **options):
    return score_classifier(model, images, labels, 10, **options)


@pytest.fixture(scope="module")
def trained():
    images, labels = pattern_task(1000, seed=1)
    losses = []
    model = train(images, labels, seed=0, on_epoch=lambda e, loss: losses.append((e, loss)))
    return model, losses


def test_parameter_count_matches_the_paper():
    count = sum(p.numel() for p in DigitCNN().parameters())
    assert abs(count - 68_000) / 68_000 < 0.1, count


def test_learns_a_separable_task_and_reports_each_epoch(trained):
    model, losses = trained
    assert [e for e, _ in losses] == [0, 1]
    assert losses[1][1] < losses[0][1]
    accuracy, _ = evaluate_classifier(model, *pattern_task(500, seed=2))
    assert accuracy > 0.95


def test_confusion_matrix_agrees_with_accuracy(trained):
    model, _ = trained
    images, labels = pattern_task(300, seed=3)
    accuracy, confusion = evaluate_classifier(model, images, labels, batch_size=64)
    assert confusion.dtype == torch.int64 and confusion.shape == (10, 10)
    assert confusion.sum().item() == 300
    assert torch.equal(confusion.sum(1), torch.bincount(labels, minlength=10))
    assert confusion.trace().item() / 300 == accuracy


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights():
    images, labels = pattern_task(200, seed=4)
    runs = [_weights(train(images, labels, seed=s, epochs=1, batch_size=32)) for s in (7, 7, 8)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["head.weight"], runs[2]["head.weight"])


def test_training_leaves_the_global_rng_alone():
    images, labels = pattern_task(64, seed=5)
    state = torch.get_rng_state()
    train(images, labels, seed=0, epochs=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_uint8_and_float_inputs_agree():
    images, labels = pattern_task(200, seed=6)
    as_float = decode_images(images, (-1.0, 1.0))
    a = train(images, labels, seed=1, epochs=1, batch_size=32)
    b = train(as_float, labels, seed=1, epochs=1, batch_size=32)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert evaluate_classifier(a, images, labels)[0] == evaluate_classifier(a, as_float, labels)[0]


def test_the_protocol_trains_on_any_device(device):
    # On CUDA under bf16 autocast, so the weights differ from the CPU's; what matters is that it learns.
    model = train(*pattern_task(1000, seed=1), seed=0, device=device)
    assert next(model.parameters()).device.type == device.type
    assert evaluate_classifier(model, *pattern_task(500, seed=2))[0] > 0.95


def test_progress_comes_batch_by_batch_and_loss_epoch_by_epoch():
    images, labels = pattern_task(100, seed=2)
    events = []
    train(images, labels, seed=0, batch_size=32, on_batch=lambda: events.append("batch"),
          on_epoch=lambda epoch, loss: events.append(epoch))
    assert events == ["batch"] * 4 + [0] + ["batch"] * 4 + [1]  # 100 images in batches of 32: 4 per epoch
