"""params.yaml, typed: every stage reads its params through here, so a bad value fails before any output is touched.

The schema is a tree of dataclasses. A field's metadata says what is allowed (`min`, `choices`), and the same
metadata writes the error message: one line naming the key path, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from skdcgn import IMS
from skdcgn.compose import TEXTURE_SHIFTS
from skdcgn.evaluation import SOURCES
from skdcgn.losses import LossWeights
from skdcgn.masks import MaskChanges
from skdcgn.shard_writer import ImageCodec
from skdcgn.shards import IMAGE_MEMBERS
from skdcgn.teachers import TEACHER_KINDS
from skdcgn.teachers.base import VARIANTS
from skdcgn.train import TrainSettings

PARAMS_FILE = Path("params.yaml")


# Rule name in field metadata -> (how the error message writes it, the test a value must pass).
LIMITS = {
    "min": (">=", lambda value, bound: value >= bound),
    "above": (">", lambda value, bound: value > bound),
    "below": ("<", lambda value, bound: value < bound),
    "max": ("<=", lambda value, bound: value <= bound),
}


class ParamError(ValueError):
    """A params.yaml value that is not allowed; the message is the whole story, in one line."""


def at_least(low: float) -> dict:
    return {"min": low}


def above(low: float) -> dict:
    return {"above": low}


def one_of(choices: tuple) -> dict:
    return {"choices": choices}


@dataclass(frozen=True)
class Teacher:
    kind: str = field(default="synthetic", metadata=one_of(TEACHER_KINDS))
    variant: str = field(default="double_colored", metadata=one_of(VARIANTS))
    checkpoint: str = ""  # cgn-mnist only; the teacher names the file and what is wrong with it
    image_size: int = field(default=32, metadata=at_least(8))


@dataclass(frozen=True)
class ImageFormats:
    shape: str = field(default="png", metadata=one_of(("png",)))  # a mask is never stored lossy
    texture: str = field(default="png", metadata=one_of(tuple(IMAGE_MEMBERS)))
    background: str = field(default="png", metadata=one_of(tuple(IMAGE_MEMBERS)))


@dataclass(frozen=True)
class Generate:
    per_class: int = field(default=1000, metadata=at_least(1))
    heldout_per_class: int = field(default=50, metadata=at_least(1))
    shard_size: int = field(default=5000, metadata=at_least(1))
    batch_size: int = field(default=1000, metadata=at_least(1))
    image_format: ImageFormats = field(default_factory=ImageFormats)
    jpeg_quality: int = field(default=90, metadata={"min": 1, "max": 95})

    def codec(self, im: str) -> ImageCodec:
        return ImageCodec(getattr(self.image_format, im), self.jpeg_quality)


@dataclass(frozen=True)
class Compose:
    n: int = field(default=10000, metadata=at_least(1))
    shard_size: int = field(default=5000, metadata=at_least(1))
    batch_size: int = field(default=1000, metadata=at_least(1))
    grid_columns: int = field(default=10, metadata=at_least(1))
    texture_shift: str = field(default="none", metadata=one_of(TEXTURE_SHIFTS))
    per_shape: int = field(default=1, metadata=at_least(1))
    mask_denoise: bool = False
    mask_noise_std: float = field(default=0.0, metadata=at_least(0.0))
    mask_rotation: float = field(default=0.0, metadata={"min": 0.0, "max": 180.0})
    mask_transparency: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})

    def mask_changes(self) -> MaskChanges:
        """The students' masks: denoised when asked, then the shape study's changes."""
        return MaskChanges(self.mask_denoise, self.mask_noise_std, self.mask_rotation, self.mask_transparency)

    def teacher_mask_changes(self) -> MaskChanges:
        """The teacher's masks (stage reference): denoised when asked; the study changes only the students'."""
        return MaskChanges(denoise=self.mask_denoise)


@dataclass(frozen=True)
class Evaluate:
    data: str = field(default="teacher", metadata=one_of(SOURCES))
    mnist_dir: str = "mnist"
    textures_dir: str = "textures"
    test_size: int = field(default=2000, metadata=at_least(1))
    epochs: int = field(default=5, metadata=at_least(1))
    batch_size: int = field(default=64, metadata=at_least(1))
    lr: float = field(default=1.0, metadata=above(0.0))
    gamma: float = field(default=0.7, metadata=above(0.0))


@dataclass(frozen=True)
class Params:
    seed: int = field(default=0, metadata=at_least(0))
    teacher: Teacher = field(default_factory=Teacher)
    generate: Generate = field(default_factory=Generate)
    loss: LossWeights = field(default_factory=LossWeights)  # the library's own dataclass and rules
    train: TrainSettings = field(default_factory=TrainSettings)  # the library's own, like `loss`
    # Per-IM overrides of `train` keys, e.g. more steps for the shape mechanism.
    ims: dict[str, dict] = field(default_factory=lambda: {im: {} for im in IMS})
    compose: Compose = field(default_factory=Compose)
    evaluate: Evaluate = field(default_factory=Evaluate)

    def train_for(self, im: str) -> TrainSettings:
        """`train` with the IM's overrides applied (already validated by `parse`)."""
        return dataclasses.replace(self.train, **self.ims[im])


def parse(schema: type, data: object, path: str = ""):
    """Build `schema` from plain YAML data, checking keys, types and allowed values."""
    if not isinstance(data, dict):
        raise ParamError(f"{path or 'params.yaml'}: expected a mapping of keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamError(f"{_join(path, unknown[0])}: unknown key; allowed here: {', '.join(fields)}")
    hints = typing.get_type_hints(schema)
    values = {name: _value(hints[name], fields[name].metadata, data[name], _join(path, name))
              for name in fields if name in data}
    params = schema(**values)
    if schema is Params:
        _check_ims(params)
    return params


def _value(kind: type, rules: typing.Mapping, value: object, path: str):
    if dataclasses.is_dataclass(kind):
        return parse(kind, value, path)
    if typing.get_origin(kind) is dict:
        return _mapping(value, path)
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        length = rules.get("length")
        if not isinstance(value, list) or not value or (length and len(value) != length):
            size = f"{length} " if length else "a non-empty list of "
            raise ParamError(f"{path}: expected {size}{item.__name__} values in a list, got {_show(value)}")
        return [_scalar(item, v, f"{path}[{i}]", rules.get("item", {})) for i, v in enumerate(value)]
    return _scalar(kind, value, path, rules)


def _scalar(kind: type, value: object, path: str, rules: typing.Mapping):
    # YAML's true is an int to Python: a bool passes only where a bool is asked for.
    exact = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    ok = exact or (kind is float and type(value) is int)
    if not ok:
        raise ParamError(f"{path}: expected {kind.__name__}, got {_show(value)}")
    # YAML reads .nan and .inf as floats; no knob here means anything with them, and NaN passes no comparison.
    if kind is float and not math.isfinite(value):
        raise ParamError(f"{path}: {_show(value)} is not allowed; allowed: a finite float")
    if "choices" in rules and value not in rules["choices"]:
        raise ParamError(f"{path}: {_show(value)} is not allowed; allowed: {', '.join(rules['choices'])}")
    checks = [(f"{sign} {rules[key]}", holds(value, rules[key])) for key, (sign, holds) in LIMITS.items()
              if key in rules]
    if not all(ok for _, ok in checks):
        allowed = " and ".join(rule for rule, _ in checks)
        raise ParamError(f"{path}: {_show(value)} is out of range; allowed: {kind.__name__} {allowed}")
    return kind(value)


def _mapping(value: object, path: str) -> dict:
    if not isinstance(value, dict):
        raise ParamError(f"{path}: expected a mapping, got {_show(value)}")
    return {key: dict(value[key] or {}) if isinstance(value[key], (dict, type(None))) else value[key]
            for key in value}


def _check_ims(params: Params) -> None:
    """Every IM present, none unknown, each override a valid `train` key and value."""
    if sorted(params.ims) != sorted(IMS):
        extra = sorted(set(params.ims) - set(IMS))
        what = f"unknown mechanism {extra[0]!r}" if extra else f"missing {sorted(set(IMS) - set(params.ims))[0]!r}"
        raise ParamError(f"ims: {what}; allowed and required: {', '.join(IMS)}")
    for im, overrides in params.ims.items():
        parse(TrainSettings, {**dataclasses.asdict(params.train), **_plain(overrides, f"ims.{im}")}, f"ims.{im}")


def _plain(value: object, path: str) -> dict:
    if not isinstance(value, dict):
        raise ParamError(f"{path}: expected a mapping of train overrides, got {_show(value)}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: object) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def load(path: Path = PARAMS_FILE) -> Params:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    return parse(Params, data if data is not None else {})


def load_or_exit(path: Path = PARAMS_FILE) -> Params:
    """For stage entry points: a bad params.yaml ends the process with one line and exit code 2."""
    try:
        return load(path)
    except ParamError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
