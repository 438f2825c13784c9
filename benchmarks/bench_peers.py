"""augpipe against its peers: the same inputs, the same recipe, the same cores, side by side.

    python benchmarks/bench_peers.py                      # every recipe, CPU, 7 timed runs each
    python benchmarks/bench_peers.py --recipe cifar,imagenet --json samples/bench_cpu.json
    python benchmarks/bench_peers.py --recipe cifar-policy,imagenet-policy --json samples/bench_policies.json
    python benchmarks/bench_peers.py --quick              # smoke test: fewer, shorter runs
    python benchmarks/bench_peers.py --recipe cifar --json out/bench.json
    python benchmarks/bench_peers.py --device cuda --json out/bench_cuda.json
    python benchmarks/bench_peers.py --device cuda --recipe cifar --batch 1024   # CIFAR at a GPU-sized batch

benchmarks/README.md explains every row and column.

Recipes (uint8 images and int labels in, float32 images and soft targets (B, K) out):
  cifar     256 x 3 x 32 x 32, 10 classes: flip, pad-4 crop, brightness 0.2, contrast 0.2, Normalize, Cutout 16,
            CutMix (alpha 1). Cutout comes after Normalize with fill 0 (the dataset mean), as DeVries & Taylor do
            and as augpipe.Cutout recommends.
  imagenet  64 x 3 x 256 x 256, 1000 classes: RandomResizedCrop 224 (scale 0.08-1, ratio 3/4-4/3, bilinear, no
            antialiasing), flip, brightness 0.4, contrast 0.4, Normalize, Mixup (alpha 0.2).
Brightness and contrast are torchvision ColorJitter factors: f ~ U[1 - s, 1 + s], brightness multiplies,
contrast blends with the image's grayscale mean, brightness first.
The policy recipes (float32 images and one-hot targets (B, K) out; no mixing):
  cifar-policy     256 x 3 x 32 x 32, 10 classes: pad-4 crop, flip, RandAugment(2, 9), Normalize, RandomErasing
                   (p 0.25, torchvision's scale and ratio, fill 0).
  imagenet-policy  64 x 3 x 256 x 256, 1000 classes: RandomResizedCrop 224 (no antialiasing), flip,
                   TrivialAugmentWide, Normalize, RandomErasing (p 0.5, torchvision's default).
Their tables add two augpipe rows, compiled: the recipe without its policy, and the plain recipe of the same data
set (cifar or imagenet above) on the same input; and they end with the targets the policy recipes are held to
(POLICY_TARGETS), each with its measured ratio.

Implementations: augpipe eager, augpipe compiled (compile=True; the first calls, which compile, are warm-up at
the timed batch size), kornia AugmentationSequential, an albumentations per-image loop plus a batched mix,
torchvision.transforms.v2 (only where importable: it is no dependency of augpipe), and the roofline: one
``out.copy_(x)`` of the uint8 input (for imagenet its 224 x 224 corner) into a preallocated float32 tensor of
the output shape: the least any implementation must read and write. Each peer's builder says what differs.
On a CPU the per-image rows come twice: once as one loop in this process (one core), and once as a "pool" that
splits the batch over as many worker processes as torch has threads (benchmarks/perimage_pool.py), so that they
get the same cores as the batched rows.

Cores: on a CPU every row records the cores its work runs on (torch's threads for the batched rows and the pools,
1 for a one-process per-image loop) and the cost of an image on one core: median seconds per call x cores /
batch, in microseconds ("us/img/core"). A one-process loop is charged one core: its per-image loop, the bulk of
its call, runs on one core (the batched mix at the end runs on torch's threads).

Fresh process (CPU, unless --no-fresh): the compiled pipeline is built and timed again in a new process that runs
nothing before it and asks nothing of malloc itself (what the pipeline asks on its first call is its own), as a
user's first pipeline would be; its row stands under the
in-process compiled row with their ratio. This process's compiled call is timed once more right after the child,
so that a change of load between the two shows.

Timing: every implementation is called a few times first (warm-up), then ``--runs`` timed runs; a run loops enough
calls to last >= 50 ms (counted once every implementation has warmed up) and its time is divided by the calls.
Runs are interleaved (run 1 of every implementation, then run 2 ...), so that load from other processes on a
shared machine falls on every row alike; the load average before and after is printed. The table gives the median
over runs. On CUDA each run ends with torch.cuda.synchronize(). Speed ratios are augpipe's images/s over the
row's. Each run also counts its page faults per call (minor faults, from getrusage, where the OS has it): printed
after the run times, and in the JSON. On a CPU each round of runs starts with ``cross_thread.round_trip_ns()``, how
long a cache line takes between two cores and back: on a shared VM it says whether the host had put the vCPUs on
different caches, which slows whatever one thread writes and another reads (see cross_thread.py).

Peak memory of one call:
  cpu   torch's CPU allocations are invisible to tracemalloc, and albumentations/OpenCV allocate outside torch,
        so each implementation is measured in a fresh child process: build it, warm it up (two calls, which
        also compiles), then read VmRSS, reset the kernel's high-water mark (``echo 5 > /proc/self/clear_refs``),
        make one call and read VmHWM. Peak = VmHWM - VmRSS before the call: every byte the call touched that
        the process did not already hold, output batch included, the input batch excluded. The child runs with
        MALLOC_MMAP_THRESHOLD_=65536 and MALLOC_TRIM_THRESHOLD_=65536 (and AUGPIPE_KEEP_FREED_MEMORY=0, so that
        the pipeline leaves them) so that glibc maps large blocks fresh and returns them on free (with its default
        dynamic thresholds, memory freed by the warm-up calls would be reused silently and the peak read low).
        Resolution: 4 KiB pages. Linux only; elsewhere "n/a". The roofline writes into a preallocated tensor, so its
        peak is ~0.
  cuda  torch.cuda.max_memory_allocated() over one call minus the memory allocated before it, in-process.
        For albumentations this counts only the device copy of its result (its work is on the host).
  pools the parent's VmHWM - VmRSS as above plus each worker's own over the same call.
"peak/out" is the peak over the bytes of the float32 output batch. "kept" is what an implementation holds between
calls for its own speed, already allocated when the call starts and so not in its peak: augpipe's window copies
and stage buffers (``Pipeline.kept_bytes``), a pool's shared output; "+kept/out" is (peak + kept) over the output
bytes.

Threads: torch uses exactly the machine's usable cores (``torch.set_num_threads``; ``--threads`` overrides) and a
pool has one worker per torch thread; OpenCV gets one thread in every process, so that a per-image loop holds one
core. All printed at the top.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):  # augpipe from a checkout, and this folder's cross_thread
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
import cross_thread  # noqa: E402  (the machine's core-to-core round trip, see its docstring)

SEED = 0


# ----------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    name: str
    batch: int
    size: int  # input height = width
    out: int  # output height = width
    classes: int
    strength: float  # brightness = contrast strength
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    title: str


RECIPES = {
    "cifar": Recipe("cifar", 256, 32, 32, 10, 0.2, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                    "flip, pad-4 crop, brightness 0.2, contrast 0.2, Normalize, Cutout 16, CutMix"),
    "imagenet": Recipe("imagenet", 64, 256, 224, 1000, 0.4, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                       "RandomResizedCrop 224, flip, brightness 0.4, contrast 0.4, Normalize, Mixup 0.2"),
}


def make_inputs(r: Recipe, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The one input batch every implementation gets: uint8 (B, 3, H, W) and int64 labels (B,)."""
    g = torch.Generator().manual_seed(SEED)
    images = torch.randint(0, 256, (r.batch, 3, r.size, r.size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, r.classes, (r.batch,), generator=g)
    return images.to(device), labels.to(device)


def soft_targets(own: torch.Tensor, other: torch.Tensor, weight_own: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, K) targets weight_own * onehot(own) + (1 - weight_own) * onehot(other), for peers that return pairs."""
    w = weight_own.float().view(-1, 1)
    t = torch.zeros(own.shape[0], classes, device=own.device)
    t.scatter_(1, own.long().view(-1, 1), w)
    return t.scatter_add_(1, other.long().view(-1, 1), 1 - w)


# ----------------------------------------------------------------------------------------------- implementations
# Each builder takes (recipe, device, images, labels) and returns (call, note): call(images, labels) ->
# (float32 images (B, 3, out, out) on device, targets (B, K) or None). A builder that cannot import its library
# raises ImportError and the row is skipped.

def build_roofline(r, device, images, labels):
    out = torch.empty(r.batch, 3, r.out, r.out, dtype=torch.float32, device=device)

    def call(x, y):
        out.copy_(x[..., :r.out, :r.out])  # uint8 -> float32: one read of the output's pixels, one write
        return out, None
    return call, "uint8 -> float32 copy of the output-sized region into a preallocated tensor; no targets"


def _augpipe_ops(r):
    import augpipe as ap
    if r.name == "cifar":
        return (ap.HorizontalFlip(), ap.RandomCrop(32, padding=4), ap.Brightness(r.strength),
                ap.Contrast(r.strength), ap.Normalize(r.mean, r.std), ap.Cutout(16), ap.CutMix(1.0))
    # antialias=False: kornia, albumentations and OpenCV resize bilinearly without averaging a shrunk footprint
    return (ap.RandomResizedCrop(r.out, antialias=False), ap.HorizontalFlip(), ap.Brightness(r.strength),
            ap.Contrast(r.strength), ap.Normalize(r.mean, r.std), ap.Mixup(0.2))


def build_augpipe_eager(r, device, images, labels):
    import augpipe as ap
    return ap.Pipeline(*_augpipe_ops(r), seed=SEED, num_classes=r.classes), "the reference recipe"


def build_augpipe_compiled(r, device, images, labels):
    import augpipe as ap
    return (ap.Pipeline(*_augpipe_ops(r), seed=SEED, num_classes=r.classes, compile=True),
            "compile=True (torch.compile); compilation happens in the warm-up calls")


def build_kornia(r, device, images, labels):
    # What differs from augpipe:
    # - kornia needs float input, so the call starts with x.float() / 255 of the whole input batch (for imagenet
    #   the full 256 x 256 images, before the crop);
    # - RandomErasing(scale=0.25, ratio=1) erases a 16 x 16 square kept wholly inside the image; Cutout centres the
    #   square anywhere and clips it at the border (smaller erased areas near edges). Same per-sample work;
    # - AugmentationSequential refuses mix ops with class labels ("not yet supported" in 0.9), so CutMix/MixUp
    #   run right after it as standalone modules with data_keys=["input", "class"], and their (label, partner,
    #   lambda) rows become (B, K) soft targets here;
    # - RandomMixUpV2 draws lambda ~ U(0, 1) per sample (no Beta(0.2, 0.2) option); the work is the same;
    # - ColorJitter is used (not ColorJiggle): its brightness multiplies and its contrast blends with the
    #   grayscale mean, torchvision's formulas. It keeps its default random order per call, as albumentations'
    #   and torchvision's ColorJitter do, where augpipe runs brightness then contrast: the same work, and kornia's
    #   faster path. order=(0, 1) would fix augpipe's order but takes a branch-free path that runs every step and
    #   selects after: measured in one process, 2 threads, whole kornia call, CIFAR 18.9 against 18.4 ms and
    #   ImageNet 366 against 333 ms (two single-factor ColorJitters in a row: 19.1 and 365 ms).
    import kornia.augmentation as K
    mean = torch.tensor(r.mean, device=device)
    std = torch.tensor(r.std, device=device)
    jitter = K.ColorJitter(brightness=r.strength, contrast=r.strength, p=1.0)
    if r.name == "cifar":
        seq = K.AugmentationSequential(
            K.RandomHorizontalFlip(p=0.5),
            K.RandomCrop((32, 32), padding=4),  # zero padding, per-sample offsets
            jitter,
            K.Normalize(mean, std),
            K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0),
        )
        mix = K.RandomCutMixV2(beta=1.0, use_correct_lambda=True, data_keys=["input", "class"])
        note = "RandomErasing square stays inside the image (Cutout clips at borders); float input; CutMix after " \
               "the AugmentationSequential"
    else:
        seq = K.AugmentationSequential(
            # align_corners=False: pixel-centre sampling like augpipe, torchvision and OpenCV (kornia's default is
            # True); the default cropping_mode="slice" is kept.
            K.RandomResizedCrop((r.out, r.out), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), align_corners=False),
            K.RandomHorizontalFlip(p=0.5),
            jitter,
            K.Normalize(mean, std),
        )
        mix = K.RandomMixUpV2(data_keys=["input", "class"])
        note = "float input (the full 256 x 256 batch converted); MixUp lambda ~ U(0, 1) not Beta(0.2, 0.2); " \
               "MixUp after the AugmentationSequential"
    seq, mix = seq.to(device), mix.to(device)

    def call(x, y):
        out = seq(x.float().div_(255))
        out, lab = mix(out, y)
        if r.name == "cifar":  # (num_mix=1, B, 3): label, partner label, lambda = the own label's share
            lab = lab[0]
            return out, soft_targets(lab[:, 0], lab[:, 1], lab[:, 2], r.classes)
        # MixUp (B, 3): out = (1 - lambda) x + lambda partner
        return out, soft_targets(lab[:, 0], lab[:, 1], 1 - lab[:, 2], r.classes)
    return call, note + "; ColorJitter in its random order per call"


class SkipRow(Exception):
    """A builder's reason not to run its row here (printed in place of the row)."""


def _host_mix(r: Recipe, device, labels):
    """The batched CutMix (cifar) or Mixup (imagenet) that the per-image albumentations rows apply to their
    stacked (B, 3, H, W) float32 result, with per-sample lambda and box drawn by numpy: (images) -> (images, targets).
    Its output is new memory; the input batch is left as it is."""
    import numpy as np
    rng = np.random.default_rng(SEED)
    labels_host = labels.cpu()
    B, H, W = r.batch, r.out, r.out

    def mix(xt):
        xt = xt.to(device)
        yt = labels_host.to(device)
        perm = torch.from_numpy(rng.permutation(B)).to(device)
        if r.name == "cifar":  # CutMix, alpha 1: box sides H sqrt(1 - lam), centre uniform, clipped
            cut = np.sqrt(1 - rng.beta(1.0, 1.0, B))
            ch, cw = (H * cut).astype(np.int64), (W * cut).astype(np.int64)
            cy, cx = rng.integers(0, H, B), rng.integers(0, W, B)
            y1, y2 = np.clip(cy - ch // 2, 0, H), np.clip(cy + ch // 2, 0, H)
            x1, x2 = np.clip(cx - cw // 2, 0, W), np.clip(cx + cw // 2, 0, W)
            box = torch.from_numpy(np.stack((y1, x1, y2, x2), 1)).to(device)
            ys = torch.arange(H, device=device).view(1, H, 1)
            xs = torch.arange(W, device=device).view(1, 1, W)
            inside = ((ys >= box[:, 0, None, None]) & (ys < box[:, 2, None, None])
                      & (xs >= box[:, 1, None, None]) & (xs < box[:, 3, None, None]))  # (B, H, W)
            xt = torch.where(inside[:, None], xt[perm], xt)
            lam = 1 - ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).float() / (H * W)
        else:  # Mixup, alpha 0.2, per-sample lambda
            lam = torch.from_numpy(rng.beta(0.2, 0.2, B)).float().to(device)
            partner = xt[perm]
            xt = partner.lerp_(xt, lam.view(-1, 1, 1, 1))  # lam x + (1 - lam) partner
        return xt, soft_targets(yt, yt[perm], lam, r.classes)
    return mix


def _albumentations_note(r: Recipe) -> str:
    hole = "; CoarseDropout hole inside the image" if r.name == "cifar" else ""
    return f"ColorJitter on uint8 in random order{hole}; batch {'CutMix' if r.name == 'cifar' else 'Mixup'} in torch"


def build_albumentations(r, device, images, labels):
    # What differs from augpipe:
    # - per image on the host, in one Python loop with one OpenCV thread: one core, one DataLoader worker's view
    #   (the albumentations-pool row runs it on every core); the HWC uint8 arrays that albumentations wants are made
    #   once here, outside the timed call, as a decoder would hand them over;
    # - ColorJitter(saturation=0, hue=0) runs on uint8 (rounded to uint8 between steps) in a random order per image
    #   (torchvision's default). RandomBrightnessContrast was not used: its brightness is additive
    #   (x + b * 255), not a factor, so its ranges cannot match ColorJitter's;
    # - CoarseDropout keeps the 16 x 16 hole inside the image (Cutout clips at borders);
    # - albumentations has no batch op, so CutMix/Mixup are done here on the stacked torch batch, batched with per-
    #   sample lambda and box (numpy draws them); on CUDA the host result is copied to the device first;
    # - the image is written straight into a preallocated (B, C, H, W) float32 array, so no extra batch permute.
    import albumentations as A
    import numpy as np
    from perimage_pool import albumentations_steps
    tf = A.Compose(albumentations_steps(r.name, r.strength, r.mean, r.std, r.out), seed=SEED)
    hwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C) uint8
    mix = _host_mix(r, device, labels)
    B, H, W = r.batch, r.out, r.out

    def call(x, y):
        out = np.empty((B, 3, H, W), dtype=np.float32)
        for i in range(B):
            out[i] = tf(image=hwc[i])["image"].transpose(2, 0, 1)
        return mix(torch.from_numpy(out))
    return call, "per-image loop on the host, one process, one OpenCV thread; " + _albumentations_note(r)


class _PoolCall:
    """call(x, y) for a per-image pool: the workers fill the shared output, then ``finish`` makes the result.
    Carries the pool's kept bytes and its workers' peak memory for bench_peers' memory columns."""

    def __init__(self, pool, finish):
        self.pool, self.finish = pool, finish

    def __call__(self, x, y):
        return self.finish(torch.from_numpy(self.pool()), y)

    def kept_bytes(self) -> int:
        return self.pool.kept_bytes()

    def reset_peaks(self) -> None:
        self.pool.reset_peaks()

    def peak_bytes(self) -> int:
        return self.pool.peak_bytes()


def _pool_workers(device) -> int:
    if device.type != "cpu":
        raise SkipRow("CPU only: it compares per-image work on the same CPU cores as the batched rows")
    return torch.get_num_threads()


def build_albumentations_pool(r, device, images, labels):
    # The albumentations row's per-image work in as many worker processes as torch has threads, so that it uses
    # the same cores as augpipe and kornia (benchmarks/perimage_pool.py: a fixed slice of the batch per worker, one
    # OpenCV thread each, input and output in shared memory, the pool started outside the timed calls). The batched
    # mix then runs in this process on torch's threads, as in the one-process row.
    import albumentations  # noqa: F401  (not importable: the row is skipped before any worker starts)
    import numpy as np
    from perimage_pool import PerImagePool
    workers = _pool_workers(device)
    hwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C) uint8
    spec = {"library": "albumentations", "recipe": r.name, "strength": r.strength, "mean": r.mean, "std": r.std,
            "out": r.out}
    pool = PerImagePool(spec, hwc, (r.batch, 3, r.out, r.out), workers, seed=SEED)
    mix = _host_mix(r, device, labels)
    return (_PoolCall(pool, lambda out, y: mix(out)),
            f"{workers} worker processes, one slice of the batch and one OpenCV thread each, shared memory in "
            f"and out; " + _albumentations_note(r))


def _torchvision_mix(r: Recipe):
    from torchvision.transforms import v2
    return v2.CutMix(alpha=1.0, num_classes=r.classes) if r.name == "cifar" else v2.MixUp(alpha=0.2,
                                                                                          num_classes=r.classes)


def build_torchvision(r, device, images, labels):
    # What differs from augpipe (written from the torchvision docs; torchvision is not installed where this
    # benchmark was developed, so this row has only run where someone had it):
    # - v2 transforms draw one set of parameters per call, so per-sample randomness needs one call per image: a
    #   Python loop, then torch.stack;
    # - ColorJitter applies its steps in a random order per image (torchvision's behaviour);
    # - RandomErasing(scale=0.25, ratio=1) keeps the 16 x 16 square inside the image (Cutout clips at borders);
    # - CutMix and MixUp draw one lambda (and one box) for the whole batch, not per sample;
    # - RandomResizedCrop with antialias=False, to match the others' plain bilinear resampling.
    from perimage_pool import torchvision_transform
    per_image = torchvision_transform(r.name, r.strength, r.mean, r.std, r.out)
    mix = _torchvision_mix(r)

    def call(x, y):
        out = torch.stack([per_image(img) for img in x])
        return mix(out, y)
    return call, "per-image loop (v2 draws one set of params per call); one mix lambda per batch"


def build_torchvision_pool(r, device, images, labels):
    # The torchvision row's per-image work in as many worker processes as torch has threads, one torch thread
    # each (see build_albumentations_pool); the mix runs in this process on the stacked batch.
    import torchvision  # noqa: F401  (not importable: the row is skipped before any worker starts)
    from perimage_pool import PerImagePool
    workers = _pool_workers(device)
    spec = {"library": "torchvision", "recipe": r.name, "strength": r.strength, "mean": r.mean, "std": r.std,
            "out": r.out}
    pool = PerImagePool(spec, images.cpu().numpy(), (r.batch, 3, r.out, r.out), workers, seed=SEED)
    mix = _torchvision_mix(r)
    return (_PoolCall(pool, lambda out, y: mix(out, y)),
            f"{workers} worker processes, one slice of the batch and one torch thread each, shared memory in and "
            f"out; one mix lambda per batch")


IMPLS = {  # key -> (label, builder)
    "roofline": ("roofline copy", build_roofline),
    "augpipe-eager": ("augpipe eager", build_augpipe_eager),
    "augpipe-compiled": ("augpipe compiled", build_augpipe_compiled),
    "kornia": ("kornia", build_kornia),
    "albumentations": ("albumentations", build_albumentations),
    "albumentations-pool": ("albumentations pool", build_albumentations_pool),
    "torchvision": ("torchvision v2", build_torchvision),
    "torchvision-pool": ("torchvision v2 pool", build_torchvision_pool),
}
# Rows whose work is one Python loop over the images: one core, whatever the thread settings.
ONE_CORE = {"albumentations", "torchvision"}


# ----------------------------------------------------------------------------------------------- policy recipes
@dataclass(frozen=True)
class PolicyRecipe(Recipe):
    """A recipe with a per-sample augmentation policy and RandomErasing and no mixing (targets are one-hot); its
    ``strength`` is unused. ``plain``: the recipe without a policy whose compiled call it is held against."""
    erase_p: float = 0.5
    plain: str = ""


POLICY_RECIPES = {
    "cifar-policy": PolicyRecipe("cifar-policy", 256, 32, 32, 10, 0.0, RECIPES["cifar"].mean, RECIPES["cifar"].std,
                                 "pad-4 crop, flip, RandAugment(2, 9), Normalize, RandomErasing 0.25",
                                 erase_p=0.25, plain="cifar"),
    "imagenet-policy": PolicyRecipe("imagenet-policy", 64, 256, 224, 1000, 0.0, RECIPES["imagenet"].mean,
                                    RECIPES["imagenet"].std, "RandomResizedCrop 224 (no antialiasing), flip, "
                                    "TrivialAugmentWide, Normalize, RandomErasing 0.5", erase_p=0.5, plain="imagenet"),
}
RECIPES.update(POLICY_RECIPES)


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, K) float targets of int labels: what augpipe returns for a recipe without mixing."""
    return torch.nn.functional.one_hot(labels.long(), classes).float()


def _policy_ops(r: PolicyRecipe, with_policy: bool = True) -> tuple:
    import augpipe as ap
    if r.name == "cifar-policy":
        head, policy = (ap.RandomCrop(32, padding=4), ap.HorizontalFlip()), ap.RandAugment(num_ops=2, magnitude=9)
    else:  # antialias=False: the peers read RandomResizedCrop without antialiasing
        head, policy = (ap.RandomResizedCrop(r.out, antialias=False), ap.HorizontalFlip()), ap.TrivialAugmentWide()
    return head + ((policy,) if with_policy else ()) + (ap.Normalize(r.mean, r.std), ap.RandomErasing(p=r.erase_p))


def build_policy_eager(r, device, images, labels):
    import augpipe as ap
    return ap.Pipeline(*_policy_ops(r), seed=SEED, num_classes=r.classes), "the reference recipe"


def build_policy_compiled(r, device, images, labels):
    import augpipe as ap
    return (ap.Pipeline(*_policy_ops(r), seed=SEED, num_classes=r.classes, compile=True),
            "compile=True (torch.compile); compilation happens in the warm-up calls")


def build_policy_base(r, device, images, labels):
    import augpipe as ap
    return (ap.Pipeline(*_policy_ops(r, with_policy=False), seed=SEED, num_classes=r.classes, compile=True),
            "compile=True; the same recipe without its policy: what the policy adds")


def build_policy_plain(r, device, images, labels):
    import augpipe as ap
    plain = replace(RECIPES[r.plain], batch=r.batch)
    return (ap.Pipeline(*_augpipe_ops(plain), seed=SEED, num_classes=plain.classes, compile=True),
            f"compile=True; the {plain.name} recipe ({plain.title}) on the same input: the yardstick of the policy "
            f"recipe's call")


def build_kornia_policy(r, device, images, labels):
    # What differs from augpipe:
    # - kornia needs float input, so the call starts with x.float() / 255 of the whole input batch (for imagenet
    #   the full 256 x 256 images, before the crop);
    # - kornia.augmentation.auto.RandAugment(n=2, m=9) and TrivialAugment() draw their ops once per call, for the
    #   whole batch (the magnitudes' signs per sample); augpipe draws ops and magnitudes per sample;
    # - kornia's own op sets and ranges: RandAugment picks 2 distinct ops of 15 (with Invert and SolarizeAdd, no
    #   Identity), TrivialAugment 1 of 12 (no Identity, Colour or Invert), where torchvision's (and augpipe's) pick
    #   from 14 with replacement; the work per op is alike;
    # - RandomErasing draws torchvision's box ranges per sample, p per sample, fill 0, as augpipe's.
    import kornia.augmentation as K
    from kornia.augmentation.auto import RandAugment, TrivialAugment
    mean = torch.tensor(r.mean, device=device)
    std = torch.tensor(r.std, device=device)
    erase = K.RandomErasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, p=r.erase_p)
    if r.name == "cifar-policy":
        seq = K.AugmentationSequential(K.RandomCrop((32, 32), padding=4), K.RandomHorizontalFlip(p=0.5),
                                       RandAugment(n=2, m=9), K.Normalize(mean, std), erase)
        policy = "RandAugment(n=2, m=9)"
    else:
        seq = K.AugmentationSequential(
            K.RandomResizedCrop((r.out, r.out), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), align_corners=False),
            K.RandomHorizontalFlip(p=0.5), TrivialAugment(), K.Normalize(mean, std), erase)
        policy = "TrivialAugment()"
    seq = seq.to(device)

    def call(x, y):
        return seq(x.float().div_(255)), one_hot(y, r.classes)
    return call, f"kornia.augmentation.auto.{policy}: one op set per call for the whole batch; float input"


def _per_image_policy_note(library: str) -> str:
    if library == "torchvision":
        return "v2's own RandAugment / TrivialAugmentWide, bilinear, drawn per image"
    return "the policy as albumentations' nearest ops (SomeOf / OneOf, perimage_pool.albumentations_policy_steps)"


def build_albumentations_policy(r, device, images, labels):
    # What differs from augpipe: per image on the host, one Python loop with one OpenCV thread (the pool row runs it
    # on every core); albumentations has no RandAugment or TrivialAugment, so the policy is its nearest ops at
    # torchvision's magnitudes (perimage_pool.albumentations_policy_steps says which), with magnitudes drawn from
    # the symmetric range where the policy picks +-magnitude; Equalize is OpenCV's; the HWC uint8 arrays are made
    # once here, outside the timed call, as a decoder would hand them over.
    import albumentations as A
    import numpy as np
    from perimage_pool import albumentations_steps
    tf = A.Compose(albumentations_steps(r.name, r.strength, r.mean, r.std, r.out), seed=SEED)
    hwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C) uint8
    B, H, W = r.batch, r.out, r.out

    def call(x, y):
        out = np.empty((B, 3, H, W), dtype=np.float32)
        for i in range(B):
            out[i] = tf(image=hwc[i])["image"].transpose(2, 0, 1)
        return torch.from_numpy(out).to(device), one_hot(y, r.classes)
    return call, ("per-image loop on the host, one process, one OpenCV thread; "
                  + _per_image_policy_note("albumentations"))


def build_albumentations_policy_pool(r, device, images, labels):
    # The one-process row's per-image work in as many worker processes as torch has threads (see
    # build_albumentations_pool).
    import albumentations  # noqa: F401  (not importable: the row is skipped before any worker starts)
    import numpy as np
    from perimage_pool import PerImagePool
    workers = _pool_workers(device)
    hwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())  # (B, H, W, C) uint8
    spec = {"library": "albumentations", "recipe": r.name, "strength": r.strength, "mean": r.mean, "std": r.std,
            "out": r.out}
    pool = PerImagePool(spec, hwc, (r.batch, 3, r.out, r.out), workers, seed=SEED)
    return (_PoolCall(pool, lambda out, y: (out.to(device), one_hot(y, r.classes))),
            f"{workers} worker processes, one slice of the batch and one OpenCV thread each, shared memory in and "
            f"out; " + _per_image_policy_note("albumentations"))


def build_torchvision_policy(r, device, images, labels):
    # What differs from augpipe (written from the torchvision docs; see build_torchvision): v2 transforms draw one
    # set of parameters per call, so per-sample randomness needs one call per image, then torch.stack; v2's policies
    # read bilinearly here (their default is nearest), as augpipe's do.
    from perimage_pool import torchvision_transform
    per_image = torchvision_transform(r.name, r.strength, r.mean, r.std, r.out)

    def call(x, y):
        return torch.stack([per_image(img) for img in x]), one_hot(y, r.classes)
    return call, "per-image loop (v2 draws one set of params per call); " + _per_image_policy_note("torchvision")


def build_torchvision_policy_pool(r, device, images, labels):
    import torchvision  # noqa: F401  (not importable: the row is skipped before any worker starts)
    from perimage_pool import PerImagePool
    workers = _pool_workers(device)
    spec = {"library": "torchvision", "recipe": r.name, "strength": r.strength, "mean": r.mean, "std": r.std,
            "out": r.out}
    pool = PerImagePool(spec, images.cpu().numpy(), (r.batch, 3, r.out, r.out), workers, seed=SEED)
    return (_PoolCall(pool, lambda out, y: (out.to(device), one_hot(y, r.classes))),
            f"{workers} worker processes, one slice of the batch and one torch thread each, shared memory in and "
            f"out; " + _per_image_policy_note("torchvision"))


POLICY_IMPLS = {  # key -> (label, builder), for the policy recipes
    "roofline": IMPLS["roofline"],
    "augpipe-eager": ("augpipe eager", build_policy_eager),
    "augpipe-compiled": ("augpipe compiled", build_policy_compiled),
    "augpipe-compiled-base": ("augpipe compiled, no policy", build_policy_base),
    "augpipe-compiled-plain": ("augpipe compiled, plain recipe", build_policy_plain),
    "kornia": ("kornia", build_kornia_policy),
    "albumentations": ("albumentations", build_albumentations_policy),
    "albumentations-pool": ("albumentations pool", build_albumentations_policy_pool),
    "torchvision": ("torchvision v2", build_torchvision_policy),
    "torchvision-pool": ("torchvision v2 pool", build_torchvision_policy_pool),
}
# The policy recipes' targets: (row, "faster", x): augpipe compiled's call at least x times faster than the row's;
# (row, "at most", x): augpipe compiled's call at most x times the row's. Reported, never tuned for.
POLICY_TARGETS = {
    "cifar-policy": (("kornia", "faster", 5.0), ("albumentations", "faster", 20.0),
                     ("albumentations-pool", "faster", 20.0), ("augpipe-compiled-plain", "at most", 2.5)),
    "imagenet-policy": (("kornia", "faster", 3.0), ("albumentations-pool", "faster", 1.0)),
}
# Rows that always run, as the ratio columns and the targets refer to them.
ALWAYS = ("roofline", "augpipe-eager", "augpipe-compiled", "augpipe-compiled-plain")


def impls_for(r: Recipe) -> dict:
    return POLICY_IMPLS if isinstance(r, PolicyRecipe) else IMPLS


def policy_targets(r: Recipe, by_key: dict) -> list[dict]:
    """Each target of a policy recipe with its measured ratio (median call times) and whether it holds; a row that
    did not run gives None. The same ratio of us / image / core is there too where the row has one."""
    ours = by_key.get("augpipe-compiled")
    found = []
    for key, kind, bound in POLICY_TARGETS.get(r.name, ()):
        row = by_key.get(key)
        entry = {"row": key, "kind": kind, "bound": bound, "value": None, "holds": None}
        if ours is not None and row is not None:
            slow, fast = (row, ours) if kind == "faster" else (ours, row)
            entry["value"] = slow["s_per_call"] / fast["s_per_call"]
            entry["holds"] = entry["value"] >= bound if kind == "faster" else entry["value"] <= bound
            if "us_per_image_per_core" in row and "us_per_image_per_core" in ours:
                entry["per_core_ratio"] = slow["us_per_image_per_core"] / fast["us_per_image_per_core"]
        found.append(entry)
    return found


def target_words(t: dict) -> str:
    if t["kind"] == "faster":
        return (f"at least as fast as {t['row']}" if t["bound"] == 1
                else f"at least {t['bound']:g}x faster than {t['row']}")
    return f"at most {t['bound']:g}x the call of {t['row']}"


def print_targets(targets: list[dict]) -> None:
    for t in targets:
        what = target_words(t)
        if t["value"] is None:
            print(f"  target: augpipe compiled {what}: not measured (a row did not run)")
            continue
        core = f"; per image per core {t['per_core_ratio']:.2f}x" if "per_core_ratio" in t else ""
        print(f"  target: augpipe compiled {what}: {t['value']:.2f}x{core} -> "
              f"{'holds' if t['holds'] else 'does not hold'}")


# ----------------------------------------------------------------------------------------------- measuring
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dynamo_graphs() -> int:
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:
        return 0


def warm_up(call, x, y, device, warmup: int) -> dict:
    """Call ``warmup`` times; the first call compiles, if anything does."""
    t0 = time.perf_counter()
    call(x, y)
    sync(device)
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        call(x, y)
    return {"first_call_s": first_s, "runs_s": [], "graphs_compiled_while_timing": 0}


def size_run(call, x, y, device, min_run_s: float) -> int:
    """Calls per run, for a run to last >= min_run_s: from the fastest of three calls (one slow call made runs far
    shorter than min_run_s). Done once every implementation has warmed up, so that the calls are sized in the state
    the timed runs meet: sized right after its own warm-up, a compiled CPU call still met the page faults of a
    fresh process (3.9 ms, where the timed runs took 1.2), and its runs lasted 16 ms."""
    per_call = []
    for _ in range(3):
        sync(device)
        t0 = time.perf_counter()
        call(x, y)
        sync(device)
        per_call.append(time.perf_counter() - t0)
    return max(1, math.ceil(min_run_s / max(min(per_call), 1e-9)))


def page_faults() -> int | None:
    """Minor page faults of this process so far (None where the OS does not count them): a fresh 4 KiB page each,
    the cost that separates a run of calls reusing freed memory from one that maps it anew (see augpipe.memory)."""
    try:
        import resource
    except ImportError:  # not Unix
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_interleaved(calls: dict, timings: dict, x, y, device, runs: int, probe: bool = True) -> list:
    """Run r of every implementation, then run r + 1 of every one: load from other processes on a shared machine
    then falls on all rows alike instead of on whichever happened to run at that moment. Each run also notes the
    page faults its calls met, per call. Returns, on a CPU, the cross-thread round trip measured before each round
    (``cross_thread.round_trip_ns``, None where there is no probe): which state of a shared VM each round met."""
    probes = []
    for _ in range(runs):
        if probe and device.type == "cpu":
            probes.append(cross_thread.round_trip_ns())
        for key, call in calls.items():
            t = timings[key]
            graphs, faults = dynamo_graphs(), page_faults()
            t0 = time.perf_counter()
            for _ in range(t["calls_per_run"]):
                call(x, y)
            sync(device)
            t["runs_s"].append((time.perf_counter() - t0) / t["calls_per_run"])
            t["graphs_compiled_while_timing"] += dynamo_graphs() - graphs
            if faults is not None:
                t.setdefault("page_faults_per_call", []).append((page_faults() - faults) / t["calls_per_run"])
    for t in timings.values():
        t["s_per_call"] = statistics.median(t["runs_s"])
    return probes


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def peak_one_call_cpu(call, x, y) -> int:
    """VmHWM - VmRSS around one call, after resetting the high-water mark (see the module docstring); for a call
    that has worker processes (a per-image pool), plus each worker's own VmHWM - VmRSS over the same call."""
    gc.collect()
    workers = hasattr(call, "reset_peaks")
    if workers:
        call.reset_peaks()
    before = _proc_status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    result = call(x, y)
    peak = max(_proc_status_bytes("VmHWM") - before, 0)
    del result
    return peak + (call.peak_bytes() if workers else 0)


def kept_bytes(call) -> int:
    """What an implementation holds between calls for its own speed (augpipe: window copies, stage buffers)."""
    return call.kept_bytes() if hasattr(call, "kept_bytes") else 0


def peak_one_call_cuda(call, x, y, device) -> int:
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = call(x, y)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del result
    return peak


def _apply_inductor_options() -> None:
    """--inductor-options, passed on to the memory child through the environment."""
    given = os.environ.get("BENCH_INDUCTOR_OPTIONS")
    if given:
        import augpipe.backends
        augpipe.backends.INDUCTOR_OPTIONS.update(json.loads(given))


def memory_child(spec: str) -> None:
    """--_memory-child RECIPE:IMPL:BATCH: build, warm up, print {"peak_bytes": n} as the last line."""
    recipe, impl, batch = spec.split(":")
    r, device = replace(RECIPES[recipe], batch=int(batch)), torch.device("cpu")
    x, y = make_inputs(r, device)
    call, _ = impls_for(r)[impl][1](r, device, x, y)
    for _ in range(2):
        call(x, y)
    print(json.dumps({"peak_bytes": peak_one_call_cpu(call, x, y), "kept_bytes": kept_bytes(call)}))


def fresh_child(spec: str) -> None:
    """--_fresh-child RECIPE:BATCH:RUNS:WARMUP:MIN_RUN_S: the compiled augpipe pipeline as a user's first one.

    This process does nothing before it: no other implementation has run, no memory has been freed, and nothing
    is asked of malloc but what the pipeline asks on its first call (``augpipe.memory.keep_freed_memory_once``).
    It builds the recipe with compile=True, makes
    the warm-up calls (the first compiles), then times its runs as the parent times its own, and prints
    {"s_per_call", "runs_s", "calls_per_run", "first_call_s", "page_faults_per_call"} as its last line."""
    recipe, batch, runs, warmup, min_run_s = spec.split(":")
    r, device = replace(RECIPES[recipe], batch=int(batch)), torch.device("cpu")
    x, y = make_inputs(r, device)
    call, _ = impls_for(r)["augpipe-compiled"][1](r, device, x, y)
    timing = warm_up(call, x, y, device, int(warmup))
    timing["calls_per_run"] = size_run(call, x, y, device, float(min_run_s))
    time_interleaved({"fresh": call}, {"fresh": timing}, x, y, device, int(runs), probe=False)
    print(json.dumps(timing))


def fresh_in_child(r: Recipe, threads: int, runs: int, warmup: int, min_run_s: float) -> dict:
    """The fresh-process timing of the compiled pipeline (see ``fresh_child``), or {"error": why}."""
    env = dict(os.environ, BENCH_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_fresh-child",
           f"{r.name}:{r.batch}:{runs}:{warmup}:{min_run_s}"]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"error": "fresh-process child timed out"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"fresh-process child failed: {tail[:160]}"}


def fresh_row(r: Recipe, threads: int, runs: int, warmup: int, min_run_s: float, in_process: dict, call, x, y,
              device) -> dict:
    """The fresh-process row: the child's timing, next to this process's compiled number and their ratio. Right
    after the child, this process times its own compiled call again (the same runs, nothing in between), so that
    a change of load on a shared machine shows as a difference between the two in-process numbers."""
    row = {"key": "augpipe-compiled-fresh", "label": "augpipe compiled, fresh process"}
    timing = fresh_in_child(r, threads, runs, warmup, min_run_s)
    again = {"calls_per_run": in_process["calls_per_run"], "runs_s": [], "graphs_compiled_while_timing": 0}
    time_interleaved({"again": call}, {"again": again}, x, y, device, runs, probe=False)
    if "error" in timing:
        return dict(row, skipped=timing["error"])
    return dict(row, note="compile=True, timed in a new process that runs nothing else first and asks nothing of "
                          "malloc (a user's first pipeline)",
                **timing, images_per_s=r.batch / timing["s_per_call"],
                in_process_s_per_call=in_process["s_per_call"], in_process_after_s_per_call=again["s_per_call"],
                fresh_over_in_process=timing["s_per_call"] / in_process["s_per_call"])


def peak_in_child(r: Recipe, impl: str, threads: int) -> tuple[int | None, int | None, str]:
    """(peak bytes of one call, bytes kept between calls, note) from a fresh child process."""
    if not (os.path.exists("/proc/self/clear_refs") and sys.platform.startswith("linux")):
        return None, None, "n/a: needs Linux /proc"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536",
               AUGPIPE_KEEP_FREED_MEMORY="0",
               BENCH_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_memory-child", f"{r.name}:{impl}:{r.batch}"]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, None, "memory child timed out"
    try:
        report = json.loads(p.stdout.strip().splitlines()[-1])
        return int(report["peak_bytes"]), int(report["kept_bytes"]), ""
    except (ValueError, IndexError, KeyError):  # a failed child costs the memory column, not the run
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return None, None, f"memory child failed: {tail[:120]}"


# ----------------------------------------------------------------------------------------------- reporting
def machine_info(device, threads: int) -> dict:
    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception:
            return None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M).group(1)
    except Exception:
        pass
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
    except Exception:
        rev = None
    info = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "platform": platform.platform(),
            "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "usable_cores": _cores(), "torch_threads": threads,
            "device": str(device), "augpipe_git": rev,
            "versions": {m: version(m) for m in ("torch", "augpipe", "kornia", "albumentations", "numpy", "cv2",
                                                 "torchvision")}}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def print_table(r: Recipe, rows: list[dict], device, load) -> None:
    print(f"\n{r.name}: {r.batch} x 3 x {r.size} x {r.size} uint8 -> {r.batch} x 3 x {r.out} x {r.out} float32, "
          f"{r.classes} classes, {device}: {r.title}"
          + (f" (load average {load[0]:.2f} when it started)" if load else ""))
    w = max(len(row["label"]) for row in rows)
    head = (f"{'implementation':<{w}} {'ms/call':>9} {'images/s':>10} {'eager x':>8} {'compiled x':>10} "
            f"{'roofline':>8} {'cores':>5} {'us/img/core':>11} {'peak MiB':>9} {'peak/out':>8} {'kept MiB':>8} "
            f"{'+kept/out':>9}")
    print(head)
    print("-" * len(head))

    def num(v, fmt):
        return format(v, fmt) if v is not None else "-"
    for row in rows:
        if "skipped" in row:
            print(f"{row['label']:<{w}} skipped: {row['skipped']}")
            continue
        peak, kept = row.get("peak_bytes"), row.get("kept_bytes")
        print(f"{row['label']:<{w}} {row['s_per_call'] * 1e3:>9.2f} {row['images_per_s']:>10.0f} "
              f"{num(row.get('eager_x'), '8.2f'):>8} {num(row.get('compiled_x'), '10.2f'):>10} "
              f"{num(row.get('roofline_fraction'), '8.3f'):>8} {num(row.get('cores_used'), '5d'):>5} "
              f"{num(row.get('us_per_image_per_core'), '11.2f'):>11} "
              f"{num(None if peak is None else peak / 2 ** 20, '9.1f'):>9} "
              f"{num(row.get('peak_over_output'), '8.2f'):>8} "
              f"{num(None if kept is None else kept / 2 ** 20, '8.1f'):>8} "
              f"{num(row.get('peak_and_kept_over_output'), '9.2f'):>9}")
    print("eager x / compiled x: the row's time over augpipe eager's / compiled's; roofline: roofline time / "
          "row time; cores: cores the row's work runs on; us/img/core: ms/call x cores / batch, in microseconds; "
          "peak: one call; kept: held between calls for speed (see docstring)")
    for row in rows:
        if "skipped" in row:
            continue
        extra = []
        if row["key"] in ("augpipe-compiled", "augpipe-compiled-fresh"):
            extra.append(f"first call (compiles) {row['first_call_s']:.1f} s")
        if row["key"] == "augpipe-compiled-fresh":
            extra.append(f"{row['fresh_over_in_process']:.2f} x this process's {row['in_process_s_per_call'] * 1e3:.2f}"
                         f" ms (timed again right after the child: {row['in_process_after_s_per_call'] * 1e3:.2f} ms)")
        if row.get("graphs_compiled_while_timing"):
            extra.append(f"WARNING: {row['graphs_compiled_while_timing']} graphs compiled during timed runs")
        if row.get("memory_note"):
            extra.append(row["memory_note"])
        print(f"  {row['label']}: {row['note']}" + "".join(f"; {e}" for e in extra)
              + f" [{row['calls_per_run']} calls/run, runs ms: "
              + ", ".join(f"{t * 1e3:.2f}" for t in row["runs_s"])
              + ("; page faults a call: " + ", ".join(f"{f:.0f}" for f in row["page_faults_per_call"])
                 if "page_faults_per_call" in row else "") + "]")


def profile_augpipe(r: Recipe, device, x, y) -> None:
    from torch.profiler import ProfilerActivity, profile
    for key in ("augpipe-eager", "augpipe-compiled"):
        call, _ = impls_for(r)[key][1](r, device, x, y)
        for _ in range(3):
            call(x, y)
        sync(device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(5):
                call(x, y)
            sync(device)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\nprofile: {r.name} {key}, 5 calls, by self time")
        print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=48))


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipe", default="all",
                    help=f"one of {', '.join(RECIPES)}, a comma list of them, or all (default: every recipe)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per implementation (default 7, quick 3)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers and the machine info here")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter runs: a smoke test, not a measurement")
    ap.add_argument("--batch", default=None,
                    help="override the recipes' batch size; a comma list runs each (e.g. 1024,32768 on a GPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenCV threads (default: every usable core; fewer can steady a shared machine)")
    every_impl = list(dict.fromkeys([*IMPLS, *POLICY_IMPLS]))
    ap.add_argument("--impls", default=",".join(every_impl),
                    help=f"comma-separated subset of {','.join(every_impl)} (augpipe-compiled-base and "
                         f"augpipe-compiled-plain: policy recipes only)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory column (faster on CPU)")
    ap.add_argument("--no-fresh", action="store_true",
                    help="skip the fresh-process row (on a CPU: the compiled pipeline timed in a new process)")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler top ops of augpipe")
    ap.add_argument("--inductor-options", default=None,
                    help="JSON of torch.compile inductor options for augpipe-compiled on --device, replacing "
                         "augpipe.backends.INDUCTOR_OPTIONS (to compare fusion choices)")
    ap.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_fresh-child", dest="fresh_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inductor_options is not None:
        device_type = args.device.split(":")[0]
        os.environ["BENCH_INDUCTOR_OPTIONS"] = json.dumps({device_type: json.loads(args.inductor_options)})
    _apply_inductor_options()

    threads = args.threads or int(os.environ.get("BENCH_THREADS", _cores()))
    torch.set_num_threads(threads)
    try:  # OpenCV serves only the per-image rows, each of which is meant to hold one core per process
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    torch.manual_seed(SEED)  # kornia and torchvision draw from the global generator
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.fresh_child:
        fresh_child(args.fresh_child)
        return

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_peers: --device cuda but torch.cuda.is_available() is False")
    runs = args.runs or (3 if args.quick else 7)
    try:
        batches = [None] if args.batch is None else [int(b) for b in args.batch.split(",")]
    except ValueError:
        sys.exit(f"bench_peers: --batch takes integers separated by commas, got {args.batch!r}")
    if runs < 1 or any(b is not None and b < 2 for b in batches):
        sys.exit("bench_peers: --runs must be >= 1 and --batch >= 2")
    warmup, min_run_s = (2, 0.02) if args.quick else (3, 0.05)
    keys = [k.strip() for k in args.impls.split(",") if k.strip()]
    unknown = [k for k in keys if k not in every_impl]
    if unknown:
        sys.exit(f"bench_peers: unknown --impls {unknown}; choose from {every_impl}")
    recipes = list(RECIPES) if args.recipe == "all" else [n.strip() for n in args.recipe.split(",") if n.strip()]
    if not recipes or any(n not in RECIPES for n in recipes):
        sys.exit(f"bench_peers: --recipe takes {', '.join(RECIPES)}, a comma list of them or all, got {args.recipe!r}")
    info = machine_info(device, threads)

    how = "--threads" if args.threads else f"all {_cores()} usable cores"
    print(f"bench_peers: torch {torch.__version__}, torch.set_num_threads({threads}) ({how}), "
          f"opencv threads 1 (per-image rows: one core per process; their pools: {threads} processes); "
          f"{info['cpu']}; {info['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v is not None)
          + (f"; augpipe tree {info['augpipe_git']}" if info["augpipe_git"] else ""))
    import augpipe.backends
    options = augpipe.backends.INDUCTOR_OPTIONS.get(device.type)
    print(f"inductor options of augpipe-compiled on {device.type}: {options}")
    print(f"{runs} timed runs per implementation after {warmup} warm-up calls, each run >= {min_run_s * 1e3:.0f} ms;"
          f" median reported" + (" (--quick: a smoke test, not a measurement)" if args.quick else ""))

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_before:
        busy = " (other processes share these cores: expect noisy numbers)" if load_before[0] > 0.5 else ""
        print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}{busy}")
    started = time.perf_counter()
    settings = {"runs": runs, "warmup_calls": warmup, "min_run_s": min_run_s, "quick": args.quick, "seed": SEED,
                "inductor_options": options, "opencv_threads": 1,
                "pool_workers": threads, "fresh_process": device.type == "cpu" and not args.no_fresh}
    report = {"machine": info, "load_average_before": load_before, "settings": settings, "recipes": {}}
    for name, batch in [(n, b) for n in recipes for b in batches]:
        r = RECIPES[name] if batch is None else replace(RECIPES[name], batch=batch)
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        x, y = make_inputs(r, device)
        out_bytes = r.batch * 3 * r.out * r.out * 4
        rows, calls, timings, notes = {}, {}, {}, {}
        impls = impls_for(r)
        for key in [k for k in impls if k in keys or k in ALWAYS]:  # ALWAYS: the ratios and targets refer to them
            label, builder = impls[key]
            label = f"{label}, {threads} processes" if key.endswith("-pool") else label
            rows[key] = {"key": key, "label": label}
            try:
                calls[key], notes[key] = builder(r, device, x, y)
                timings[key] = warm_up(calls[key], x, y, device, warmup)
            except ImportError as e:
                rows[key]["skipped"] = f"not importable ({e})"
            except SkipRow as e:
                rows[key]["skipped"] = str(e)
            except Exception as e:  # a peer that breaks on this machine is reported, not fatal
                rows[key]["skipped"] = f"failed: {type(e).__name__}: {e}"[:200]
        calls = {k: c for k, c in calls.items() if k in timings}
        for key, call in calls.items():
            timings[key]["calls_per_run"] = size_run(call, x, y, device, min_run_s)
        print(f"  {name}: warmed up {', '.join(calls)}; timing {runs} interleaved runs", flush=True)
        probes = time_interleaved(calls, timings, x, y, device, runs)
        for key, t in timings.items():
            rows[key].update(note=notes[key], **t, images_per_s=r.batch / t["s_per_call"])
        fresh = None
        if settings["fresh_process"] and "augpipe-compiled" in calls:
            print(f"  {name}: timing the compiled pipeline in a fresh process", flush=True)
            fresh = fresh_row(r, threads, runs, warmup, min_run_s, timings["augpipe-compiled"],
                              calls["augpipe-compiled"], x, y, device)
        for key in list(calls):
            row = rows[key]
            if args.no_memory:
                continue
            if device.type == "cuda":
                row["peak_bytes"], row["memory_note"] = peak_one_call_cuda(calls[key], x, y, device), ""
                row["kept_bytes"] = kept_bytes(calls[key])
            else:
                del calls[key]  # the child rebuilds it; free this process's copy first
                gc.collect()
                row["peak_bytes"], row["kept_bytes"], row["memory_note"] = peak_in_child(r, key, threads)
            if row["peak_bytes"] is not None:
                row["peak_over_output"] = row["peak_bytes"] / out_bytes
                row["peak_and_kept_over_output"] = (row["peak_bytes"] + row["kept_bytes"]) / out_bytes
        calls.clear()
        gc.collect()  # a pool's workers stop when its call is collected
        rows = [row for key, row in rows.items()
                for row in ([row, fresh] if key == "augpipe-compiled" and fresh else [row])]
        by_key = {row["key"]: row for row in rows if "skipped" not in row}
        for row in by_key.values():
            t = row["s_per_call"]
            if device.type == "cpu":
                row["cores_used"] = 1 if row["key"] in ONE_CORE else threads
                row["us_per_image_per_core"] = t * row["cores_used"] / r.batch * 1e6
            for ref, col in (("augpipe-eager", "eager_x"), ("augpipe-compiled", "compiled_x")):
                if ref in by_key:
                    row[col] = t / by_key[ref]["s_per_call"]
            if "roofline" in by_key:
                row["roofline_fraction"] = by_key["roofline"]["s_per_call"] / t
        print_table(r, rows, device, load)
        targets = policy_targets(r, by_key) if isinstance(r, PolicyRecipe) else None
        if targets:
            print_targets(targets)
        if any(p is not None for p in probes):
            print("  cross-thread round trip before each round of runs (benchmarks/cross_thread.py), ns: "
                  + ", ".join("n/a" if p is None else f"{p:.0f}" for p in probes))
        report["recipes"][name if len(batches) == 1 else f"{name}_b{r.batch}"] = {
            "batch": r.batch, "input": [r.batch, 3, r.size, r.size], "output": [r.batch, 3, r.out, r.out],
            "classes": r.classes, "ops": r.title, "output_bytes": out_bytes, "load_average_before": load,
            "cross_thread_round_trip_ns": probes, "rows": rows, **({"targets": targets} if targets else {})}
        if args.profile:
            profile_augpipe(r, device, x, y)
    elapsed = time.perf_counter() - started
    report["elapsed_s"] = elapsed
    report["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nbench_peers: done in {elapsed:.0f} s"
          + (f"; load average after: {report['load_average_after'][0]:.2f}" if report["load_average_after"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"bench_peers: wrote {args.json}")


if __name__ == "__main__":
    main()
