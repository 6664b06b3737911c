"""One distillation step, in the spirit of StyleGAN2-ADA's loss object: it holds the student (G), the
discriminator (D), their data-parallel wrappers, optimisers, schedules and the objective, and runs D's phase,
then G's, on one batch of teacher samples.

D learns to tell teacher images ("real") from the student's ("fake") with the hinge loss; G then learns from
the pixel, feature, adversarial and KL terms (distillation.losses). An objective of pixel terms only skips D.
"""

from __future__ import annotations

import torch
from torch import nn

from skdcgn.distillation.losses import discriminator_loss, generator_loss
from skdcgn.settings.distill import LossSettings, TrainSettings
from skdcgn.training import distributed
from skdcgn.training.schedule import lr_factor
from skdcgn.utils.device import training_autocast


class GANStep:
    def __init__(self, student: nn.Module, disc: nn.Module, loss: LossSettings, settings: TrainSettings,
                 device: torch.device):
        self.student, self.disc, self.loss, self.clip = student, disc, loss, settings.grad_clip
        # channels_last, as in the student's forward: teacher images enter the discriminator in that layout too.
        disc.to(memory_format=torch.channels_last)
        self.autocast = training_autocast(device)
        self.opt_g = torch.optim.Adam(student.parameters(), lr=settings.lr, betas=tuple(settings.betas))
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=settings.lr, betas=tuple(settings.betas))
        self.uses_disc = loss.needs_discriminator
        factor = lr_factor(settings.lr_decay, settings.steps)
        self.schedules = {f"schedule_{name}": torch.optim.lr_scheduler.LambdaLR(opt, factor)
                          for name, opt in (("g", self.opt_g), ("d", self.opt_d)) if name == "g" or self.uses_disc}
        self.parallel_student, self.parallel_disc = student, disc

    def stateful(self) -> dict:
        """What a checkpoint holds, by name."""
        return {"student": self.student, "disc": self.disc, "opt_g": self.opt_g, "opt_d": self.opt_d,
                **self.schedules}

    def parallelize(self, compile: bool) -> None:
        """Wrap for several ranks (after resuming: DDP starts every rank from rank 0's weights), and compile."""
        self.parallel_student = distributed.data_parallel(self.student)
        self.parallel_disc = distributed.data_parallel(self.disc)
        if compile:
            self.parallel_student = torch.compile(self.parallel_student)
            self.parallel_disc = torch.compile(self.parallel_disc)

    def __call__(self, z: torch.Tensor, y: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both phases on one batch; the losses as tensors (a float per step would stall a GPU)."""
        with self.autocast:
            fake = self.parallel_student(z, y)
        losses = self._discriminator_phase(y, real, fake) if self.uses_disc else {}
        losses.update(self._generator_phase(y, real, fake))
        for scheduler in self.schedules.values():
            scheduler.step()
        return losses

    def _discriminator_phase(self, y, real, fake) -> dict[str, torch.Tensor]:
        """Through `parallel_disc`: its gradients are averaged over ranks."""
        self.disc.requires_grad_(True)
        with self.autocast:
            real_logits = self.parallel_disc(real, y)[0].float()
            fake_logits = self.parallel_disc(fake.detach(), y)[0].float()
            d_loss = discriminator_loss(real_logits, fake_logits)
        _update(self.opt_d, d_loss, self.clip)
        # The generator phase needs gradients through D, not into it.
        self.disc.requires_grad_(False)
        return {"loss/discriminator": d_loss.detach(),
                "disc/abs_logit": (real_logits.abs().mean() + fake_logits.abs().mean()).detach() / 2}

    def _generator_phase(self, y, real, fake) -> dict[str, torch.Tensor]:
        """Gradients flow through the plain `disc` (D is not updated here, so nothing of it needs averaging)."""
        with self.autocast:
            student_out = self.disc(fake, y) if self.uses_disc else (torch.zeros(1, device=fake.device), [])
            with torch.no_grad():
                teacher_out = self.disc(real, y) if self.uses_disc else (None, [])
        g_loss, parts = generator_loss(self.loss, fake, real, student_out, teacher_out)
        _update(self.opt_g, g_loss, self.clip)
        return {"loss/generator": g_loss.detach(), **{f"loss/{name}": value for name, value in parts.items()}}


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    """One optimizer step. With clip > 0 the gradient's total norm is cut to `clip` first, so one bad batch
    cannot throw the weights far (the adversarial game's occasional spikes)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    optimizer.step()
