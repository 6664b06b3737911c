"""Helper processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl option: the signal the kernel sends this process when its parent dies


def die_with(parent: int) -> None:
    """Called in a helper process (a shard writer, a part of generate, a classifier trained alongside): on Linux
    the kernel kills it when `parent` dies. A kill -9 can come in the middle of sending a batch, and a worker
    reading half a message would wait for the rest for ever. Elsewhere a worker notices within a second, between
    messages."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
