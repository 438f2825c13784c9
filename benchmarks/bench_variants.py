"""Does augpipe's speed depend on how a recipe is written? Variants of the two recipes, side by side.

    python benchmarks/bench_variants.py --json samples/bench_variants.json
    python benchmarks/bench_variants.py --quick                   # a smoke test: the numbers mean nothing
    python benchmarks/bench_variants.py --variants base,flip-crop-reflect,crop-flip-reflect

Every variant is a pipeline a user could write for the same work as one of ``bench_peers.py``'s recipes (same
inputs, same ops, same strengths), changed in one respect: the order of a flip and a crop, the crop's padding mode,
a vertical flip added, the crop wrapped in ``RandomApply``, a photometric op placed first, and the ImageNet recipe at
batch 32 against its batch 64. A variant that does the same work should take about the same time; where it does
not, the plan shows why. For each variant the script prints the lines of ``pipe.explain(shape)`` that say which
read each geometry segment gets and how the compiled CPU call is split.

Rows (CIFAR: 256 x 3 x 32 x 32 uint8, 10 classes; the base is bench_peers.py's CIFAR recipe: flip, pad-4 crop,
brightness 0.2, contrast 0.2, Normalize, Cutout 16, CutMix):
  base                 the CIFAR recipe (HorizontalFlip, then RandomCrop(32, padding=4) with constant padding)
  crop-flip-constant   the crop before the flip
  flip-crop-reflect    padding_mode="reflect", the flip before the crop (the airbench order)
  crop-flip-reflect    padding_mode="reflect", the crop before the flip
  flip-crop-replicate, crop-flip-replicate    the same with padding_mode="replicate"
  vflip                VerticalFlip(p=0.5) added after the crop
  apply-crop           RandomApply(RandomCrop(32, padding=4), p=0.5) in place of the bare crop
  brightness-first     Brightness before the flip and the crop
  imagenet-b64, imagenet-b32   bench_peers.py's ImageNet recipe at batch 64 and 32: compared per image

Each variant runs compiled (compile=True); the CIFAR variants also run eagerly. Timing as in bench_peers.py (its
helpers): warm-up calls (the first compiles), runs of >= 50 ms, runs interleaved across every variant (run 1 of
each, then run 2 ...) so that load from other processes falls on all alike. The table gives the median ms per
call (per image for ImageNet), the ratio of medians to the base (imagenet-b32 to imagenet-b64, per image), and the
median of the per-round ratios: each round's variant time over the same round's base time, which cancels load
that changes between rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):  # augpipe from a checkout, and bench_peers' helpers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
import bench_peers as peers  # noqa: E402

import augpipe as ap  # noqa: E402


def _cifar_tail(r):
    return (ap.Brightness(r.strength), ap.Contrast(r.strength), ap.Normalize(r.mean, r.std), ap.Cutout(16),
            ap.CutMix(1.0))


def _crop(mode="constant"):
    return ap.RandomCrop(32, padding=4, padding_mode=mode)


def _cifar(*geometry):
    """The CIFAR recipe with ``geometry`` in place of its flip and crop."""
    return lambda r: (*geometry, *_cifar_tail(r))


def _brightness_first(r):
    tail = _cifar_tail(r)
    return (tail[0], ap.HorizontalFlip(), _crop(), *tail[1:])


# key -> (recipe, batch or None for the recipe's, ops builder taking the recipe, what differs)
VARIANTS = {
    "base": ("cifar", None, lambda r: peers._augpipe_ops(r), "bench_peers.py's CIFAR recipe"),
    "crop-flip-constant": ("cifar", None, lambda r: _cifar(_crop(), ap.HorizontalFlip())(r),
                           "the crop before the flip"),
    "flip-crop-reflect": ("cifar", None, lambda r: _cifar(ap.HorizontalFlip(), _crop("reflect"))(r),
                          "reflect padding, flip first"),
    "crop-flip-reflect": ("cifar", None, lambda r: _cifar(_crop("reflect"), ap.HorizontalFlip())(r),
                          "reflect padding, crop first"),
    "flip-crop-replicate": ("cifar", None, lambda r: _cifar(ap.HorizontalFlip(), _crop("replicate"))(r),
                            "replicate padding, flip first"),
    "crop-flip-replicate": ("cifar", None, lambda r: _cifar(_crop("replicate"), ap.HorizontalFlip())(r),
                            "replicate padding, crop first"),
    "vflip": ("cifar", None, lambda r: _cifar(ap.HorizontalFlip(), _crop(), ap.VerticalFlip())(r),
              "VerticalFlip added after the crop"),
    "apply-crop": ("cifar", None, lambda r: _cifar(ap.HorizontalFlip(), ap.RandomApply(_crop(), p=0.5))(r),
                   "RandomApply(crop, p=0.5)"),
    "brightness-first": ("cifar", None, _brightness_first, "Brightness before the flip and the crop"),
    "imagenet-b64": ("imagenet", 64, lambda r: peers._augpipe_ops(r), "bench_peers.py's ImageNet recipe"),
    "imagenet-b32": ("imagenet", 32, lambda r: peers._augpipe_ops(r), "the ImageNet recipe at batch 32"),
}
# The row each variant is compared with; per image where the batches differ.
BASE = {key: ("imagenet-b64" if key.startswith("imagenet") else "base") for key in VARIANTS}


def plan_lines(pipe, shape) -> list[str]:
    """The lines of ``pipe.explain(shape)`` that name the geometry reads and the compiled calls."""
    lines = pipe.explain(shape).splitlines()
    keep = []
    for i, line in enumerate(lines):
        if " geometry " in line:
            keep += [line, lines[i + 1]]
        elif line.startswith("compiled calls"):
            keep.append(line)
    return keep


def build(key: str, compiled: bool):
    """(recipe, images, labels, pipeline) of a variant."""
    recipe, batch, ops, _ = VARIANTS[key]
    r = peers.RECIPES[recipe] if batch is None else replace(peers.RECIPES[recipe], batch=batch)
    x, y = peers.make_inputs(r, torch.device("cpu"))
    return r, x, y, ap.Pipeline(*ops(r), seed=peers.SEED, num_classes=r.classes, compile=compiled)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {','.join(VARIANTS)}")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per row (default 7, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs: a smoke test")
    parser.add_argument("--no-eager", action="store_true", help="compiled rows only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every usable core)")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers and the machine info here")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        sys.exit(f"bench_variants: unknown --variants {unknown}; choose from {list(VARIANTS)}")
    keys = [k for k in VARIANTS if k in keys or k in {BASE[j] for j in keys}]  # each row's base runs too
    threads = args.threads or peers._cores()
    torch.set_num_threads(threads)
    runs = args.runs or (3 if args.quick else 7)
    warmup, min_run_s = (2, 0.02) if args.quick else (3, 0.05)
    device = torch.device("cpu")
    info = peers.machine_info(device, threads)
    print(f"bench_variants: torch {torch.__version__}, {threads} threads, {info['cpu']}; {runs} interleaved runs "
          f"of >= {min_run_s * 1e3:.0f} ms after {warmup} warm-up calls"
          + (f"; augpipe tree {info['augpipe_git']}" if info["augpipe_git"] else ""))
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f}"
          + (" (other processes share these cores: expect noisy numbers)" if load_before[0] > 0.5 else ""))

    rows, calls, timings = {}, {}, {}
    for key in keys:
        for compiled in (True, False):
            if not compiled and (args.no_eager or key.startswith("imagenet")):  # eager ImageNet: seconds a run
                continue
            r, x, y, pipe = build(key, compiled)
            name = f"{key}/{'compiled' if compiled else 'eager'}"
            if compiled:
                print(f"  {key}: {VARIANTS[key][3]}")
                for line in plan_lines(pipe, tuple(x.shape)):
                    print(f"    {line}")
            call = (lambda p, xi, yi: (lambda _x, _y: p(xi, yi)))(pipe, x, y)  # each row its own inputs
            timings[name] = peers.warm_up(call, x, y, device, warmup)
            calls[name] = call
            rows[name] = {"variant": key, "compiled": compiled, "batch": r.batch, "note": VARIANTS[key][3],
                          "plan": plan_lines(pipe, tuple(x.shape)) if compiled else None}
    for name, call in calls.items():
        timings[name]["calls_per_run"] = peers.size_run(call, None, None, device, min_run_s)
    print(f"  timing {len(calls)} rows, {runs} interleaved runs", flush=True)
    started = time.perf_counter()
    peers.time_interleaved(calls, timings, None, None, device, runs, probe=False)
    elapsed = time.perf_counter() - started

    for name, row in rows.items():
        t = timings[name]
        row.update(runs_s=t["runs_s"], s_per_call=t["s_per_call"], first_call_s=t["first_call_s"],
                   graphs_compiled_while_timing=t["graphs_compiled_while_timing"],
                   page_faults_per_call=t.get("page_faults_per_call"), s_per_image=t["s_per_call"] / row["batch"])
    for name, row in rows.items():
        base = f"{BASE[row['variant']]}/{name.split('/')[1]}"
        if base not in rows:
            continue
        b = rows[base]
        row["base"] = base
        row["ratio_of_medians"] = row["s_per_image"] / b["s_per_image"]
        row["median_paired_ratio"] = statistics.median(
            (t / row["batch"]) / (u / b["batch"]) for t, u in zip(row["runs_s"], b["runs_s"]))

    head = f"{'variant':<22} {'mode':<9} {'ms/call':>8} {'us/image':>9} {'x base':>7} {'paired x':>8}  runs (ms)"
    print("\n" + head + "\n" + "-" * len(head))
    for name, row in rows.items():
        ratio = f"{row['ratio_of_medians']:7.2f}" if "base" in row else f"{'-':>7}"
        paired = f"{row['median_paired_ratio']:8.2f}" if "base" in row else f"{'-':>8}"
        print(f"{row['variant']:<22} {name.split('/')[1]:<9} {row['s_per_call'] * 1e3:8.2f} "
              f"{row['s_per_image'] * 1e6:9.2f} {ratio} {paired}  "
              + ", ".join(f"{s * 1e3:.2f}" for s in row["runs_s"])
              + (f"  WARNING: {row['graphs_compiled_while_timing']} graphs compiled while timing"
                 if row["graphs_compiled_while_timing"] else ""))
    print("x base: median over the base's median, per image (imagenet-b32 against imagenet-b64, the other rows "
          "against base in the same mode); paired x: median over rounds of the round's ratio")
    load_after = os.getloadavg()
    print(f"bench_variants: timed in {elapsed:.0f} s; load average after: {load_after[0]:.2f}")
    if args.json:
        report = {"machine": info, "load_average_before": load_before, "load_average_after": load_after,
                  "settings": {"runs": runs, "warmup_calls": warmup, "min_run_s": min_run_s, "quick": args.quick,
                               "seed": peers.SEED, "threads": threads},
                  "elapsed_s": elapsed, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"bench_variants: wrote {args.json}")


if __name__ == "__main__":
    main()
