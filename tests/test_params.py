import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamError, Params, load, parse

ROOT = Path(__file__).resolve().parents[1]


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_are_valid_and_complete():
    parse(Params, project_params())
    # Every schema key is spelled out in params.yaml: a knob nobody can see is a knob nobody can turn.
    assert set(project_params()) == set(Params.__dataclass_fields__)
    for name, schema in typing.get_type_hints(Params).items():
        if dataclasses.is_dataclass(schema):
            assert set(project_params()[name]) == set(schema.__dataclass_fields__), name


def test_per_im_overrides_apply_only_to_their_im():
    params = parse(Params, project_params())
    assert params.train_for("shape").steps == project_params()["ims"]["shape"]["steps"]
    assert params.train_for("shape").lr == params.train.lr


def set_key(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize("path, value, message", [
    ("loss.kl_weight", -0.5, "loss.kl_weight: -0.5 is out of range; allowed: float >= 0.0"),
    ("generate.per_class", -3, "generate.per_class: -3 is out of range; allowed: int >= 1"),
    ("teacher.kind", "biggan", "teacher.kind: 'biggan' is not allowed; allowed: synthetic"),
    ("loss.pixel", "l3", "loss.pixel: 'l3' is not allowed; allowed: l1, l2"),
    ("train.lr", "fast", "train.lr: expected float, got 'fast'"),
    ("train.steps", 2.5, "train.steps: expected int, got 2.5"),
    ("train.lr", 0, "train.lr: 0 is out of range; allowed: float > 0.0"),
    ("train.betas", [0.5], "train.betas: expected 2 float values in a list"),
    ("train.betas", [0.5, 1.0], "train.betas[1]: 1.0 is out of range; allowed: float >= 0.0 and < 1.0"),
    ("loss.temperature", 2.0, "loss.temperature: unknown key; allowed here: pixel,"),
    ("ims.colour", {}, "ims: unknown mechanism 'colour'; allowed and required: shape, texture, background"),
    ("ims.shape.steps", 0, "ims.shape.steps: 0 is out of range; allowed: int >= 1"),
    ("ims.shape.speed", 3, "ims.shape.speed: unknown key"),
    ("compose.n", True, "compose.n: expected int, got True"),
])
def test_bad_value_gets_one_line_naming_key_value_and_allowed(path, value, message):
    with pytest.raises(ParamError) as error:
        parse(Params, set_key(project_params(), path, value))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_unreadable_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [unclosed\n")
    with pytest.raises(ParamError, match="params.yaml: unreadable"):
        load(tmp_path / "params.yaml")


def test_stage_exits_2_with_one_line_before_touching_outputs(tmp_path):
    bad = set_key(project_params(), "ims.shape.steps", -1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "pipeline.distill", "shape"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: ims.shape.steps: -1 is out of range; allowed: int >= 1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_refuses_an_unknown_mechanism(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "pipeline.generate", "colour"], cwd=tmp_path,
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "allowed: shape, texture, background" in result.stderr and len(result.stderr.splitlines()) == 1
