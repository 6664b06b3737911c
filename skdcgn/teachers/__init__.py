"""Teachers: deterministic black boxes (z, y) -> image per mechanism, built by kind name."""

from __future__ import annotations

from typing import Callable

from skdcgn.teachers.base import Teacher
from skdcgn.teachers.synthetic import SyntheticTeacher

# Adding a teacher is one line here; the allowed list in errors and TEACHER_KINDS follow from it.
_REGISTRY: dict[str, Callable[..., Teacher]] = {
    "synthetic": SyntheticTeacher,
}
TEACHER_KINDS = tuple(_REGISTRY)


def make_teacher(kind: str, **options) -> Teacher:
    """A teacher of the given kind, built with its constructor options (e.g. image_size=32)."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown teacher kind {kind!r}; allowed: {', '.join(TEACHER_KINDS)}")
    return _REGISTRY[kind](**options)


__all__ = ["TEACHER_KINDS", "Teacher", "SyntheticTeacher", "make_teacher"]
