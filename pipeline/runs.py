"""The studies' finished experiments as small committed records (`results/runs/`), so that a report outlives the
machine that ran them.

DVC keeps an experiment in the git refs and the cache of the machine that ran it: a fresh clone, or the next
machine, has neither. `python -m pipeline.report` therefore first archives every finished experiment it can see
into one record per run, `<name>@<rev7>.json` (its params, metrics files, fidelity curves and the time it
finished) with a preview of its counterfactual grid beside it as `<name>@<rev7>.jpg` (half size, JPEG: ~50 KB
instead of the PNG's ~170, as large as the report shows it), then reports from the records alone.
Commit them: runs made on several machines and in several sessions add up in one report. A record is written once
(keyed by the experiment's commit) and never changed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dvc.api
import dvc.exceptions
import yaml
from PIL import Image

from pipeline.params import PARAMS_FILE
from skdcgn.mechanisms import IMS
from skdcgn.metrics.fidelity import HEADLINE
from skdcgn.utils.atomic import atomic_file

RUNS = Path("results/runs")
STUDENT, EVALUATE, REFERENCE = ("data/metrics/students/{im}/live/metrics.json", "data/evaluate/metrics.json",
                                "data/reference/metrics.json")
METRICS_FILES = (*(STUDENT.format(im=im) for im in IMS), EVALUATE, REFERENCE)
GRID = "data/metrics/counterfactuals/grid.png"
PREVIEW_QUALITY = 85


@dataclass(frozen=True)
class Run:
    """One experiment, or the runs of one variant over several seeds pooled: then `metrics` holds their means,
    `spread` their sample standard deviations, and `members` the runs themselves (ordered by seed)."""

    name: str
    rev: str
    params: dict
    metrics: dict  # metrics file -> its (nested) values
    age: int = 0  # 0 the newest finished: the newest run wins where several match
    members: tuple = ()
    spread: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)  # student -> [(step, headline fidelity on held-out samples)]
    grid: Path | None = None  # a preview of its counterfactual grid

    @property
    def runs(self) -> tuple:
        """The single runs behind this one: its members, or itself."""
        return self.members or (self,)

    def student(self, im: str) -> dict:
        return self.metrics.get(STUDENT.format(im=im), {})

    def final(self, im: str) -> float | None:
        return self.student(im).get("heldout", {}).get(HEADLINE[im])


def pooled(runs: list[Run]) -> Run:
    """Runs of one variant that differ in their seed alone, as one Run of their means and spreads."""
    if len(runs) == 1:
        return runs[0]
    trees = [run.metrics for run in runs]
    return dataclasses.replace(runs[0], metrics=_leafwise(statistics.fmean, trees),
                               spread=_leafwise(statistics.stdev, trees), members=tuple(runs),
                               age=min(run.age for run in runs))


def _leafwise(reduce, trees: list[dict]) -> dict:
    """`reduce` over the numbers found at the same place in every tree; other leaves are left out."""
    out = {}
    for key, value in trees[0].items():
        values = [tree.get(key) for tree in trees]
        if all(isinstance(v, dict) for v in values):
            out[key] = _leafwise(reduce, values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = reduce(values)
    return out


def archive(rows: list[dict], runs_dir: Path = RUNS, open_rev=dvc.api.DVCFileSystem, finished=None) -> list[Path]:
    """Write a record for each finished experiment among `dvc.api.exp_show` rows that has none yet; the records
    written. Each run's files are read whole at its own commit (`open_rev(rev)` gives a file system of it):
    exp_show flattens nested metrics into columns. Queued, running and failed runs are left out (a running one
    shows the metrics of whatever stage it has reached), as are commits of the branch itself."""
    finished = finished or commit_time
    runs_dir.mkdir(parents=True, exist_ok=True)
    done = {path.stem.rpartition("@")[2] for path in runs_dir.glob("*.json")}
    written = []
    for row in rows:
        name, rev = row.get("Experiment"), row.get("rev", "")
        if not name or row.get("State") not in (None, "Success") or rev[:7] in done:
            continue
        files = open_rev(rev=rev)
        metrics = {path: json.loads(files.read_text(path)) for path in METRICS_FILES if files.exists(path)}
        if not metrics:
            continue
        record = {"name": name, "rev": rev, "finished": finished(rev),
                  "params": yaml.safe_load(files.read_text(PARAMS_FILE.name)), "metrics": metrics,
                  "curves": {im: curve(files, im) for im in IMS if files.exists(STUDENT.format(im=im))}}
        stem = f"{name}@{rev[:7]}"  # names hold dots (kl-0.5): no Path.with_suffix on it
        if files.exists(GRID):
            with atomic_file(runs_dir / f"{stem}.jpg") as partial:
                partial.write_bytes(preview(files.read_bytes(GRID)))
        # The JSON last: a record whose grid failed to write is not taken for complete.
        with atomic_file(runs_dir / f"{stem}.json") as partial:
            partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        done.add(rev[:7])
        written.append(runs_dir / f"{stem}.json")
    return written


def preview(png: bytes) -> bytes:
    grid = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    grid.resize((grid.width // 2, grid.height // 2), Image.BOX).save(out, format="JPEG", quality=PREVIEW_QUALITY)
    return out.getvalue()


def commit_time(rev: str) -> int:
    """When an experiment finished: its commit's time (exp_show gives it only as a clock time, '11:04 PM')."""
    out = subprocess.run(["git", "show", "-s", "--format=%ct", rev], check=True, capture_output=True, text=True)
    return int(out.stdout)


def curve(files, im: str) -> list[list[float]]:
    """(step, headline fidelity) of a run's student, from its fidelity.tsv (step, student, baseline); a run made
    before that file existed has the curve in a DVCLive TSV (step, value)."""
    try:
        text = files.read_text(f"data/metrics/students/{im}/fidelity.tsv")
    except (FileNotFoundError, dvc.exceptions.PathMissingError):
        text = files.read_text(f"data/metrics/students/{im}/live/plots/metrics/heldout/{HEADLINE[im]}.tsv")
    rows = [line.split("\t") for line in text.strip().splitlines()[1:]]
    return [[int(row[0]), float(row[1])] for row in rows]


def load(runs_dir: Path = RUNS) -> dict[str, Run]:
    """Name -> Run of every record, the newest finished first. A name queued again is its newest run; the older
    ones stay as `<name>@<rev7>`, for the studies made against an earlier baseline."""
    records = [(json.loads(path.read_text()), path) for path in runs_dir.glob("*.json")]
    records.sort(key=lambda item: (-item[0]["finished"], item[0]["name"], item[0]["rev"]))
    runs: dict[str, Run] = {}
    for age, (record, path) in enumerate(records):
        name, rev = record["name"], record["rev"]
        grid = path.with_suffix(".jpg")
        curves = {im: [(int(step), value) for step, value in points] for im, points in record["curves"].items()}
        runs[f"{name}@{rev[:7]}" if name in runs else name] = Run(
            name, rev, record["params"], record["metrics"], age, curves=curves, grid=grid if grid.exists() else None)
    return runs
