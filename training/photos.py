"""A small folder of real photographs for tests and benchmarks, made from scikit-image's bundled pictures.

Each photograph is a class (its folder is named after it); each sample is a random crop of it (random area and
aspect), rescaled with PIL so that both sides land in [min_side, max_side], and saved as JPEG. The folder is
made where it is needed (a test's tmp_path, a benchmark's scratch folder) and never stored in the repository.

    python -m training.photos DIR [--per-class N] [--min-side S] [--max-side S] [--seed K] [--split]
"""
from __future__ import annotations

import argparse
import functools
import math
import os
from pathlib import Path
from typing import Sequence

import torch

# Colour photographs that ship inside the scikit-image wheel (no download), named as skimage.data names their
# loaders, except "motorcycle": the left view of stereo_motorcycle (which gives left, right and disparity).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry", "hubble_deep_field",
          "retina")
AREA = (0.25, 1.0)  # fraction of the photograph a crop covers
RATIO = (3 / 4, 4 / 3)  # crop width / height, drawn log-uniformly


@functools.lru_cache(maxsize=None)
def photograph(name: str):
    """scikit-image's photograph ``name`` as an RGB PIL image (read once per process)."""
    from PIL import Image
    from skimage import data as skdata

    if name not in PHOTOS:
        raise ValueError(f"photograph: unknown photograph {name!r}; expected one of {', '.join(PHOTOS)}")
    pixels = skdata.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skdata, name)()
    return Image.fromarray(pixels).convert("RGB")  # (H, W, 3) uint8 -> RGB


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def crop_box(width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box: area a fraction AREA of the picture, width / height in RATIO
    (log-uniform), clipped to the picture, at a uniform position."""
    area = _uniform(*AREA, generator) * width * height
    ratio = math.exp(_uniform(math.log(RATIO[0]), math.log(RATIO[1]), generator))
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    left = int(torch.randint(0, width - w + 1, (), generator=generator))
    top = int(torch.randint(0, height - h + 1, (), generator=generator))
    return left, top, left + w, top + h


def output_size(width: int, height: int, min_side: int, max_side: int,
                generator: torch.Generator) -> tuple[int, int]:
    """A random (width, height) with both sides in [min_side, max_side] and the aspect of width x height, or as
    near it as the range allows: the shorter side is uniform over the lengths that keep the longer one in range."""
    aspect = max(width, height) / min(width, height)
    top = max(min_side, math.floor(max_side / aspect))  # longest shorter side that keeps the longer one in range
    short = int(torch.randint(min_side, top + 1, (), generator=generator))
    long = min(max_side, max(min_side, round(short * aspect)))
    return (long, short) if width >= height else (short, long)


def _check(per_class: int, min_side: int, max_side: int, quality: int, split: bool, classes: Sequence[str]) -> None:
    if per_class < (2 if split else 1):
        least = "2 with split=True (a train and a test image per class)" if split else "1"
        raise ValueError(f"make_photo_folder: per_class must be at least {least}, got {per_class}")
    if not 1 <= min_side <= max_side:
        raise ValueError(f"make_photo_folder: expected 1 <= min_side <= max_side, got min_side={min_side}, "
                         f"max_side={max_side}")
    if not 1 <= quality <= 95:
        raise ValueError(f"make_photo_folder: quality must be in 1..95 (PIL's JPEG range), got {quality}")
    unknown = [c for c in classes if c not in PHOTOS]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"make_photo_folder: classes must be distinct names from {', '.join(PHOTOS)}, got "
                         f"{list(classes)}")


def make_photo_folder(root: str | os.PathLike, per_class: int = 16, min_side: int = 350, max_side: int = 640,
                      seed: int = 0, quality: int = 90, split: bool = False,
                      classes: Sequence[str] = PHOTOS) -> Path:
    """Write ``per_class`` JPEG crops of each photograph in ``classes`` to ``root/<photograph>/<photograph>_NNNN.jpg``
    and return root.

    Each crop covers a random fraction AREA of the photograph with width / height in RATIO, and is rescaled with
    PIL's bicubic filter (which averages on downscales) so that both sides lie in [min_side, max_side]. The
    same arguments give the same bytes. With ``split=True`` the last fifth (at least one) of each class's crops
    goes to ``root/test/<photograph>`` and the rest to ``root/train/<photograph>``.
    """
    from PIL import Image

    classes = tuple(classes)
    _check(per_class, min_side, max_side, quality, split, classes)
    root = Path(root)
    generator = torch.Generator().manual_seed(seed)
    n_test = max(1, per_class // 5) if split else 0
    for name in classes:
        photo = photograph(name)
        for i in range(per_class):
            box = crop_box(*photo.size, generator)
            size = output_size(box[2] - box[0], box[3] - box[1], min_side, max_side, generator)
            folder = root / ("test" if i >= per_class - n_test else "train") / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            sample = photo.resize(size, Image.BICUBIC, box=box)
            sample.save(folder / f"{name}_{i:04d}.jpg", "JPEG", quality=quality)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="folder to write (created if missing)")
    parser.add_argument("--per-class", type=int, default=16, help="crops per photograph (default 16)")
    parser.add_argument("--min-side", type=int, default=350, help="shortest allowed side in pixels (default 350)")
    parser.add_argument("--max-side", type=int, default=640, help="longest allowed side in pixels (default 640)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--split", action="store_true", help="write DIR/train/<class> and DIR/test/<class>")
    args = parser.parse_args(argv)
    root = make_photo_folder(args.dir, args.per_class, args.min_side, args.max_side, args.seed, args.quality,
                             args.split)
    count = sum(1 for _ in root.rglob("*.jpg"))
    print(f"{count} JPEG photos of {len(PHOTOS)} classes in {root}")


if __name__ == "__main__":
    main()
