"""The distillation loop: one student, one discriminator, stored teacher samples, a callback for logging.

The loop knows nothing of DVC: it reports through `Callback`, so the same code runs from a DVC stage, a notebook
or a GPU box that has only torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from skdcgn.losses import LossWeights, discriminator_loss, generator_loss
from skdcgn.metrics import class_mean_images, fidelity
from skdcgn.progress import progress
from skdcgn.shards import decode_images
from skdcgn.students import ProjectionDiscriminator, StudentGenerator

LR_DECAYS = ("cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay: str = "cosine"
    log_every: int = 50
    eval_every: int = 500
    seed: int = 0
    grad_clip: float = 0.0  # max total gradient norm per update of G and of D; 0 = off

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay {self.lr_decay!r}; allowed: {', '.join(LR_DECAYS)}")


class Callback(Protocol):
    def on_log(self, step: int, values: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...


@dataclass
class PairedSamples:
    """Teacher samples kept as they were stored: row i of z, y and images is one and the same sample."""

    z: torch.Tensor
    y: torch.Tensor
    images: torch.Tensor  # uint8 (N, C, H, W): decoded to floats per batch
    value_range: tuple[float, float]

    @classmethod
    def from_dataset(cls, loaded: dict, device: torch.device | str = "cpu") -> "PairedSamples":
        return cls(loaded["z"].float().to(device), loaded["label"].to(device), loaded["image"].to(device),
                   loaded["value_range"])

    def __len__(self) -> int:
        return len(self.y)

    def class_means(self) -> torch.Tensor:
        """(num_classes, channels) mean teacher value per class and channel, on the CPU."""
        means = class_mean_images(self.images, self.y, int(self.y.max()) + 1).mean(dim=(2, 3))
        return decode_images(means, self.value_range)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = decode_images(self.images[index], self.value_range)
        return self.z[index], self.y[index], images.contiguous(memory_format=torch.channels_last)


def batch_indices(num_samples: int, batch_size: int, seed: int, device) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatches, a fresh permutation per epoch, from the seed alone."""
    if num_samples < batch_size:
        raise ValueError(f"{num_samples} training samples is fewer than one batch of {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_samples, generator=generator)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start:start + batch_size].to(device)


@torch.no_grad()
def predict(student: StudentGenerator, z: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    return torch.cat([student(z[i:i + chunk], y[i:i + chunk]).float() for i in range(0, len(z), chunk)])


def evaluate_student(student: StudentGenerator, heldout: PairedSamples) -> dict[str, float]:
    """Fidelity of the student on held-out teacher samples (eval-mode BatchNorm, as it will be used)."""
    was_training = student.training
    student.eval()
    pred = predict(student, heldout.z, heldout.y)
    student.train(was_training)
    target = decode_images(heldout.images, heldout.value_range)
    return fidelity(student.config["im"], pred.cpu(), target.cpu())


def distill(student: StudentGenerator, disc: ProjectionDiscriminator, train: PairedSamples,
            heldout: PairedSamples, weights: LossWeights, settings: TrainSettings,
            callback: Callback | None = None) -> dict[str, float]:
    """Train `student` to imitate the teacher samples; returns its final held-out fidelity."""
    device = train.z.device
    student.init_class_offset(train.class_means())
    # channels_last, as in the student's forward: teacher images enter the discriminator in that layout too.
    disc.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    opt_g = torch.optim.Adam(student.parameters(), lr=settings.lr, betas=settings.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings.lr, betas=settings.betas)
    # A pixel-only objective needs no discriminator: skip its cost entirely.
    uses_disc = weights.adversarial_weight or weights.feature_weight or weights.kl_weight
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(settings))
                 for opt in ((opt_g, opt_d) if uses_disc else (opt_g,))]
    sums: dict[str, torch.Tensor] = {}
    logged = 0
    student.train()
    disc.train()
    with progress(f"distill {student.config['im']}", settings.steps, every=settings.log_every) as advance:
        for step, index in enumerate(batch_indices(len(train), settings.batch_size, settings.seed, device), 1):
            z, y, real = train.batch(index)
            with autocast:
                fake = student(z, y)
            losses = _train_step(student, disc, opt_g, opt_d, weights, z, y, real, fake, autocast, uses_disc,
                                 settings.grad_clip)
            for scheduler in schedules:
                scheduler.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            if step % settings.log_every == 0 or step == settings.steps:
                means = _log_window(sums, step, settings.log_every, callback)
                advance(step - logged, loss=means["loss/generator"])
                logged = step
            if callback and step % settings.eval_every == 0 and step < settings.steps:
                callback.on_eval(step, evaluate_student(student, heldout))
            if step == settings.steps:
                break
    final = evaluate_student(student, heldout)
    if callback:
        callback.on_eval(settings.steps, final)
    return final


def _train_step(student, disc, opt_g, opt_d, weights, z, y, real, fake, autocast, uses_disc, clip) -> dict:
    losses = {}
    if uses_disc:
        disc.requires_grad_(True)
        with autocast:
            d_loss = discriminator_loss(disc(real, y)[0].float(), disc(fake.detach(), y)[0].float())
        _update(opt_d, d_loss, clip)
        losses["loss/discriminator"] = d_loss.detach()
        # The generator step needs gradients through D, not into it.
        disc.requires_grad_(False)
    with autocast:
        student_out = disc(fake, y) if uses_disc else (torch.zeros(1, device=fake.device), [])
        with torch.no_grad():
            teacher_out = disc(real, y) if uses_disc else (None, [])
    g_loss, parts = generator_loss(weights, fake, real, student_out, teacher_out)
    _update(opt_g, g_loss, clip)
    losses["loss/generator"] = g_loss.detach()
    losses.update({f"loss/{name}": value for name, value in parts.items()})
    return losses


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    """One optimizer step. With clip > 0 the gradient's total norm is cut to `clip` first, so one bad batch
    cannot throw the weights far (the adversarial game's occasional spikes)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    optimizer.step()


def _log_window(sums: dict, step: int, log_every: int, callback: Callback | None) -> dict[str, float]:
    """Means over the steps since the last log; a non-finite loss stops training here, naming the step."""
    count = step % log_every or log_every
    means = {name: float(total) / count for name, total in sums.items()}
    sums.clear()
    bad = [name for name, value in means.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}: lower the learning rate")
    if callback:
        callback.on_log(step, means)
    return means


def _lr_factor(settings: TrainSettings):
    if settings.lr_decay == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
