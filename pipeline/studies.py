"""`python -m pipeline.studies`: queue the SKDCGN paper's studies as named DVC experiments.

    python -m pipeline.studies                                   # every study on the default (synthetic) teacher
    python -m pipeline.studies --profile cgn-mnist double_colored
    python -m pipeline.studies --study kl --study masks --dry-run
    python -m pipeline.studies --study pixel --seeds 3                # each variant at seeds 0, 1, 2
    dvc queue start -j 2                                         # then: python -m pipeline.report

Each study is a list of variants: param overrides laid over the teacher's own params (its profile and `-S`).
Variants equal across studies (every study's control is the teacher's own params) are queued once, as
`<teacher>-baseline`; the others as `<teacher>-<variant>`. Experiments that change only compose or evaluate params
are queued last, so they restore the students of the baseline from the run-cache instead of training them again.
Queued experiments run in a temporary copy of the repository without its git-ignored files: a path given to them
(teacher checkpoint, MNIST and texture folders) inside the repository stays relative and is copied into the run
(`dvc exp run -C`), so no command or report names a machine's folders; one outside it is made absolute.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.params import PARAMS_FILE, ParamError, parse
from pipeline.profile import merged, nested, override, overrides, params_keys
from skdcgn.mechanisms import IMS
from skdcgn.settings.distill import LossSettings

TERMS_OFF = {"loss.adversarial_weight": 0.0, "loss.feature_weight": 0.0}
# The library's default weights: the full objective stays what LossSettings says, not a copy of its numbers.
FULL_OBJECTIVE = {"loss.adversarial_weight": LossSettings().adversarial_weight,
                  "loss.feature_weight": LossSettings().feature_weight}
COLOUR = ("texture", "background")


def for_students(terms: dict[str, float], ims: tuple[str, ...]) -> dict[str, float]:
    """`terms` (loss.* keys) as the own objective (`ims.<im>.loss`) of each student of `ims`."""
    return {f"ims.{im}.{key}": value for im in ims for key, value in terms.items()}


# The objective study's variants say every student's terms: a profile may give one student terms of its own
# (the CGN profile's shape), which a `loss.*` override alone would leave on.
OBJECTIVE_OFF = {**TERMS_OFF, "loss.kl_weight": 0.0, **for_students(TERMS_OFF, IMS)}
COLOUR_FULL = {**for_students(FULL_OBJECTIVE, COLOUR), **for_students(TERMS_OFF, ("shape",))}
SHAPE_FULL = {**for_students(FULL_OBJECTIVE, ("shape",)), **for_students(TERMS_OFF, COLOUR)}
# Claim (e): "0.75 mask transparency" raised the invariant classifier's accuracy. Both readings (the mask scaled to
# 3/4, or to 1/4), on the teacher's counterfactuals and the students' alike.
TRANSPARENT = {f"transparent-{t}": {"compose.mask_transparency": t, "compose.teacher_mask_transparency": t}
               for t in (0.25, 0.75)}
PAPER_N = 100_000
# study -> variant -> overrides. A variant with no overrides is the control: the teacher's own params.
STUDIES: dict[str, dict[str, dict[str, object]]] = {
    "kl": {"kl-0": {"loss.kl_weight": 0.0}, "kl-0.5": {"loss.kl_weight": 0.5}, "kl-1": {"loss.kl_weight": 1.0}},
    "kl_place": {place: {"loss.kl_weight": 1.0, "loss.kl_on": place.removeprefix("kl-")}
                 for place in ("kl-features", "kl-last_layer", "kl-pixels")},
    # The shape student's own pixel loss both ways: one of the two is the profile's (the CGN profile's is L2).
    "pixel": {"l1": {"loss.pixel": "l1"}, "l2": {"loss.pixel": "l2"}, "l2-shape": {"ims.shape.loss.pixel": "l2"},
              "l1-shape": {"ims.shape.loss.pixel": "l1"}},
    # Each student on the pixel loss alone or with the adversarial and feature terms: all four corners.
    "objective": {"pixel-only": OBJECTIVE_OFF,
                  "full": {**FULL_OBJECTIVE, "loss.kl_weight": 0.0, **for_students(FULL_OBJECTIVE, IMS)},
                  "per-mechanism": COLOUR_FULL, "shape-full": SHAPE_FULL},
    # `blur`: 0.45 px gives the double-colored teacher's masks 0.087 soft pixels (from 0.051), about what the
    # shape student on the pixel loss alone draws (0.092): do grey edges alone give counterfactuals away?
    "masks": {"none": {}, "noise": {"compose.mask_noise_std": 0.2}, "rotation": {"compose.mask_rotation": 30.0},
              "transparency": {"compose.mask_transparency": 0.5}, "blur": {"compose.mask_blur": 0.45}},
    # Do grey edges give counterfactuals away by themselves, or only against real images whose edges are crisp
    # (the CGN protocol thresholds real digits into binary masks)? Each side blurred alone, and both.
    "edges": {"crisp": {}, "blur": {"compose.mask_blur": 0.45}, "real-blur": {"evaluate.real_mask_blur": 0.45},
              "both-blur": {"compose.mask_blur": 0.45, "evaluate.real_mask_blur": 0.45}},
    "denoise": {"speckled": {"compose.mask_denoise": False}, "denoised": {"compose.mask_denoise": True}},
    "transparent": TRANSPARENT,
    # The CGN paper's classifiers trained on 100,000 counterfactuals (compose.n is 10,000 to fit a CPU): the
    # invariant classifier and claim (e) once at that size, teacher and students alike.
    "scale": {f"n-{PAPER_N}{suffix}": {"compose.n": PAPER_N, **changes}
              for suffix, changes in [("", {}), *((f"-{name}", changes) for name, changes in TRANSPARENT.items())]},
    # Data efficiency: the teacher samples per class each student learns from (held-out ones stay as they are).
    "data": {f"per-class-{n}": {"generate.per_class": n} for n in (250, 1000, 4000)},
}
PATH_KEYS = ("teacher.cgn-mnist.checkpoint", "evaluate.mnist_dir", "evaluate.textures_dir")


def teacher_params(profile: list[str], settings: list[str], root: Path = Path(".")) -> tuple[str, dict]:
    """(name, dotted overrides) of the teacher the studies run on: a profile's, then `-S key=value` pairs."""
    name = "-".join(profile) if profile else "synthetic"
    values = overrides(*profile, root=root) if profile else {}
    for pair in settings:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ParamError(f"-S {pair!r}: expected key=value")
        values[key] = yaml.safe_load(value)
    return name, {key: _absolute_outside(key, value, root) for key, value in values.items()}


def _absolute_outside(key: str, value: object, root: Path) -> object:
    if key in PATH_KEYS and value and not _in_repository(key, value, root):
        return str((root / value).resolve())
    return value


def _in_repository(key: str, value: object, root: Path) -> bool:
    """Whether `key` is a path param whose `value` (relative to `root`, or absolute) lies in the repository."""
    return key in PATH_KEYS and bool(value) and (root / str(value)).resolve().is_relative_to(root.resolve())


def copied_inputs(values: dict, root: Path = Path(".")) -> list[str]:
    """The git-ignored inputs a queued run needs copied in: the repository paths among `values`' path params."""
    return [str(value) for key, value in values.items() if _in_repository(key, value, root)]


def experiments(name: str, base: dict, studies: list[str], root: Path = Path("."), seeds: int = 1) -> dict[str, dict]:
    """Experiment name -> its full dotted overrides, one per distinct variant and seed, training runs first.

    A variant whose overrides leave the teacher's effective settings as they are is the baseline (e.g. the full
    objective on a teacher that has it for all three), and variants with equal effective settings run once, each
    with only the overrides that change something for this teacher (`needed`). With `seeds` > 1 each variant also
    runs with the next seeds (`seed` + 1, ...), named `<experiment>-seed<k>`: the report pools them
    into a mean and a spread. Each variant's merged params are checked against the schema, so a bad study fails
    here, before anything is queued."""
    defaults = yaml.safe_load((root / PARAMS_FILE).read_text())
    own = merged(defaults, nested(base))
    queued: dict[str, tuple[int, dict]] = {f"{name}-baseline": (0, base)}
    seen = [effective(own)]
    for study in studies:
        for variant, changes in STUDIES[study].items():
            params = merged(own, nested(changes))
            settings = effective(params)
            if settings not in seen:  # e.g. kl-1 and kl-features: one run
                seen.append(settings)
                queued[f"{name}-{variant}"] = (1 + keeps_students(params, own),
                                               {**base, **needed(own, changes, root)})
    first = int(own.get("seed", 0))
    return {label + (f"-seed{k}" if k else ""): ({**values, "seed": first + k} if k else values)
            for label, (_, values) in sorted(queued.items(), key=lambda item: item[1][0]) for k in range(seeds)}


def effective(params: dict) -> dict:
    """What a run computes from `params` (validated): each student's `train` and `loss` with its `ims.<im>`
    overrides laid over them, `evaluate` less what its data does not use, and every other group as it is."""
    parsed = parse(params)
    students = {im: (parsed.train_for(im).model_dump(), parsed.loss_for(im).model_dump()) for im in IMS}
    return {**parsed.model_dump(exclude={"train", "loss", "ims", "evaluate"}),
            "evaluate": parsed.evaluate.in_effect().model_dump(), "students": students}


def needed(own: dict, changes: dict, root: Path = Path(".")) -> dict:
    """`changes` less the overrides that change nothing over `own`'s effective settings. Of the two ways to say
    the rest, the one that touches the params of fewer students: a `loss.*` or `train.*` key is in every distill
    stage's params, so it would re-train a student whose own keys override it (the run-cache keys on params, not
    on what they compute). At a tie, the one in the more general keys, which reads shorter."""
    general, own_keys = _reduced(own, changes, own_first=True), _reduced(own, changes, own_first=False)
    params = distill_params(root.resolve())
    return min((general, own_keys), key=lambda kept: (len(_students_touched(kept, params)), len(kept)))


def _reduced(own: dict, changes: dict, own_first: bool) -> dict:
    """`changes` less each override (students' own `ims.*` keys first, or last) without which the effective
    settings stay those of `changes`."""
    target = effective(merged(own, nested(changes)))
    kept = dict(changes)
    for key in sorted(changes, key=lambda key: key.startswith("ims.") != own_first):
        fewer = {other: value for other, value in kept.items() if other != key}
        if effective(merged(own, nested(fewer))) == target:
            kept = fewer
    return kept


@functools.cache  # `needed` asks once per variant, and the report per table row: dvc.yaml is read once
def distill_params(root: Path) -> dict[str, list[str]]:
    """Each student's distill stage params, as dvc.yaml declares them (`ims.${key}` made that student's)."""
    stage = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["distill"]["do"]
    return {im: [param.replace("${key}", im) for param in stage["params"]] for im in IMS}


def _students_touched(changes: dict, params: dict[str, list[str]]) -> set[str]:
    """The students whose distill stage params (`distill_params`) `changes` alter."""
    return {im for im, declared in params.items() for key in changes
            if any(key == param or key.startswith(f"{param}.") for param in declared)}


DOWNSTREAM = ("compose", "evaluate")  # the param groups that no student's training reads


def keeps_students(params: dict, own: dict) -> bool:
    """Whether only downstream params differ from the baseline's: the run restores the baseline's students."""
    return all(params[group] == own[group] for group in own if group not in DOWNSTREAM)


def queue_commands(queued: dict[str, dict], root: Path = Path(".")) -> list[list[str]]:
    present = params_keys(root)
    return [["dvc", "exp", "run", "--queue", "-n", name,
             *(part for path in copied_inputs(values, root) for part in ("-C", path)),
             *(part for key, value in values.items() for part in ("-S", override(key, value, present)))]
            for name, values in queued.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.studies", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", nargs="+", default=[], metavar="NAME", help="profile and variant")
    parser.add_argument("--study", action="append", choices=sorted(STUDIES), help="default: all of them")
    parser.add_argument("-S", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, default=1, choices=range(1, 11), metavar="N",
                        help="runs per variant, seeds seed .. seed+N-1 (the report gives mean and spread)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, queue nothing")
    args = parser.parse_args(argv)
    try:
        name, base = teacher_params(args.profile, args.settings)
        commands = queue_commands(experiments(name, base, args.study or list(STUDIES), seeds=args.seeds))
    except ParamError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for command in commands:
        print(shlex.join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
