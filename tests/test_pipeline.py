"""The whole pipeline, end to end, at a tiny size, in a temporary git + DVC copy of the project."""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from imagenet_checkpoints import write_tiny_checkpoint
from test_custom_teacher import STRIPES
from pipeline.profile import merged, nested, overrides
from skdcgn.mnist.idx import load_mnist_test
from skdcgn.shards.format import read_meta
from skdcgn.shards.reading import open_dataset

# Every test here runs DVC stages in a scratch copy of the project.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["skdcgn", "pipeline", "teachers", "dvc.yaml", "params.yaml", ".dvc/config", ".dvc/plots",
                 ".dvcignore", ".gitignore"]
TINY = {
    "generate": {"per_class": 16, "heldout_per_class": 4, "shard_size": 64, "batch_size": 50},
    "train": {"steps": 12, "batch_size": 16, "log_every": 4, "eval_every": 8,
              "student_widths": [16, 16, 8, 8], "disc_widths": [8, 16, 32]},
    "ims": {"shape": {"steps": 16}, "texture": {"steps": 8}, "background": {"steps": 8}},
    "compose": {"n": 120, "shard_size": 50, "batch_size": 40, "grid_columns": 4},
    "evaluate": {"test_size": 60, "epochs": 1},
}
# The real double-colored teacher through its profile (profiles/cgn-mnist.yaml), then the tiny sizes, then where
# the real digits are here: all but the first 120 test digits (the factual set) are the test set.
CGN_CHECKPOINT = "teachers/cgn-mnist/double_colored_mnist.pth"
CGN_FACTUAL = 120
STAGES = {f"{stage}@{im}" for stage in ("generate", "distill") for im in ("shape", "texture", "background")}
STAGES |= {"compose", "reference", "evaluate"}
DVC_OUTPUTS = {"generate": "data/teacher", "distill": "data/students"}


def stage_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SKDCGN_THREADS": "1",
            **extra}


def run(repo: Path, *args: str, **env: str) -> str:
    result = subprocess.run(args, cwd=repo, env=stage_env(**env), capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def dvc(repo: Path, *args: str, **env: str) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args, **env)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def tiny_project(repo: Path, params: dict, profile: dict | None = None) -> Path:
    """The project's files (only what git tracks there) and params.yaml (a profile's overrides, then the tiny
    sizes, then `params`); one `dvc repro` run."""
    for name in PROJECT_FILES:
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pth"),
                            dirs_exist_ok=True)
        else:
            shutil.copy(source, target)
    base = merged(yaml.safe_load((ROOT / "params.yaml").read_text()), profile or {})
    params = merged(merged(base, TINY), params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(repo, "git", "init", "-q")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny")
    repo.joinpath("first_repro.log").write_text(dvc(repo, "repro"))
    repo.joinpath("first_repro.json").write_text(json.dumps(digests(repo / "data")))
    # As a user commits a run: dvc.lock and the metrics and plots that git tracks.
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "dvc.lock", "data")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("project"), {})


@pytest.fixture(scope="module")
def cgn_repo(tmp_path_factory, real_data) -> Path:
    """The tiny pipeline on the real double-colored teacher, linked into the copy's teachers/."""
    repo = tmp_path_factory.mktemp("cgn-project")
    (repo / CGN_CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    (repo / CGN_CHECKPOINT).symlink_to(real_data.cgn_mnist / "double_colored_mnist.pth")
    here = {"evaluate": {"mnist_dir": str(real_data.mnist), "test_size": cgn_test_size(real_data)}}
    return tiny_project(repo, here, profile=nested(overrides("cgn-mnist", "double_colored", ROOT)))


def cgn_test_size(real_data) -> int:
    return len(load_mnist_test(real_data.mnist, download=False)[1]) - CGN_FACTUAL


def metrics(repo: Path) -> dict[str, dict]:
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    return {path: entry["data"] for path, entry in shown[""]["data"].items()}


def test_repro_runs_every_stage_and_writes_every_output(repo):
    assert stages_run((repo / "first_repro.log").read_text()) == STAGES
    for path in ["data/students/shape/student.pt", "data/metrics/students/texture/grid.png",
                 "data/metrics/counterfactuals/grid.png",
                 "data/counterfactuals/shards/dataset.json", "data/evaluate/confusion.csv"]:
        assert (repo / path).is_file(), path
    assert not list((repo / "data").rglob(".*.partial")), "a partial output survived a successful run"


def test_metrics_show_reports_fidelity_baselines_sizes_and_accuracies(repo):
    files = metrics(repo)
    shape = files["data/metrics/students/shape/live/metrics.json"]
    assert {"l1", "psnr", "ssim", "mask_iou", "mask_mean"} <= set(shape["heldout"])
    assert set(shape["baseline"]) == set(shape["heldout"]) == set(shape["train_samples"])
    assert shape["parameters"]["student"] > 0 and shape["parameters"]["teacher"] > 0
    assert shape["steps_to_95pct_gain"] in (8, 16)  # an eval step: eval_every 8 of 16 shape steps
    assert set(files["data/metrics/students/texture/live/metrics.json"]["heldout"]) == {"l1", "psnr", "ssim"}
    reference = files["data/reference/metrics.json"]
    assert set(reference["teacher"]) == set(reference["factual"]) == {"accuracy", "accuracy_same_colour"}
    evaluate = files["data/evaluate/metrics.json"]
    assert 0 <= evaluate["student"]["accuracy"] <= 1
    # The same realism test for the teacher's counterfactuals and the students'.
    assert set(evaluate["real_vs_counterfactual"]) == set(reference["real_vs_counterfactual"]) == {
        "train_accuracy", "test_accuracy"}


def test_each_student_is_an_artifact_with_a_model_card_whose_example_runs(repo, tmp_path):
    """A version of a student, tagged as docs/getting-started.md says, is fetched by `dvc artifacts get`: the checkpoint and
    its card. The card's figures are the run's own, and its Python example runs as written, from that folder."""
    fetched = tmp_path / "student-shape"
    run(repo, "git", "tag", "-a", "student-shape@v1.0.0", "-m", "student-shape v1.0.0")
    try:
        dvc(tmp_path, "artifacts", "get", str(repo), "student-shape", "-o", str(fetched))
    finally:
        run(repo, "git", "tag", "-d", "student-shape@v1.0.0")
    card = (fetched / "MODEL_CARD.md").read_text()
    shape = metrics(repo)["data/metrics/students/shape/live/metrics.json"]
    assert f"| mask_iou | {shape['heldout']['mask_iou']:.4g} | {shape['baseline']['mask_iou']:.4g} |" in card
    assert f"{shape['parameters']['student']:,} parameters" in card
    example = card.split("```python\n")[1].split("```")[0]
    run(fetched, sys.executable, "-c", example + "\nassert images.shape == (8, 1, 32, 32), images.shape")


def dvc_json(repo: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=repo, env=stage_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_a_fresh_clone_shows_the_committed_metrics_and_plots_without_the_cache(repo, tmp_path):
    """Metrics and plots travel with git (`cache: false`): a clone with no DVC cache and no remote shows the
    committed numbers, compares them with an earlier commit, and renders every plot."""
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    committed = {path: json.loads(run(repo, "git", "show", f"HEAD:{path}")) for path in metrics(clone)}
    assert metrics(clone) == committed
    assert set(committed) == {f"data/metrics/students/{im}/live/metrics.json"
                              for im in ("shape", "texture", "background")} | {
        "data/reference/metrics.json", "data/evaluate/metrics.json"}
    diff = dvc_json(clone, "metrics", "diff", "HEAD~1")  # HEAD~1 has no metrics yet: DVC says so on stderr
    shape = diff["data/metrics/students/shape/live/metrics.json"]["heldout.mask_iou"]
    assert shape["new"] == committed["data/metrics/students/shape/live/metrics.json"]["heldout"]["mask_iou"]
    shown = [entry["data"]["metrics"] for entry in dvc_json(clone, "exp", "show")]
    assert all(shown) and shown[0]["data/metrics/students/shape/live/metrics.json"]["data"]["heldout"]["mask_iou"] \
        == shape["new"]
    plots = dvc_json(clone, "plots", "show")
    assert not plots.get("errors")
    # Per student three plots: held-out fidelity with its baseline, the losses together, the grid.
    assert {path for path in plots["data"] if path.startswith("data/metrics/students/texture/")} == {
        f"data/metrics/students/texture/{name}" for name in ("fidelity.tsv", "losses.tsv", "grid.png")}
    assert "data/metrics/counterfactuals/grid.png" in plots["data"]
    assert not (clone / "data/students").exists()  # the students themselves stay in the DVC cache


def test_plots_render(repo):
    out = repo / "plots_html"
    dvc(repo, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "held-out fidelity" in html and "training losses" in html and "confusion" in html.lower()


def test_second_repro_does_nothing(repo):
    assert stages_run(dvc(repo, "repro")) == set()


def test_regenerating_gives_byte_identical_shards(repo):
    before = digests(repo / "data/teacher/texture")
    run(repo, sys.executable, "-m", "pipeline.generate", "texture")
    assert digests(repo / "data/teacher/texture") == before
    assert "up to date" in dvc(repo, "status")


def test_generate_in_parts_gives_the_bytes_of_one_process(repo):
    """SKDCGN_PROCESSES=2: two part processes, then the stage joins them; SKDCGN_PART=p/P: parts started one by
    one, as on the machines of a cluster, then joined by a resumed run. Same bytes as one process each time."""
    output = repo / "data/teacher/texture"
    before = digests(output)
    log = run(repo, sys.executable, "-m", "pipeline.generate", "texture", SKDCGN_PROCESSES="2")
    assert "generate texture train part 1/2" in log
    assert digests(output) == before
    for part in ("1/2", "0/2"):
        run(repo, sys.executable, "-m", "pipeline.generate", "texture", SKDCGN_PART=part)
    assert digests(output) == before  # the parts write into the partial output only
    assert (repo / "data/teacher/.texture.partial/.train.partial/part-1-of-2.sums.npz").is_file()
    assert "resuming" in run(repo, sys.executable, "-m", "pipeline.generate", "texture", SKDCGN_RESUME="1")
    assert digests(output) == before
    assert not (repo / "data/teacher/.texture.partial").exists()
    assert "up to date" in dvc(repo, "status")


@pytest.mark.parametrize("part, line", [
    ("2/2", "error: part 2/2; allowed: p/P with 0 <= p < P"),
    ("0/2", "error: data/teacher/.texture.partial holds a run of other params or code; allowed: the parts of one "
            "run, all of one P. Delete it, then start the parts again")])
def test_a_bad_part_stops_generate_with_one_line_and_touches_nothing(repo, part, line):
    key = repo / "data/teacher/.texture.partial/.resume/key"
    key.parent.mkdir(parents=True)
    key.write_text("a run of other params")
    before = digests(repo / "data")
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline.generate", "texture"], cwd=repo,
                                capture_output=True, text=True, env=stage_env(SKDCGN_PART=part))
        assert (result.returncode, result.stderr.splitlines()) == (2, [line])
        assert digests(repo / "data") == before
    finally:
        shutil.rmtree(repo / "data/teacher/.texture.partial")


def test_parts_of_another_count_are_refused_with_one_line(repo):
    partial = repo / "data/teacher/.texture.partial"
    try:
        run(repo, sys.executable, "-m", "pipeline.generate", "texture", SKDCGN_PART="0/2")
        before = digests(repo / "data")
        result = subprocess.run([sys.executable, "-m", "pipeline.generate", "texture"], cwd=repo,
                                capture_output=True, text=True, env=stage_env(SKDCGN_PART="1/3"))
        assert (result.returncode, result.stderr.splitlines()) == (2, [
            "error: data/teacher/.texture.partial holds parts of P=2; allowed: the parts of one run, all of one P. "
            "Delete it, then start the parts again"])
        assert digests(repo / "data") == before
    finally:
        shutil.rmtree(partial)


def test_while_a_part_runs_the_same_part_and_a_whole_run_are_refused_with_one_line(repo):
    """Two writers of one shard would corrupt it: the output's lock lets in one process per part, or one run."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; from skdcgn.utils.locks import OutputLock; "
                               "OutputLock('data/teacher/.texture.lock').part(0); print('held', flush=True); "
                               "time.sleep(60)"], cwd=repo, env=stage_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = digests(repo / "data")
        for part, holder_is in (("", "another run or a part is writing it"),
                                ("0/2", "part 0 is already running, or a run that joins the parts")):
            result = subprocess.run([sys.executable, "-m", "pipeline.generate", "texture"], cwd=repo,
                                    capture_output=True, text=True, env=stage_env(SKDCGN_PART=part))
            assert (result.returncode, result.stderr.splitlines()) == (2, [
                f"error: data/teacher/.texture.lock is held: {holder_is}; allowed: one process per part, and a run "
                f"alone"])
        assert digests(repo / "data") == before
    finally:
        holder.kill()
        holder.wait()


def test_cli_validates_and_samples(repo):
    out = run(repo, sys.executable, "-m", "skdcgn", "validate", "data/teacher/shape/train", "data/counterfactuals/shards")
    assert "ok data/teacher/shape/train: 160 samples" in out
    run(repo, sys.executable, "-m", "skdcgn", "sample", "--n", "16", "--columns", "4", "--grid", "cli_grid.png",
        "--texture-shift", "cyclic")
    assert (repo / "cli_grid.png").stat().st_size > 0


def test_cli_samples_a_class_of_its_own_per_mechanism(repo):
    """"Digit 3, texture of 7, background of 1": the classes asked for are the classes stored with each image;
    a mechanism given no class draws its own, and the noise is what it is without the option."""
    command = [sys.executable, "-m", "skdcgn", "sample", "--n", "12", "--device", "cpu"]
    run(repo, *command, "--shards", "cf", "--shape-class", "3", "--texture-class", "7", "--background-class", "1")
    run(repo, *command, "--shards", "cf_shape", "--shape-class", "3")
    run(repo, *command, "--shards", "cf_free")
    fixed, shape_only, free = (open_dataset(repo / name).load() for name in ("cf", "cf_shape", "cf_free"))
    assert [fixed[f"y_{im}"].unique().tolist() for im in ("shape", "texture", "background")] == [[3], [7], [1]]
    assert fixed["label"].unique().tolist() == [3]
    assert torch.equal(shape_only["y_texture"], free["y_texture"]) and len(free["y_texture"].unique()) > 1
    assert torch.equal(fixed["z_texture"], free["z_texture"])
    refused = subprocess.run([*command, "--grid", "g.png", "--texture-class", "10"], cwd=repo, capture_output=True,
                             text=True, env=stage_env())
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: texture class 10; allowed: 0 .. 9 (the "
                                                               "students' classes)")
    assert not (repo / "g.png").exists()


def test_shards_and_students_move_to_another_machine_through_a_dvc_remote(repo, tmp_path):
    """`dvc push` to a local-folder remote; a fresh clone elsewhere `dvc pull`s every output, byte for byte."""
    remote = tmp_path / "remote"
    dvc(repo, "remote", "add", "--local", "-d", "store", str(remote))
    dvc(repo, "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "remote", "add", "--local", "-d", "store", str(remote))
    dvc(clone, "pull")
    outputs = {path: digest for path, digest in digests(repo / "data").items() if not path.endswith(".lock")}
    assert digests(clone / "data") == outputs  # generate's lock files stay where they are: they are no output
    assert "up to date" in dvc(clone, "status")


def test_distill_trains_on_two_data_parallel_processes_from_streamed_shards(repo):
    """SKDCGN_PROCESSES=2: the stage hands itself to torchrun, 2 gloo ranks on the CPU, each streaming its own
    shards (the set-up for data too large to hold); rank 0 alone writes."""
    params_file = repo / "params.yaml"
    committed = params_file.read_text()
    params = yaml.safe_load(committed)
    params["ims"]["background"]["data"] = "stream"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    shown = repo / "data/metrics/students/background"
    kept = shutil.copytree(shown, repo.parent / "one-process-metrics")
    try:
        log = run(repo, sys.executable, "-m", "pipeline.distill", "background", SKDCGN_PROCESSES="2")
    finally:
        params_file.write_text(committed)
    assert log.count("distill background: 8/8") == 1  # one rank reports, not two
    assert (repo / "data/students/background/student.pt").is_file()
    assert "heldout" in json.loads((repo / "data/metrics/students/background/live/metrics.json").read_text())
    assert not (repo / "data/students/.background.partial").exists()
    uneven = subprocess.run([sys.executable, "-m", "pipeline.distill", "background"], cwd=repo, capture_output=True,
                            text=True, env=stage_env(SKDCGN_PROCESSES="3"))
    assert uneven.returncode == 2
    assert uneven.stderr.splitlines() == ["error: batch_size 16 does not split evenly over SKDCGN_PROCESSES=3 "
                                          "processes; allowed: a multiple of 3"]
    # The one-process student (from the cache) and its metrics (tracked by git), for the tests after.
    dvc(repo, "checkout", "--force", "data/students/background")
    shutil.rmtree(shown)
    kept.rename(shown)
    assert "up to date" in dvc(repo, "status")


def test_repro_from_scratch_gives_the_same_bytes_everywhere(repo):
    """Shards, student weights, grids, metrics and curves: same params, same bytes (CPU), whether the stages ran
    one after another (the fixture's `dvc repro`) or several at once (`make repro`'s pipeline.repro)."""
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    output = run(repo, sys.executable, "-m", "pipeline.repro", "--jobs", "3")
    assert stages_run(output) == STAGES
    assert re.search(r"^start \S+ \(3 running\)$", output, re.MULTILINE), output[-3000:]
    assert "up to date" in dvc(repo, "status")
    first = json.loads((repo / "first_repro.json").read_text())
    again = digests(repo / "data")
    assert again.keys() == first.keys()
    assert [path for path in first if first[path] != again[path]] == []


def test_a_failing_stage_stops_the_parallel_repro_before_what_needs_it(repo):
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("  shard_size: 64\n", "  shard_size: 0\n", 1))
    try:
        result = subprocess.run([sys.executable, "-m", "pipeline.repro", "--jobs", "2"], cwd=repo, env=stage_env(),
                                capture_output=True, text=True)
    finally:
        (repo / "params.yaml").write_text(params)
        # DVC removes a stage's outputs before it runs the stage's command; they are in the cache.
        dvc(repo, "checkout")
    assert result.returncode == 255, result.stdout[-2000:]  # what `dvc repro` exits with when a stage fails
    assert "error: generate.shard_size: 0 is out of range" in result.stdout  # the stage's own line
    failed = re.findall(r"^error: stage (\S+) failed \(exit 255\); not run: (.*)$", result.stderr, re.MULTILINE)
    assert len(failed) == 1 and failed[0][0].startswith("generate@"), result.stderr
    assert {"compose", "evaluate"} <= set(failed[0][1].split(", ")), result.stderr
    assert "Running stage 'compose'" not in result.stdout
    assert "up to date" in dvc(repo, "status")  # dvc.lock was not touched


def test_a_mask_change_reruns_only_compose_and_evaluate(repo):
    changed = stages_run(dvc(repo, "exp", "run", "-S", "compose.mask_rotation=30"))
    assert changed == {"compose", "evaluate"}
    counterfactuals = read_meta(repo / "data/counterfactuals/shards")
    assert "mask_angle" in counterfactuals["arrays"] and counterfactuals["info"]["mask_changes"]["rotation"] == 30
    assert stages_run(dvc(repo, "exp", "run", "-S", "compose.mask_rotation=0.0")) == set()


def test_denoising_and_counterfactuals_per_shape_change_teacher_and_students_alike(repo):
    changed = stages_run(dvc(repo, "exp", "run", "-S", "compose.mask_denoise=true", "-S", "compose.per_shape=4"))
    assert changed == {"compose", "reference", "evaluate"}
    assert read_meta(repo / "data/counterfactuals/shards")["info"]["mask_changes"]["denoise"] is True
    assert json.loads((repo / "data/evaluate/metrics.json").read_text())["per_shape"] == 4
    back = dvc(repo, "exp", "run", "-S", "compose.mask_denoise=false", "-S", "compose.per_shape=1")
    assert stages_run(back) == set()


def test_report_turns_named_experiments_into_tables_and_figures(repo):
    dvc(repo, "exp", "run", "-n", "synthetic-baseline")
    dvc(repo, "exp", "run", "-n", "synthetic-rotation", "-S", "compose.mask_rotation=30.0")
    dvc(repo, "exp", "run", "-S", "compose.mask_rotation=0.0")  # the workspace back as it was
    run(repo, sys.executable, "-m", "pipeline.report", "--teacher", "synthetic")
    report = (repo / "results/report.md").read_text()
    realism = json.loads((repo / "data/evaluate/metrics.json").read_text())["real_vs_counterfactual"]
    assert f"| none | `(baseline)` | {realism['train_accuracy']:.3f} | {realism['test_accuracy']:.3f} |" in report
    assert "| rotation | `compose.mask_rotation=30.0` |" in report and "99.1 / 13.51" in report
    assert "dvc exp run -n synthetic-rotation -S compose.mask_rotation=30.0" in report
    assert {p.name for p in (repo / "results/figures").iterdir()} == {"synthetic-curves.png", "synthetic-masks.png"}
    # Each finished experiment is a record beside its grid, and the report needs nothing else.
    records = {p.name.partition("@")[0] for p in (repo / "results/runs").glob("*.json")}
    assert {"synthetic-baseline", "synthetic-rotation"} <= records
    assert len(list((repo / "results/runs").glob("synthetic-rotation@*.jpg"))) == 1
    again = run(repo, sys.executable, "-m", "pipeline.report", "--teacher", "synthetic")
    assert "recorded 0 new runs" in again and (repo / "results/report.md").read_text() == report


def append_comment(path: Path) -> str:
    """Append a comment to a source file (no behaviour changes); returns the text before, to restore it."""
    text = path.read_text()
    path.write_text(text + "# an edit\n")
    return text


def test_editing_a_module_no_stage_imports_leaves_every_stage_up_to_date(repo):
    before = append_comment(repo / "skdcgn/cli.py")
    try:
        assert "Data and pipelines are up to date" in dvc(repo, "status")
    finally:
        (repo / "skdcgn/cli.py").write_text(before)


def test_editing_the_students_code_reruns_distill_and_what_follows_but_not_generate(repo):
    before = append_comment(repo / "skdcgn/distillation/students.py")
    try:
        changed = stages_run(dvc(repo, "repro"))
    finally:
        (repo / "skdcgn/distillation/students.py").write_text(before)
    assert {"distill@shape", "distill@texture", "distill@background", "compose"} <= changed
    assert not changed & {"generate@shape", "generate@texture", "generate@background", "reference"}
    assert stages_run(dvc(repo, "repro")) == set()  # back as it was: restored from the run-cache


def test_compose_depends_on_the_students_weights_not_their_model_cards(repo):
    # A card that says more (a new metric, say) is no reason to draw the counterfactuals again.
    card = repo / "data/students/shape/MODEL_CARD.md"
    text = card.read_text()
    card.unlink()  # a new file: the cached one may be linked into the DVC cache
    card.write_text(text + "\nOne more metric.\n")
    try:
        assert "changed outs" in dvc(repo, "status", "distill@shape")
        assert "up to date" in dvc(repo, "status", "compose")
    finally:
        dvc(repo, "checkout", "--force", "data/students/shape")
    assert "up to date" in dvc(repo, "status")


def test_a_new_compose_rule_re_runs_neither_generate_nor_distill(repo):
    # Every stage validates the whole params.yaml, yet depends only on the rules of the sections it reads.
    schema = repo / "skdcgn/settings/compose.py"
    committed = schema.read_text()
    schema.write_text(committed + "# a new compose knob's rule\n")
    try:
        changed = set(dvc_json(repo, "status"))
    finally:
        schema.write_text(committed)
    assert changed == {"compose", "reference", "evaluate"}


def test_kl_weight_experiment_reruns_only_what_depends_on_it(repo):
    changed = stages_run(dvc(repo, "exp", "run", "-S", "loss.kl_weight=0.5"))
    assert changed == {"distill@shape", "distill@texture", "distill@background", "compose", "evaluate"}
    # Going back to the committed value restores every output from the run-cache without training.
    assert stages_run(dvc(repo, "exp", "run", "-S", "loss.kl_weight=0.0")) == set()


def test_one_mechanisms_own_objective_reruns_only_its_student(repo):
    """`ims.<im>.loss` overrides the objective for one student: only that student trains again, without a
    discriminator when its objective needs none, and its model card says so."""
    params = (repo / "params.yaml").read_text()
    changed = stages_run(dvc(repo, "exp", "run", "-S", "+ims.shape.loss.adversarial_weight=0.0",
                             "-S", "+ims.shape.loss.feature_weight=0.0"))
    try:
        assert changed == {"distill@shape", "compose", "evaluate"}
        shape = metrics(repo)["data/metrics/students/shape/live/metrics.json"]
        assert "discriminator" not in shape["train"]["loss"]
        assert "adversarial_weight 0.0, feature_weight 0.0" in (repo / "data/students/shape/MODEL_CARD.md").read_text()
    finally:
        (repo / "params.yaml").write_text(params)
    assert stages_run(dvc(repo, "repro")) == set()  # back to the committed params: restored from the run-cache


# The ImageNet CGN's 1,000 classes, at 64x64 (one sample per class; 256x256 costs the CPU minutes per held-out
# evaluation of 1,000 images: tests/test_distill_loop.py trains a 256x256 student on a few): students with five
# widths (4x4 up to 64x64).
LARGE = {"teacher": {"synthetic": {"num_classes": 1000, "image_size": 64}},
         "generate": {"per_class": 1, "heldout_per_class": 1, "shard_size": 400, "batch_size": 250},
         "train": {"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 2,
                   "student_widths": [16, 16, 8, 8, 8], "disc_widths": [8, 16, 32]},
         "ims": {"shape": {"steps": 4}, "texture": {"steps": 4}, "background": {"steps": 4}},
         "compose": {"n": 40, "shard_size": 20, "batch_size": 20},
         "evaluate": {"test_size": 40, "epochs": 1}}


@pytest.fixture(scope="module")
def large_repo(tmp_path_factory) -> Path:
    return tiny_project(tmp_path_factory.mktemp("large-project"), LARGE)


def test_many_classes_and_large_images_run_the_whole_pipeline(large_repo):
    assert stages_run((large_repo / "first_repro.log").read_text()) == STAGES
    meta = read_meta(large_repo / "data/teacher/texture/train")
    assert meta["num_samples"] == 1000 and meta["image"]["height"] == meta["image"]["width"] == 64
    assert meta["info"]["teacher"]["num_classes"] == 1000
    files = metrics(large_repo)
    assert files["data/metrics/students/shape/live/metrics.json"]["parameters"]["student"] > 0
    assert set(files["data/evaluate/metrics.json"]["student"]) == {"accuracy"}  # no MNIST variant, no hard part
    counterfactuals = read_meta(large_repo / "data/counterfactuals/shards")
    assert counterfactuals["image"]["height"] == 64 and counterfactuals["num_samples"] == 40


# The ImageNet CGN through its profile (profiles/cgn-imagenet.yaml: streamed JPEG shards, students with a class
# embedding) on a tiny random checkpoint in the released layout that renders 64x64 (10 classes, the full U2-Net).
IMAGENET_CHECKPOINT = "teachers/cgn-imagenet/cgn.pth"
IMAGENET = {"teacher": {"cgn-imagenet": {"image_size": 64}},
            "generate": {"per_class": 8, "heldout_per_class": 2, "shard_size": 40, "batch_size": 20},
            "train": {"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 2, "loader_workers": 1,
                      "shuffle_buffer": 40, "student_widths": [16, 16, 8, 8], "class_embedding": 8,
                      "disc_widths": [8, 16, 32]},
            "ims": {"shape": {"steps": 4}, "texture": {"steps": 4}, "background": {"steps": 4}},
            "compose": {"n": 40, "shard_size": 20, "batch_size": 20, "grid_columns": 4}}


@pytest.fixture(scope="module")
def imagenet_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("imagenet-project")
    write_tiny_checkpoint(repo / IMAGENET_CHECKPOINT, doublings=4)
    return tiny_project(repo, IMAGENET, profile=nested(overrides("cgn-imagenet", root=ROOT)))


def numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in numbers(value)]
    if isinstance(tree, list):
        return [x for value in tree for x in numbers(value)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_imagenet_cgn_runs_the_whole_pipeline_without_a_nan(imagenet_repo):
    assert stages_run((imagenet_repo / "first_repro.log").read_text()) == STAGES
    files = metrics(imagenet_repo)
    assert set(files) == {f"data/metrics/students/{im}/live/metrics.json"
                          for im in ("shape", "texture", "background")} | {
        "data/reference/metrics.json", "data/evaluate/metrics.json"}
    values = numbers(files)
    assert values and all(math.isfinite(value) for value in values)
    texture = read_meta(imagenet_repo / "data/teacher/texture/train")
    assert texture["info"]["teacher"]["kind"] == "cgn-imagenet" and texture["image"]["format"] == "jpeg"
    assert texture["num_samples"] == 80 and texture["image"]["height"] == 64
    assert read_meta(imagenet_repo / "data/teacher/shape/train")["image"]["format"] == "png"
    shape = files["data/metrics/students/shape/live/metrics.json"]
    assert shape["parameters"]["student"] < shape["parameters"]["teacher"] / 8
    for grid in ("data/reference/grids/grid.png", "data/metrics/counterfactuals/grid.png",
                 "data/metrics/students/texture/grid.png"):
        assert (imagenet_repo / grid).stat().st_size > 0, grid


def test_imagenet_evaluation_says_in_the_metrics_that_the_digit_protocol_is_skipped(imagenet_repo):
    files = metrics(imagenet_repo)
    for stage in ("reference", "evaluate"):
        line = files[f"data/{stage}/metrics.json"]["classifier_protocol"]
        assert line.startswith("skipped: ") and "cgn-imagenet" in line and "\n" not in line
    assert files["data/evaluate/metrics.json"]["train_size"] == 40
    assert "student" not in files["data/evaluate/metrics.json"]
    for stage in ("reference", "evaluate"):  # declared plots, empty: no test set was classified
        assert (imagenet_repo / f"data/{stage}/confusion.csv").read_text() == "actual,predicted\n"
    out = imagenet_repo / "plots_html"
    dvc(imagenet_repo, "plots", "show", "-o", str(out))  # no confusion matrices to draw: still a page
    assert "held-out fidelity" in (out / "index.html").read_text()


# A teacher of the user's own (tests/test_custom_teacher.py), in teachers/custom/ as docs/teachers.md says.
CUSTOM = {"teacher": {"kind": "custom", "custom": {"implementation": "teachers.custom.stripes:Stripes",
                                                   "options": {"num_classes": 3, "image_size": 32}}}}


@pytest.fixture(scope="module")
def custom_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("custom-project")
    (repo / "teachers" / "custom").mkdir(parents=True)
    (repo / "teachers" / "custom" / "stripes.py").write_text(STRIPES)
    return tiny_project(repo, CUSTOM)


def test_a_teacher_of_ones_own_is_distilled_by_the_whole_pipeline(custom_repo):
    assert stages_run((custom_repo / "first_repro.log").read_text()) == STAGES
    assert read_meta(custom_repo / "data/teacher/shape/train")["info"]["teacher"]["kind"] == "stripes"
    files = metrics(custom_repo)
    assert files["data/metrics/students/texture/live/metrics.json"]["heldout"]["psnr"] > 0
    # A teacher of no parameters (a formula): the card gives the student's size alone.
    assert "| student | " in (custom_repo / "data/students/texture/MODEL_CARD.md").read_text()
    assert files["data/evaluate/metrics.json"]["classifier_protocol"].startswith("skipped: ")


def test_editing_ones_own_teacher_makes_the_stages_it_feeds_out_of_date(custom_repo):
    module = custom_repo / "teachers" / "custom" / "stripes.py"
    before = append_comment(module)
    try:
        stale = set(json.loads(dvc(custom_repo, "status", "--json")))
    finally:
        module.write_text(before)
    assert stale == {"generate@shape", "generate@texture", "generate@background", "reference", "evaluate"}


def test_real_teacher_pipeline_runs_on_real_digits(cgn_repo, real_data):
    assert stages_run((cgn_repo / "first_repro.log").read_text()) == STAGES
    files = metrics(cgn_repo)
    shape = files["data/metrics/students/shape/live/metrics.json"]
    assert shape["parameters"] == {"student": shape["parameters"]["student"], "teacher": 194_914}
    assert shape["parameters"]["student"] < 194_914
    reference = files["data/reference/metrics.json"]
    assert reference["test_size"] == cgn_test_size(real_data) and reference["train_size"]["factual"] == CGN_FACTUAL
    assert {"accuracy", "accuracy_same_colour"} <= set(files["data/evaluate/metrics.json"]["student"])
    for grid in ("data/reference/grids/grid.png", "data/reference/grids/test_grid.png",
                 "data/metrics/counterfactuals/grid.png"):
        assert (cgn_repo / grid).stat().st_size > 0, grid


def test_real_teacher_samples_and_shifts_travel_with_their_images(cgn_repo):
    info = json.loads((cgn_repo / "data/teacher/texture/train/dataset.json").read_text())["info"]
    assert info["teacher"]["kind"] == "cgn-mnist" and info["teacher"]["sha256"].startswith("7aa06c90")
    shards = cgn_repo / "data/counterfactuals/shards"
    meta = read_meta(shards)
    assert meta["info"]["texture_shift"] == "cyclic"
    assert {"z_shape", "y_texture", "shift_texture", "shift_background"} <= set(meta["arrays"])
    # They travel in each sample's record, and only there: the manifest lists where the records are.
    assert pq.read_table(shards / "manifest.parquet").column_names == ["key", "label", "shard"]


def refusal(repo: Path, key: str, value: str, *stage: str) -> str:
    """Run one stage with params.yaml's dotted `key` set to `value`: it must exit 2 with one stderr line and
    leave data/ byte-identical. Returns that line."""
    params_file = repo / "params.yaml"
    committed = params_file.read_text()
    params = merged(yaml.safe_load(committed), nested({key: value}))
    before = digests(repo / "data")
    try:
        params_file.write_text(yaml.safe_dump(params))
        result = subprocess.run([sys.executable, "-m", *stage], cwd=repo, capture_output=True, text=True)
    finally:
        params_file.write_text(committed)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert digests(repo / "data") == before
    return result.stderr


@pytest.mark.parametrize("bad", ["truncated", "shard", "other-architecture"])
def test_a_wrong_checkpoint_stops_generate_with_one_line_and_touches_nothing(cgn_repo, bad):
    wrong = cgn_repo / f"wrong-{bad}.pth"
    if bad == "truncated":
        wrong.write_bytes((cgn_repo / CGN_CHECKPOINT).read_bytes()[:500_000])
    elif bad == "shard":
        shutil.copy(next((cgn_repo / "data/teacher/shape/train").glob("*.tar")), wrong)
    else:
        shutil.copy(cgn_repo / "data/students/shape/student.pt", wrong)
    assert wrong.name in refusal(cgn_repo, "teacher.cgn-mnist.checkpoint", wrong.name, "pipeline.generate", "shape")


def test_unusable_mnist_folder_stops_reference_with_one_line_and_touches_nothing(cgn_repo, real_data):
    folder = cgn_repo / "broken-mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        source = (real_data.mnist / name).read_bytes()
        (folder / name).write_bytes(source[: len(source) // 2])  # truncated: no network is needed to refuse it
    line = refusal(cgn_repo, "evaluate.mnist_dir", folder.name, "pipeline.reference")
    assert "broken-mnist" in line and "t10k-images-idx3-ubyte" in line


@pytest.fixture(scope="module")
def killable(repo, tmp_path_factory) -> Path:
    """A copy of the tiny project whose shape student and texture samples take long enough to be killed midway."""
    copy = tmp_path_factory.mktemp("killable") / "project"
    shutil.copytree(repo, copy, symlinks=True)
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["generate"]["per_class"] = 400
    params["train"]["checkpoint_every"] = 4
    params["ims"]["shape"]["steps"] = 400
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return copy


def kill_when(repo: Path, appears: Path, *stage: str) -> list[int]:
    """Start a stage and kill -9 it as soon as `appears` exists, which the stage writes midway. Returns the
    processes the stage had started, all ended by then."""
    process = subprocess.Popen([sys.executable, "-m", *stage], cwd=repo, env=stage_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (repo / appears).exists():
        assert process.poll() is None, f"{stage} ended before {appears} appeared"
        time.sleep(0.01)
    helpers = children(process.pid)  # e.g. shard writer processes
    process.kill()
    assert process.wait() == -signal.SIGKILL
    # Nothing the stage started outlives it: a writer left behind would hang on a half-sent batch for ever.
    deadline = time.monotonic() + 5
    while any(map(running, helpers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in helpers if running(pid)]
    return helpers


def process_stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat after the command name: state, parent, ...; [] once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def running(pid: int) -> bool:
    return process_stat(pid)[:1] not in ([], ["Z"])  # a zombie has ended; only its exit status waits for init


def children(pid: int) -> list[int]:
    return [int(path.name) for path in Path("/proc").glob("[0-9]*") if process_stat(path.name)[1:2] == [str(pid)]]


def kill_and_resume(repo: Path, stage: str, appears: str, **env: str) -> list[int]:
    """Kill -9 a stage midway: its old output stays untouched and DVC knows the stage is not done. Then
    `dvc repro` resumes it, to the bytes of an uninterrupted run from nothing."""
    kind, im = stage.split("@")
    output = repo / DVC_OUTPUTS[kind] / im
    before = digests(output)
    helpers = kill_when(repo, Path(appears), f"pipeline.{kind}", im)
    assert digests(output) == before
    assert stage in dvc(repo, "status", stage)
    assert "resuming" in dvc(repo, "repro", "-s", stage, **env)
    resumed = digests(output)
    shutil.rmtree(output)
    run(repo, sys.executable, "-m", f"pipeline.{kind}", im)
    assert digests(output) == resumed
    return helpers


def test_distill_killed_midway_resumes_from_its_checkpoint_to_the_same_bytes(killable):
    kill_and_resume(killable, "distill@shape", "data/students/.shape.partial/.resume/training.pt")


def test_generate_killed_midway_resumes_shard_by_shard_on_request(killable):
    writers = kill_and_resume(killable, "generate@texture", "data/teacher/.texture.partial/.train.partial/"
                              "shard-000001.rows.parquet", SKDCGN_RESUME="1")
    assert len(writers) == 1  # SKDCGN_WRITERS' default: it was killed with the stage


def test_a_diverging_student_stops_distill_naming_the_step_and_touches_no_output(killable):
    params_file = killable / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["ims"]["background"]["lr"] = 1e10
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    before = digests(killable / "data/students/background")
    result = subprocess.run([sys.executable, "-m", "pipeline.distill", "background"], cwd=killable, env=stage_env(),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert re.fullmatch(r"error: (non-finite .*|discriminator exploding) at step \d+: .*lower lr or set grad_clip; "
                        r"(no checkpoint was saved|last good checkpoint: .*)\n", result.stderr)
    assert digests(killable / "data/students/background") == before
