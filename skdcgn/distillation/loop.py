"""The distillation loop: one student, one discriminator, stored teacher samples, a callback for logging.

The loop knows nothing of DVC: it reports through `training.state.Callback`, so the same code runs from a DVC
stage, a notebook or a GPU box that has only the library.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from skdcgn.distillation.data import TrainingData
from skdcgn.distillation.gan_step import GANStep
from skdcgn.distillation.heldout import HeldoutSamples, heldout_fidelity
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.settings.distill import LossSettings, TrainSettings
from skdcgn.shards.format import decode_images
from skdcgn.training import distributed
from skdcgn.training.divergence import check_weights, check_window
from skdcgn.training.state import Callback, Reports, TrainingState
from skdcgn.utils.progress import progress


def distill(student: StudentGenerator, disc: ProjectionDiscriminator, train: TrainingData, heldout: HeldoutSamples,
            loss: LossSettings, settings: TrainSettings, seed: int, callback: Callback | None = None,
            checkpoint: Path | None = None) -> dict[str, float]:
    """Train `student` to imitate the teacher samples; returns its final held-out fidelity.

    `seed` orders the batches. With `checkpoint`, the whole training state goes to that file every
    `checkpoint_every` steps, and a run that finds the file continues from it: on the CPU the result is
    bit-identical to a run never stopped. A run that diverges keeps the file: the last good state.
    Under torchrun every rank calls this with the same arguments (training.distributed); rank 0 alone calls
    back and writes the checkpoint. The number of processes is part of the checkpoint's identity: the bytes
    depend on it (BatchNorm statistics are per process).
    """
    distributed.check_divisible(settings.batch_size)
    rank, processes = distributed.rank_and_world()
    leader = rank == 0
    student.init_class_offset(decode_images(train.class_mean_images().mean(dim=(2, 3)), train.value_range))
    gan = GANStep(student, disc, loss, settings, train.device)
    state = TrainingState(checkpoint, gan.stateful(),
                          {"settings": settings.model_dump(), "loss": loss.model_dump(), "seed": seed,
                           "student": student.config, "processes": processes}, writes=leader)
    reports = Reports(callback if leader else None, state.resume())
    gan.parallelize(settings.compile)
    sums: dict[str, torch.Tensor] = {}
    student.train()
    disc.train()
    with progress(f"distill {student.config['im']}", settings.steps, every=settings.log_every,
                  stream=None if leader else io.StringIO()) as advance:
        shown = state.step
        advance(shown)
        for step, (z, y, real) in enumerate(train.batches(settings.batch_size, seed, state.step), state.step + 1):
            for name, value in gan(z, y, real).items():
                sums[name] = sums.get(name, 0.0) + value
            at_log = step % settings.log_every == 0 or step == settings.steps
            if at_log:
                means = _window_means(distributed.mean_over_ranks(sums), step, settings, state)
                sums.clear()
                reports.log(step, means)
                advance(step - shown, loss=means["loss/generator"])
                shown = step
            if callback and leader and step % settings.eval_every == 0 and step < settings.steps:
                reports.eval(step, heldout_fidelity(student, heldout))
            if step == settings.steps:
                break
            if at_log and step - state.step >= settings.checkpoint_every:
                check_weights({"student": student, "discriminator": disc}, step, state.describe())
                state.save(step, reports.history)
    final = heldout_fidelity(student, heldout)
    reports.eval(settings.steps, final)
    return final


def _window_means(sums: dict, step: int, settings: TrainSettings, state: TrainingState) -> dict[str, float]:
    """Means over the steps since the last log; a diverged window stops training here (training.divergence)."""
    count = step % settings.log_every or settings.log_every
    means = {name: float(total) / count for name, total in sums.items()}
    check_window(means, step, settings.max_disc_logit, state.describe())
    return means
