"""The docs: the site builds under `mkdocs build --strict` (a broken link, anchor or page fails it), the params
reference is what its generator writes, and every command the pages show works as written: each make target,
`skdcgn` command and option, module, `dvc` subcommand and option, params key and profile it names exists."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import click
import pytest
import typer

from pipeline.params import ParamError
from pipeline.params_reference import field_at, render
from pipeline.profile import overrides
from skdcgn.cli import PROJECT_SCRIPTS, app

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))
# The pages whose commands are checked: BENCHMARKS.md is one of them through docs/benchmarks.md's include.
PAGES = ["README.md", "BENCHMARKS.md", *DOCS]
PROGRAMS = ("skdcgn ", "dvc ", "python -m ", "make ")
SETTING_FLAGS = ("-S", "--set-param")
# Built, not written out, so that this file does not name it itself.
SHARED = "/".join(["..", "shared"])
MAY_NAME_SHARED = {".ci/run", "docs/data.md"}
ISSUE_NUMBER = re.compile(r"issue [0-9]", re.IGNORECASE)
CODE_DIRS = ("skdcgn/", "pipeline/", "benchmarks/", "tests/")


def test_site_builds_strictly(tmp_path):
    # From the project root: the snippet includes (docs/benchmarks.md) are relative to the working directory.
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                            "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    problems = [line for line in build.stderr.splitlines() if line.startswith(("WARNING", "ERROR", "Aborted"))]
    assert build.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [build.stderr])


def test_params_reference_is_current():
    assert (ROOT / "docs/params.md").read_text() == render(ROOT), \
        "docs/params.md is stale: run `python -m pipeline.params_reference`"


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; at most 250 (the detail belongs in docs/)"


def test_no_issue_numbers():
    paths = ["README.md", "CHANGELOG.md", "BENCHMARKS.md", *DOCS,
             *(path for path in project_files() if path.startswith(CODE_DIRS))]
    found = [f"{path}:{number}" for path in dict.fromkeys(paths) if (ROOT / path).is_file()
             for number, line in enumerate((ROOT / path).read_text(errors="ignore").splitlines(), 1)
             if ISSUE_NUMBER.search(line)]
    assert not found, f"a tracker's issue number, which means nothing to a reader of the project: {', '.join(found)}"


def test_no_shared_paths():
    found = [path for path in project_files() if path not in MAY_NAME_SHARED and (ROOT / path).is_file()
             and SHARED.encode() in (ROOT / path).read_bytes()]
    assert not found, f"{SHARED} is a folder of this machine, not of the project; named in: {', '.join(found)}"


def project_files() -> list[str]:
    """Tracked files and the new ones git would add (not ignored): what the next commit holds."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


# ---- the commands the pages show ----------------------------------------------------------------------------


def test_commands_work_as_written():
    problems = [f"{page}:{number}: `{command}`: {problem}" for page in PAGES
                for number, command in shown_commands((ROOT / page).read_text())
                for problem in command_problems(command)]
    assert not problems, "commands in the docs that do not work as written:\n" + "\n".join(problems)


@pytest.mark.parametrize("command", [["--help"], ["profile", "cgn-mnist", "double_colored"]])
def test_quick_commands_run(command):
    run = subprocess.run([sys.executable, "-m", "skdcgn", *command], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"skdcgn {' '.join(command)} exited {run.returncode}: {run.stderr.strip()}"


def shown_commands(text: str):
    """(line number, command line) of each line in a fenced code block that runs one of PROGRAMS, after a `$ `
    prompt is taken off and `\\`-continued lines are joined."""
    fence = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            opening = re.match(r"(`{3,}|~{3,})", stripped)
            fence = opening.group(1) if opening else None
            continue
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
            continue
        start, joined = pending or (number, "")
        joined += stripped.removeprefix("$ ")
        if joined.endswith("\\"):
            pending = (start, joined[:-1] + " ")
            continue
        pending = None
        if joined.startswith(PROGRAMS):
            yield start, joined


def command_problems(line: str) -> list[str]:
    """What is wrong with a shell line: each command in it (split at `&&`, `||`, `;`, `|`, and the inner
    commands of `$(...)`) checked by its program."""
    inner = re.findall(r"\$\(([^()]*)\)", line)
    outer = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", line)
    problems = []
    for part in [outer, *inner]:
        lexer = shlex.shlex(part, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as error:
            return [f"not a shell line ({error})"]
        for command in _split(tokens):
            problems += PROGRAM_CHECKS.get(command[0], lambda _: [])(command)
    return problems


def _split(tokens: list[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token and set(token) <= set(";&|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def check_make(command: list[str]) -> list[str]:
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.MULTILINE))
    return [f"{target} is not a target of the Makefile" for target in command[1:]
            if "=" not in target and not target.startswith("-") and target not in targets]


def check_python(command: list[str]) -> list[str]:
    if len(command) < 3 or command[1] != "-m":
        return []
    module, args = command[2], command[3:]
    if module == "skdcgn":
        return check_skdcgn(["skdcgn", *args])
    if (ROOT / module.split(".")[0]).is_dir():
        return check_script(module, args)
    return [] if importlib.util.find_spec(module) else [f"no module {module}"]


def check_skdcgn(command: list[str]) -> list[str]:
    group = typer.main.get_command(app)
    words = [word for word in command[1:] if not word.startswith("-")]
    if not words:
        return _unknown_options(command[1:], _options(group), "skdcgn")
    name = words[0]
    args = command[command.index(name) + 1:]
    if name not in group.commands:
        return [f"{name} is not a command of skdcgn (commands: {', '.join(sorted(group.commands))})"]
    if name in PROJECT_SCRIPTS:  # passed through to the project script, whose options it has
        return check_script(f"pipeline.{name}", args)
    return _unknown_options(args, _options(group.commands[name]), f"skdcgn {name}")


def _options(command: click.Command) -> set[str]:
    names = {"--help"} if command.context_settings.get("help_option_names", ["--help"]) else set()
    return names.union(*(param.opts + param.secondary_opts for param in command.params))


def check_script(module: str, args: list[str]) -> list[str]:
    """A module of the project: its file exists, its options are its parser's, a profile it names is valid."""
    base = ROOT / module.replace(".", "/")
    path = next((path for path in (base.with_suffix(".py"), base / "__main__.py") if path.is_file()), None)
    if path is None:
        return [f"no module {module} ({base.relative_to(ROOT)}.py)"]
    problems = _unknown_options(args, script_options(path), f"python -m {module}") + _setting_problems(args)
    if module == "pipeline.profile":
        problems += _profile_problems(args)
    if "--profile" in args:
        problems += _profile_problems(_values_of("--profile", args))
    return problems


def _values_of(option: str, args: list[str]) -> list[str]:
    """The words that follow `option`, up to the next option."""
    following = args[args.index(option) + 1:]
    return following[:next((i for i, arg in enumerate(following) if arg.startswith("-")), len(following))]


@cache
def script_options(path: Path) -> frozenset[str]:
    """The option strings of a script's argparse parser, read from its source (importing a script to ask it
    costs seconds); none for a script without one."""
    tree = ast.parse(path.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
    if not any(call.func.attr == "ArgumentParser" for call in calls):
        return frozenset()
    return frozenset({"-h", "--help"} | {arg.value for call in calls if call.func.attr == "add_argument"
                                         for arg in call.args if isinstance(arg, ast.Constant)
                                         and str(arg.value).startswith("-")})


def _profile_problems(args: list[str]) -> list[str]:
    if not 1 <= len(args) <= 2:
        return [f"a profile takes NAME [VARIANT], got {args}"]
    try:
        overrides(*args, root=ROOT)
    except ParamError as error:
        return [str(error)]
    return []


def check_dvc(command: list[str]) -> list[str]:
    parser, path = dvc_parser(), "dvc"
    args = command[1:]
    while args and (subcommands := _subcommands(parser)) and not args[0].startswith("-"):
        if args[0] not in subcommands:
            return [f"{args[0]} is not a subcommand of {path} (allowed: {', '.join(sorted(subcommands))})"]
        parser, path = subcommands[args[0]], f"{path} {args[0]}"
        args = args[1:]
    return _unknown_options(args, set(parser._option_string_actions), path) + _setting_problems(args)


@cache
def dvc_parser() -> argparse.ArgumentParser:
    from dvc.cli.parser import get_main_parser

    return get_main_parser()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)),
                {})


def _unknown_options(args: list[str], known: set[str] | frozenset[str], program: str) -> list[str]:
    return [f"{option} is not an option of {program}" for option in (arg.split("=")[0] for arg in args)
            if option.startswith("-") and option != "-" and option not in known]


def _setting_problems(args: list[str]) -> list[str]:
    """`-S key=value`: the key must be one of params.yaml's (hydra's `+` and `~` prefixes aside)."""
    keys = [setting.split("=")[0].lstrip("+~") for flag, setting in zip(args, args[1:]) if flag in SETTING_FLAGS]
    return [f"{key} is not a params key (docs/params.md)" for key in keys if field_at(key) is None]


PROGRAM_CHECKS = {"make": check_make, "python": check_python, "skdcgn": check_skdcgn, "dvc": check_dvc}
