"""Building a teacher by kind, importing only that kind's module: a teacher's heavy dependencies (a large
network, a package of its own) load only when that teacher is used.

A kind is a section of `teacher` in params.yaml (skdcgn.settings.TeacherSettings); its settings model names the
class that implements it (`implementation = "package.module:Class"`). Adding a teacher to the project is a
settings model and a module with a `Teacher` subclass that takes it. Bringing your own without touching the
project is kind `custom`: `teacher.custom.implementation` names any `Teacher` subclass, built with
`teacher.custom.options` as keyword arguments, and checked here against the interface before anything runs.
"""

from __future__ import annotations

import importlib
import re

from skdcgn.mechanisms import IMS
from skdcgn.settings.teacher import CustomTeacherSettings, TeacherSettings
from skdcgn.teachers.base import Teacher

IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
CUSTOM = "teacher.custom.implementation"


def teacher_class(implementation: str) -> type[Teacher]:
    module, _, name = implementation.partition(":")
    return getattr(importlib.import_module(module), name)


def make_teacher(settings: TeacherSettings) -> Teacher:
    """The teacher of `settings.kind`, built from its own section (the other kinds' sections are not read)."""
    section = settings.section()
    if isinstance(section, CustomTeacherSettings):
        return custom_teacher(section)
    return teacher_class(section.implementation)(section)


def custom_teacher(section: CustomTeacherSettings) -> Teacher:
    """The user's teacher; anything that keeps it from being one is a ValueError of one line."""
    path = section.implementation
    if not IMPORT_PATH.fullmatch(path):
        raise ValueError(f"{CUSTOM}: {path!r} is not an import path; allowed: package.module:Class of a "
                         f"skdcgn.teachers.base.Teacher subclass, importable from the project's folder")
    module, _, name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise ValueError(f"{CUSTOM}: cannot import {module} ({error})") from None
    except AttributeError:
        raise ValueError(f"{CUSTOM}: module {module} has no {name}") from None
    if not (isinstance(cls, type) and issubclass(cls, Teacher)):
        raise ValueError(f"{CUSTOM}: {path} is not a subclass of skdcgn.teachers.base.Teacher")
    try:
        teacher = cls(**section.options)
    except TypeError as error:
        raise ValueError(f"{CUSTOM}: {path} does not take teacher.custom.options {dict(section.options)} "
                         f"({error})") from None
    check_interface(teacher, path)
    return teacher


def check_interface(teacher: Teacher, path: str) -> None:
    """What the stages read from every teacher: named, sized, with a noise size for each mechanism."""
    problems = [f"no `{method}` of its own" for method in ("_render", "num_parameters")
                if getattr(type(teacher), method) is getattr(Teacher, method)]
    if teacher.kind == Teacher.kind:
        problems.append("no `kind` (a name for the metrics and checkpoints)")
    for attribute in ("image_size", "num_classes"):
        value = getattr(teacher, attribute, None)
        if not (isinstance(value, int) and value >= 1):
            problems.append(f"`{attribute}` {value!r} is not a positive int")
    z_dims = getattr(teacher, "z_dims", None)
    if not (isinstance(z_dims, dict) and set(z_dims) == set(IMS) and
            all(isinstance(dim, int) and dim >= 1 for dim in z_dims.values())):
        problems.append(f"`z_dims` {z_dims!r} is not a positive int per mechanism ({', '.join(IMS)})")
    if problems:
        raise ValueError(f"{CUSTOM}: {path} is not a usable teacher: {'; '.join(problems)}")
