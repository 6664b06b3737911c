"""Profiles: a partial params.yaml per use case, turned into `dvc exp run -S` arguments and validated first."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamError
from pipeline.profile import as_arguments, overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variant", ["colored", "double_colored", "wildlife"])
def test_cgn_profile_points_at_the_variants_teacher(variant):
    values = overrides("cgn-mnist", variant, ROOT)
    assert values["teacher.kind"] == "cgn-mnist" and values["teacher.cgn-mnist.variant"] == variant
    assert values["teacher.cgn-mnist.checkpoint"] == f"teachers/cgn-mnist/{variant}_mnist.pth"
    assert values["evaluate.data"] == "mnist" and values["compose.texture_shift"] == "cyclic"


def test_a_variants_own_settings_apply_to_that_variant_alone():
    """Wildlife's texture and background students start at 8x8, as the teacher's heads do, and add the
    adversarial and feature terms; colored's texture student adds them too; every shape student has them
    (docs/studies.md: "How real the counterfactuals look"); every other student keeps the default widths and the
    pixel loss alone
    (docs/teachers.md, docs/studies.md)."""
    wildlife, colored, double = (overrides("cgn-mnist", variant, ROOT)
                                 for variant in ("wildlife", "colored", "double_colored"))
    assert wildlife["ims.texture.student_widths"] == wildlife["ims.background.student_widths"] == [64, 64, 32]
    for im in ("texture", "background"):
        assert wildlife[f"ims.{im}.loss.adversarial_weight"] == 0.01 and wildlife[f"ims.{im}.loss.feature_weight"] == 1
    assert colored["ims.texture.loss.adversarial_weight"] == 0.01 and colored["ims.texture.loss.feature_weight"] == 1
    assert not any(key.startswith("ims.background.loss") for key in colored) and colored["loss.adversarial_weight"] == 0
    for variant in (wildlife, colored, double):
        assert variant["ims.shape.loss.adversarial_weight"] == 0.01 and variant["ims.shape.loss.feature_weight"] == 1
        assert variant["ims.shape.loss.pixel"] == "l2"
    assert not any(key.startswith(("ims.texture.loss", "ims.background.loss")) for key in double)
    assert wildlife["ims.texture.steps"] == colored["ims.texture.steps"]  # the rest of the profile as before
    assert not any(key.startswith("variants") or key.endswith("student_widths") for key in colored)


def test_a_misspelt_variant_in_a_profile_fails_whichever_variant_is_asked_for(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "profiles" / "p.yaml").write_text(
        "teacher:\n  kind: cgn-mnist\n  cgn-mnist:\n    variant: '{variant}'\n"
        "variants:\n  wildlfe:\n    train:\n      steps: 5\n")
    with pytest.raises(ParamError, match="teacher.cgn-mnist.variant: 'wildlfe' is not allowed"):
        overrides("p", "colored", tmp_path)


def test_arguments_read_back_as_the_same_values_one_shell_word_each():
    values = {"train.steps": 5, "train.student_widths": [1, 2, 16], "loss.pixel": "x", "train.lr": 0.002}
    words = as_arguments(values, ROOT).split()  # as $(...) splits them
    assert words[::2] == ["-S"] * len(values)
    assert dict((key, yaml.safe_load(value)) for key, _, value in (w.partition("=") for w in words[1::2])) == values


def test_a_key_params_yaml_lacks_is_added_with_hydras_plus():
    words = as_arguments({"ims.shape.loss.kl_weight": 1.0, "ims.shape.steps": 10}, ROOT).split()
    assert words == ["-S", "+ims.shape.loss.kl_weight=1.0", "-S", "ims.shape.steps=10"]


@pytest.mark.parametrize("name, size", [("cgn-imagenet", 256), ("cgn-imagenet-128", 128)])
def test_imagenet_profiles_make_students_of_their_size_from_streamed_jpeg_shards(name, size):
    values = overrides(name, root=ROOT)
    widths = values["train.student_widths"]
    assert values["teacher.kind"] == "cgn-imagenet" and values["teacher.cgn-imagenet.image_size"] == size
    assert 8 * 2 ** (len(widths) - 1) == size and values["train.class_embedding"] > 0
    assert values["train.data"] == "stream" and values["generate.per_class"] == 1000
    assert values["generate.image_format.texture"] == values["generate.image_format.background"] == "jpeg"


def test_a_bad_variant_is_refused_by_the_params_schema():
    with pytest.raises(ParamError, match="teacher.cgn-mnist.variant: 'rainbow' is not allowed"):
        overrides("cgn-mnist", "rainbow", ROOT)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ParamError, match="allowed: cgn-imagenet, cgn-imagenet-128, cgn-mnist"):
        overrides("nope", root=ROOT)


def test_command_line_prints_arguments_or_one_error_line():
    run = lambda *args: subprocess.run([sys.executable, "-m", "pipeline.profile", *args], cwd=ROOT,  # noqa: E731
                                       capture_output=True, text=True)
    ok = run("cgn-mnist", "wildlife")
    assert ok.returncode == 0 and "-S teacher.cgn-mnist.variant=wildlife" in ok.stdout
    bad = run("cgn-mnist")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "needs a variant" in bad.stderr
