import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from skdcgn.losses import LossWeights
from skdcgn.shards import encode_images
from skdcgn.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.teachers import make_teacher
from skdcgn.train import PairedSamples, TrainSettings, distill, evaluate_student

IM = "shape"


def teacher_samples(n: int, seed: int) -> PairedSamples:
    teacher = make_teacher("synthetic")
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, teacher.z_dims[IM], generator=generator)
    y = torch.arange(n) % 10
    pixels = torch.from_numpy(encode_images(teacher(IM, z, y), (0.0, 1.0))).permute(0, 3, 1, 2)
    return PairedSamples(z, y, pixels, (0.0, 1.0))


class Recorder:
    def __init__(self):
        self.logs, self.evals = [], []

    def on_log(self, step, values):
        self.logs.append((step, values))

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics))


def train(steps: int, weights: LossWeights = LossWeights(), seed: int = 0, grad_clip: float = 0.0):
    torch.manual_seed(seed)
    student = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8])
    disc = ProjectionDiscriminator(1, 10, [8, 16, 32])
    recorder = Recorder()
    settings = TrainSettings(steps=steps, batch_size=32, lr=2e-3, log_every=10, eval_every=20, seed=seed,
                             grad_clip=grad_clip)
    final = distill(student, disc, teacher_samples(320, 1), teacher_samples(100, 2), weights, settings, recorder)
    return student, final, recorder


def test_training_beats_the_untrained_student_on_heldout_masks():
    torch.manual_seed(0)
    untrained = evaluate_student(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    _, final, recorder = train(60)
    # 60 steps of a tiny student: too early for masks to cross 0.5 (IoU), not for L1 and structure (SSIM).
    assert final["l1"] < untrained["l1"] / 2
    assert final["ssim"] > untrained["ssim"] + 0.05
    # Logged every 10 steps with every loss part; held-out fidelity every 20 and at the end.
    assert [step for step, _ in recorder.logs] == [10, 20, 30, 40, 50, 60]
    assert {"loss/generator", "loss/discriminator", "loss/pixel", "loss/kl"} <= set(recorder.logs[0][1])
    assert [step for step, _ in recorder.evals] == [20, 40, 60] and recorder.evals[-1][1] == final


def test_same_seed_gives_bit_identical_students_on_cpu():
    first, _, _ = train(15)
    second, _, _ = train(15)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_pixel_only_objective_trains_without_a_discriminator():
    _, final, recorder = train(20, LossWeights(adversarial_weight=0, feature_weight=0, kl_weight=0))
    assert "loss/discriminator" not in recorder.logs[0][1]
    torch.manual_seed(0)
    untrained = evaluate_student(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    assert final["l1"] < untrained["l1"]


def test_too_few_samples_for_a_batch_is_refused():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        distill(StudentGenerator(IM, 16, 10, 32, [16, 16, 8, 8]), ProjectionDiscriminator(1, 10, [8, 8, 8]),
                teacher_samples(10, 1), teacher_samples(10, 2), LossWeights(), TrainSettings(steps=5, batch_size=32))


def gradient_norms_at_each_update(**train_options) -> list[float]:
    """Total gradient norm each optimizer (G and D) sees when it steps, over a short training run."""
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(10, **train_options)
    finally:
        handle.remove()
    return norms


def test_gradient_clipping_bounds_every_update():
    assert max(gradient_norms_at_each_update()) > 0.05  # unclipped, the gradients are larger than the bound
    clipped = gradient_norms_at_each_update(grad_clip=0.05)
    assert len(clipped) == 20 and max(clipped) <= 0.05 * (1 + 1e-4)
