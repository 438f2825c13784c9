"""How long a cache line takes to go from one CPU core to another and back: a ping-pong between two pinned threads.

    python benchmarks/cross_thread.py                 # one measurement, in ns
    python benchmarks/cross_thread.py --every 1 --for 60   # one a second for a minute

Why: on a shared VM the host may place the vCPUs on different caches for a while. Work that one thread writes and
another reads (a compiled loop's passes, CutMix's partner reads, every barrier) then slows, while single-thread
work does not; on the 2-core VM of the CPU benchmark a round trip took 120 ns in one state and 440 ns in the
other, and compiled CIFAR calls 1.0 against 1.2 ms (see benchmarks/README.md). ``bench_peers.py`` records one probe
before each round of runs, so its JSON says which state each run met.

The probe is a small C program built once with the C compiler torch.compile already needs on a CPU (``cc``, else
``gcc``); where there is none, or fewer than two usable cores, or no ``sched_setaffinity`` (not Linux), the probe is
None.
"""
from __future__ import annotations

import argparse
import atexit
import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Atomic long turn __attribute__((aligned(64)));
static long rounds;
static int cpus[2];

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *answer(void *unused) {  /* waits for each odd value and answers with the next even one */
    pin(cpus[1]);
    for (long i = 0; i < rounds; i++) {
        while (atomic_load(&turn) != 2 * i + 1) {}
        atomic_store(&turn, 2 * i + 2);
    }
    return unused;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    cpus[0] = atoi(argv[1]);
    cpus[1] = atoi(argv[2]);
    rounds = atol(argv[3]);
    pin(cpus[0]);
    pthread_t other;
    pthread_create(&other, NULL, answer, NULL);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < rounds; i++) {
        atomic_store(&turn, 2 * i + 1);
        while (atomic_load(&turn) != 2 * i + 2) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(other, NULL);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / rounds);
    return 0;
}
"""


@functools.lru_cache(maxsize=1)
def _binary() -> Path | None:
    """The probe, compiled once per process into a temporary folder; None where it cannot be built."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not hasattr(os, "sched_getaffinity"):
        return None
    folder = Path(tempfile.mkdtemp(prefix="augpipe_cross_thread_"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "probe.c").write_text(_SOURCE)
    try:
        built = subprocess.run([compiler, "-O2", "-pthread", "-o", str(folder / "probe"), str(folder / "probe.c")],
                               capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return folder / "probe" if built.returncode == 0 else None


def round_trip_ns(rounds: int = 100_000) -> float | None:
    """Nanoseconds for one cache line to go between the first two usable cores and back (median of 3 tries of
    ``rounds`` round trips each, about 30 ms in all at 100 ns), or None (see the module docstring)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    binary = _binary()
    if binary is None or len(cores) < 2:
        return None
    tries = []
    for _ in range(3):
        try:  # a probe that cannot run here (a core taken away, a hung thread) only loses its number
            run = subprocess.run([str(binary), str(cores[0]), str(cores[1]), str(rounds)], capture_output=True,
                                 text=True, timeout=10, check=True)
            tries.append(float(run.stdout))
        except (OSError, ValueError, subprocess.SubprocessError):
            return None
    return sorted(tries)[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=float, default=None, help="seconds between measurements (with --for)")
    ap.add_argument("--for", dest="duration", type=float, default=0.0, help="keep measuring this many seconds")
    args = ap.parse_args(argv)
    end = time.monotonic() + args.duration
    while True:
        ns = round_trip_ns()
        print("no probe here (see the module docstring)" if ns is None else f"{ns:.0f} ns", flush=True)
        if ns is None or args.every is None or time.monotonic() + args.every > end:
            break
        time.sleep(args.every)


if __name__ == "__main__":
    main()
