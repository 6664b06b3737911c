"""The one interface every teacher implements: a deterministic black box (z, y) -> image per mechanism.

Distillation is source-free: we never look inside a teacher, we only feed it each mechanism's own noise `z`
and class `y` and store what comes back. That makes determinism part of the contract: the same (z, y) must
give the same image, or a stored pair would not describe the function the student is asked to learn.
"""

from __future__ import annotations

import torch

from skdcgn import IMS

# Masks are 1-channel in [0, 1]; textures and backgrounds are RGB in [-1, 1].
CHANNELS = {"shape": 1, "texture": 3, "background": 3}
VALUE_RANGE = {"shape": (0.0, 1.0), "texture": (-1.0, 1.0), "background": (-1.0, 1.0)}
# The MNIST variants of the CGN paper: what a teacher mirrors, and what evaluation rebuilds from real digits.
VARIANTS = ("colored", "double_colored", "wildlife")


class Teacher:
    """Base class: subclasses set `kind`, `variant`, `image_size`, `num_classes`, `z_dims` and implement `_render`.

    `variant` names the dataset the teacher mirrors (e.g. double_colored MNIST): evaluation builds that one.
    """

    kind: str = "abstract"
    variant: str
    image_size: int
    num_classes: int
    z_dims: dict[str, int]

    def __call__(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Image batch (B, C, H, W) of mechanism `im` for noise z (B, z_dim) and classes y (B,) int64."""
        if im not in IMS:
            raise ValueError(f"unknown mechanism {im!r}; allowed: {', '.join(IMS)}")
        if z.ndim != 2 or z.shape[1] != self.z_dims[im] or y.shape != z.shape[:1]:
            raise ValueError(
                f"{self.kind} teacher, {im}: expected z of shape (B, {self.z_dims[im]}) and y of shape (B,), "
                f"got {tuple(z.shape)} and {tuple(y.shape)}"
            )
        with torch.no_grad():
            return self._render(im, z.float(), y.long())

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def num_parameters(self, im: str) -> int:
        """How many numbers define this mechanism (learned weights, or a procedural teacher's constants)."""
        raise NotImplementedError

    def identity(self) -> dict:
        """What a student checkpoint records about its teacher, so mismatched sets can be refused."""
        return {"kind": self.kind, "variant": self.variant, "image_size": self.image_size, "num_classes": self.num_classes}
