"""Teachers: deterministic black boxes (z, y) -> image per mechanism, built by kind name."""

from __future__ import annotations

from typing import Callable

from skdcgn.teachers.base import Teacher
from skdcgn.teachers.cgn_mnist import CGNMnistTeacher, CheckpointError
from skdcgn.teachers.synthetic import SyntheticTeacher

# Adding a teacher is one entry here: its constructor and the options (params.yaml `teacher.*` keys) it reads.
# The allowed list in errors and TEACHER_KINDS follow from it.
_REGISTRY: dict[str, tuple[Callable[..., Teacher], tuple[str, ...]]] = {
    "synthetic": (SyntheticTeacher, ("image_size", "variant")),
    "cgn-mnist": (CGNMnistTeacher, ("checkpoint", "variant", "image_size")),
}
TEACHER_KINDS = tuple(_REGISTRY)


def make_teacher(kind: str, **options) -> Teacher:
    """A teacher of the given kind, built from the options it reads; options meant for other kinds are ignored,
    so switching `teacher.kind` back and forth needs no other edit."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown teacher kind {kind!r}; allowed: {', '.join(TEACHER_KINDS)}")
    factory, names = _REGISTRY[kind]
    return factory(**{name: options[name] for name in names if name in options})


__all__ = ["TEACHER_KINDS", "Teacher", "SyntheticTeacher", "CGNMnistTeacher", "CheckpointError", "make_teacher"]
