"""The distillation loop: one student, one discriminator, stored teacher samples, a callback for logging.

The loop knows nothing of DVC: it reports through `Callback`, so the same code runs from a DVC stage, a notebook
or a GPU box that has only torch.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import torch

from skdcgn import distributed
from skdcgn.losses import LossWeights, discriminator_loss, generator_loss
from skdcgn.metrics import class_mean_images, fidelity
from skdcgn.progress import progress
from skdcgn.shards import decode_images
from skdcgn.students import ProjectionDiscriminator, StudentGenerator

LR_DECAYS = ("cosine", "constant")
DATA_SOURCES = ("memory", "stream")


@dataclass(frozen=True)
class TrainSettings:
    """How one student is trained. Field metadata states what is allowed: params.yaml validation reads it too,
    so `train:` in params.yaml is exactly this class."""

    steps: int = field(default=1000, metadata={"min": 1})
    batch_size: int = field(default=64, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"above": 0.0})
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999],
                               metadata={"length": 2, "item": {"min": 0.0, "below": 1.0}})
    lr_decay: str = field(default="cosine", metadata={"choices": LR_DECAYS})
    log_every: int = field(default=50, metadata={"min": 1})
    eval_every: int = field(default=500, metadata={"min": 1})
    student_widths: list[int] = field(default_factory=lambda: [64, 64, 32, 16], metadata={"item": {"min": 1}})
    disc_widths: list[int] = field(default_factory=lambda: [16, 32, 64], metadata={"item": {"min": 1}})
    # Max total gradient norm per update of G and of D; 0 = off.
    grad_clip: float = field(default=0.0, metadata={"min": 0.0})
    # Steps between resumable checkpoints; each is written at the first log step that many steps after the last.
    checkpoint_every: int = field(default=250, metadata={"min": 1})
    # A log window whose mean |discriminator logit| exceeds this stops training (the hinge loss stops pulling at
    # |logit| 1, so healthy logits stay small); 0 = off.
    max_disc_logit: float = field(default=1000.0, metadata={"min": 0.0})
    # Where batches come from: `memory` (the whole dataset decoded once; MNIST-size) or `stream` (read from the
    # shards as training goes, through `loader_workers` processes and a `shuffle_buffer` of samples;
    # skdcgn.streaming). The batch order differs between them, and, for streams, with the number of workers.
    data: str = field(default="memory", metadata={"choices": DATA_SOURCES})
    loader_workers: int = field(default=1, metadata={"min": 0})
    shuffle_buffer: int = field(default=2000, metadata={"min": 1})
    # torch.compile the student and the discriminator for training. It did not pay on the CPU (texture, 1 thread:
    # 97 vs 92 ms per step, after 17 s of compiling; BENCHMARKS.md); it is meant for GPUs, where small kernels
    # are launch-bound. Numerics differ slightly from eager.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay {self.lr_decay!r}; allowed: {', '.join(LR_DECAYS)}")


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or an exploding discriminator: training stopped, naming the step."""


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

    @property
    def device(self) -> torch.device:
        return self.z.device

    def class_mean_images(self) -> torch.Tensor:
        """(num_classes, C, H, W) mean image per class in 0..255 units, on the CPU."""
        return class_mean_images(self.images, self.y, int(self.y.max()) + 1)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = decode_images(self.images[index], self.value_range)
        return self.z[index], self.y[index], images.contiguous(memory_format=torch.channels_last)

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Endless (z, y, images) batches of this rank's share, from batch `start` on: the order comes from the
        seed alone, so skipping the batches already trained on puts a resumed run where it was."""
        indices = batch_indices(len(self), batch_size, seed, self.device)
        for index in itertools.islice(indices, start, None):
            yield self.batch(distributed.rank_share(index))


class TrainingData(Protocol):
    """What the loop needs of teacher samples: PairedSamples (in memory) or skdcgn.streaming.StreamedSamples."""

    device: torch.device
    value_range: tuple[float, float]

    def class_mean_images(self) -> torch.Tensor: ...

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, ...]]: ...


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


def distill(student: StudentGenerator, disc: ProjectionDiscriminator, train: TrainingData,
            heldout: PairedSamples, weights: LossWeights, settings: TrainSettings, seed: int,
            callback: Callback | None = None, checkpoint: Path | None = None) -> dict[str, float]:
    """Train `student` to imitate the teacher samples; returns its final held-out fidelity.

    `seed` orders the batches. With `checkpoint`, the whole training state goes to that file every
    `checkpoint_every` steps, and a run that finds the file continues from it: on the CPU the result is
    bit-identical to a run never stopped. A run that diverges keeps the file: the last good state.
    Under torchrun every rank calls this with the same arguments (`skdcgn.distributed`); rank 0 alone calls
    back and writes the checkpoint.
    """
    device = train.device
    distributed.check_divisible(settings.batch_size)
    leader = distributed.rank_and_world()[0] == 0
    student.init_class_offset(decode_images(train.class_mean_images().mean(dim=(2, 3)), train.value_range))
    # channels_last, as in the student's forward: teacher images enter the discriminator in that layout too.
    disc.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    opt_g = torch.optim.Adam(student.parameters(), lr=settings.lr, betas=tuple(settings.betas))
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings.lr, betas=tuple(settings.betas))
    uses_disc = weights.needs_discriminator
    schedules = {f"schedule_{name}": torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(settings))
                 for name, opt in (("g", opt_g), ("d", opt_d)) if name == "g" or uses_disc}
    state = TrainingState(checkpoint, {"student": student, "disc": disc, "opt_g": opt_g, "opt_d": opt_d,
                                       **schedules},
                          {"settings": dataclasses.asdict(settings), "loss": dataclasses.asdict(weights),
                           "seed": seed, "student": student.config}, writes=leader)
    reports = Reports(callback if leader else None, state.resume())
    # After resuming: DDP starts every rank from rank 0's weights.
    parallel_student, parallel_disc = distributed.data_parallel(student), distributed.data_parallel(disc)
    if settings.compile:
        parallel_student, parallel_disc = torch.compile(parallel_student), torch.compile(parallel_disc)
    batches = train.batches(settings.batch_size, seed, state.step)
    sums: dict[str, torch.Tensor] = {}
    student.train()
    disc.train()
    with progress(f"distill {student.config['im']}", settings.steps, every=settings.log_every,
                  stream=None if leader else io.StringIO()) as advance:
        shown = state.step
        advance(shown)
        for step, (z, y, real) in enumerate(batches, state.step + 1):
            with autocast:
                fake = parallel_student(z, y)
            losses = _train_step(parallel_disc, disc, opt_g, opt_d, weights, z, y, real, fake, autocast, uses_disc,
                                 settings.grad_clip)
            for scheduler in schedules.values():
                scheduler.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            at_log = step % settings.log_every == 0 or step == settings.steps
            if at_log:
                means = _window_means(distributed.mean_over_ranks(sums), step, settings, state)
                sums.clear()
                reports.log(step, means)
                advance(step - shown, loss=means["loss/generator"])
                shown = step
            if callback and leader and step % settings.eval_every == 0 and step < settings.steps:
                reports.eval(step, evaluate_student(student, heldout))
            if step == settings.steps:
                break
            if at_log and step - state.step >= settings.checkpoint_every:
                state.save(step, reports.history)
    final = evaluate_student(student, heldout)
    reports.eval(settings.steps, final)
    return final


class Reports:
    """Passes the loop's reports to the callback and keeps them: a resumed run replays the ones it inherits, so
    its logs (DVCLive curves included) come out as if it had never stopped."""

    def __init__(self, callback: Callback | None, history: list):
        self.callback, self.history = callback, []
        for kind, step, values in history:
            self._report(kind, step, values)

    def log(self, step: int, values: dict[str, float]) -> None:
        self._report("log", step, values)

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        self._report("eval", step, metrics)

    def _report(self, kind: str, step: int, values: dict[str, float]) -> None:
        self.history.append((kind, step, values))
        if self.callback:
            getattr(self.callback, f"on_{kind}")(step, values)


class TrainingState:
    """Everything a resumed run needs, in one file, written atomically so a kill never leaves half a checkpoint.

    `identity` (settings, loss, seed, student config) is stored with it: a file from another run is refused.
    """

    def __init__(self, path: Path | None, stateful: dict, identity: dict, writes: bool = True):
        self.path, self.stateful, self.identity = path and Path(path), stateful, identity
        self.writes = writes  # False on the ranks after the first: they read the checkpoint, never write it
        self.step = 0

    def resume(self) -> list:
        """Load the checkpoint when there is one; returns the reports made before it."""
        if self.path is None or not self.path.is_file():
            return []
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        differing = sorted(key for key in self.identity if saved["identity"].get(key) != self.identity[key])
        if differing:
            raise ValueError(f"{self.path}: a checkpoint of another run ({', '.join(differing)} differ); "
                             f"delete it to start afresh")
        for name, thing in self.stateful.items():
            thing.load_state_dict(saved[name])
        self.step = saved["step"]
        print(f"resuming from step {self.step} ({self.path})", flush=True)
        return saved["history"]

    def save(self, step: int, history: list) -> None:
        self.step = step
        if self.path is None or not self.writes:
            return
        state = {name: thing.state_dict() for name, thing in self.stateful.items()}
        state.update(step=step, history=history, identity=self.identity)
        temporary = self.path.with_name(f"{self.path.name}.tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.path)

    def describe(self) -> str:
        if self.path is None or not self.step:
            return "no checkpoint was saved"
        return f"last good checkpoint: {self.path} (step {self.step})"


def _train_step(parallel_disc, disc, opt_g, opt_d, weights, z, y, real, fake, autocast, uses_disc, clip) -> dict:
    """One D update (through `parallel_disc`: its gradients are averaged over ranks), then one G update, whose
    gradients flow through the plain `disc` (D is not updated then, so nothing of it needs averaging)."""
    losses = {}
    if uses_disc:
        disc.requires_grad_(True)
        with autocast:
            real_logits = parallel_disc(real, y)[0].float()
            fake_logits = parallel_disc(fake.detach(), y)[0].float()
            d_loss = discriminator_loss(real_logits, fake_logits)
        _update(opt_d, d_loss, clip)
        losses["loss/discriminator"] = d_loss.detach()
        losses["disc/abs_logit"] = (real_logits.abs().mean() + fake_logits.abs().mean()).detach() / 2
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


def _window_means(sums: dict, step: int, settings: TrainSettings, state: TrainingState) -> dict[str, float]:
    """Means over the steps since the last log. A non-finite loss or an exploding discriminator stops training
    here, naming the step and the last good checkpoint, which is kept."""
    count = step % settings.log_every or settings.log_every
    means = {name: float(total) / count for name, total in sums.items()}
    bad = [name for name, value in means.items() if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}: lower lr or set grad_clip; "
                               f"{state.describe()}")
    logit = means.get("disc/abs_logit", 0.0)
    if settings.max_disc_logit and logit > settings.max_disc_logit:
        raise TrainingDiverged(f"discriminator exploding at step {step}: mean |logit| {logit:.4g} > max_disc_logit "
                               f"{settings.max_disc_logit:g}; lower lr or set grad_clip; {state.describe()}")
    return means


def _lr_factor(settings: TrainSettings):
    if settings.lr_decay == "constant":
        return lambda step: 1.0
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, settings.steps) / settings.steps))
