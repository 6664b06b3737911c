"""Bring your own teacher: `teacher.kind: custom` builds any Teacher subclass from its import path, after
checking it against the interface; everything else is refused in one line."""

from __future__ import annotations

import textwrap

import pytest
import torch

from skdcgn.settings.generate import GenerateSettings
from skdcgn.settings.teacher import TeacherSettings
from skdcgn.shards.reading import open_dataset
from skdcgn.teachers.registry import make_teacher
from skdcgn.teachers.sampling import sample_teacher

# A black-box generator outside the project: vertical waves whose phase is set by the noise and the class.
STRIPES = '''
import torch

from skdcgn.teachers.base import Teacher


class Stripes(Teacher):
    kind = "stripes"

    def __init__(self, num_classes=3, image_size=16, z_dim=4):
        self.num_classes, self.image_size = num_classes, image_size
        self.z_dims = {"shape": z_dim, "texture": z_dim, "background": z_dim}

    def num_parameters(self, im):
        return 0

    def _render(self, im, z, y):
        rows = torch.linspace(-1, 1, self.image_size, device=z.device)[None, None, :, None]
        phase = (z[:, :1] + y[:, None].float())[:, :, None, None]
        wave = torch.sin(3 * rows + phase).expand(-1, -1, -1, self.image_size)
        return torch.sigmoid(4 * wave) if im == "shape" else 0.8 * wave.expand(-1, 3, -1, -1).contiguous()


class NoKind(Stripes):
    kind = "abstract"


class NotATeacher:
    pass
'''


@pytest.fixture
def module(tmp_path, monkeypatch):
    """A package of the user's, importable as the stages import it (from the project's folder)."""
    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "teachers.py").write_text(textwrap.dedent(STRIPES))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mylab.teachers"


def custom(implementation: str, **options) -> TeacherSettings:
    return TeacherSettings.parse({"kind": "custom", "custom": {"implementation": implementation,
                                                              "options": options}}, "teacher")


def test_a_teacher_from_an_import_path_samples_into_shards(module, tmp_path):
    teacher = make_teacher(custom(f"{module}:Stripes", num_classes=4, image_size=8))
    assert (teacher.kind, teacher.num_classes, teacher.image_size) == ("stripes", 4, 8)
    sample_teacher(teacher, "shape", tmp_path / "shape", 3, torch.Generator().manual_seed(0),
                   GenerateSettings(per_class=3, batch_size=5, shard_size=6))
    samples = open_dataset(tmp_path / "shape").load()
    assert samples["image"].shape == (12, 1, 8, 8)
    assert sorted(samples["label"].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert open_dataset(tmp_path / "shape").info["teacher"]["kind"] == "stripes"


@pytest.mark.parametrize("implementation, options, expected", [
    ("mylab.teachers.Stripes", {}, "is not an import path; allowed: package.module:Class"),
    ("mylab.nowhere:Stripes", {}, "cannot import mylab.nowhere"),
    ("mylab.teachers:Missing", {}, "module mylab.teachers has no Missing"),
    ("mylab.teachers:NotATeacher", {}, "is not a subclass of skdcgn.teachers.base.Teacher"),
    ("mylab.teachers:Stripes", {"colour": 1}, "does not take teacher.custom.options {'colour': 1}"),
    ("mylab.teachers:Stripes", {"num_classes": 0}, "`num_classes` 0 is not a positive int"),
    ("mylab.teachers:NoKind", {}, "no `kind`"),
])
def test_what_is_not_a_teacher_is_refused_in_one_line(module, implementation, options, expected):
    with pytest.raises(ValueError) as error:
        make_teacher(custom(implementation, **options))
    message = str(error.value)
    assert message.startswith("teacher.custom.implementation: ") and "\n" not in message
    assert expected in message


def test_a_teacher_without_a_render_of_its_own_is_refused(module, tmp_path):
    (tmp_path / "mylab" / "empty.py").write_text(textwrap.dedent('''
        from skdcgn.teachers.base import Teacher

        class Empty(Teacher):
            kind, image_size, num_classes = "empty", 8, 2
            z_dims = {"shape": 1, "texture": 1, "background": 1}
    '''))
    with pytest.raises(ValueError, match="no `_render` of its own; no `num_parameters` of its own"):
        make_teacher(custom("mylab.empty:Empty"))
