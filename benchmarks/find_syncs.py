"""List every place where an augpipe call makes the host wait for the GPU, with the line that caused it.

    python benchmarks/find_syncs.py            # needs CUDA; prints "no host sync" or each synchronizing line

tests/test_cuda.py fails at the first sync; this runs the benchmark recipes and the tests' every-op graphs under
torch.cuda.set_sync_debug_mode("warn") and reports all of them at once, so one short run on a GPU finds every one.
Eager only: a compiled call runs the same Python around its graph (sampling, checks), and a sync inside a graph
would be a graph break that the compiled tests would catch; compiling here would only cost time.
"""
from __future__ import annotations

import sys
import traceback
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]


def graphs():
    import augpipe as A
    from bench_peers import RECIPES, _augpipe_ops
    from test_execution import every_op_cifar, every_op_imagenet
    for r in RECIPES.values():
        yield f"bench {r.name}", A.Pipeline(*_augpipe_ops(r), seed=0, num_classes=r.classes), r.size
    for make, size in ((every_op_cifar, 32), (every_op_imagenet, 40)):
        yield f"tests {make.__name__}", make(False), size


def main() -> int:
    if not torch.cuda.is_available():
        sys.exit("find_syncs: needs a CUDA device")
    found = 0
    for name, pipe, size in graphs():
        x = torch.randint(0, 256, (32, 3, size, size), dtype=torch.uint8, device="cuda")
        y = torch.randint(0, 7, (32,), device="cuda")
        for _ in range(2):  # creating the generator and moving the constants may wait
            pipe(x, y)
        torch.cuda.synchronize()
        records = []
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            # Keep the Python stack at each warning: its augpipe frames say which line made the host wait.
            warnings._showwarnmsg_impl = lambda msg: records.append((msg, traceback.format_stack(limit=12)[:-1]))
            torch.cuda.set_sync_debug_mode("warn")
            try:
                pipe(x, y)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
        # The first warning of a process only says that the debug mode is a prototype.
        syncs = [(msg, stack) for msg, stack in records
                 if "synchroniz" in str(msg.message) and "prototype feature" not in str(msg.message)]
        print(f"{name}: {len(syncs)} synchronizing operation(s)")
        for msg, stack in syncs:
            ours = [f for f in stack if "augpipe" in f or "bench" in f] or stack[-3:]
            print(f"  {str(msg.message).splitlines()[0]}\n" + "".join("    " + f.strip().replace("\n", " | ") + "\n"
                                                                    for f in ours))
        found += len(syncs)
    print("find_syncs:", "no host sync in any call" if not found else f"{found} synchronizing operations")
    return int(found > 0)


if __name__ == "__main__":
    sys.exit(main())
