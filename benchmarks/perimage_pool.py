"""Per-image augmentation spread over worker processes, so that a per-image loop gets as many cores as a batched
implementation gets threads.

A per-image library (albumentations, torchvision's v2 transforms) runs one Python loop over the batch: one core.
A DataLoader gives it more cores by running one loop per worker process. ``PerImagePool`` does the same for
``bench_peers.py``, with the least overhead such a setup can have, so that the comparison is the library's
best case:
- each of the N workers owns a fixed slice of the batch (worker k: images k B / N to (k + 1) B / N) and builds its
  per-image pipeline once, when it starts, seeded with seed + k;
- the input batch lives in shared memory, written once when the pool is built (as a decoder would hand images
  over), and each worker writes its results straight into a shared (B, C, H, W) float32 output, so that a call
  moves no pixels between processes: the parent sends each worker one short message and waits for N replies;
- each worker runs with one OpenCV thread and one torch thread, so that N workers use N cores and no more.

Workers are started with the "spawn" method (no process state is inherited) and are daemons: they stop with
their parent, or earlier on ``close()``. On Linux each worker can also report the memory one call took
(``reset_peaks`` / ``peak_bytes``: the kernel's high-water mark of its resident set, as bench_peers' memory
child reads its own).
"""
from __future__ import annotations

import multiprocessing as mp
import re
import traceback
import weakref
from multiprocessing import shared_memory

import numpy as np


def albumentations_steps(recipe: str, strength: float, mean, std, out: int) -> list:
    """The per-image albumentations transforms of a bench_peers recipe (its builder says what differs)."""
    import albumentations as A
    import cv2
    if recipe.endswith("-policy"):
        return albumentations_policy_steps(recipe, mean, std, out)
    if recipe == "cifar":
        return [A.PadIfNeeded(40, 40, border_mode=cv2.BORDER_CONSTANT, fill=0),
                A.RandomCrop(32, 32),
                A.HorizontalFlip(p=0.5),
                A.ColorJitter(brightness=strength, contrast=strength, saturation=0.0, hue=0.0, p=1.0),
                A.Normalize(mean, std, max_pixel_value=255.0),
                A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16),
                                fill=0.0, p=1.0)]
    return [A.RandomResizedCrop((out, out), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=cv2.INTER_LINEAR),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=strength, contrast=strength, saturation=0.0, hue=0.0, p=1.0),
            A.Normalize(mean, std, max_pixel_value=255.0)]


def _policy_members(A, cv2, shear: float, translate: tuple[str, tuple], rotate: float, factor: float, bits,
                    solarize) -> list:
    """albumentations' nearest op to each of RandAugment's 14 members (torchvision's set), each applied when picked:
    geometry read bilinearly with zero fill, as augpipe's policies read it. shear and rotate in degrees; translate:
    Affine's argument and its range; factor: the largest change of the brightness, colour, contrast and sharpness
    factors; bits and solarize (a threshold in [0, 1]) as Posterize and Solarize take them. Magnitudes are drawn
    from the symmetric range where the policy picks +-magnitude: the same work."""
    affine = dict(interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)
    jitter = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=1.0)  # 0: that step is skipped
    return [A.NoOp(p=1.0),
            A.Affine(shear={"x": (-shear, shear), "y": (0.0, 0.0)}, **affine),
            A.Affine(shear={"x": (0.0, 0.0), "y": (-shear, shear)}, **affine),
            A.Affine(**{translate[0]: {"x": translate[1], "y": (0, 0)}}, **affine),
            A.Affine(**{translate[0]: {"x": (0, 0), "y": translate[1]}}, **affine),
            A.Affine(rotate=(-rotate, rotate), **affine),
            A.ColorJitter(**dict(jitter, brightness=factor)),
            A.ColorJitter(**dict(jitter, saturation=factor)),  # PIL's Color: a blend with the grayscale image
            A.ColorJitter(**dict(jitter, contrast=factor)),
            A.Sharpen(alpha=(0.0, factor), lightness=(1.0, 1.0), p=1.0),  # a 3 x 3 filter and a blend, as PIL's
            A.Posterize(num_bits=bits, p=1.0),
            A.Solarize(threshold_range=solarize, p=1.0),
            A.AutoContrast(method="pil", p=1.0),  # the per-channel min-max stretch, as torchvision's
            A.Equalize(p=1.0)]  # OpenCV's per-channel histogram equalization (albumentations' fast mode)


def albumentations_policy_steps(recipe: str, mean, std, out: int) -> list:
    """The per-image albumentations transforms of a bench_peers policy recipe. albumentations has no RandAugment or
    TrivialAugment, so the policy is its nearest ops, at torchvision's magnitudes: for RandAugment(2, 9) bin 9 of 31
    of each member's range (SomeOf, two with replacement), for TrivialAugmentWide the wide ranges (OneOf)."""
    import math

    import albumentations as A
    import cv2
    if recipe == "cifar-policy":
        m = 9 / 30
        members = _policy_members(A, cv2, shear=math.degrees(math.atan(0.3 * m)),
                                  translate=("translate_percent", (-150 / 331 * m, 150 / 331 * m)),
                                  rotate=30.0 * m, factor=0.9 * m, bits=8 - round(9 / 7.5),
                                  solarize=(1 - m, 1 - m))
        return [A.PadIfNeeded(40, 40, border_mode=cv2.BORDER_CONSTANT, fill=0),
                A.RandomCrop(32, 32),
                A.HorizontalFlip(p=0.5),
                A.SomeOf(members, n=2, replace=True, p=1.0),
                A.Normalize(mean, std, max_pixel_value=255.0),
                A.Erasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), fill=0, p=0.25)]
    if recipe == "imagenet-policy":
        members = _policy_members(A, cv2, shear=math.degrees(math.atan(0.99)), translate=("translate_px", (-32, 32)),
                                  rotate=135.0, factor=0.99, bits=(2, 8), solarize=(0.0, 1.0))
        return [A.RandomResizedCrop((out, out), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                    interpolation=cv2.INTER_LINEAR),
                A.HorizontalFlip(p=0.5),
                A.OneOf(members, p=1.0),
                A.Normalize(mean, std, max_pixel_value=255.0),
                A.Erasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), fill=0, p=0.5)]
    raise ValueError(f"albumentations_policy_steps: recipe must be 'cifar-policy' or 'imagenet-policy', "
                     f"got {recipe!r}")


def torchvision_policy_transform(recipe: str, mean, std, out: int):
    """The per-image torchvision v2 transforms of a bench_peers policy recipe: v2's own RandAugment and
    TrivialAugmentWide on uint8, read bilinearly as augpipe's policies read (v2's default is nearest)."""
    import torch
    from torchvision.transforms import InterpolationMode, v2
    bilinear = InterpolationMode.BILINEAR
    if recipe == "cifar-policy":
        return v2.Compose([
            v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5),
            v2.RandAugment(num_ops=2, magnitude=9, interpolation=bilinear), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std), v2.RandomErasing(p=0.25, value=0)])
    if recipe == "imagenet-policy":
        return v2.Compose([
            v2.RandomResizedCrop(out, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=False),
            v2.RandomHorizontalFlip(p=0.5), v2.TrivialAugmentWide(interpolation=bilinear),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std), v2.RandomErasing(p=0.5, value=0)])
    raise ValueError(f"torchvision_policy_transform: recipe must be 'cifar-policy' or 'imagenet-policy', "
                     f"got {recipe!r}")


def torchvision_transform(recipe: str, strength: float, mean, std, out: int):
    """The per-image torchvision v2 transforms of a bench_peers recipe (its builder says what differs)."""
    import torch
    from torchvision.transforms import v2
    if recipe.endswith("-policy"):
        return torchvision_policy_transform(recipe, mean, std, out)
    if recipe == "cifar":
        return v2.Compose([
            v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(p=0.5), v2.ToDtype(torch.float32, scale=True),
            v2.ColorJitter(brightness=strength, contrast=strength), v2.Normalize(mean, std),
            v2.RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0)])
    return v2.Compose([
        v2.RandomResizedCrop(out, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=False),
        v2.RandomHorizontalFlip(p=0.5), v2.ToDtype(torch.float32, scale=True),
        v2.ColorJitter(brightness=strength, contrast=strength), v2.Normalize(mean, std)])


def _per_image_function(spec: dict, seed: int):
    """image (the input layout of spec["library"]) -> float32 (C, H, W) array, built once in a worker."""
    import torch
    torch.set_num_threads(1)
    if spec["library"] == "albumentations":
        import albumentations as A
        tf = A.Compose(albumentations_steps(spec["recipe"], spec["strength"], spec["mean"], spec["std"],
                                            spec["out"]), seed=seed)
        return lambda image: tf(image=image)["image"].transpose(2, 0, 1)
    if spec["library"] == "torchvision":
        torch.manual_seed(seed)  # v2 transforms draw from torch's global generator
        tf = torchvision_transform(spec["recipe"], spec["strength"], spec["mean"], spec["std"], spec["out"])
        return lambda image: tf(torch.from_numpy(image)).numpy()
    raise ValueError(f"PerImagePool: library must be 'albumentations' or 'torchvision', got {spec['library']!r}")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def _worker(conn, spec: dict, seed: int, names: tuple[str, str], shapes: tuple, in_dtype: str,
            start: int, stop: int) -> None:
    """Serve messages until "stop": "run" augments images start..stop into the shared output; "reset" clears the
    kernel's high-water mark (Linux); "peak" replies with the resident bytes the worker gained since the reset."""
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    images = out = None
    try:
        images = np.ndarray(shapes[0], dtype=in_dtype, buffer=blocks[0].buf)
        out = np.ndarray(shapes[1], dtype=np.float32, buffer=blocks[1].buf)
        try:
            augment = _per_image_function(spec, seed)
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return
        conn.send(("ready", None))
        rss_before = 0
        while True:
            message = conn.recv()
            try:
                if message == "run":
                    for i in range(start, stop):
                        out[i] = augment(images[i])
                    conn.send(("done", None))
                elif message == "reset":
                    rss_before = _status_bytes("VmRSS")
                    with open("/proc/self/clear_refs", "w") as f:
                        f.write("5")
                    conn.send(("done", None))
                elif message == "peak":
                    conn.send(("done", max(_status_bytes("VmHWM") - rss_before, 0)))
                else:  # "stop"
                    conn.send(("done", None))
                    return
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        del images, out  # views of the blocks must go before the blocks close
        for block in blocks:
            block.close()


def _shut_down(processes, connections, blocks) -> None:
    """Stop the workers and free the shared memory: the pool's finalizer, also run at interpreter exit."""
    for conn in connections:
        try:
            conn.send("stop")
        except (OSError, ValueError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
    for block in blocks:
        block.close()
        try:
            block.unlink()
        except FileNotFoundError:
            pass


class PerImagePool:
    """N worker processes that augment one batch image by image, each its own slice, into a shared output.

    spec: {"library": "albumentations" | "torchvision", "recipe": name, "strength", "mean", "std", "out"}.
    images: the whole input batch as a numpy array, one image per leading index, in the layout the library takes
    (albumentations: (H, W, C) uint8; torchvision: (C, H, W) uint8). out_shape: (B, C, H, W) of the float32 output.
    Calling the pool runs every worker once and returns the shared output array, valid until the next call.
    """

    def __init__(self, spec: dict, images: np.ndarray, out_shape: tuple, workers: int, seed: int = 0):
        if not isinstance(workers, int) or not 1 <= workers <= images.shape[0]:
            raise ValueError(f"PerImagePool: workers must be an int from 1 to the batch size {images.shape[0]}, "
                             f"got {workers!r}")
        if out_shape[0] != images.shape[0]:
            raise ValueError(f"PerImagePool: output batch {out_shape[0]} differs from the input batch "
                             f"{images.shape[0]}")
        self.workers = workers
        blocks = [shared_memory.SharedMemory(create=True, size=max(images.nbytes, 1)),
                  shared_memory.SharedMemory(create=True, size=int(np.prod(out_shape)) * 4)]
        processes, connections = [], []
        self._finalizer = weakref.finalize(self, _shut_down, processes, connections, blocks)
        np.ndarray(images.shape, dtype=images.dtype, buffer=blocks[0].buf)[...] = images
        self.out = np.ndarray(out_shape, dtype=np.float32, buffer=blocks[1].buf)
        self._kept = blocks[1].size
        context = mp.get_context("spawn")
        B = images.shape[0]
        for k in range(workers):
            here, there = context.Pipe()
            process = context.Process(
                target=_worker, daemon=True,
                args=(there, spec, seed + k, (blocks[0].name, blocks[1].name), (images.shape, out_shape),
                      images.dtype.str, k * B // workers, (k + 1) * B // workers))
            process.start()
            there.close()
            processes.append(process)
            connections.append(here)
        self._connections = connections
        self._ask(None)  # every worker's "ready"

    def _ask(self, message) -> list:
        """Send message to every worker (None: send nothing), then collect one reply from each."""
        if message is not None:
            for conn in self._connections:
                conn.send(message)
        replies = []
        for k, conn in enumerate(self._connections):
            try:
                kind, value = conn.recv()
            except EOFError:
                raise RuntimeError(f"PerImagePool: worker {k} exited") from None
            if kind == "error":
                raise RuntimeError(f"PerImagePool: worker {k} failed:\n{value}")
            replies.append(value)
        return replies

    def __call__(self) -> np.ndarray:
        self._ask("run")
        return self.out

    def kept_bytes(self) -> int:
        """The shared output, held between calls (the input batch is the caller's and is not counted)."""
        return self._kept

    def reset_peaks(self) -> None:
        """Start a peak-memory measurement in every worker (Linux /proc only)."""
        self._ask("reset")

    def peak_bytes(self) -> int:
        """Resident bytes the workers gained since ``reset_peaks``, summed over the workers."""
        return sum(self._ask("peak"))

    def close(self) -> None:
        self._finalizer()
