"""Reading a teacher's checkpoint as data, with one-line errors: what every checkpointed teacher needs.

`torch.load(weights_only=True)`: a checkpoint is data, never code. A strict key and shape check names, in one
line, every key that is missing, unexpected or misshapen, so a user who points at the wrong file learns which.
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
    # torch.save writes a zip archive whose directory sits at the end: a truncated or foreign file has none.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"teacher checkpoint {path} is not a PyTorch checkpoint (no zip archive: truncated "
                              f"or another kind of file)")
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


def check_layout(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, network: str) -> None:
    """Strict key and shape check, reported as one line that lists what is missing, unexpected or misshapen."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = [f"{label}: {some(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshapen)) if items]
    if problems:
        raise CheckpointError(f"teacher checkpoint {path} is not a {network} network; " + "; ".join(problems))


def some(items: list[str], shown: int = 6) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
