"""augpipe.memory: large CPU images are asked to live in huge pages; nothing else about the tensor changes."""
import sys
from pathlib import Path

import pytest
import torch

from augpipe import memory

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_possible() -> bool:
    """Linux with transparent huge pages not switched off, and libc's madvise found."""
    return (sys.platform.startswith("linux") and THP.exists() and "[never]" not in THP.read_text()
            and memory._MADVISE is not None)


def vm_flags(address: int) -> list[str]:
    """The kernel's VmFlags of the mapping that holds ``address`` in this process (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):  # a mapping's first line: start-end perms ...
            start, end = (int(v, 16) for v in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.parametrize("shape, dtype", [((2, 3, 4, 5), torch.float32), ((64, 3, 224, 224), torch.float32),
                                          ((9 * 2**20,), torch.uint8)])
def test_empty_is_torch_empty_in_every_respect_but_where_the_pages_come_from(shape, dtype):
    out = memory.empty(shape, dtype)
    reference = torch.empty(shape, dtype=dtype)
    assert (out.shape, out.dtype, out.device, out.stride(), out.storage_offset()) == \
           (reference.shape, reference.dtype, reference.device, reference.stride(), reference.storage_offset())
    assert out.untyped_storage().nbytes() == reference.untyped_storage().nbytes()
    out.fill_(7)  # every page writable
    assert bool((out == 7).all())


@pytest.mark.skipif(not huge_pages_possible(), reason="needs Linux with transparent huge pages available")
def test_a_large_block_is_advised_into_huge_pages_and_a_small_one_is_left_alone():
    large = memory.empty((memory.LARGE_BYTES // 4,), torch.float32)
    assert "hg" in vm_flags(large.data_ptr())  # MADV_HUGEPAGE on the mapping
    assert "hg" in vm_flags(large.data_ptr() + large.nbytes - 1)
    advised = []
    real = memory._MADVISE
    memory._MADVISE = lambda start, length, advice: advised.append(length) or real(start, length, advice)
    try:
        memory.empty((1024,), torch.float32)  # a small block: no advice
        assert advised == []
        memory.empty((memory.LARGE_BYTES // 4,), torch.float32)
        assert len(advised) == 1 and advised[0] >= memory.LARGE_BYTES
    finally:
        memory._MADVISE = real


FAULTS_PER_CALL = """
import os, resource, sys
if sys.argv[1] == "default":  # glibc's own settings: the pipeline is told not to ask for kept memory
    os.environ["AUGPIPE_KEEP_FREED_MEMORY"] = "0"
import torch
import augpipe as A
x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
y = torch.arange(256) % 10
pipe = A.Pipeline(A.HorizontalFlip(), A.RandomCrop(32, padding=4), A.Brightness(0.2), A.Contrast(0.2),
                  A.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), A.Cutout(16), A.CutMix(), seed=0,
                  num_classes=10)
for _ in range(5):
    out = pipe(x, y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    out = pipe(x, y)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/self/stat").exists(),
                    reason="page-fault counts and glibc's mallopt are Linux's")
def test_a_pipeline_keeps_freed_memory_so_a_fresh_process_does_not_fault_its_buffers_in_on_every_call():
    """A fresh process running the CIFAR recipe eagerly frees and reallocates a few 3 MB blocks per call; with
    glibc's defaults it faults them in again each time (about 750 faults a call here). A pipeline's first CPU call
    asks glibc to keep them (``memory.keep_freed_memory_once``), unless AUGPIPE_KEEP_FREED_MEMORY=0."""
    import subprocess

    def faults(mode):
        done = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.split()[-1])

    default, kept = faults("default"), faults("pipeline")
    assert kept < 100, (default, kept)
    assert default > 4 * kept, (default, kept)


def test_keep_freed_memory_rejects_a_bad_threshold():
    for bad in (-1, 1.5, "big", True):
        with pytest.raises(ValueError, match="keep_freed_memory"):
            memory.keep_freed_memory(bad)
