"""The benchmark scripts run, at a tiny size, and report consistent rates (their figures live in BENCHMARKS.md)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_checkpoints import write_tiny_checkpoint

# The benchmarks' commands, run at small sizes.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "generate.per_class=8", "--set", "generate.heldout_per_class=2", "--set", "generate.batch_size=16",
        "--set", "generate.shard_size=32", "--set", "compose.n=40", "--set", "compose.batch_size=16",
        "--set", "train.batch_size=8", "--set", "train.student_widths=[8,8,8,8]", "--repeats", "1"]
LINE = re.compile(r"(.+): (.+) ([\d,.]+) [a-z/]+, (.+) ([\d,.]+) [a-z/]+; .+ = ([\d.]+)")


@pytest.mark.parametrize("name, extra, lines", [
    ("shard_writing", [], 3),
    ("training_input", ["--im", "texture", "--steps", "4"], 1),
    ("student_speed", [], 1),
])
def test_benchmark_reports_two_rates_and_their_ratio(name, extra, lines):
    check_reports(run_benchmark(name, *TINY, *extra), lines)


def test_imagenet_benchmark_compares_each_mechanism_at_both_sizes_and_each_batch(tmp_path):
    """On a tiny random CGN (the full-size one costs the CPU minutes): the code path a user's cgn.pth takes."""
    checkpoint = write_tiny_checkpoint(tmp_path / "cgn.pth", doublings=6)
    output = run_benchmark("imagenet_speed", "--checkpoint", str(checkpoint), "--batch", "1", "2",
                           "--nondeterministic")
    assert re.search(r"^# .*, nondeterministic algorithms$", output, re.MULTILINE), output
    reports = check_reports(output, 12)
    assert [r.group(1).split("; ")[0] for r in reports] == [
        f"{size}x{size} {im} (batch {batch}" for size in (256, 128) for batch in (1, 2)
        for im in ("shape", "texture", "background")]
    assert all("GFLOP/image" in r.group(1) and "M parameters" in r.group(1) for r in reports)


def test_student_forward_benchmark_compares_the_layouts_and_lists_the_operators():
    """On the CPU: the contiguous layout against the stages' channels_last, per batch and size (bf16 and the CUDA
    graph exist on a GPU only), then the operator table, whose lines are comments."""
    output = run_benchmark("student_forward", "--sizes", "128", "--batch", "1", "2", "--top", "4")
    reports = check_reports(output, 2)
    assert [r.group(1) for r in reports] == [f"128x128 texture student, batch {b}" for b in (1, 2)]
    assert all(r.group(2) == "contiguous float32" and r.group(4) == "channels_last float32" for r in reports)
    assert "# operators, channels_last float32, by self_cpu_time_total" in output and "convolution" in output


def test_generate_benchmark_runs_the_imagenet_profile(tmp_path):
    """The command of benchmarks/gpu.sh, on a tiny random CGN: masks as PNG, textures and backgrounds as JPEG."""
    checkpoint = write_tiny_checkpoint(tmp_path / "cgn.pth", doublings=6)
    reports = check_reports(run_benchmark(
        "shard_writing", "--profile", "cgn-imagenet", "--set", f"teacher.cgn-imagenet.checkpoint={checkpoint}",
        "--set", "generate.per_class=1", "--set", "generate.shard_size=4", "--set", "generate.batch_size=4",
        "--repeats", "1"), 3)
    assert [r.group(1).split(" (")[0] for r in reports] == [f"generate {im}" for im in ("shape", "texture",
                                                                                         "background")]
    assert ["jpeg" in r.group(1) for r in reports] == [False, True, True]


def run_benchmark(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=ROOT, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "SKDCGN_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def check_reports(stdout: str, lines: int) -> list[re.Match]:
    reports = [LINE.fullmatch(line) for line in stdout.splitlines() if not line.startswith("#")]
    assert len(reports) == lines and all(reports), stdout
    for report in reports:
        first, second = (float(report.group(i).replace(",", "")) for i in (3, 5))
        assert first > 0 and second > 0
        # Rates are printed rounded; the ratio is of the unrounded ones.
        assert float(report.group(6)) == pytest.approx(first / second, rel=0.05, abs=0.002)
    return reports


def test_step_profile_reports_the_steps_flops_next_to_a_dense_matmul():
    output = run_benchmark("step_profile", *TINY[:-2], "--set", "train.disc_widths=[4,8,8]", "--steps", "2",
                           "--matmul-size", "128", "--top", "3")
    step = re.search(r"^step ([\d.]+) ms, ([\d.]+) GFLOP -> ([\d.]+) GFLOP/s; dense 128\^3 matmul ([\d.]+) "
                     r"GFLOP/s on the same thread\(s\): (\d+)% of it$", output, re.MULTILINE)
    assert step, output
    ms, gflop, rate, dense, share = (float(value) for value in step.groups())
    assert gflop > 0 and rate == pytest.approx(gflop / ms * 1e3, rel=0.05, abs=0.1)
    assert share == pytest.approx(100 * rate / dense, abs=1)
    assert "with discriminator" in output and "convolution" in output  # the operator table


def test_compare_repro_times_stages_run_one_at_a_time_and_several_at_once():
    from benchmarks.compare_repro import stage_seconds

    serial = [(0.0, "Running stage 'generate@shape':\n"), (5.0, "> python -m pipeline.generate shape\n"),
              (12.0, "Running stage 'distill@shape':\n"), (40.0, "Updating lock file 'dvc.lock'\n")]
    assert stage_seconds(serial, total=41.0) == {"generate@shape": 12.0, "distill@shape": 29.0}
    parallel = [(0.0, "start generate@shape (1 running)\n"), (0.1, "start generate@texture (2 running)\n"),
                (2.0, "[generate@shape] Running stage 'generate@shape':\n"),
                (9.0, "done generate@texture: exit 0 after 9 s\n"), (11.0, "done generate@shape: exit 0 after 11 s\n")]
    assert stage_seconds(parallel, total=12.0) == {"generate@shape": 11.0, "generate@texture": 8.9}
