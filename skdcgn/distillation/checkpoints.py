"""Student checkpoints that carry their own architecture and teacher, so loading needs nothing but the file."""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.distillation.students import StudentGenerator
from skdcgn.mechanisms import IMS

CHECKPOINT_FORMAT = 1


def save_student(path: Path, student: StudentGenerator, teacher_identity: dict) -> None:
    torch.save({"format": CHECKPOINT_FORMAT, "config": student.config, "teacher": teacher_identity,
                "state_dict": student.state_dict()}, path)


def load_student(path: Path, device: str | torch.device = "cpu") -> tuple[StudentGenerator, dict]:
    """(student in eval mode on `device`, teacher identity); one clear error for anything that is not ours."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise KeyError("format")
        student = StudentGenerator(**checkpoint["config"])
        student.load_state_dict(checkpoint["state_dict"])
    except FileNotFoundError:
        raise ValueError(f"{path}: no such student checkpoint; run the distill stage first") from None
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise ValueError(f"{path}: not an SKDCGN student checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else 'bad content'})") from None
    return student.to(device).eval(), checkpoint["teacher"]


def load_students(directory: Path, device: str | torch.device = "cpu") -> tuple[dict[str, StudentGenerator], dict]:
    """{im: student} from `<directory>/<im>/student.pt`, refusing a set that was not distilled from one teacher."""
    students, teachers = {}, {}
    for im in IMS:
        path = Path(directory) / im / "student.pt"
        students[im], teachers[im] = load_student(path, device)
        if students[im].config["im"] != im:
            raise ValueError(f"{path}: holds a {students[im].config['im']} student, expected {im}")
    if len({repr(sorted(t.items())) for t in teachers.values()}) != 1:
        raise ValueError(f"{directory}: the students were distilled from different teachers: {teachers}")
    return students, teachers["shape"]
