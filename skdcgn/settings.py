"""The params schema: what every knob of params.yaml may be, as pydantic models, one per section.

Rules live here and nowhere else: a field's type and constraints (`Field(ge=...)`, `Literal` choices) are the
rule, and the error message is written from them. The library takes these models whole (a stage hands over
`params.train`, not its fields one by one), and they validate whenever they are built, from params.yaml or in
code. Every refusal is one line: the key path, the value and what is allowed.

This module imports only pydantic: every stage validates the whole params.yaml before it touches an output, so
every stage depends on this file, and through it on nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

# ---- one-line errors --------------------------------------------------------------------------------------


class SettingsError(ValueError):
    """A setting that is not allowed; the message is the whole story, in one line."""


class Settings(BaseModel):
    """Strict (YAML's `true` is no int, `2.5` no int, `.nan` no float), closed (an unknown key is an error) and
    frozen. Building one with a bad value raises SettingsError in one line. (Pydantic validates a nested model
    through its `__init__` too, when it has its own: `describe` joins the paths.)"""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False, validate_by_name=True,
                              validate_by_alias=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SettingsError(describe(error, type(self))) from None

    @classmethod
    def parse(cls, data: object, path: str = ""):
        """Build from plain YAML data; errors name keys under `path`."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise SettingsError(describe(error, cls, path)) from None


BOUNDS = {annotated_types.Ge: (">=", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("<=", "le"),
          annotated_types.Lt: ("<", "lt")}
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
TYPE_ERRORS = ("int_type", "float_type", "bool_type", "string_type", "int_parsing", "float_parsing")


def describe(error: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first error as `path: what is wrong; allowed: what`, from the rules of the field it concerns."""
    first = error.errors(include_url=False)[0]
    loc, kind, value = first["loc"], first["type"], first.get("input")
    path = _join(prefix, loc)
    annotation, rules, parent = _field_at(model, loc)
    if kind == "extra_forbidden":
        return f"{path}: unknown key; allowed here: {', '.join(_keys(parent))}"
    if kind == "missing":
        return f"{path}: missing; required here"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path or 'params.yaml'}: expected a mapping of keys, got {_show(value)}"
    if kind == "literal_error":
        return f"{path}: {_show(value)} is not allowed; allowed: {', '.join(map(str, get_args(annotation)))}"
    if kind in RANGE_ERRORS:
        bounds = " and ".join(f"{sign} {getattr(rule, name)}" for rule in rules for cls, (sign, name) in BOUNDS.items()
                              if isinstance(rule, cls))
        return f"{path}: {_show(value)} is out of range; allowed: {_name(annotation)} {bounds}"
    if kind == "finite_number":
        return f"{path}: {_show(value)} is not allowed; allowed: a finite float"
    if kind in ("list_type", "too_short", "too_long"):
        return f"{path}: expected {_list_shape(annotation, rules)}, got {_show(value)}"
    if kind in TYPE_ERRORS:
        return f"{path}: expected {_name(annotation)}, got {_show(value)}"
    if kind == "value_error":
        inner = first["ctx"]["error"]
        # A nested model validates through its own __init__, which names keys from itself: prefix our path.
        separator = "." if isinstance(inner, SettingsError) else ": "
        return f"{path}{separator}{inner}" if path else str(inner)
    return f"{path}: {first['msg']}"


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[Any, list, type[BaseModel]]:
    """(annotation, constraints, model holding it) of the field a location points at."""
    annotation, rules, parent = model, [], model
    for part in loc:
        if isinstance(part, int):  # an item of a list
            annotation, rules = _unpack(get_args(annotation)[0]) if get_args(annotation) else (annotation, rules)
            continue
        fields = _fields(annotation) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else {}
        if part not in fields:
            return None, [], annotation if isinstance(annotation, type) else parent
        parent = annotation
        annotation, rules = fields[part].annotation, _flat(fields[part].metadata)
    return annotation, rules, parent


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields under the names params.yaml uses (an alias where there is one)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _keys(model: type[BaseModel]) -> list[str]:
    return list(_fields(model))


def _unpack(annotation: Any) -> tuple[Any, list]:
    """Annotated[int, Field(ge=1)] -> (int, [Ge(1)])."""
    if getattr(annotation, "__metadata__", None) is not None:
        return annotation.__origin__, _flat(annotation.__metadata__)
    return annotation, []


def _flat(metadata: list) -> list:
    """Constraints, with the ones inside a Field() taken out of it."""
    return [rule for item in metadata for rule in (item.metadata if isinstance(item, FieldInfo) else [item])]


def _list_shape(annotation: Any, rules: list) -> str:
    item = _name(_unpack(get_args(annotation)[0])[0]) if get_args(annotation) else "any"
    low = next((r.min_length for r in rules if isinstance(r, annotated_types.MinLen)), 0)
    high = next((r.max_length for r in rules if isinstance(r, annotated_types.MaxLen)), None)
    return f"{low} {item} values in a list" if low == high else f"a non-empty list of {item} values"


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _join(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path


def _show(value: object) -> str:
    return type(value).__name__ if isinstance(value, (dict, list)) else repr(value)


# ---- the rules every section shares ---------------------------------------------------------------------

Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Field(ge=0.0, le=180.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Widths = Annotated[list[Count], Field(min_length=1)]
ImageFormat = Literal["png", "jpeg"]
JpegQuality = Annotated[int, Field(ge=1, le=95)]  # PIL's useful range
MnistVariant = Literal["colored", "double_colored", "wildlife"]  # the CGN paper's MNIST datasets


# ---- teacher ------------------------------------------------------------------------------------------------


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


# ---- generate, loss, train ---------------------------------------------------------------------------------


class ImageFormats(Settings):
    """How each mechanism's images are stored: png (lossless) or jpeg (smaller, lossy: for large textures)."""

    shape: Literal["png"] = "png"  # a lossy mask is a different mask
    texture: ImageFormat = "png"
    background: ImageFormat = "png"


class GenerateSettings(Settings):
    """`generate`: teacher samples per mechanism."""

    per_class: Count = 1000
    heldout_per_class: Count = 50
    shard_size: Count = 5000
    batch_size: Count = 100
    image_format: ImageFormats = ImageFormats()
    jpeg_quality: JpegQuality = 90


class LossSettings(Settings):
    """`loss`: the generator objective's weights and forms (skdcgn/distillation/losses.py)."""

    pixel: Literal["l1", "l2"] = "l1"
    pixel_weight: NonNegative = 1.0
    adversarial_weight: NonNegative = 0.01
    feature_weight: NonNegative = 1.0
    kl_weight: NonNegative = 0.0
    kl_temperature: Positive = 4.0
    # Where the KL term compares teacher and student: every discriminator layer, weighted like the feature loss
    # (the seed code's intent); the deepest layer only; or the output images as distributions over positions.
    kl_on: Literal["features", "last_layer", "pixels"] = "features"

    @property
    def needs_discriminator(self) -> bool:
        """False for an objective of pixel terms only: training then skips the discriminator's whole cost."""
        kl_on_features = self.kl_weight > 0 and self.kl_on != "pixels"
        return bool(self.adversarial_weight or self.feature_weight or kl_on_features)


class TrainSettings(Settings):
    """`train` (and, key by key, `ims.<im>`): how one student is trained."""

    steps: Count = 1000
    batch_size: Count = 64
    lr: Positive = 1e-3
    betas: Annotated[list[Beta], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    lr_decay: Literal["cosine", "constant"] = "cosine"
    log_every: Count = 50
    eval_every: Count = 500
    student_widths: Widths = [64, 64, 32, 16]
    class_embedding: NonNegativeInt = 0  # 0: one-hot classes (few classes); else a learned embedding of this size
    disc_widths: Widths = [16, 32, 64]
    grad_clip: NonNegative = 0.0  # max total gradient norm per update of G and of D; 0 = off
    # Steps between resumable checkpoints; each is written at the first log step that many steps after the last.
    checkpoint_every: Count = 250
    # A log window whose mean |discriminator logit| exceeds this stops training (the hinge loss stops pulling at
    # |logit| 1, so healthy logits stay small); 0 = off.
    max_disc_logit: NonNegative = 1000.0
    # Where batches come from: `memory` (the whole dataset decoded once; MNIST-size) or `stream` (read from the
    # shards as training goes, through `loader_workers` processes and a `shuffle_buffer` of samples). The batch
    # order differs between them, and, for streams, with the number of workers.
    data: Literal["memory", "stream"] = "memory"
    loader_workers: NonNegativeInt = 1
    shuffle_buffer: Count = 2000
    # torch.compile the student and the discriminator. It did not pay on the CPU (BENCHMARKS.md); it is meant for
    # GPUs, where small kernels are launch-bound. Numerics differ slightly from eager.
    compile: bool = False


def _overrides_of(model: type[Settings], name: str) -> type[Settings]:
    """A model with the fields and rules of `model`, every one optional: what was set is what overrides. `name`
    is the module attribute it is bound to, so that pickle finds the class (params travel to helper processes)."""
    from pydantic import create_model

    fields = {field: (info.annotation, FieldInfo.merge_field_infos(info, default=None))
              for field, info in model.model_fields.items()}
    return create_model(name, __base__=Settings, __module__=__name__, **fields)


TrainOverrides = _overrides_of(TrainSettings, "TrainOverrides")
LossOverrides = _overrides_of(LossSettings, "LossOverrides")


class MechanismOverrides(TrainOverrides):
    """`ims.<im>`: any `train` key, and under `loss` any `loss` key, for this mechanism's student alone (the
    studies found that the objective that helps the colour students does not help the shape's)."""

    loss: LossOverrides = LossOverrides()


# ---- compose, evaluate ---------------------------------------------------------------------------------------


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


class EvaluateSettings(Settings):
    """`evaluate`: the CGN paper's classifier protocol, tested on random-colour (OOD) images."""

    data: Literal["teacher", "mnist"] = "teacher"
    mnist_dir: str = "mnist"
    textures_dir: str = "textures"
    test_size: Count = 2000
    epochs: Count = 5
    batch_size: Count = 64
    lr: Positive = 1.0  # Adadelta
    gamma: Positive = 0.7  # StepLR per epoch
