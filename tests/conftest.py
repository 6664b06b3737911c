import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # The CI machine has 2 cores: more intra-op threads than that only make small tensors slower.
    torch.set_num_threads(1)
