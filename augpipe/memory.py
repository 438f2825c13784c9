"""Fresh memory for large CPU images (a call's output), mapped by the kernel in 2 MiB pages.

glibc takes an allocation above 32 MiB (its largest dynamic mmap threshold) straight from the kernel on every
call, and the kernel maps it one 4 KiB page per fault: one thread fills a fresh 38.5 MB tensor in 22.4 ms, a kept
one in 1.7 ms (this project's 2-core VM). Asked for transparent huge pages (``madvise(MADV_HUGEPAGE)``, before the
first write), the kernel maps the same tensor in 2 MiB pages, a fault each: 4.9 ms. The allocation stays torch's
own: only how the kernel backs it changes, and freeing it is as before. (In a VM that reports free memory to its
host, huge pages freed seconds ago can be slower to get back than small ones; calls that follow each other, as in
a training loop, do not see that. See the README's CPU benchmark notes.)
"""
from __future__ import annotations

import ctypes
import mmap
import sys

import torch
from torch import Tensor

# glibc's largest dynamic mmap threshold on 64-bit systems: larger blocks are always fresh mappings, so advising
# them never touches memory that malloc's heap reuses.
LARGE_BYTES = 32 * 2**20

PAGE = mmap.PAGESIZE


def _madvise():
    """libc's madvise with its argument types, or None where there is no MADV_HUGEPAGE (not Linux)."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def empty(shape, dtype: torch.dtype, device=None) -> Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``; on a Linux CPU, a block of LARGE_BYTES or more is
    advised to be mapped in huge pages. Where the kernel has them off, or madvise fails, it is plain memory."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if _MADVISE is not None and out.device.type == "cpu" and out.nbytes >= LARGE_BYTES:
        start = out.data_ptr() // PAGE * PAGE
        end = -(-(out.data_ptr() + out.nbytes) // PAGE) * PAGE
        _MADVISE(start, end - start, mmap.MADV_HUGEPAGE)  # advice only: a failure leaves plain pages
    return out
