# -*- test-case-name: upnode.test.integration.test_attacks -*-
"""
Giving freed memory back to the system.

What a dropped peer made us hold (unread replies, a long line) is freed
when it goes, but glibc's allocator keeps freed pages inside its heap for
reuse, and, after a large block is freed, raises its threshold for
serving blocks from fresh mappings, so later large blocks land in the
heap too: after an attack the process keeps its peak size for good.
C{malloc_trim} is glibc's call to hand free heap pages back.  Where the C
library has no such call (musl, macOS), this does nothing: the memory is
still free for the process to reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any, Callable, Optional


def _findTrim() -> Optional[Callable[[int], Any]]:
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = library.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_trim = _findTrim()


def canRelease() -> bool:
    """
    Whether this C library can hand freed memory back (glibc).
    """
    return _trim is not None


def releaseFreedMemory() -> bool:
    """
    Hand the allocator's free pages back to the system; returns whether
    anything was released (False where it cannot).
    """
    if _trim is None:
        return False
    return bool(_trim(0))
