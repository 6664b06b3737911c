"""Building a teacher by kind, importing only that kind's module: a teacher's heavy dependencies (a large
network, a package of its own) load only when that teacher is used.

A kind is a section of `teacher` in params.yaml (skdcgn.settings.TeacherSettings); its settings model names the
class that implements it (`implementation = "package.module:Class"`). Adding a teacher is a settings model and
a module with a `Teacher` subclass that takes it.
"""

from __future__ import annotations

import importlib

from skdcgn.settings import TeacherSettings
from skdcgn.teachers.base import Teacher


def teacher_class(implementation: str) -> type[Teacher]:
    module, _, name = implementation.partition(":")
    return getattr(importlib.import_module(module), name)


def make_teacher(settings: TeacherSettings) -> Teacher:
    """The teacher of `settings.kind`, built from its own section (the other kinds' sections are not read)."""
    section = settings.section()
    return teacher_class(section.implementation)(section)
