"""The one interface every teacher implements: a deterministic black box (z, y) -> image per mechanism.

Distillation is source-free: we never look inside a teacher, we only feed it each mechanism's own noise `z`
and class `y` and store what comes back. That makes determinism part of the contract: the same (z, y) must
give the same image, or a stored pair would not describe the function the student is asked to learn.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from skdcgn.mechanisms import IMS

Mechanism = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Teacher:
    """Base class: subclasses set `kind`, `image_size`, `num_classes`, `z_dims` and implement `_render`; a
    teacher made of a network sets `network` (moved by `to`), one that holds other tensors overrides `to`.

    `mirrors` names the dataset a teacher imitates where evaluation can rebuild it from real data (an MNIST
    variant such as double_colored), else None. `truncation` says which noise it takes (skdcgn.teachers.noise):
    None for standard normal noise. `draws_digits` says whether the CGN paper's digit-classifier protocol (stages
    reference and evaluate) can judge its counterfactuals; for other teachers those stages say they skip it.
    """

    kind: str = "abstract"
    image_size: int
    num_classes: int
    z_dims: dict[str, int]
    mirrors: str | None = None
    truncation: float | None = None
    draws_digits: bool = False
    device: torch.device = torch.device("cpu")
    network: torch.nn.Module | None = None

    def __call__(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Image batch (B, C, H, W) on the teacher's device for noise z (B, z_dim) and classes y (B,) int64,
        from any device."""
        if im not in IMS:
            raise ValueError(f"unknown mechanism {im!r}; allowed: {', '.join(IMS)}")
        if z.ndim != 2 or z.shape[1] != self.z_dims[im] or y.shape != z.shape[:1]:
            raise ValueError(
                f"{self.kind} teacher, {im}: expected z of shape (B, {self.z_dims[im]}) and y of shape (B,), "
                f"got {tuple(z.shape)} and {tuple(y.shape)}"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"class labels must be in 0..{self.num_classes - 1}, got {y.min()}..{y.max()}")
        with torch.no_grad():
            return self._render(im, z.to(self.device, torch.float32), y.to(self.device, torch.long))

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> "Teacher":
        """Move the teacher's networks or tensors to `device`; returns itself."""
        self.device = torch.device(device)
        if self.network is not None:
            self.network.to(self.device)
        return self

    def mechanisms(self) -> dict[str, Mechanism]:
        """Each mechanism as a function (z, y) -> image, as composition takes students too."""
        return {im: partial(self, im) for im in self.z_dims}

    def num_parameters(self, im: str) -> int:
        """How many numbers define this mechanism (learned weights, or a procedural teacher's constants)."""
        raise NotImplementedError

    def identity(self) -> dict:
        """What a student checkpoint records about its teacher, so mismatched sets can be refused."""
        return {"kind": self.kind, "image_size": self.image_size, "num_classes": self.num_classes,
                "z_dims": dict(self.z_dims), "mirrors": self.mirrors}
