import os
import sys
from pathlib import Path
from typing import NamedTuple

# First, before torch runs anything: the CPU kernels the stages use (pipeline/__init__.py), so that tests run
# what the stages run, and a compiled kernel never meets an ATen of another vector width.
import pipeline  # noqa: F401
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Tests call `dvc` by name, as the stages do: this environment's own, as `make test` puts it first on PATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# CI must run every test: there a missing real asset fails the test instead of skipping it.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Every device this machine has: tests that take `device` run on each (the CPU always; CUDA where present, which
# benchmarks/gpu.sh selects with `-m device -k cuda`).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class RealData(NamedTuple):
    """The real assets that `skdcgn fetch` puts into the project's git-ignored default folders."""

    cgn_mnist: Path  # {colored,double_colored,wildlife}_mnist.pth
    mnist: Path      # t10k-{images-idx3,labels-idx1}-ubyte.gz
    textures: Path   # object/<c>_*.jpg, background/<c>_*.jpg

    def missing(self) -> list[str]:
        wanted = [self.cgn_mnist / f"{v}_mnist.pth" for v in ("colored", "double_colored", "wildlife")]
        wanted += [self.mnist / f"{name}.gz" for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
        wanted += [self.textures / part for part in ("object", "background")]
        return [str(path.relative_to(ROOT)) for path in wanted if not path.exists()]


REAL_DATA = RealData(ROOT / "teachers" / "cgn-mnist", ROOT / "mnist", ROOT / "textures")


@pytest.fixture(autouse=True)
def one_thread():
    # The CI machine has 2 cores: more intra-op threads than that only make small tensors slower.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_data() -> RealData:
    """The real CGN-MNIST teachers, MNIST test digits and Wildlife textures: skipped (with how to get them) where
    they have not been fetched, failed in CI, where these tests are how the real teachers are checked."""
    missing = REAL_DATA.missing()
    if missing:
        message = f"real data not fetched ({', '.join(missing)}): run `skdcgn fetch` (or `make data`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return REAL_DATA


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def tf32_slack(device) -> float:
    """What a network's float32 output on `device` may differ from the CPU's beyond float32 rounding. CUDA runs
    convolutions in TF32 by default (a 10-bit mantissa: torch.backends.cudnn.allow_tf32), and so do the stages;
    on an H200 a CGN-MNIST teacher's images moved by up to 0.0041 (values in 0..1), about one 8-bit level."""
    return 0.0 if device.type == "cpu" else 1e-2


def pytest_collection_modifyitems(items):
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "device" in names:
            item.add_marker(pytest.mark.device)
        if "real_data" in names:
            item.add_marker(pytest.mark.real_data)


REAL_DATA_OUTCOMES: dict[str, int] = {}


def pytest_runtest_logreport(report):
    # A test's outcome is its call's, or its setup's where that already skipped or failed.
    if "real_data" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        REAL_DATA_OUTCOMES[report.outcome] = REAL_DATA_OUTCOMES.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(REAL_DATA_OUTCOMES.items())) or "none collected"
    terminalreporter.write_line(f"real-data tests: {counts}")


def pytest_sessionfinish(session):
    # In CI every real-data test must run: a skip (of any cause) fails the run.
    if IN_CI and REAL_DATA_OUTCOMES.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
