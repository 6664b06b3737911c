"""`python -m pipeline.params_reference [--check]`: docs/params.md, every key of params.yaml, written from the schema
(skdcgn.settings, put together in pipeline.params) and dvc.yaml, so that the reference cannot drift from the rules.

Per key: its type, the schema's default (and params.yaml's value where it sets another), what is allowed (the
`Literal` choices and `Field` bounds the schema enforces), which stages read it (dvc.yaml's `params:`, a stage
that lists a section reading all of it) and what it does: the field's description where the schema gives one,
else the comment beside or above it in the schema's source, else the comment beside it in params.yaml.
`--check` writes nothing and exits 1 where docs/params.md is not what this would write.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import sys
import textwrap
import tokenize
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.params import PARAMS_FILE, Params
from pipeline.profile import flat
from skdcgn.mechanisms import IMS
from skdcgn.settings.distill import MechanismOverrides
from skdcgn.settings.schema import BOUNDS, _fields, _flat, _unpack

OUT = Path("docs/params.md")
INTERPOLATION = re.compile(r"\$\{([\w.-]+)\}")
# A YAML line: its code, then a comment from a `#` that starts the line or follows a space.
YAML_LINE = re.compile(r"(?P<code>.*?)(?:(?<!\S)#(?P<comment>.*))?$")
HEADER = """# Params

<!-- Written by `python -m pipeline.params_reference` from the schema (skdcgn/settings/) and dvc.yaml: edit those,
then run it again (tests/test_docs.py fails while this page is stale). -->

Every key of params.yaml, section by section. Change one for an experiment without editing the file:

```bash
dvc exp run -S train.lr=0.004 -S ims.shape.steps=2000
```

DVC re-runs only the stages that read a changed key (the *Read by* column). Every stage validates the whole file
first: a key that is not here, or a value outside *Allowed*, stops it with one line that names the key. *Default*
is the schema's, the value of a key params.yaml leaves out; where params.yaml sets another, that value follows it.
"""


def field_at(path: str) -> FieldInfo | None:
    """The schema field of a dotted params key (`teacher.cgn-mnist.variant`), or None where there is none; any key
    under a free mapping (`teacher.custom.options.x`) is that mapping's."""
    node: Any = Params
    info = None
    for part in path.split("."):
        if get_origin(node) is dict:
            return info
        if not _is_model(node) or part not in _fields(node):
            return None
        info = _fields(node)[part]
        node = info.annotation
    return info


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# ---- what a field allows --------------------------------------------------------------------------------------


def type_of(info: FieldInfo) -> str:
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0]).__name__
    if get_origin(annotation) is list:
        item = _unpack(get_args(annotation)[0])[0].__name__
        low, high = _lengths(info.metadata)
        return f"list of {low} {item}" if low == high else f"list of {item}"
    if get_origin(annotation) is dict:
        return "mapping"
    return annotation.__name__


def allowed(info: FieldInfo) -> str:
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return ", ".join(f"`{choice}`" for choice in get_args(annotation))
    if get_origin(annotation) is list:
        low, high = _lengths(info.metadata)
        count = f"{low} values" if low == high else f"{low} or more values"
        bounds = _bounds(_unpack(get_args(annotation)[0])[1])
        return f"{count}, each {bounds}" if bounds else count
    return _bounds(_flat(info.metadata)) or "any"


def _bounds(rules: list) -> str:
    return " and ".join(f"{sign} {getattr(rule, name)}" for rule in rules for cls, (sign, name) in BOUNDS.items()
                        if isinstance(rule, cls))


def _lengths(rules: list) -> tuple[int, int | None]:
    low = next((rule.min_length for rule in rules if isinstance(rule, annotated_types.MinLen)), 0)
    high = next((rule.max_length for rule in rules if isinstance(rule, annotated_types.MaxLen)), None)
    return low, high


def show(value: object) -> str:
    """A value as params.yaml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"[{', '.join(map(show, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {show(item)}" for key, item in value.items()) + "}"
    return '""' if value == "" else str(value)


# ---- what a field is for ----------------------------------------------------------------------------------------


@cache
def source_comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the comments above and beside its line in the model's class body (its own fields only)."""
    source = textwrap.dedent(inspect.getsource(model))
    lines = source.splitlines()
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = []
        row = node.lineno - 1
        while row in comments and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments[row])
            row -= 1
        beside = [comments[row] for row in range(node.lineno, node.end_lineno + 1) if row in comments]
        if above or beside:
            found[node.target.id] = " ".join(above + beside)
    return found


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment beside it in params.yaml, with the comment-only lines that continue it (those
    whose `#` stands right of the key)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the key line and the sections it is in
    for line in text.splitlines():
        code, comment = YAML_LINE.match(line).group("code", "comment")
        comment = (comment or "").strip()
        if code.strip():
            indent = len(code) - len(code.lstrip())
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, code.strip().split(":")[0]))
            if comment:
                found[".".join(key for _, key in stack)] = comment
        elif comment and stack and len(code) > stack[-1][0]:
            key = ".".join(key for _, key in stack)
            if key in found:
                found[key] += " " + comment
    return found


def describe(info: FieldInfo, name: str, model: type[BaseModel], path: str, yaml_notes: dict[str, str]) -> str:
    """The schema's word first (a description, else its source comment): params.yaml's comments are the fallback."""
    if info.description:
        return info.description
    return source_comments(model).get(name) or yaml_notes.get(path, "")


# ---- who reads a field --------------------------------------------------------------------------------------


def param_entries(root: Path) -> list[tuple[str, str, str | None]]:
    """(stage, params entry, condition) for every `params:` entry of dvc.yaml: a `foreach` stage once per item
    (`distill@shape`), an entry naming a key's value (`teacher.${teacher.kind}`) once per allowed value, with the
    condition under which the stage reads it (`teacher.kind: cgn-mnist`)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / PARAMS_FILE).read_text())
    entries = []
    for name, stage in stages.items():
        if "foreach" in stage:
            items = _value(params, INTERPOLATION.fullmatch(stage["foreach"]).group(1))
            runs = [(f"{name}@{item}", stage["do"], item) for item in items]
        else:
            runs = [(name, stage, None)]
        for stage_name, body, item in runs:
            for entry in body.get("params", []):
                entry = entry.replace("${key}", item) if item else entry
                entries += [(stage_name, *choice) for choice in _choices(entry)]
    return entries


def _value(tree: dict, path: str) -> Any:
    for part in path.split("."):
        tree = tree[part]
    return tree


def _choices(entry: str) -> list[tuple[str, str | None]]:
    """An entry with `${key}` in it, as the entry for each value the key allows."""
    match = INTERPOLATION.search(entry)
    if not match:
        return [(entry, None)]
    key = match.group(1)
    return [(entry.replace(match.group(0), str(value)), f"{key}: {value}")
            for value in get_args(field_at(key).annotation)]


def readers(path: str, entries: list[tuple[str, str, str | None]]) -> str:
    """The stages that read `path` (listed it, or a section above it), grouped by the condition they read it under."""
    groups: dict[str | None, list[str]] = {}
    for stage, entry, condition in entries:
        if path == entry or path.startswith(entry + "."):
            groups.setdefault(condition, []).append(stage)
    return "; ".join(", ".join(stages) + (f" (when `{condition}`)" if condition else "")
                     for condition, stages in groups.items())


# ---- the page -------------------------------------------------------------------------------------------------


def sections(model: type[BaseModel], prefix: str = ""):
    """(dotted prefix, model, its own leaf fields by attribute name) for `model` and every model nested in it, in
    the schema's order; for `ims`, one model per mechanism and written apart (ims_section), no leaves (None)."""
    leaves = {name: info for name, info in model.model_fields.items() if not _is_model(info.annotation)}
    if leaves:
        yield prefix, model, leaves
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        if key == "ims":
            yield "ims.", info.annotation, None
        elif _is_model(info.annotation):
            yield from sections(info.annotation, f"{key}.")


def section_table(prefix: str, model: type[BaseModel], leaves: dict[str, FieldInfo], values: dict[str, object],
                  entries: list, yaml_notes: dict[str, str]) -> list[str]:
    """A section's heading, its model's docstring and a row per key; `values` are params.yaml's, by dotted key."""
    rows = []
    for name, info in leaves.items():
        path = prefix + (info.alias or name)
        default = f"`{show(info.default)}`"
        if path in values and values[path] != info.default:
            default += f"; params.yaml: `{show(values[path])}`"
        rows.append([f"`{path}`", type_of(info), default, allowed(info), readers(path, entries),
                     describe(info, name, _declaring(model, name), path, yaml_notes)])
    if not prefix:
        return ["## Top level", "", "Keys outside every section.", "", *_table(rows)]
    return [f"## `{prefix.rstrip('.')}`", "", _escape(inspect.getdoc(model)), "", *_table(rows)]


def _declaring(model: type[BaseModel], attribute: str) -> type[BaseModel]:
    """The class whose body declares the field (where its source comments are)."""
    return next(cls for cls in model.__mro__ if attribute in cls.__dict__.get("__annotations__", {}))


def ims_section(params: dict, entries: list) -> list[str]:
    """`ims.<im>`: any `train` key and, under `loss`, any `loss` key, per mechanism; then what params.yaml sets."""
    def per_im(key: str) -> str:
        return readers(f"ims.{IMS[0]}.{key}", entries).replace(f"@{IMS[0]}", "@<im>")

    rows = [["`ims.<im>.<key>`", "as `train.<key>`", "`train.<key>`", "as `train.<key>`", per_im("steps"),
             "any key of [`train`](#train), for the `<im>` student alone"],
            ["`ims.<im>.loss.<key>`", "as `loss.<key>`", "`loss.<key>`", "as `loss.<key>`", per_im("loss.pixel"),
             "any key of [`loss`](#loss), for the `<im>` student alone"]]
    for path, value in flat(params["ims"], "ims."):
        _, im, key = path.split(".", 2)
        inherited = key if key.startswith("loss.") else f"train.{key}"
        info = field_at(path)
        rows.append([f"`{path}`", type_of(info), f"`{inherited}`; params.yaml: `{show(value)}`", allowed(info),
                     readers(path, entries), f"`{inherited}` for the {im} student"])
    intro = inspect.getdoc(MechanismOverrides) + f" Mechanisms (`<im>`): {', '.join(IMS)}."
    return ["## `ims`", "", _escape(intro), "", *_table(rows)]


def _table(rows: list[list[str]]) -> list[str]:
    head = ["Key", "Type", "Default", "Allowed", "Read by", "Description"]
    cells = [head, ["---"] * len(head)] + [list(map(_escape, row)) for row in rows]
    return ["| " + " | ".join(row) + " |" for row in cells] + [""]


def _escape(text: str) -> str:
    """Prose as Markdown shows it as written: outside code spans, `<` before a tag's first character (`<im>`), `*`
    and `|` are markup (HTML, emphasis, table cells)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i]).replace("*", "\\*")
    return "`".join(parts).replace("|", "\\|")


def render(root: Path = Path(".")) -> str:
    text = (root / PARAMS_FILE).read_text()
    data, entries, yaml_notes = yaml.safe_load(text), param_entries(root), yaml_comments(text)
    lines = [HEADER]
    for prefix, model, leaves in sections(Params):
        lines += (ims_section(data, entries) if leaves is None else
                  section_table(prefix, model, leaves, dict(flat(data)), entries, yaml_notes))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.params_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 where {OUT} is stale; write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run `python -m pipeline.params_reference`", file=sys.stderr)
            raise SystemExit(1)
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
