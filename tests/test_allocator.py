"""The stages' malloc setting: a step's few-MiB tensors come from the heap, not from fresh mmaps."""

import subprocess
import sys

# In a fresh process: malloc 4 MiB and print how many bytes glibc serves from mmapped blocks (mallinfo2.hblkhd).
MMAPPED_BYTES = """
import ctypes, sys
from skdcgn.utils.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
before = libc.mallinfo2().hblkhd
block = libc.malloc(4 * 1024 * 1024)
print(tuned, libc.mallinfo2().hblkhd - before)
"""


def mmapped_growth(mode: str) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-c", MMAPPED_BYTES, mode], capture_output=True, text=True, check=True)
    tuned, growth = result.stdout.split()
    return tuned, int(growth)


def test_a_tensor_sized_block_comes_from_the_heap_once_tuned():
    assert mmapped_growth("default")[1] >= 4 * 1024 * 1024  # glibc's default: a fresh mmap, zero pages
    assert mmapped_growth("tuned") == ("True", 0)
