"""Process-level settings that make CPU inference and training fast, and the device choice.

glibc serves large allocations (> 128 kB by default) with fresh ``mmap`` pages and returns
them on ``free``; the edge tensors of a batched crystal graph are tens of MB, so every
forward pass pays for zero-filling new pages. Raising the mmap and trim thresholds keeps those
blocks in the heap for reuse: about 3x faster batched inference on CPU, same peak memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

import torch

__all__ = ["resolve_device", "tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB


@lru_cache(maxsize=1)
def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; returns whether it applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok_mmap = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_THRESHOLD))
        ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(ok_mmap and ok_trim)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from anisoscreen.errors import AnisoscreenError

        raise AnisoscreenError("--device cuda requested but no CUDA GPU is available")
    return torch.device(device)
