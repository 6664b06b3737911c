"""`python -m pipeline.profile NAME [VARIANT]`: a profile's params overrides as `dvc exp run` arguments.

A profile (profiles/NAME.yaml) is a partial params.yaml; `{variant}` in its values is replaced by VARIANT, and
its `variants:` mapping (variant -> a partial params.yaml) lays what one variant needs beyond the others over it.
The merged params are validated with the same schema as every stage, for every variant the profile names, so a
typo in a profile fails here, in one line, before anything runs. Usage: `dvc exp run -n NAME $(python -m
pipeline.profile NAME VARIANT)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from pipeline.params import PARAMS_FILE, ParamError, parse

PROFILES = Path("profiles")


def overrides(name: str, variant: str | None = None, root: Path = Path(".")) -> dict[str, object]:
    """Dotted key -> value of the profile in project `root`, checked against its params.yaml's schema."""
    path = root / PROFILES / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (root / PROFILES).glob("*.yaml")))
        raise ParamError(f"no profile {name!r} ({path}); allowed: {known}")
    text = path.read_text()
    if "{variant}" in text and variant is None:
        raise ParamError(f"profile {name!r} needs a variant argument (e.g. double_colored)")
    params = yaml.safe_load((root / PARAMS_FILE).read_text())
    # Every variant the profile names, not only the one asked for: a misspelt one fails as a wrong VARIANT would.
    for named in (yaml.safe_load(text) or {}).get("variants", {}):
        parse(merged(params, _for_variant(text, named)))
    profile = _for_variant(text, variant)
    parse(merged(params, profile))
    return dict(flat(profile))


def _for_variant(text: str, variant: str | None) -> dict:
    """The profile's tree for `variant`: `{variant}` replaced, its `variants` entry laid over the rest."""
    profile = yaml.safe_load(text if variant is None else text.replace("{variant}", variant)) or {}
    own = profile.pop("variants", {})
    return merged(profile, own.get(variant) or {})


def merged(base: dict, update: dict) -> dict:
    """`base` with `update` laid over it, nested mappings key by key (how `-S` overrides apply)."""
    return {k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in {**base, **update}.items()}


def nested(dotted: dict[str, object]) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}: dotted overrides (a profile's, `-S`'s) as a partial params tree."""
    tree: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def flat(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def setting(key: str, value: object) -> str:
    """`key=value` with the value in YAML flow style, so lists and strings read back as they were, and lists
    without spaces, so that the shell keeps each setting one word."""
    return f"{key}={flow(value)}"


def flow(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(flow, value)) + "]"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def override(key: str, value: object, present: set[str]) -> str:
    """One `-S` value: `key=value`, with Hydra's `+` before a key that params.yaml does not hold (`present`): DVC
    refuses to set a missing key without it, and to add one that exists with it (e.g. `+ims.shape.loss.kl_weight`)."""
    return ("" if key in present else "+") + setting(key, value)


def params_keys(root: Path = Path(".")) -> set[str]:
    """The dotted keys of params.yaml's values."""
    return {key for key, _ in flat(yaml.safe_load((root / PARAMS_FILE).read_text()))}


def as_arguments(values: dict[str, object], root: Path = Path(".")) -> str:
    """`-S key=value` pairs, unquoted: `$(python -m pipeline.profile ...)` splits words without reading quotes."""
    present = params_keys(root)
    return " ".join(f"-S {override(key, value, present)}" for key, value in values.items())


def main() -> None:
    if not 2 <= len(sys.argv) <= 3:
        print("usage: python -m pipeline.profile NAME [VARIANT]", file=sys.stderr)
        raise SystemExit(2)
    try:
        print(as_arguments(overrides(*sys.argv[1:])))
    except ParamError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
