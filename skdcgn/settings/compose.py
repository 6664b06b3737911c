"""`compose`: the counterfactual set, and how masks change before composition."""

from __future__ import annotations

from typing import Literal

from skdcgn.settings.schema import Count, Degrees, Fraction, NonNegative, Settings


class MaskChanges(Settings):
    """How masks change before composition (the shape-mechanism study and denoising); zero is no change."""

    denoise: bool = False  # 3x3 median filter first: isolated speckle goes, edges and strokes stay
    # A Gaussian blur of this standard deviation in pixels: edges blended into grey, as a pixel loss draws them.
    blur: NonNegative = 0.0
    noise_std: NonNegative = 0.0  # Gaussian noise per pixel, then clipped back to [0, 1]
    rotation: Degrees = 0.0  # each mask turned about its centre by a uniform angle in [-rotation, rotation]
    transparency: Fraction = 0.0  # m -> (1 - transparency) m: the background shows through the shape

    @property
    def active(self) -> bool:
        return bool(self.denoise or self.blur or self.drawn or self.transparency)

    @property
    def drawn(self) -> bool:
        """Whether any change is random per counterfactual."""
        return bool(self.noise_std or self.rotation)


class ComposeSettings(Settings):
    """`compose`: the counterfactual set, drawn alike from the students (compose) and the teacher (reference)."""

    n: Count = 10000
    shard_size: Count = 5000
    batch_size: Count = 100
    grid_columns: Count = 10
    # none | cyclic: the CGN's random cyclic shift of each texture, alike for teacher and students.
    texture_shift: Literal["none", "cyclic"] = "none"
    per_shape: Count = 1
    mask_denoise: bool = False
    mask_blur: NonNegative = 0.0
    mask_noise_std: NonNegative = 0.0
    mask_rotation: Degrees = 0.0
    mask_transparency: Fraction = 0.0
    # The teacher's masks in reference, m -> (1 - t) m: the SKDCGN paper's claim (e) is about a transparent mask
    # on the teacher's counterfactuals, which the students' `mask_transparency` does not touch.
    teacher_mask_transparency: Fraction = 0.0

    def mask_changes(self) -> MaskChanges:
        """The students' masks: denoised when asked, then the shape study's changes."""
        return MaskChanges(denoise=self.mask_denoise, blur=self.mask_blur, noise_std=self.mask_noise_std,
                           rotation=self.mask_rotation, transparency=self.mask_transparency)

    def teacher_mask_changes(self) -> MaskChanges:
        """The teacher's masks (stage reference): denoised when asked, made transparent when asked; the shape
        study's noise and rotation change only the students'."""
        return MaskChanges(denoise=self.mask_denoise, transparency=self.teacher_mask_transparency)
