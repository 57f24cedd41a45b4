"""Memory of one advise() run: give freed heap back to the system between stages, and read
this process's resident size.

glibc's malloc keeps freed blocks in its heaps for reuse: after a stage has parsed, copied
and dropped a 100 MB model a few times (serialized bytes, shape inference, ONNX Runtime's
own parse), the process stays hundreds of MB larger than what it still holds, and the next
stage's allocations land on top of that. `release_freed` asks glibc to return the free
pages (`malloc_trim(0)`), so that the peak resident size is what the stages hold at once.
Elsewhere (macOS, musl, Windows) it does nothing.

>>> release_freed() in (True, False)
True
>>> rss_bytes() > 0
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any

__all__ = ["release_freed", "rss_bytes"]


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """glibc's handle, or None where malloc_trim is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed() -> bool:
    """Return freed heap pages to the system (glibc `malloc_trim(0)`); True if any were.
    A few ms: it walks the free lists, it copies nothing."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def rss_bytes() -> int:
    """This process's resident set size now, in bytes (psutil)."""
    import psutil

    return int(psutil.Process().memory_info().rss)
