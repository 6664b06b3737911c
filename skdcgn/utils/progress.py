"""Progress that reads well both in a terminal and in a log file.

Under `dvc repro` in a terminal a rich bar animates; under `dvc exp run --queue`, CI or a pipe stdout is not a
TTY and a rich bar would print only its final state, so there we print a plain line every `every` steps.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

Advance = Callable[..., None]


@contextmanager
def progress(description: str, total: int, every: int = 100, stream=None) -> Iterator[Advance]:
    """Yields `advance(n=1, **info)`; `info` (e.g. a loss) is shown next to the count."""
    stream = stream or sys.stdout
    if stream.isatty():
        with _rich_progress(description, total) as advance:
            yield advance
    else:
        yield _plain_progress(description, total, every, stream)


@contextmanager
def _rich_progress(description: str, total: int) -> Iterator[Advance]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, **info) -> None:
            bar.update(task, advance=n, info=_format(info))

        yield advance


def _plain_progress(description: str, total: int, every: int, stream) -> Advance:
    state = {"done": 0, "start": time.perf_counter()}

    def advance(n: int = 1, **info) -> None:
        before = state["done"]
        state["done"] += n
        if state["done"] // every > before // every or state["done"] >= total > before:
            elapsed = time.perf_counter() - state["start"]
            print(f"{description}: {state['done']}/{total} ({elapsed:.1f} s) {_format(info)}".rstrip(),
                  file=stream, flush=True)

    return advance


def _format(info: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
