"""Each stage in dvc.yaml declares exactly the code it imports, and a resumed run matches that same code.

The imports are read from the source (every `import` in a module, those inside functions too), followed from
the stage's entry module through skdcgn/ and pipeline/; a stage that builds a teacher may build any kind, so it
imports every kind's module (the registry loads them by name). pipeline/params.py imports the schema of every
section of params.yaml to validate the whole file; the schema of a section the stage does not read (its `params:`
in dvc.yaml) can only stop the stage, not change its outputs, so that import is not the stage's code.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from pipeline.common import CODE_ROOTS, stage_code
from pipeline.params import Params
from skdcgn.settings.teacher import TeacherSettings

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
REGISTRY = Path("skdcgn/teachers/registry.py")
PARAMS_MODULE = Path("pipeline/params.py")


def module_file(name: str) -> Path | None:
    path = Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule, maybe
    return {name for name in names if name.split(".")[0] in CODE_ROOTS}


def teacher_kinds() -> list[str]:
    """The project's teacher modules (a custom teacher's module is the user's, under teachers/custom/)."""
    return [info.default.implementation.partition(":")[0] for name, info in TeacherSettings.model_fields.items()
            if name != "kind" and info.default.implementation]


def schema_modules(annotation: object) -> set[Path]:
    """The files of the settings models a section's annotation is made of, its own included (none for a plain
    type such as `seed`'s int)."""
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return set()
    files = {module_file(annotation.__module__)}
    for info in annotation.model_fields.values():
        files |= schema_modules(info.annotation)
    return files


def section_schemas(sections) -> set[Path]:
    """The schema files of params.yaml's top-level `sections`."""
    return set().union(*(schema_modules(Params.model_fields[name].annotation) for name in sections)) - {PARAMS_MODULE}


def validation_only(stage: str) -> set[Path]:
    """The schemas pipeline/params.py imports only to validate sections the stage does not read."""
    read = {key.split(".")[0] for key in STAGES[stage].get("do", STAGES[stage])["params"]}
    return section_schemas(Params.model_fields) - section_schemas(read)


def closure(entry: Path, skipped: set[Path] = frozenset()) -> set[Path]:
    """Every project file `entry` imports, directly or not (a package's __init__ included), less the `skipped`
    files where pipeline/params.py imports them."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        names = imported_modules(path) | (set(teacher_kinds()) if path == REGISTRY else set())
        for name in names:
            parts = name.split(".")
            files = [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i]))) is not None]
            todo += [f for f in files if not (path == PARAMS_MODULE and f in skipped)]
    return seen


def docstring_only(path: Path) -> bool:
    body = ast.parse((ROOT / path).read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def code(paths) -> set[Path]:
    """The files that are code: a package `__init__.py` holding only its docstring is not."""
    return {path for path in paths if not (path.name == "__init__.py" and docstring_only(path))}


def entry_module(stage: str) -> Path:
    command = STAGES[stage].get("do", STAGES[stage])["cmd"]
    return module_file(command.split()[2])


def test_every_package_init_but_the_stages_holds_only_its_docstring():
    # So leaving them out of a stage's code loses nothing: none of them runs code of its own. pipeline's runs
    # before torch loads (it caps oneDNN's kernels), so every stage declares it as code.
    inits = [path.relative_to(ROOT) for root in CODE_ROOTS for path in (ROOT / root).rglob("__init__.py")]
    assert inits and [path for path in inits if not docstring_only(path)] == [Path("pipeline/__init__.py")]
    assert all(Path("pipeline/__init__.py") in stage_code(stage, ROOT) for stage in STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_declares_exactly_the_code_it_imports(stage):
    declared, used = code(stage_code(stage, ROOT)), code(closure(entry_module(stage), validation_only(stage)))
    assert sorted(map(str, used - declared)) == [], "imported but not in dvc.yaml"
    assert sorted(map(str, declared - used)) == [], "in dvc.yaml but not imported"


def test_the_costly_stages_do_not_depend_on_the_rules_of_sections_they_do_not_read():
    # A new compose or evaluate knob must not re-run hours of sampling and training.
    # One schema per section: teacher, generate, distill (loss, train, ims), compose, evaluate.
    assert len(section_schemas(Params.model_fields)) == 5
    assert validation_only("generate") == section_schemas(["loss", "compose", "evaluate"])
    assert validation_only("distill") == section_schemas(["teacher", "generate", "compose", "evaluate"])
    for stage in ("generate", "distill"):
        assert not validation_only(stage) & set(stage_code(stage, ROOT)), stage


def test_a_module_no_stage_imports_is_code_of_none():
    assert all(Path("skdcgn/cli.py") not in stage_code(stage, ROOT) for stage in STAGES)


def resume_keys(project: Path) -> dict[str, str]:
    script = "from pipeline.common import resume_key; print(*(resume_key(s) for s in ('generate', 'distill')))"
    out = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"}).stdout.split()
    return dict(zip(("generate", "distill"), out))


def keys_after_edit(project: Path, path: str) -> dict[str, str]:
    with open(project / path, "a") as handle:
        handle.write("# an edit\n")
    return resume_keys(project)


def test_the_resume_key_follows_the_code_dvc_re_runs_the_stage_for(tmp_path):
    for name in ("skdcgn", "pipeline", "dvc.yaml"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, tmp_path / name)
    # No stage imports the CLI; the students are distill's; compose's rules neither's; generate's rules its own.
    edits = ["skdcgn/cli.py", "skdcgn/distillation/students.py", "skdcgn/settings/compose.py",
             "skdcgn/settings/generate.py"]
    keys = [resume_keys(tmp_path)] + [keys_after_edit(tmp_path, path) for path in edits]
    changed = [{stage for stage in now if now[stage] != before[stage]} for before, now in zip(keys, keys[1:])]
    assert changed == [set(), {"distill"}, set(), {"generate"}]
