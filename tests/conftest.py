import os
from pathlib import Path

# First, before torch runs anything: the CPU kernels the stages use (pipeline/__init__.py), so that tests run
# what the stages run, and a compiled kernel never meets an ATen of another vector width.
import pipeline  # noqa: F401
import pytest
import torch

# Real data the project may read but never commits: the CGN-MNIST checkpoints, half of the MNIST test set,
# the Wildlife textures (see ../shared/README.md). CI has it next to the clone.
SHARED = Path(os.environ.get("SKDCGN_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
# Every device this machine has: tests that take `device` run on each (the CPU always; CUDA where present, which
# benchmarks/gpu.sh selects with `-m device -k cuda`).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def one_thread():
    # The CI machine has 2 cores: more intra-op threads than that only make small tensors slower.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder; its absence is an error, not a skip: these tests are how the real teachers are checked."""
    assert SHARED.is_dir(), f"shared data folder {SHARED} not found (set SKDCGN_SHARED)"
    return SHARED


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
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)
