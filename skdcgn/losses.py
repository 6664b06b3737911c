"""The distillation objective of SKDCGN (after TinyGAN), with the KL term made real.

Generator:      feature_weight * L_feat + pixel_weight * L_pix + adversarial_weight * L_adv + kl_weight * L_KL
Discriminator:  hinge loss, teacher images as "real", student images as "fake".

The seed code computed a KL term and never added it to the loss; here it is a weighted term like the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

PIXEL_LOSSES = ("l1", "l2")
# Where the KL term compares teacher and student (issue 6's ablation; kl_weight 0 turns it off):
# features:   every discriminator layer, weighted like the feature loss (the seed code's intent)
# last_layer: the deepest discriminator features only
# pixels:     the output images themselves, as distributions over positions: needs no discriminator
KL_PLACES = ("features", "last_layer", "pixels")


@dataclass(frozen=True)
class LossWeights:
    """The objective's knobs. Field metadata states what is allowed: params.yaml validation reads it too."""

    pixel: str = field(default="l1", metadata={"choices": PIXEL_LOSSES})
    pixel_weight: float = field(default=1.0, metadata={"min": 0.0})
    adversarial_weight: float = field(default=0.01, metadata={"min": 0.0})
    feature_weight: float = field(default=1.0, metadata={"min": 0.0})
    kl_weight: float = field(default=0.0, metadata={"min": 0.0})
    kl_temperature: float = field(default=4.0, metadata={"above": 0.0})
    kl_on: str = field(default="features", metadata={"choices": KL_PLACES})

    def __post_init__(self) -> None:
        if self.pixel not in PIXEL_LOSSES:
            raise ValueError(f"pixel loss {self.pixel!r}; allowed: {', '.join(PIXEL_LOSSES)}")
        if self.kl_on not in KL_PLACES:
            raise ValueError(f"kl_on {self.kl_on!r}; allowed: {', '.join(KL_PLACES)}")
        for name in ("pixel_weight", "adversarial_weight", "feature_weight", "kl_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)}; allowed: a number >= 0")
        if self.kl_temperature <= 0:
            raise ValueError(f"kl_temperature = {self.kl_temperature}; allowed: a number > 0")

    @property
    def needs_discriminator(self) -> bool:
        """False for an objective of pixel terms only: training then skips the discriminator's whole cost."""
        kl_on_features = self.kl_weight > 0 and self.kl_on != "pixels"
        return bool(self.adversarial_weight or self.feature_weight or kl_on_features)


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
    return sum(w * (t - s).abs().mean() for w, t, s in zip(weights, teacher_features, student_features))


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


def placed_kl(weights: LossWeights, student_images: torch.Tensor, teacher_images: torch.Tensor,
              teacher_features: list[torch.Tensor], student_features: list[torch.Tensor]) -> torch.Tensor:
    if weights.kl_on == "pixels":
        return pixel_kl_loss(teacher_images, student_images, weights.kl_temperature)
    if weights.kl_on == "last_layer":
        teacher_features, student_features = teacher_features[-1:], student_features[-1:]
    if not teacher_features:  # no discriminator ran: the objective has no feature term to compare
        return torch.zeros(())
    return kl_loss(teacher_features, student_features, weights.kl_temperature)


def discriminator_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - teacher_logits).mean() + F.relu(1.0 + student_logits).mean()


def generator_loss(weights: LossWeights, student_images: torch.Tensor, teacher_images: torch.Tensor,
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
