"""The distillation objective of SKDCGN (after TinyGAN), with the KL term made real.

Generator:      feature_weight * L_feat + pixel_weight * L_pix + adversarial_weight * L_adv + kl_weight * L_KL
Discriminator:  hinge loss, teacher images as "real", student images as "fake".

The seed code computed a KL term and never added it to the loss; here it is a weighted term like the others.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from skdcgn.settings.distill import LossSettings

KL_PLACES = get_args(LossSettings.model_fields["kl_on"].annotation)


def pixel_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    difference = student - teacher
    return difference.abs().mean() if kind == "l1" else difference.square().mean()


def layer_weights(num_layers: int) -> list[float]:
    """TinyGAN's per-layer weights, shallow to deep: 1/32, 1/16, 1/8, 1/4, 1 for five layers.

    Deep features carry the class and layout that matter most; shallow ones mostly repeat the pixel loss.
    """
    return [2.0 ** -(num_layers - i) for i in range(num_layers - 1)] + [1.0]


def feature_loss(teacher_features: list[torch.Tensor], student_features: list[torch.Tensor]) -> torch.Tensor:
    weights = layer_weights(len(teacher_features))
    return sum(w * (t.float() - s.float()).abs().mean()
               for w, t, s in zip(weights, teacher_features, student_features))


def softened_kl(teacher: torch.Tensor, student: torch.Tensor, temperature: float, dim: int) -> torch.Tensor:
    """Mean KL(teacher || student) of softmax(x / temperature) along `dim`, scaled by temperature**2 so that
    its gradient keeps the same size whatever the temperature (Hinton et al., 2015)."""
    target = F.log_softmax(teacher.float() / temperature, dim=dim)
    predicted = F.log_softmax(student.float() / temperature, dim=dim)
    return (target.exp() * (target - predicted)).sum(dim=dim).mean() * temperature**2


def kl_loss(teacher_features: list[torch.Tensor], student_features: list[torch.Tensor],
            temperature: float) -> torch.Tensor:
    """KL of discriminator features, as distributions over channels at each position, averaged over batch and
    positions and weighted per layer like the feature loss."""
    weights = layer_weights(len(teacher_features))
    return sum(w * softened_kl(t, s, temperature, dim=1) for w, t, s in zip(weights, teacher_features,
                                                                         student_features))


def pixel_kl_loss(teacher_images: torch.Tensor, student_images: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL of the images, each channel as a distribution over its positions: where the mass (the bright pixels)
    lies, which a mask has a single channel for, unlike a distribution over channels."""
    return softened_kl(teacher_images.flatten(2), student_images.flatten(2), temperature, dim=2)


def placed_kl(weights: LossSettings, student_images: torch.Tensor, teacher_images: torch.Tensor,
              teacher_features: list[torch.Tensor], student_features: list[torch.Tensor]) -> torch.Tensor:
    """The KL term where `weights.kl_on` says it compares (skdcgn.settings.LossSettings)."""
    if weights.kl_on == "pixels":
        return pixel_kl_loss(teacher_images, student_images, weights.kl_temperature)
    if weights.kl_on == "last_layer":
        teacher_features, student_features = teacher_features[-1:], student_features[-1:]
    if not teacher_features:  # no discriminator ran: the objective has no feature term to compare
        return torch.zeros(())
    return kl_loss(teacher_features, student_features, weights.kl_temperature)


def discriminator_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - teacher_logits).mean() + F.relu(1.0 + student_logits).mean()


def generator_loss(weights: LossSettings, student_images: torch.Tensor, teacher_images: torch.Tensor,
                   student_out: tuple, teacher_out: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total generator loss and its parts; `*_out` are (logit, features) from the discriminator.

    Teacher features are targets: they are detached, so only the student moves to match them.
    """
    student_logits, student_features = student_out
    teacher_features = [f.detach() for f in teacher_out[1]]
    parts = {
        "pixel": pixel_loss(student_images.float(), teacher_images.float(), weights.pixel),
        "adversarial": -student_logits.float().mean(),
        "feature": feature_loss(teacher_features, student_features),
        "kl": placed_kl(weights, student_images, teacher_images, teacher_features, student_features),
    }
    total = (weights.pixel_weight * parts["pixel"] + weights.adversarial_weight * parts["adversarial"]
             + weights.feature_weight * parts["feature"] + weights.kl_weight * parts["kl"])
    # Parts stay tensors: turning them into floats every step would stall a GPU; the loop does it when it logs.
    return total, {name: torch.as_tensor(value).detach() for name, value in parts.items()}
