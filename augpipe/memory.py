"""Fresh memory for large CPU images (a call's output), mapped by the kernel in 2 MiB pages.

glibc takes an allocation above 32 MiB (its largest dynamic mmap threshold) straight from the kernel on every
call, and the kernel maps it one 4 KiB page per fault, which costs several times what filling a kept tensor does.
Asked for transparent huge pages (``madvise(MADV_HUGEPAGE)``, before the first write), the kernel maps the same
tensor in 2 MiB pages, a fault each. The allocation stays torch's own: only how the kernel backs it changes, and
freeing it is as before. (In a VM that reports free memory to its host, huge pages freed seconds ago can be slower
to get back than small ones; calls that follow each other, as in a training loop, do not see that.) Measurements:
docs/design.md, "Huge pages for large outputs".

Smaller blocks come from malloc's heap, which glibc shrinks whenever enough is free at its top: a process that
frees a call's 3 MB buffers can then fault them in again on the next call. ``keep_freed_memory`` asks glibc to
keep them; a pipeline asks it once per process on its first CPU call (``keep_freed_memory_once``), unless the
environment variable AUGPIPE_KEEP_FREED_MEMORY is 0.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import sys

import torch
from torch import Tensor

# glibc's largest dynamic mmap threshold on 64-bit systems: larger blocks are fresh mappings, unless the heap holds
# that much free memory (kept by keep_freed_memory), whose part the advice then stays with: harmless, the kernel
# backs it with huge pages where it can.
LARGE_BYTES = 32 * 2**20

PAGE = mmap.PAGESIZE

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc(name: str, *argtypes):
    """The Linux libc function ``name`` returning an int, with these argument types; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = (_libc("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
            if hasattr(mmap, "MADV_HUGEPAGE") else None)  # None where there is no MADV_HUGEPAGE (not Linux)


def empty(shape, dtype: torch.dtype, device=None) -> Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``; on a Linux CPU, a block of LARGE_BYTES or more is
    advised to be mapped in huge pages. Where the kernel has them off, or madvise fails, it is plain memory."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if _MADVISE is not None and out.device.type == "cpu" and out.nbytes >= LARGE_BYTES:
        start = out.data_ptr() // PAGE * PAGE
        end = -(-(out.data_ptr() + out.nbytes) // PAGE) * PAGE
        _MADVISE(start, end - start, mmap.MADV_HUGEPAGE)  # advice only: a failure leaves plain pages
    return out


def keep_freed_memory(trim_bytes: int = 256 * 2**20) -> bool:
    """Ask glibc to keep freed blocks below LARGE_BYTES for reuse instead of handing them back to the kernel.

    By default glibc lifts its mmap threshold as blocks are freed and returns the top of its heap to the kernel
    once more than twice that is free there; a process whose calls allocate and free a few images of some MB each
    (a DataLoader worker, a script that augments before anything else has run) then faults those pages in again
    on every call (docs/design.md, "Keeping freed memory").

    Sets M_MMAP_THRESHOLD to LARGE_BYTES (smaller blocks come from the heap, as glibc's own threshold allows at
    most; larger ones stay fresh mappings, see ``empty``) and M_TRIM_THRESHOLD to ``trim_bytes`` (the heap shrinks
    only when more than that is free at its top). Process-wide: a pipeline calls it (``keep_freed_memory_once``)
    on its first CPU call; call it early yourself to cover what runs before that. The cost is that up to
    ``trim_bytes`` of freed memory stays in the process. Returns True where glibc took both settings, False elsewhere
    (no glibc, not Linux), where it changes nothing.
    """
    if not isinstance(trim_bytes, int) or isinstance(trim_bytes, bool) or trim_bytes < 0:
        raise ValueError(f"keep_freed_memory: trim_bytes must be a non-negative int, got {trim_bytes!r}")
    mallopt = _libc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    trim = min(trim_bytes, 2**31 - 1)  # mallopt takes an int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))


# Whether keep_freed_memory_once has run in this process (a forked DataLoader worker inherits the setting with it).
_kept = False


def keep_freed_memory_once() -> None:
    """``keep_freed_memory()``, the first time it is called in this process, unless the environment variable
    AUGPIPE_KEEP_FREED_MEMORY is "0". A pipeline calls it on its first CPU call: without it, the first pipeline of
    a process that has freed no large block faults a call's buffers in again on every call, at about half its speed
    (docs/design.md, "Keeping freed memory")."""
    global _kept
    if not _kept:
        _kept = True
        if os.environ.get("AUGPIPE_KEEP_FREED_MEMORY", "1") != "0":
            keep_freed_memory()
