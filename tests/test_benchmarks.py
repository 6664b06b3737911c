"""The benchmark scripts run, at a tiny size, and report consistent rates (their figures live in BENCHMARKS.md)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "generate.per_class=8", "--set", "generate.heldout_per_class=2", "--set", "generate.batch_size=16",
        "--set", "generate.shard_size=32", "--set", "compose.n=40", "--set", "compose.batch_size=16",
        "--set", "train.batch_size=8", "--set", "train.student_widths=[8,8,8,8]", "--repeats", "1"]
LINE = re.compile(r"(.+): (.+) ([\d,]+) [a-z/]+, (.+) ([\d,]+) [a-z/]+; .+ = ([\d.]+)")


@pytest.mark.parametrize("name, extra, lines", [
    ("shard_writing", [], 3),
    ("training_input", ["--im", "texture", "--steps", "4"], 1),
    ("student_speed", [], 1),
])
def test_benchmark_reports_two_rates_and_their_ratio(name, extra, lines):
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *TINY, *extra], cwd=ROOT,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "SKDCGN_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [LINE.fullmatch(line) for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(reports) == lines and all(reports), result.stdout
    for report in reports:
        first, second = (float(report.group(i).replace(",", "")) for i in (3, 5))
        assert first > 0 and second > 0
        # Rates are printed rounded; the ratio is of the unrounded ones.
        assert float(report.group(6)) == pytest.approx(first / second, rel=0.05, abs=0.002)
