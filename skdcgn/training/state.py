"""Everything a resumed run needs, and the reports it replays, so that it ends as if it had never stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from skdcgn.utils.atomic import atomic_file


class Callback(Protocol):
    def on_log(self, step: int, values: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...


class Reports:
    """Passes the loop's reports to the callback and keeps them: a resumed run replays the ones it inherits, so
    its logs (DVCLive curves included) come out as if it had never stopped."""

    def __init__(self, callback: Callback | None, history: list):
        self.callback, self.history = callback, []
        for kind, step, values in history:
            self._report(kind, step, values)

    def log(self, step: int, values: dict[str, float]) -> None:
        self._report("log", step, values)

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        self._report("eval", step, metrics)

    def _report(self, kind: str, step: int, values: dict[str, float]) -> None:
        self.history.append((kind, step, values))
        if self.callback:
            getattr(self.callback, f"on_{kind}")(step, values)


class TrainingState:
    """The state of every stateful object (networks, optimisers, schedules) in one file, written atomically so
    that a kill never leaves half a checkpoint.

    `identity` (settings, seed, architecture) is stored with it: a file from another run is refused.
    """

    def __init__(self, path: Path | None, stateful: dict, identity: dict, writes: bool = True):
        self.path, self.stateful, self.identity = path and Path(path), stateful, identity
        self.writes = writes  # False on the ranks after the first: they read the checkpoint, never write it
        self.step = 0

    def resume(self) -> list:
        """Load the checkpoint when there is one; returns the reports made before it."""
        if self.path is None or not self.path.is_file():
            return []
        saved = _load(self.path)
        differing = sorted(key for key in self.identity if saved["identity"].get(key) != self.identity[key])
        if differing:
            raise ValueError(f"{self.path}: a checkpoint of another run ({', '.join(differing)} differ); "
                             f"delete it to start afresh")
        for name, thing in self.stateful.items():
            thing.load_state_dict(saved[name])
        self.step = saved["step"]
        print(f"resuming from step {self.step} ({self.path})", flush=True)
        return saved["history"]

    def save(self, step: int, history: list) -> None:
        self.step = step
        if self.path is None or not self.writes:
            return
        state = {name: thing.state_dict() for name, thing in self.stateful.items()}
        state.update(step=step, history=history, identity=self.identity)
        with atomic_file(self.path) as partial:
            torch.save(state, partial)

    def describe(self) -> str:
        if self.path is None or not self.step:
            return "no checkpoint was saved"
        return f"last good checkpoint: {self.path} (step {self.step})"


def saved_identity(path: Path) -> dict:
    """The identity of the checkpoint at `path`; {} where there is none."""
    return _load(path)["identity"] if path.is_file() else {}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
