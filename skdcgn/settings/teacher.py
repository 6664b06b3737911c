"""`teacher`: which kind of teacher distils, and each kind's own section. The stages that build a teacher
(generate, reference, evaluate) depend on these rules.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from skdcgn.settings.schema import Settings

MnistVariant = Literal["colored", "double_colored", "wildlife"]  # the CGN paper's MNIST datasets


class SyntheticSettings(Settings):
    """`teacher.synthetic`: procedural double-coloured digits, offline (skdcgn/teachers/synthetic.py). Class c
    draws digit c mod 10; classes past the ten MNIST colours get colours of their own."""

    implementation: ClassVar[str] = "skdcgn.teachers.synthetic:SyntheticTeacher"
    num_classes: Annotated[int, Field(ge=1, le=100_000)] = 10
    image_size: Annotated[int, Field(ge=8)] = 32


class CGNMnistSettings(Settings):
    """`teacher.cgn-mnist`: one of the three pretrained CGN-MNIST networks (skdcgn/teachers/cgn_mnist.py)."""

    implementation: ClassVar[str] = "skdcgn.teachers.cgn_mnist:CGNMnistTeacher"
    variant: MnistVariant = "double_colored"
    checkpoint: str = ""  # e.g. teachers/cgn-mnist/double_colored_mnist.pth; the teacher says what is wrong with it


class CGNImageNetSettings(Settings):
    """`teacher.cgn-imagenet`: the released ImageNet CGN, 1,000 classes (skdcgn/teachers/cgn_imagenet.py)."""

    implementation: ClassVar[str] = "skdcgn.teachers.cgn_imagenet:CGNImageNetTeacher"
    checkpoint: str = "teachers/cgn-imagenet/cgn.pth"
    # Scale of the truncated noise and BigGAN's BatchNorm statistics; 0.5 is the CGN's setting for datasets.
    truncation: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # The checkpoint's own size (256 for the released CGN) or that halved, averaged down: 128 for cheaper
    # students. The teacher checks it against the checkpoint.
    image_size: Literal[32, 64, 128, 256, 512] = 256


class CustomTeacherSettings(Settings):
    """`teacher.custom`: your own black-box generator, a subclass of skdcgn.teachers.base.Teacher given by its
    import path and built with `options` as keyword arguments (skdcgn/teachers/registry.py checks both)."""

    implementation: str = ""  # package.module:Class, e.g. teachers.custom.my_gan:MyGAN
    options: dict[str, Any] = {}


class TeacherSettings(Settings):
    """`teacher`: which kind distils, and each kind's own section (only the chosen kind's section is read)."""

    kind: Literal["synthetic", "cgn-mnist", "cgn-imagenet", "custom"] = "synthetic"
    synthetic: SyntheticSettings = SyntheticSettings()
    cgn_mnist: CGNMnistSettings = Field(default=CGNMnistSettings(), alias="cgn-mnist")
    cgn_imagenet: CGNImageNetSettings = Field(default=CGNImageNetSettings(), alias="cgn-imagenet")
    custom: CustomTeacherSettings = CustomTeacherSettings()

    def section(self) -> Settings:
        """The settings of the chosen kind."""
        return getattr(self, self.kind.replace("-", "_"))
