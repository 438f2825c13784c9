"""The ImageNet recipe on a folder of real photos, end to end: decode, augment, batch, side by side with the peers.

    python benchmarks/bench_photos.py                               # CPU, the defaults sized for a 2-core machine
    python benchmarks/bench_photos.py --quick                       # a smoke test: the numbers mean nothing
    python benchmarks/bench_photos.py --json samples/bench_photos.json
    python benchmarks/bench_photos.py --device cuda --json out/bench_photos_cuda.json   # gpu_check.sh runs this

benchmarks/README.md explains every row and column.

The folder: ``training.photos.make_photo_folder`` writes --per-class JPEGs (quality 90) of each of scikit-image's
8 bundled photographs, random crops rescaled so that both sides lie in 350..640 pixels, into a scratch folder (or
--dir, reused when it already holds the folder). Every row reads the same files, through the same DataLoader
settings: batch --batch, --workers worker processes, the same fixed order of samples, drop_last, pinned memory on
CUDA. The files sit in the page cache after the first read, so decoding never waits for a disk.

The recipe: RandomResizedCrop 224 (scale 0.08-1, ratio 3/4-4/3), horizontal flip, brightness 0.4, contrast 0.4
(ColorJitter factors f ~ U[1 - s, 1 + s]), Normalize with ImageNet's mean and std: float32 (B, 3, 224, 224) out.
Rows (what the workers do / what the main process does):
  decode only      read_image, a fixed 224 x 224 centre crop (padded where a side is shorter) / nothing: the limit
  PIL              PIL decode, RandomResizedCrop as PIL's BILINEAR resize of the crop box (antialiased), flip,
                   ImageEnhance brightness and contrast in random order, to float tensor, Normalize / nothing
  albumentations   OpenCV decode (imread, BGR -> RGB), RandomResizedCrop (INTER_LINEAR: no antialiasing), flip,
                   ColorJitter on uint8 in random order, Normalize, ToTensorV2; one OpenCV thread a worker / nothing
  kornia           PIL decode and a BILINEAR resize to 256 x 256 / x.float() / 255, then AugmentationSequential:
                   RandomResizedCrop (bilinear, no antialiasing), flip, ColorJitter, Normalize
  augpipe          augpipe.ImageFolder and augpipe.collate: photos packed at their own sizes (PackedImages) /
                   augpipe.DeviceLoader with the Pipeline on the whole batch, eager or compiled, antialias on (the
                   default, torchvision v2's) or off (like albumentations and kornia)
The main process runs torch on every usable core (--threads), as a training script would; the workers run one
torch thread each (the DataLoader's setting), so the main process and the workers share the same cores.

Timing: a run is one pass of the DataLoader over --skip + --batches batches (the fixed order repeats the folder as
often as needed); the first --skip batches fill the workers' queue and are not timed, the next --batches are: the
steady state, images per second = batches x batch / seconds. Each row first makes one untimed run (the compiled
pipelines compile there, the second packed batch recompiling for dynamic sizes); then --runs timed runs,
interleaved (run 1 of every row, then run 2 ...), so that load from other processes falls on every row alike. The
table gives the median run. On CUDA each run ends with torch.cuda.synchronize(). Graphs compiled during timed runs
are counted and printed.

Cost per image per core (CPU): a child process with torch.set_num_threads(1), one OpenCV thread and no workers
times each piece alone on --batch photos: the first batch of the folder in the same order (mixed sizes: packed for
augpipe), and --batch copies of one 500 x 375 JPEG (one size: a (B, 3, 375, 500) tensor for augpipe). Per image:
read_image, cv2.imread, PIL open + convert; albumentations' recipe on a decoded HWC array, the PIL recipe on a
decoded PIL image, a PIL resize to 256 x 256 then kornia's batch call / B, and augpipe's batch call / B (eager and
compiled, antialias on and off). Each figure is the median of --runs runs (at least 3; eager augpipe, whose
calls take seconds, at most 3) of at least 0.2 s each. --per-core-sets picks the images.
End to end, "us / image / core" is cores / images per second: what an image costs on one of the cores every row
shares.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "benchmarks"):  # augpipe and training from a checkout; bench_peers and perimage_pool
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from bench_peers import dynamo_graphs, sync  # noqa: E402  (found through the path set just above)

SEED = 0
OUT = 224
RESIZE = 256  # kornia's per-image resize in the workers
STRENGTH = 0.4
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
SINGLE = (500, 375)  # (width, height) of the one-size JPEG of the per-core figures
ROWS = ("decode", "pil", "albumentations", "kornia", "augpipe-eager-aa", "augpipe-eager", "augpipe-compiled-aa",
        "augpipe-compiled")
# Eager antialiased augpipe takes seconds a batch on a small CPU (its read builds a whole-batch index and product
# for each tap, up to 7 x 7 of them for these photos), so a default run leaves it out; --rows all adds it.
DEFAULT_ROWS = tuple(k for k in ROWS if k != "augpipe-eager-aa")
LABELS = {"decode": "decode only (read_image + centre crop)", "pil": "PIL per image",
          "albumentations": "albumentations per image", "kornia": "kornia on the batch",
          "augpipe-eager-aa": "augpipe eager, antialias", "augpipe-eager": "augpipe eager, no antialias",
          "augpipe-compiled-aa": "augpipe compiled, antialias", "augpipe-compiled": "augpipe compiled, no antialias"}


# ----------------------------------------------------------------------------------------------- per-image work
def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size): the centre, after zero padding a side shorter than size (equally both ends)."""
    _, h, w = image.shape
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if pad_h or pad_w:
        image = torch.nn.functional.pad(image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = h + pad_h, w + pad_w
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top:top + size, left:left + size]


def crop_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, right, bottom) as torchvision samples it for a PIL image: up to 10 draws
    of an area fraction ~ U(SCALE) and a log-uniform aspect in RATIO, the first that fits placed uniformly; else the
    whole image cut to the nearest allowed aspect, centred."""
    area = width * height
    for _ in range(10):
        aspect = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        target = area * rng.uniform(*SCALE)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    aspect = width / height
    w = width if aspect <= RATIO[1] else round(height * RATIO[1])
    h = height if aspect >= RATIO[0] else round(width / RATIO[0])
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def open_rgb(path: str):
    """A file as an RGB PIL image, decoded now (torchvision's default ImageFolder loader does the same)."""
    from PIL import Image
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def pil_recipe(image, rng: random.Random) -> torch.Tensor:
    """The recipe as torchvision's transforms run it on a PIL image: RGB PIL image -> float32 (3, OUT, OUT)."""
    from PIL import Image, ImageEnhance
    image = image.resize((OUT, OUT), Image.BILINEAR, box=crop_box(*image.size, rng))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    steps = [ImageEnhance.Brightness, ImageEnhance.Contrast]
    rng.shuffle(steps)  # ColorJitter's random order
    for step in steps:
        image = step(image).enhance(rng.uniform(1 - STRENGTH, 1 + STRENGTH))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float().div_(255)
    return x.sub_(torch.tensor(MEAN).view(3, 1, 1)).div_(torch.tensor(STD).view(3, 1, 1))


def albumentations_compose(seed: int):
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    from perimage_pool import albumentations_steps  # the same per-image steps as bench_peers' imagenet recipe
    return A.Compose(albumentations_steps("imagenet", STRENGTH, MEAN, STD, OUT) + [ToTensorV2()], seed=seed)


def cv2_rgb(path: str) -> np.ndarray:
    import cv2
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"bench_photos: OpenCV cannot decode {path!r}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resized_256(image) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, RESIZE, RESIZE), PIL's BILINEAR resize (antialiased), as kornia's workers do."""
    from PIL import Image

    from augpipe.loader import to_chw_uint8
    return to_chw_uint8(image.resize((RESIZE, RESIZE), Image.BILINEAR))


# ----------------------------------------------------------------------------------------------- datasets
class _Files(torch.utils.data.Dataset):
    """(path, label) samples; subclasses say what a worker makes of one file."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)


class DecodeCrop(_Files):
    def __getitem__(self, i):
        from augpipe import read_image
        path, label = self.samples[i]
        return centre_crop(read_image(path), OUT), label


class PilRecipe(_Files):
    def __getitem__(self, i):
        path, label = self.samples[i]
        if not hasattr(self, "rng"):  # per worker: the DataLoader seeds each worker's torch generator apart
            self.rng = random.Random(torch.initial_seed())
        return pil_recipe(open_rgb(path), self.rng), label


class AlbumentationsRecipe(_Files):
    def __getitem__(self, i):
        path, label = self.samples[i]
        if not hasattr(self, "tf"):  # built in the worker, seeded apart per worker
            import cv2
            cv2.setNumThreads(1)  # one core a worker, as each worker holds one
            self.tf = albumentations_compose(torch.initial_seed() % 2 ** 32)
        return self.tf(image=cv2_rgb(path))["image"], label


class Resized256(_Files):
    def __getitem__(self, i):
        path, label = self.samples[i]
        return resized_256(open_rgb(path)), label


# ----------------------------------------------------------------------------------------------- rows
def augpipe_pipeline(antialias: bool, compile: bool, classes: int):
    import augpipe as ap
    return ap.Pipeline(ap.RandomResizedCrop(OUT, scale=SCALE, ratio=RATIO, antialias=antialias),
                       ap.HorizontalFlip(), ap.Brightness(STRENGTH), ap.Contrast(STRENGTH), ap.Normalize(MEAN, STD),
                       seed=SEED, num_classes=classes, compile=compile)


def kornia_augment(device):
    """(B, 3, RESIZE, RESIZE) uint8 -> float32 (B, 3, OUT, OUT), kornia's recipe (bench_peers' builder says why
    ColorJitter and align_corners=False)."""
    import kornia.augmentation as K
    seq = K.AugmentationSequential(
        K.RandomResizedCrop((OUT, OUT), scale=SCALE, ratio=RATIO, align_corners=False),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(brightness=STRENGTH, contrast=STRENGTH, p=1.0),
        K.Normalize(torch.tensor(MEAN, device=device), torch.tensor(STD, device=device))).to(device)
    return lambda x: seq(x.float().div_(255))


def build_row(key: str, folder, device):
    """(dataset, collate_fn or None for the default, consume) for a row: consume(loader) iterates over augmented
    (images, labels or targets) batches on device."""
    import augpipe as ap

    def moved(loader, then=lambda x: x):
        for x, y in loader:
            yield then(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
    samples = folder.samples
    if key == "decode":
        return DecodeCrop(samples), None, moved
    if key == "pil":
        return PilRecipe(samples), None, moved
    if key == "albumentations":
        return AlbumentationsRecipe(samples), None, moved
    if key == "kornia":
        augment = kornia_augment(device)
        return Resized256(samples), None, lambda loader: moved(loader, augment)
    pipe = augpipe_pipeline(antialias=key.endswith("-aa"), compile="compiled" in key, classes=len(folder.classes))
    return folder, ap.collate, lambda loader: ap.DeviceLoader(loader, pipe, device)


# ----------------------------------------------------------------------------------------------- end to end
def one_run(consume, loader, skip: int, batches: int, device) -> float:
    """Seconds for ``batches`` batches after ``skip`` untimed ones, in one pass of the loader (whose sampler holds
    exactly skip + batches batches, so that the pass ends with the last timed batch)."""
    it = iter(consume(loader))
    for _ in range(skip):
        next(it)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        out = next(it)
    sync(device)
    elapsed = time.perf_counter() - t0
    del out
    for _ in it:  # the pass is over; this lets the loader shut its workers down
        pass
    return elapsed


def end_to_end(keys, folder, args, device, order) -> tuple[dict, list]:
    """Every row's DataLoader pass, warmed up once, then ``args.runs`` interleaved timed runs."""
    from torch.utils.data import DataLoader
    rows, consumers, loaders, loads = {}, {}, {}, []
    for key in keys:
        rows[key] = {"key": key, "label": LABELS[key]}
        try:
            dataset, collate_fn, consume = build_row(key, folder, device)
        except ImportError as e:
            rows[key]["skipped"] = f"not importable ({e})"
            continue
        extra = {"prefetch_factor": 2} if args.workers else {}
        loaders[key] = DataLoader(dataset, batch_size=args.batch, sampler=order, num_workers=args.workers,
                                  collate_fn=collate_fn, drop_last=True, pin_memory=device.type == "cuda", **extra)
        consumers[key] = consume
        graphs = dynamo_graphs()
        t0 = time.perf_counter()
        try:
            one_run(consume, loaders[key], args.skip, args.batches, device)
        except Exception as e:  # a peer that breaks on this machine is reported, not fatal
            rows[key]["skipped"] = f"failed: {type(e).__name__}: {e}"[:300]
            del loaders[key], consumers[key]
            continue
        rows[key].update(warmup_run_s=time.perf_counter() - t0, graphs_compiled_in_warmup=dynamo_graphs() - graphs,
                         runs_s=[], graphs_compiled_while_timing=0)
        print(f"  warmed up {key}: {rows[key]['warmup_run_s']:.1f} s, {rows[key]['graphs_compiled_in_warmup']} "
              f"graphs compiled", flush=True)
    for r in range(args.runs):
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
        for key, consume in consumers.items():
            graphs = dynamo_graphs()
            rows[key]["runs_s"].append(one_run(consume, loaders[key], args.skip, args.batches, device))
            rows[key]["graphs_compiled_while_timing"] += dynamo_graphs() - graphs
        print(f"  run {r + 1}/{args.runs} done", flush=True)
    images = args.batches * args.batch
    for key in consumers:
        row = rows[key]
        row["s_per_run"] = statistics.median(row["runs_s"])
        row["s_per_batch"] = row["s_per_run"] / args.batches
        row["images_per_s"] = images / row["s_per_run"]
        row["us_per_image_per_core"] = args.cores / row["images_per_s"] * 1e6
    for ref, col in (("decode", "of_decode_only"), ("albumentations", "vs_albumentations")):
        if "images_per_s" in rows.get(ref, {}):
            for row in rows.values():
                if "images_per_s" in row:
                    row[col] = row["images_per_s"] / rows[ref]["images_per_s"]
    return rows, loads


# ----------------------------------------------------------------------------------------------- per core
def timed(fn, runs: int, min_s: float = 0.2) -> list[float]:
    """Seconds per fn() call: ``runs`` runs of enough calls to last min_s each (sized from one first call)."""
    t0 = time.perf_counter()
    fn()
    calls = max(1, math.ceil(min_s / max(time.perf_counter() - t0, 1e-9)))
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls)
    return out


def per_core_child(spec: dict) -> dict:
    """Each piece alone on one thread: {set: {piece: {...}}} (see the module docstring)."""
    torch.set_num_threads(1)
    import cv2

    import augpipe as ap
    cv2.setNumThreads(1)
    runs, figures = spec["runs"], {}
    classes = spec["classes"]
    for name, paths in spec["sets"].items():
        images = [ap.read_image(p) for p in paths]
        pil = [open_rgb(p) for p in paths]
        hwc = [cv2_rgb(p) for p in paths]
        n = len(paths)
        batch = ap.collate([(im, 0) for im in images])[0]  # packed when the sizes differ, else stacked
        resized = torch.stack([resized_256(im) for im in pil])
        rng = random.Random(SEED)
        tf = albumentations_compose(SEED)
        augment = kornia_augment(torch.device("cpu"))
        torch.manual_seed(SEED)  # kornia draws from the global generator
        pieces = {  # name -> (one call, images per call)
            "read_image": (lambda: [ap.read_image(p) for p in paths], n),
            "pil_decode": (lambda: [open_rgb(p) for p in paths], n),
            "cv2_decode": (lambda: [cv2_rgb(p) for p in paths], n),
            "albumentations": (lambda: [tf(image=a)["image"] for a in hwc], n),
            "pil_recipe": (lambda: [pil_recipe(im, rng) for im in pil], n),
            "resize_256": (lambda: [resized_256(im) for im in pil], n),
            "kornia": (lambda: augment(resized), n),
        }
        for key in spec["augpipe"]:
            pipe = augpipe_pipeline(antialias=key.endswith("-aa"), compile="compiled" in key, classes=classes)
            t0 = time.perf_counter()
            pipe(batch)  # a compiled pipeline compiles here
            pipe(batch)
            first = time.perf_counter() - t0
            pieces[key] = ((lambda p=pipe: p(batch)), n)
            figures.setdefault(name, {})[key + "_warmup_s"] = first
        out = figures.setdefault(name, {})
        out["images"] = n
        out["sizes"] = [list(im.shape[1:]) for im in images]
        out["mean_pixels"] = sum(h * w for h, w in out["sizes"]) / n
        for key, (fn, per_call) in pieces.items():
            runs_s = timed(fn, runs if not key.startswith("augpipe-eager") else max(1, min(runs, 3)))
            s = statistics.median(runs_s)
            out[key] = {"ms_per_call": s * 1e3, "images_per_call": per_call, "ms_per_image": s / per_call * 1e3,
                        "runs_ms_per_image": [t / per_call * 1e3 for t in runs_s]}
            print(f"    {name} {key}: {s / per_call * 1e3:.3f} ms an image", file=sys.stderr, flush=True)
    return figures


def per_core(spec: dict, timeout: int) -> dict:
    """per_core_child in a fresh process (its compiled pipelines then compile for one thread)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_per-core-child", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the per-core child ran past {timeout} s"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"the per-core child failed (exit {p.returncode}); its errors are printed above"}


def totals(sets: dict) -> dict:
    """Decode + augment per image per core, for each way of doing both: {set: {way: ms}}."""
    ways = {"decode only": ("read_image",), "PIL": ("pil_decode", "pil_recipe"),
            "albumentations": ("cv2_decode", "albumentations"), "kornia": ("pil_decode", "resize_256", "kornia")}
    ways.update({LABELS[k]: ("read_image", k) for k in ROWS if k.startswith("augpipe")})
    out = {}
    for name, figures in sets.items():
        out[name] = {way: sum(figures[p]["ms_per_image"] for p in pieces) for way, pieces in ways.items()
                     if all(p in figures for p in pieces)}
    return out


# ----------------------------------------------------------------------------------------------- the folder
def ensure_folder(root: Path, per_class: int) -> None:
    """Write the photo folder unless root already holds one made with the same per_class."""
    from training.photos import PHOTOS, make_photo_folder
    stamp = root / ".bench_photos"
    if stamp.exists() and stamp.read_text().strip() == str(per_class):
        return
    make_photo_folder(root, per_class=per_class, min_side=350, max_side=640, seed=SEED, quality=90)
    counts = {name: len(list((root / name).glob("*.jpg"))) for name in PHOTOS}
    if set(counts.values()) != {per_class}:
        raise SystemExit(f"bench_photos: {root} holds other files too ({counts} JPEGs a class, expected "
                         f"{per_class}); give an empty --dir or none")
    stamp.write_text(f"{per_class}\n")


def single_jpeg(path: Path) -> None:
    """One JPEG of SINGLE's size: the astronaut photograph cut to 4:3 and resized (quality 90)."""
    from PIL import Image

    from training.photos import photograph
    photo = photograph("astronaut")
    w, h = photo.size
    box = (0, (h - w * SINGLE[1] // SINGLE[0]) // 2, w, (h + w * SINGLE[1] // SINGLE[0]) // 2)
    photo.resize(SINGLE, Image.BICUBIC, box=box).save(path, "JPEG", quality=90)


# ----------------------------------------------------------------------------------------------- reporting
def machine_info(device, threads: int) -> dict:
    from bench_peers import machine_info as peers_info
    info = peers_info(device, threads)
    try:
        import PIL
        info["versions"]["PIL"] = PIL.__version__
    except ImportError:
        info["versions"]["PIL"] = None
    return info


def print_tables(report: dict) -> None:
    e2e = report["end_to_end"]
    s = report["settings"]
    print(f"\nend to end: {s['batches']} batches of {s['batch']} after {s['skip']}, {s['workers']} workers, "
          f"main process on {s['threads']} torch threads, {report['machine']['device']}; median of {s['runs']} runs")
    w = max(len(row["label"]) for row in e2e)
    head = (f"{'row':<{w}} {'ms/batch':>9} {'images/s':>9} {'us/img/core':>11} {'of decode':>9} {'vs alb.':>8} "
            f"{'graphs warm-up/timed':>20}")
    print(head + "\n" + "-" * len(head))
    for row in e2e:
        if "skipped" in row:
            print(f"{row['label']:<{w}} skipped: {row['skipped']}")
            continue
        print(f"{row['label']:<{w}} {row['s_per_batch'] * 1e3:>9.1f} {row['images_per_s']:>9.0f} "
              f"{row['us_per_image_per_core']:>11.0f} {row.get('of_decode_only', float('nan')):>9.3f} "
              f"{row.get('vs_albumentations', float('nan')):>8.2f} "
              f"{row['graphs_compiled_in_warmup']:>10}/{row['graphs_compiled_while_timing']}")
    for row in e2e:
        if "runs_s" in row:
            print(f"  {row['label']}: runs s " + ", ".join(f"{t:.2f}" for t in row["runs_s"])
                  + f"; warm-up run {row['warmup_run_s']:.1f} s")
    pc = report.get("per_core")
    if not pc or "error" in pc:
        print("\nper core: " + (pc["error"] if pc else "not measured"))
        return
    names = list(pc["sets"])
    print("\ncost per image per core (one thread, no workers), ms an image: "
          + "; ".join(f"{n}: {pc['sets'][n]['images']} images, mean {pc['sets'][n]['mean_pixels'] ** 0.5:.0f}^2 px"
                      for n in names))
    from tables import PHOTO_PIECES
    pieces = [k for k in pc["sets"][names[0]] if isinstance(pc["sets"][names[0]][k], dict)]
    print(f"{'piece':<46}" + "".join(f"{n:>10}" for n in names))
    for key in pieces:
        print(f"{PHOTO_PIECES.get(key, key):<46}"
              + "".join(f"{pc['sets'][n][key]['ms_per_image']:>10.3f}" for n in names))
    print("decode + augment:")
    for way in pc["totals"][names[0]]:
        print(f"  {way:<44}" + "".join(f"{pc['totals'][n].get(way, float('nan')):>10.3f}" for n in names))


# ----------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="the photo folder (made there unless it holds one); "
                                                           "default: a scratch folder, removed at the end")
    ap.add_argument("--per-class", type=int, default=40, help="JPEGs per photograph, 8 photographs (default 40)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    ap.add_argument("--batches", type=int, default=6, help="timed batches a run (default 6)")
    ap.add_argument("--skip", type=int, default=2, help="untimed batches that start a run (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per row (default 3)")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help=f"all, or a subset of {','.join(ROWS)} (default: all but augpipe-eager-aa)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the main process (default: every "
                                                              "usable core)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the batch is augmented")
    ap.add_argument("--no-per-core", action="store_true", help="skip the cost per image per core (CPU)")
    ap.add_argument("--per-core-sets", default="photos,500x375",
                    help="the images of the per-core figures: photos (the first batch), 500x375 (one JPEG)")
    ap.add_argument("--quick", action="store_true", help="2 runs of 2 batches after 2: checks that all runs")
    ap.add_argument("--json", type=Path, default=None, help="write every number, the machine and the versions")
    ap.add_argument("--_per-core-child", dest="per_core_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.per_core_child:
        print(json.dumps(per_core_child(json.loads(args.per_core_child))))
        return
    if args.quick:
        args.batches, args.skip, args.runs = 2, 2, 2
    keys = list(ROWS) if args.rows == "all" else [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROWS]
    if unknown or not keys:
        sys.exit(f"bench_photos: unknown --rows {unknown}; choose from {', '.join(ROWS)}")
    if not set(args.per_core_sets.split(",")) <= {"photos", "500x375"}:
        sys.exit(f"bench_photos: --per-core-sets takes photos and/or 500x375, got {args.per_core_sets!r}")
    if args.workers and (args.skip % args.workers or args.batches % args.workers):
        print(f"bench_photos: --skip and --batches are best multiples of --workers ({args.workers}): each worker "
              f"makes whole batches, so other counts time part of a round", file=sys.stderr)
    if min(args.batch, args.batches, args.runs, args.per_class) < 1 or args.skip < 0 or args.workers < 0:
        sys.exit("bench_photos: --batch, --batches, --runs and --per-class must be >= 1, --skip and --workers >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_photos: --device cuda but torch.cuda.is_available() is False")
    from bench_peers import _cores
    args.cores = _cores()
    threads = args.threads or args.cores
    torch.set_num_threads(threads)
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    torch.manual_seed(SEED)  # kornia draws from the global generator

    scratch = None if args.dir else tempfile.TemporaryDirectory(prefix="bench_photos_")
    root = args.dir or Path(scratch.name) / "photos"
    t0 = time.perf_counter()
    ensure_folder(root, args.per_class)
    single = Path(scratch.name if scratch else root.parent) / "bench_photos_500x375.jpg"
    single_jpeg(single)
    import augpipe as ap
    folder = ap.ImageFolder(root)
    n = len(folder)
    order_once = torch.randperm(n, generator=torch.Generator().manual_seed(SEED)).tolist()
    order = [order_once[i % n] for i in range((args.skip + args.batches) * args.batch)]
    info = machine_info(device, threads)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"bench_photos: {n} JPEGs of {len(folder.classes)} classes in {root} (made or found in "
          f"{time.perf_counter() - t0:.1f} s); {info['cpu']}, {args.cores} usable cores; torch "
          f"{torch.__version__} on {threads} threads in the main process; "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    if load_before:
        print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
              + (" (other processes share these cores: expect noisy numbers)" if load_before[0] > 0.5 else ""))
    settings = {"batch": args.batch, "workers": args.workers, "batches": args.batches, "skip": args.skip,
                "runs": args.runs, "threads": threads, "per_class": args.per_class, "images": n, "quick": args.quick,
                "seed": SEED, "recipe": f"RandomResizedCrop {OUT} (scale {SCALE}, ratio 3/4-4/3), flip, brightness "
                                        f"{STRENGTH}, contrast {STRENGTH}, Normalize ImageNet"}
    report = {"machine": info, "load_average_before": load_before, "settings": settings}
    started = time.perf_counter()

    if device.type == "cpu" and not args.no_per_core:
        print("cost per image per core: a child process on one thread (compiles its own pipelines)", flush=True)
        first = [folder.samples[i][0] for i in order[:args.batch]]
        sets = {"photos": first, "500x375": [str(single)] * args.batch}
        spec = {"runs": max(args.runs, 3), "classes": len(folder.classes),
                "sets": {name: sets[name] for name in args.per_core_sets.split(",")},
                "augpipe": [k for k in keys if k.startswith("augpipe")]}
        pc = per_core(spec, timeout=3600)
        if "error" not in pc:
            pc = {"sets": pc, "totals": totals(pc)}
        report["per_core"] = pc

    print(f"end to end: {len(keys)} rows, warm-up run each, then {args.runs} interleaved runs", flush=True)
    rows, loads = end_to_end(keys, folder, args, device, order)
    report["end_to_end"] = list(rows.values())
    report["load_average_each_round"] = loads
    report["targets"] = targets(rows, report.get("per_core"), device)
    report["elapsed_s"] = time.perf_counter() - started
    report["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print_tables(report)
    for line in report["targets"]["lines"]:
        print(line)
    print(f"\nbench_photos: done in {report['elapsed_s']:.0f} s"
          + (f"; load average after: {report['load_average_after'][0]:.2f}" if report["load_average_after"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"bench_photos: wrote {args.json}")
    if scratch:
        scratch.cleanup()


def targets(rows: dict, per_core: dict | None, device) -> dict:
    """The benchmark's targets, each with the figure that decides it: on a CPU, augpipe compiled end to end at least
    as fast as albumentations, and its own cost per image per core at most albumentations' recipe; on a GPU, augpipe
    compiled at least 95% of decode-only."""
    out, lines = {}, ["\ntargets:"]
    ips = {k: r["images_per_s"] for k, r in rows.items() if "images_per_s" in r}
    for key in ("augpipe-compiled-aa", "augpipe-compiled"):
        if key not in ips:
            continue
        if device.type == "cuda" and "decode" in ips:
            ratio = ips[key] / ips["decode"]
            out[f"{key}_of_decode_only"] = {"value": ratio, "target": 0.95, "holds": ratio >= 0.95}
            lines.append(f"  {LABELS[key]} end to end: {ratio:.3f} of decode-only (target >= 0.95): "
                         f"{'holds' if ratio >= 0.95 else 'does not hold'}")
        elif "albumentations" in ips:
            ratio = ips[key] / ips["albumentations"]
            out[f"{key}_vs_albumentations"] = {"value": ratio, "target": 1.0, "holds": ratio >= 1.0}
            lines.append(f"  {LABELS[key]} end to end: {ratio:.2f}x albumentations' images/s (target >= 1): "
                         f"{'holds' if ratio >= 1 else 'does not hold'}")
    if per_core and "sets" in per_core:
        for name, figures in per_core["sets"].items():
            if "albumentations" not in figures:
                continue
            alb = figures["albumentations"]["ms_per_image"]
            for key in ("augpipe-compiled-aa", "augpipe-compiled"):
                if key in figures:
                    mine = figures[key]["ms_per_image"]
                    out[f"{key}_per_core_{name}"] = {"value_ms": mine, "albumentations_ms": alb,
                                                     "ratio": mine / alb, "holds": mine <= alb}
                    lines.append(f"  {LABELS[key]}, {name}: {mine:.3f} ms an image per core against "
                                 f"albumentations' {alb:.3f} ({mine / alb:.2f}x; target <= 1x): "
                                 f"{'holds' if mine <= alb else 'does not hold'}")
    return {"checks": out, "lines": lines}


if __name__ == "__main__":
    main()
