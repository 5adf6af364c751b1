"""memtrim.release_free_memory gives memory a process freed back to the OS (glibc), which it keeps otherwise."""

from __future__ import annotations

import subprocess
import sys

_CHILD = """
import sys
from dcosd.memtrim import release_free_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

chunks = [bytes(1024) + bytes([i % 256]) for i in range(200_000)]  # ~200 MB in glibc's heap (over 512 B)
pin = bytes(2048)  # allocated last: the heap's top is in use, so freeing the rest cannot shrink it
del chunks
before = rss_mb()
release_free_memory()
print(before, rss_mb())
"""


def test_freed_heap_memory_goes_back_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=60)
    before, after = map(int, out.stdout.split())
    assert before > 150, (before, after)  # glibc kept what was freed ...
    assert after < before - 100, (before, after)  # ... until the trim
