"""Hand memory freed in bulk back to the operating system (glibc's ``malloc_trim``).

glibc keeps what a process frees in its heap for later allocations instead of returning it, so a
master's resident memory stays at its high-water mark: after a log compaction drops tens of thousands
of entries, a leader measured the same 151 MB before and after. Trimming right after the compaction
gave back ~35 MB (156 to 119 MB at 44,000 queued tasks) in under a millisecond. Only after such
bulk frees: trimming walks the heap, and after every write it would cost more than it returns.
A no-op where the C library has no ``malloc_trim`` (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_trim: Any = None
_loaded = False


def release_free_memory() -> None:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            _trim = None
    if _trim is not None:
        _trim(0)
