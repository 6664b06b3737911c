"""The pinned environment: requirements.lock pins every dependency, this is the environment it describes, and a
stage of the committed params gives the bytes that the committed dvc.lock records."""

import importlib.metadata
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
# The cheapest teacher stage and the student trained on it (~1 min together at the committed params): the
# teacher's forward pass and a whole training run, whose convolutions depend on the CPU (pipeline/__init__.py).
FAST_STAGES = ("generate@background", "distill@background")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    lines = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if not line.startswith("#")]
    pins = [PIN.match(line) for line in lines]
    assert all(pins), [line for line, pin in zip(lines, pins) if not pin]
    return {canonical(pin.group(1)): pin.group(2) for pin in pins}


def declared() -> set[str]:
    """pyproject.toml's dependencies and those of its extras, the project's own extras left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {canonical(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]) for requirement in requirements}
    return names - {canonical(project["name"])}


def test_the_lock_pins_every_declared_dependency_once():
    assert sorted(declared() - set(locked())) == []


def test_this_environment_is_the_locked_one():
    """What `make setup` installs: a package at another version than the lock's means the committed results
    may not reproduce here."""
    # Only the environment's own site-packages: once setuptools is imported, its _vendor folder (older packaging,
    # platformdirs, ...) is on sys.path too, and those copies are not what pip installed.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonical(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions(path=site)}
    differ = {name: (version, installed.get(name)) for name, version in locked().items()
              if installed.get(name) != version}
    assert differ == {}, "locked vs installed"


@pytest.mark.slow
def test_stages_at_the_committed_params_give_the_committed_bytes(tmp_path):
    """The committed dvc.lock is reproducible in this environment, on this CPU: the fast stages, run from
    nothing in a clone of the committed project, write outputs whose hashes are the ones the lock records."""
    copy = tmp_path / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(copy)], check=True)
    committed = yaml.safe_load((copy / "dvc.lock").read_text())["stages"]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "SKDCGN_THREADS": "1"}
    for stage in FAST_STAGES:
        result = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=copy,
                                env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        assert yaml.safe_load((copy / "dvc.lock").read_text())["stages"][stage]["outs"] == committed[stage]["outs"]
    shutil.rmtree(copy)
