import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.params import ParamError, Params, load, parse
from skdcgn.settings.compose import ComposeSettings, MaskChanges
from skdcgn.settings.schema import Settings
from skdcgn.settings.teacher import TeacherSettings

ROOT = Path(__file__).resolve().parents[1]


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def keys(model: type[Settings]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def assert_spelled_out(data: dict, model: type[Settings], path: str = "params.yaml") -> None:
    assert set(data) == keys(model), path
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Settings) and name != "ims":
            assert_spelled_out(data[info.alias or name], info.annotation, f"{path}.{info.alias or name}")


def test_project_params_are_valid_and_complete():
    parse(project_params())
    # Every schema key is spelled out in params.yaml, down to each teacher kind's section: a knob nobody can
    # see is a knob nobody can turn.
    assert_spelled_out(project_params(), Params)


def test_each_teacher_kind_has_its_section():
    kinds = set(TeacherSettings.model_fields["kind"].annotation.__args__)
    assert kinds == keys(TeacherSettings) - {"kind"}
    for kind in kinds:
        chosen = parse({**project_params(), "teacher": {**project_params()["teacher"], "kind": kind}}).teacher
        assert chosen.section() is getattr(chosen, kind.replace("-", "_"))


def test_per_im_overrides_apply_only_to_their_im():
    params = parse(project_params())
    assert params.train_for("shape").steps == project_params()["ims"]["shape"]["steps"]
    assert params.train_for("shape").lr == params.train.lr


def test_a_mechanism_can_have_its_own_objective():
    data = project_params()
    data["ims"]["shape"]["loss"] = {"adversarial_weight": 0.0, "feature_weight": 0.0}
    params = parse(data)
    shape, texture = params.loss_for("shape"), params.loss_for("texture")
    assert (shape.adversarial_weight, shape.feature_weight, shape.kl_weight) == (0.0, 0.0, params.loss.kl_weight)
    assert not shape.needs_discriminator and texture == params.loss
    assert "loss" not in params.train_for("shape").model_dump()


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
    ("teacher.kind", "biggan", "teacher.kind: 'biggan' is not allowed; allowed: synthetic, cgn-mnist"),
    ("teacher.cgn-mnist.variant", "rainbow", "teacher.cgn-mnist.variant: 'rainbow' is not allowed; allowed: colored,"),
    ("teacher.synthetic.image_size", 4, "teacher.synthetic.image_size: 4 is out of range; allowed: int >= 8"),
    ("loss.pixel", "l3", "loss.pixel: 'l3' is not allowed; allowed: l1, l2"),
    ("train.lr", "fast", "train.lr: expected float, got 'fast'"),
    ("train.steps", 2.5, "train.steps: expected int, got 2.5"),
    ("train.lr", 0, "train.lr: 0 is out of range; allowed: float > 0.0"),
    ("train.betas", [0.5], "train.betas: expected 2 float values in a list"),
    ("train.student_widths", [], "train.student_widths: expected a non-empty list of int values"),
    ("train.betas", [0.5, 1.0], "train.betas[1]: 1.0 is out of range; allowed: float >= 0.0 and < 1.0"),
    ("loss.temperature", 2.0, "loss.temperature: unknown key; allowed here: pixel,"),
    ("ims.colour", {}, "ims.colour: unknown key; allowed here: shape, texture, background"),
    ("ims.shape.steps", 0, "ims.shape.steps: 0 is out of range; allowed: int >= 1"),
    ("ims.shape.speed", 3, "ims.shape.speed: unknown key"),
    ("ims.shape.loss", {"kl_weight": -1}, "ims.shape.loss.kl_weight: -1 is out of range; allowed: float >= 0.0"),
    ("ims.texture.loss", {"pixel": "l3"}, "ims.texture.loss.pixel: 'l3' is not allowed; allowed: l1, l2"),
    ("ims.texture.loss", {"temperature": 2}, "ims.texture.loss.temperature: unknown key; allowed here: pixel,"),
    ("compose.n", True, "compose.n: expected int, got True"),
    ("train.compile", 1, "train.compile: expected bool, got 1"),
    ("generate.image_format.shape", "jpeg", "generate.image_format.shape: 'jpeg' is not allowed; allowed: png"),
    ("generate.image_format.texture", "webp", "generate.image_format.texture: 'webp' is not allowed; allowed: png, jpeg"),
    ("generate.jpeg_quality", 100, "generate.jpeg_quality: 100 is out of range; allowed: int >= 1 and <= 95"),
])
def test_bad_value_gets_one_line_naming_key_value_and_allowed(path, value, message):
    with pytest.raises(ParamError) as error:
        parse(set_key(project_params(), path, value))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_every_mechanism_must_be_listed_under_ims():
    data = project_params()
    del data["ims"]["texture"]
    with pytest.raises(ParamError, match="^ims.texture: missing; required here$"):
        parse(data)


def test_unreadable_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [unclosed\n")
    with pytest.raises(ParamError, match="params.yaml: unreadable"):
        load(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage, key, value, message", [
    ("distill", "ims.shape.steps", -1, "ims.shape.steps: -1 is out of range; allowed: int >= 1"),
    # A section the stage does not read (nor depend on in dvc.yaml): refused all the same, before any work.
    ("generate", "compose.mask_blur", -0.5, "compose.mask_blur: -0.5 is out of range; allowed: float >= 0.0"),
])
def test_stage_exits_2_with_one_line_before_touching_outputs(tmp_path, stage, key, value, message):
    bad = set_key(project_params(), key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", f"pipeline.{stage}", "shape"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_refuses_an_unknown_mechanism(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "pipeline.generate", "colour"], cwd=tmp_path,
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "allowed: shape, texture, background" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("name, value, message", [
    ("SKDCGN_RESUME", "yes", "SKDCGN_RESUME='yes' is not allowed; allowed: 0, 1 or unset"),
    ("SKDCGN_WRITERS", "-1", "SKDCGN_WRITERS='-1' is not allowed; allowed: a whole number >= 0"),
    ("SKDCGN_THREADS", "0", "SKDCGN_THREADS='0' is not allowed; allowed: a whole number >= 1"),
])
def test_a_bad_environment_setting_stops_the_stage_before_it_writes(tmp_path, name, value, message):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "pipeline.generate", "shape"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", name: value})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# ---- properties: whatever the value, a key is accepted or refused in one line that names it ----------------


def leaf_paths(tree: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            paths += leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


LEAVES = leaf_paths(project_params())
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.one_of(st.integers(-5, 5), st.floats(-2, 2), st.text(max_size=2)), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def refusal_or_none(data: dict) -> str | None:
    try:
        parse(data)
    except ParamError as error:
        return str(error)
    return None


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(LEAVES), value=ANY_VALUE)
def test_any_value_is_accepted_or_refused_in_one_line_naming_its_key(path, value):
    message = refusal_or_none(set_key(project_params(), path, value))
    if message is not None:
        assert "\n" not in message
        # A mapping where a value belongs is refused at the key itself, an ims override at its mechanism.
        assert message.startswith(path) or message.startswith(path.rsplit(".", 1)[0]), (path, message)


@settings(max_examples=100, deadline=None)
@given(path=st.sampled_from(LEAVES), key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
def test_an_unknown_key_next_to_any_known_one_is_named(path, key):
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    data = project_params()
    node = data
    for part in filter(None, parent.split(".")):
        node = node[part]
    if key in node or parent == "ims":
        return  # a known key, or a new mechanism name (refused by its own rule, tested above)
    node[key] = 1
    message = refusal_or_none(data)
    assert message is not None and "unknown key" in message and key in message and "\n" not in message


@settings(max_examples=100, deadline=None)
@given(value=st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(float("-inf"))),
       path=st.sampled_from(["train.lr", "loss.kl_weight", "evaluate.gamma", "ims.texture.lr"]))
def test_non_finite_floats_are_refused(path, value):
    assert "allowed: a finite float" in refusal_or_none(set_key(project_params(), path, value))


def test_the_teachers_masks_change_by_their_own_transparency_alone():
    """Claim (e) makes the teacher's masks transparent; the shape study's changes stay the students'."""
    compose = ComposeSettings(mask_transparency=0.5, mask_rotation=30.0, teacher_mask_transparency=0.25,
                              mask_denoise=True, mask_blur=0.45)
    assert compose.teacher_mask_changes() == MaskChanges(denoise=True, transparency=0.25)
    students = compose.mask_changes()
    assert (students.transparency, students.rotation, students.blur) == (0.5, 30.0, 0.45)


def test_params_travel_to_a_helper_process_unchanged():
    """evaluate trains its second classifier in a process of its own, which gets the params by pickle."""
    data = project_params()
    data["ims"]["shape"]["loss"] = {"kl_weight": 0.5}
    params = parse(data)
    assert pickle.loads(pickle.dumps(params)) == params
