"""The whole pipeline, end to end, at a tiny size, in a temporary git + DVC copy of the project."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["skdcgn", "pipeline", "dvc.yaml", "params.yaml", ".dvc/config", ".dvcignore", ".gitignore"]
TINY = {
    "generate": {"per_class": 16, "heldout_per_class": 4, "shard_size": 64, "batch_size": 50},
    "train": {"steps": 12, "batch_size": 16, "log_every": 4, "eval_every": 8,
              "student_widths": [16, 16, 8, 8], "disc_widths": [8, 16, 32]},
    "ims": {"shape": {"steps": 16}, "texture": {"steps": 8}, "background": {"steps": 8}},
    "compose": {"n": 120, "shard_size": 50, "batch_size": 40, "grid_columns": 4},
    "evaluate": {"test_size": 60, "epochs": 1},
}
STAGES = {f"{stage}@{im}" for stage in ("generate", "distill") for im in ("shape", "texture", "background")}
STAGES |= {"compose", "reference", "evaluate"}


def merge(base: dict, override: dict) -> dict:
    return {k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in {**base, **override}.items()}


def run(repo: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SKDCGN_THREADS": "1"}
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def dvc(repo: Path, *args: str) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(repo, "git", "init", "-q")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny")
    repo.joinpath("first_repro.log").write_text(dvc(repo, "repro"))
    return repo


def test_repro_runs_every_stage_and_writes_every_output(repo):
    assert stages_run((repo / "first_repro.log").read_text()) == STAGES
    for path in ["data/students/shape/student.pt", "data/students/texture/grid.png", "data/counterfactuals/grid.png",
                 "data/counterfactuals/shards/dataset.json", "data/evaluate/confusion.csv"]:
        assert (repo / path).is_file(), path
    assert not list((repo / "data").rglob(".*.partial")), "a partial output survived a successful run"


def test_metrics_show_reports_fidelity_baselines_sizes_and_accuracies(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    files = {path: entry["data"] for path, entry in shown[""]["data"].items()}
    shape = files["data/students/shape/live/metrics.json"]
    assert {"l1", "psnr", "ssim", "mask_iou", "mask_mean"} <= set(shape["heldout"])
    assert set(shape["baseline"]) == set(shape["heldout"])
    assert shape["parameters"]["student"] > 0 and shape["parameters"]["teacher"] > 0
    assert set(files["data/students/texture/live/metrics.json"]["heldout"]) == {"l1", "psnr", "ssim"}
    assert set(files["data/reference/metrics.json"]["accuracy"]) == {"teacher", "factual"}
    evaluate = files["data/evaluate/metrics.json"]
    assert 0 <= evaluate["accuracy"]["student"] <= 1 and evaluate["student_over_teacher"] >= 0


def test_plots_render(repo):
    out = repo / "plots_html"
    dvc(repo, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "heldout" in html and "confusion" in html.lower()


def test_second_repro_does_nothing(repo):
    assert stages_run(dvc(repo, "repro")) == set()


def test_regenerating_gives_byte_identical_shards(repo):
    before = digests(repo / "data/teacher/texture")
    run(repo, sys.executable, "-m", "pipeline.generate", "texture")
    assert digests(repo / "data/teacher/texture") == before
    assert "up to date" in dvc(repo, "status")


def test_cli_validates_and_samples(repo):
    out = run(repo, sys.executable, "-m", "skdcgn", "validate", "data/teacher/shape/train", "data/counterfactuals/shards")
    assert "ok data/teacher/shape/train: 160 samples" in out
    run(repo, sys.executable, "-m", "skdcgn", "sample", "--n", "16", "--columns", "4", "--grid", "cli_grid.png")
    assert (repo / "cli_grid.png").stat().st_size > 0


def test_kl_weight_experiment_reruns_only_what_depends_on_it(repo):
    changed = stages_run(dvc(repo, "exp", "run", "-S", "loss.kl_weight=0.5"))
    assert changed == {"distill@shape", "distill@texture", "distill@background", "compose", "evaluate"}
    # Going back to the committed value restores every output from the run-cache without training.
    assert stages_run(dvc(repo, "exp", "run", "-S", "loss.kl_weight=0.0")) == set()
