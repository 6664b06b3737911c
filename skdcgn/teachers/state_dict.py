"""Reading a teacher's checkpoint as data, with one-line errors: what every checkpointed teacher needs.

`torch.load(weights_only=True)`: a checkpoint is data, never code. A strict key, shape and dtype check names, in
one line, every key that is missing, unexpected, misshapen or of another dtype, so a user who points at the wrong
file learns which.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be this teacher; the message is one line naming the file and what is wrong."""


def read_state_dict(path: Path, hint: str) -> dict[str, torch.Tensor]:
    """The state dict in `path`; `hint` says where to get the right file when there is none."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint {path} not found; {hint}")
    if not _is_torch_file(path):
        raise CheckpointError(f"teacher checkpoint {path} is not a PyTorch checkpoint (neither torch.save's zip "
                              f"archive nor its legacy format: truncated or another kind of file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"teacher checkpoint {path} is not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"teacher checkpoint {path} is not a state dict (it holds a {type(state).__name__})")
    others = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if others:
        raise CheckpointError(f"teacher checkpoint {path} is not a state dict of tensors (entries {some(others)} "
                              f"are not tensors: another kind of checkpoint?)")
    return state


# torch.save before PyTorch 1.6 (or with `_use_new_zipfile_serialization=False`) begins with a pickled magic number.
LEGACY_HEADER = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _is_torch_file(path: Path) -> bool:
    """torch.save's zip archive (its directory sits at the end, so a truncated file has none) or legacy format."""
    with path.open("rb") as file:
        legacy = file.read(len(LEGACY_HEADER)) == LEGACY_HEADER
    return legacy or zipfile.is_zipfile(path)


def check_layout(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, network: str) -> None:
    """Strict key, shape and dtype check, reported as one line that lists what is missing, unexpected, misshapen or
    of another dtype (a float16 copy would load into the float32 network and fail at its first forward)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    retyped = [f"{k} {_name(state[k].dtype)} != {_name(expected[k].dtype)}"
               for k in sorted(set(state) & set(expected)) if state[k].dtype != expected[k].dtype]
    problems = [f"{label}: {some(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshapen),
                 ("wrong dtypes", retyped)) if items]
    if problems:
        raise CheckpointError(f"teacher checkpoint {path} is not a {network} network; " + "; ".join(problems))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def some(items: list[str], shown: int = 6) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
