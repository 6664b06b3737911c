"""`evaluate`: the classifier protocol."""

from __future__ import annotations

from typing import Literal

from skdcgn.settings.schema import Count, NonNegative, Positive, Settings


class EvaluateSettings(Settings):
    """`evaluate`: the CGN paper's classifier protocol, tested on random-colour (OOD) images."""

    data: Literal["teacher", "mnist"] = "teacher"
    mnist_dir: str = "mnist"
    textures_dir: str = "textures"
    test_size: Count = 2000
    # mnist: a Gaussian blur (sigma in pixels) of the real digits' binary masks before they are coloured, so that
    # real images get the grey edges compose.mask_blur gives counterfactuals: do edges alone tell the two apart?
    real_mask_blur: NonNegative = 0.0
    epochs: Count = 5
    batch_size: Count = 64
    lr: Positive = 1.0  # Adadelta
    gamma: Positive = 0.7  # StepLR per epoch

    def in_effect(self) -> EvaluateSettings:
        """These settings as a run computes with them: without real digits (`data: teacher`) there is nothing for
        `real_mask_blur` to blur, so settings that differ in it alone are one experiment (pipeline.studies)."""
        return self if self.data == "mnist" else self.model_copy(update={"real_mask_blur": 0.0})
