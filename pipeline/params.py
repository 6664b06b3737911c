"""params.yaml, typed: every stage reads its params through here, and the whole file is validated before any
output is touched (a typo in `loss` stops `generate` too, rather than hours later at `distill`).

The schema is skdcgn.settings, a module per section; here it is put together, with `ims`: per mechanism, any
`train` key and (under `ims.<im>.loss`) any `loss` key overridden, under the same rules. A stage depends only on
the schema of the sections it reads (dvc.yaml): the others it imports here only to refuse a bad file early.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, create_model

from skdcgn.mechanisms import IMS
from skdcgn.settings.compose import ComposeSettings
from skdcgn.settings.distill import LossSettings, MechanismOverrides, TrainSettings
from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.settings.generate import GenerateSettings
from skdcgn.settings.schema import Settings, SettingsError
from skdcgn.settings.teacher import TeacherSettings

PARAMS_FILE = Path("params.yaml")
ParamError = SettingsError  # a refusal of params.yaml: one line naming the key path, the value and what is allowed

# `ims.<im>`: every mechanism present, each with its overrides of `train` and `loss` keys (none is fine).
Ims = create_model("Ims", __base__=Settings, __module__=__name__, **{im: (MechanismOverrides, ...) for im in IMS})


class Params(Settings):
    seed: Annotated[int, Field(ge=0)] = 0
    teacher: TeacherSettings = TeacherSettings()
    generate: GenerateSettings = GenerateSettings()
    loss: LossSettings = LossSettings()
    train: TrainSettings = TrainSettings()
    ims: Ims
    compose: ComposeSettings = ComposeSettings()
    evaluate: EvaluateSettings = EvaluateSettings()

    def train_for(self, im: str) -> TrainSettings:
        """`train` with the mechanism's overrides laid over it (each validated by the rule of its key)."""
        return self.train.model_copy(update=getattr(self.ims, im).model_dump(exclude_unset=True, exclude={"loss"}))

    def loss_for(self, im: str) -> LossSettings:
        """`loss` with the mechanism's `ims.<im>.loss` overrides laid over it."""
        return self.loss.model_copy(update=getattr(self.ims, im).loss.model_dump(exclude_unset=True))


def parse(data: object) -> Params:
    """Params from plain YAML data, or ParamError."""
    return Params.parse(data if data is not None else {})


def load(path: Path = PARAMS_FILE) -> Params:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ParamError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    return parse(data)


def load_or_exit(path: Path = PARAMS_FILE) -> Params:
    """For stage entry points: a bad params.yaml ends the process with one line and exit code 2."""
    try:
        return load(path)
    except ParamError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
