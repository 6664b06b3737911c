"""Which processes may write one output at once: the parts of a split generation, or one run alone.

POSIX record locks on a file beside the output's partial directory. The file is never deleted: a lock on a file
that another process deletes and creates again would exclude nobody. A part locks one byte, its index, so the
same part cannot run twice; a run that wipes, fills or joins the partial directory locks the whole file, so it
runs with no part and no other run. The kernel drops a dead process's locks (a kill -9 leaves nothing to clean
up), and NFS carries them to the other machines of a cluster that share data/.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class LockHeld(RuntimeError):
    """Another process writes the output; the message says which kind."""


class OutputLock:
    """The lock file of one output. A process opens it once: closing any descriptor of the file would drop every
    lock the process holds on it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def whole(self) -> None:
        """This process alone: no part and no other run may hold any of it."""
        self._lock(0, 0, "another run or a part is writing it")

    def part(self, index: int) -> None:
        """Part `index`: other parts may run beside it, the same part may not, nor a run that holds the whole."""
        self._lock(1, index, f"part {index} is already running, or a run that joins the parts")

    def release(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 0, 0)

    def _lock(self, length: int, start: int, holder: str) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):  # the two ways platforms say "held"
                raise
            raise LockHeld(f"{self.path} is held: {holder}") from None
