import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from skdcgn.cli import app
from skdcgn.shards.writer import writing_dataset

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def small_dataset(directory):
    with writing_dataset(directory, shard_size=4, value_range=(0.0, 1.0)) as writer:
        writer.add_batch([f"{i:08d}" for i in range(10)], torch.arange(10), torch.rand(10, 1, 8, 8),
                         {"z": torch.randn(10, 3)})


def test_validate_accepts_good_shards_and_names_a_bad_one(tmp_path):
    small_dataset(tmp_path / "ds")
    ok = runner.invoke(app, ["validate", str(tmp_path / "ds")])
    assert ok.exit_code == 0 and "10 samples" in ok.output
    shard = tmp_path / "ds" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    bad = runner.invoke(app, ["validate", str(tmp_path / "ds")])
    assert bad.exit_code == 2
    assert "shard-000001.tar: truncated" in bad.output


def test_teacher_grid_draws_one_row_per_class(tmp_path):
    result = runner.invoke(app, ["teacher-grid", str(tmp_path / "g.png"), "--columns", "3", "--scale", "1"])
    assert result.exit_code == 0, result.output
    width, height = Image.open(tmp_path / "g.png").size
    assert (width, height) == (3 * 34 + 2, 10 * 34 + 2)  # 32 px images with 2 px gaps


def test_unknown_teacher_and_missing_students_get_one_line(tmp_path):
    unknown = runner.invoke(app, ["teacher-grid", str(tmp_path / "g.png"), "--kind", "biggan"])
    assert unknown.exit_code == 2 and "'biggan' is not one of 'synthetic', 'cgn-mnist'" in unknown.output
    missing = runner.invoke(app, ["sample", "--students", str(tmp_path), "--grid", str(tmp_path / "s.png")])
    assert missing.exit_code == 2 and "no such student checkpoint" in missing.output
    assert not (tmp_path / "s.png").exists()


def test_sample_needs_somewhere_to_write():
    result = runner.invoke(app, ["sample"])
    assert result.exit_code == 2 and "nothing to write" in result.output


def test_teacher_grid_of_a_real_teacher_and_a_wrong_checkpoint(tmp_path, real_data):
    checkpoint = real_data.cgn_mnist / "wildlife_mnist.pth"
    args = ["teacher-grid", str(tmp_path / "g.png"), "--kind", "cgn-mnist", "--checkpoint", str(checkpoint)]
    ok = runner.invoke(app, [*args, "--variant", "wildlife", "--columns", "2"])
    assert ok.exit_code == 0, ok.output
    wrong = runner.invoke(app, [*args[:-1], str(tmp_path / "g.png"), "--variant", "wildlife"])
    assert wrong.exit_code == 2 and "not a PyTorch checkpoint" in wrong.output


def test_version_and_the_choices_that_help_lists():
    assert runner.invoke(app, ["--version"]).output.strip() == f"skdcgn {version('skdcgn')}"
    shown = runner.invoke(app, ["sample", "--help"], terminal_width=200).output
    assert "none|cyclic" in shown and "--shape-class" in shown and "--device" in shown
    assert "synthetic|cgn-mnist" in runner.invoke(app, ["teacher-grid", "--help"], terminal_width=200).output


@pytest.mark.parametrize("device, line", [("tpu", "--device 'tpu'; allowed: auto, cpu, cuda, cuda:N")])
def test_a_bad_device_gets_one_line(tmp_path, device, line):
    result = runner.invoke(app, ["sample", "--grid", str(tmp_path / "s.png"), "--device", device])
    assert result.exit_code == 2 and result.output.strip() == f"error: {line}"
    assert not (tmp_path / "s.png").exists()


def test_the_projects_scripts_are_subcommands_with_their_own_options():
    def skdcgn(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "skdcgn", *args], cwd=ROOT, capture_output=True, text=True)

    profile = skdcgn("profile", "cgn-mnist", "double_colored")
    assert profile.returncode == 0 and profile.stdout.startswith("-S teacher.kind=cgn-mnist ")
    assert "--study" in skdcgn("studies", "--help").stdout
    assert skdcgn("report", "--teacher").returncode == 2  # the script's own argument check
