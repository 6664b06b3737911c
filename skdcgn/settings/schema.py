"""The params schema, as pydantic models: one module per section of params.yaml (teacher, generate, distill for
`loss`, `train` and `ims`, compose, evaluate), and here the base they share, its one-line errors and the
constrained types more than one section uses.

Rules live in the schema and nowhere else: a field's type and constraints (`Field(ge=...)`, `Literal` choices) are
the rule, and the error message is written from them. The library takes these models whole (a stage hands over
`params.train`, not its fields one by one), and they validate whenever they are built, from params.yaml or in
code. Every refusal is one line: the key path, the value and what is allowed.

Every stage validates the whole params.yaml before it touches an output, yet depends (dvc.yaml) only on this file
and the modules of the sections it reads: another section's rules can stop it but not change what it writes, so
an edit of them does not re-run it. These modules import only pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

# ---- one-line errors --------------------------------------------------------------------------------------


class SettingsError(ValueError):
    """A setting that is not allowed; the message is the whole story, in one line."""


class Settings(BaseModel):
    """Strict (YAML's `true` is no int, `2.5` no int, `.nan` no float), closed (an unknown key is an error) and
    frozen. Building one with a bad value raises SettingsError in one line. (Pydantic validates a nested model
    through its `__init__` too, when it has its own: `describe` joins the paths.)"""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False, validate_by_name=True,
                              validate_by_alias=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise SettingsError(describe(error, type(self))) from None

    @classmethod
    def parse(cls, data: object, path: str = ""):
        """Build from plain YAML data; errors name keys under `path`."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise SettingsError(describe(error, cls, path)) from None


BOUNDS = {annotated_types.Ge: (">=", "ge"), annotated_types.Gt: (">", "gt"), annotated_types.Le: ("<=", "le"),
          annotated_types.Lt: ("<", "lt")}
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
TYPE_ERRORS = ("int_type", "float_type", "bool_type", "string_type", "int_parsing", "float_parsing")


def describe(error: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first error as `path: what is wrong; allowed: what`, from the rules of the field it concerns."""
    first = error.errors(include_url=False)[0]
    loc, kind, value = first["loc"], first["type"], first.get("input")
    path = _join(prefix, loc)
    annotation, rules, parent = _field_at(model, loc)
    if kind == "extra_forbidden":
        return f"{path}: unknown key; allowed here: {', '.join(_keys(parent))}"
    if kind == "missing":
        return f"{path}: missing; required here"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path or 'params.yaml'}: expected a mapping of keys, got {_show(value)}"
    if kind == "literal_error":
        return f"{path}: {_show(value)} is not allowed; allowed: {', '.join(map(str, get_args(annotation)))}"
    if kind in RANGE_ERRORS:
        bounds = " and ".join(f"{sign} {getattr(rule, name)}" for rule in rules for cls, (sign, name) in BOUNDS.items()
                              if isinstance(rule, cls))
        return f"{path}: {_show(value)} is out of range; allowed: {_name(annotation)} {bounds}"
    if kind == "finite_number":
        return f"{path}: {_show(value)} is not allowed; allowed: a finite float"
    if kind in ("list_type", "too_short", "too_long"):
        return f"{path}: expected {_list_shape(annotation, rules)}, got {_show(value)}"
    if kind in TYPE_ERRORS:
        return f"{path}: expected {_name(annotation)}, got {_show(value)}"
    if kind == "value_error":
        inner = first["ctx"]["error"]
        # A nested model validates through its own __init__, which names keys from itself: prefix our path.
        separator = "." if isinstance(inner, SettingsError) else ": "
        return f"{path}{separator}{inner}" if path else str(inner)
    return f"{path}: {first['msg']}"


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[Any, list, type[BaseModel]]:
    """(annotation, constraints, model holding it) of the field a location points at."""
    annotation, rules, parent = model, [], model
    for part in loc:
        if isinstance(part, int):  # an item of a list
            annotation, rules = _unpack(get_args(annotation)[0]) if get_args(annotation) else (annotation, rules)
            continue
        fields = _fields(annotation) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else {}
        if part not in fields:
            return None, [], annotation if isinstance(annotation, type) else parent
        parent = annotation
        annotation, rules = fields[part].annotation, _flat(fields[part].metadata)
    return annotation, rules, parent


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields under the names params.yaml uses (an alias where there is one)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _keys(model: type[BaseModel]) -> list[str]:
    return list(_fields(model))


def _unpack(annotation: Any) -> tuple[Any, list]:
    """Annotated[int, Field(ge=1)] -> (int, [Ge(1)])."""
    if getattr(annotation, "__metadata__", None) is not None:
        return annotation.__origin__, _flat(annotation.__metadata__)
    return annotation, []


def _flat(metadata: list) -> list:
    """Constraints, with the ones inside a Field() taken out of it."""
    return [rule for item in metadata for rule in (item.metadata if isinstance(item, FieldInfo) else [item])]


def _list_shape(annotation: Any, rules: list) -> str:
    item = _name(_unpack(get_args(annotation)[0])[0]) if get_args(annotation) else "any"
    low = next((r.min_length for r in rules if isinstance(r, annotated_types.MinLen)), 0)
    high = next((r.max_length for r in rules if isinstance(r, annotated_types.MaxLen)), None)
    return f"{low} {item} values in a list" if low == high else f"a non-empty list of {item} values"


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


def _join(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path


def _show(value: object) -> str:
    return type(value).__name__ if isinstance(value, (dict, list)) else repr(value)


# ---- the rules every section shares ---------------------------------------------------------------------

Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Field(ge=0.0, le=180.0)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Widths = Annotated[list[Count], Field(min_length=1)]
ImageFormat = Literal["png", "jpeg"]
JpegQuality = Annotated[int, Field(ge=1, le=95)]  # PIL's useful range
