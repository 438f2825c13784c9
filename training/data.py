"""Datasets with a fixed train/test split: uint8 (N, C, H, W) tensors held in memory, or photos read from disk.

Items are (uint8 (C, H, W) tensor, int label); all conversion to float happens in the augpipe Pipeline on the
training device.

  digits   scikit-learn's bundled 8x8 digits (1,797 images, 0..16), scaled to 0..255 and upsampled bilinearly;
           no download. Held-out split: stratified, fixed seed.
  cifar10  the standard python-pickle folder (data_batch_1..5, test_batch), its own train/test split.
  folder   an image folder tree, one sub-folder per class; either root/train/<class>, root/test/<class>, or a
           single root/<class> tree split like digits. Streamed: each photo is decoded when its item is read (in
           the DataLoader workers) at its own size, and augpipe.collate packs a batch of mixed sizes.
"""
from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

DATASETS = ("digits", "cifar10", "folder")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_LAYOUT = ("a folder with the python-pickle batches data_batch_1 ... data_batch_5 and test_batch "
                  "(cifar-10-batches-py, or its parent)")
FOLDER_LAYOUT = ("ROOT/<class>/<image> (one sub-folder per class, split here), or ROOT/train/<class>/<image> and "
                 "ROOT/test/<class>/<image>; images in " + " ".join(IMAGE_EXTENSIONS))


class ImageDataset(Dataset):
    """In-memory images (N, C, H, W) uint8 and labels (N,) int64."""

    def __init__(self, images: Tensor, labels: Tensor, classes: tuple[str, ...]):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"ImageDataset: images must be uint8 (N, C, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"ImageDataset: labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels, self.classes = images, labels.long(), tuple(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, indices: Tensor) -> "ImageDataset":
        return ImageDataset(self.images[indices], self.labels[indices], self.classes)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])


class PhotoFolder(Dataset):
    """Some of the files of an ``augpipe.ImageFolder``, decoded one per item: (uint8 (3, H, W) at the photo's own
    size, int label). Read as RGB, as torchvision's ImageFolder reads photos: grayscale repeated into R, G and B,
    alpha dropped, so that a batch and the model always have three channels."""

    channels = 3
    image_size = None  # each photo keeps its own size; the Pipeline crops

    def __init__(self, folder, indices: list[int]):
        self.folder, self.indices = folder, list(indices)
        self.classes = tuple(folder.classes)
        self.labels = torch.tensor([folder.targets[i] for i in self.indices], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image, label = self.folder[self.indices[i]]  # (C, H, W) uint8, C = 1, 3 or 4
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        return image[:3], label

    def subset(self, indices: Tensor) -> "PhotoFolder":
        return PhotoFolder(self.folder, [self.indices[i] for i in indices.tolist()])


@dataclass
class Splits:
    train: ImageDataset | PhotoFolder
    test: ImageDataset | PhotoFolder

    @property
    def streamed(self) -> bool:
        """Photos read from disk at their own sizes (a folder), rather than a fixed-size tensor in memory."""
        return isinstance(self.train, PhotoFolder)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of every image in memory; None for a folder, whose photos keep their own sizes."""
        return self.train.image_size


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the [0, 1] scale, for augpipe's Normalize."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255  # (C, N*H*W)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist())


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted (train, test) indices: round(test_fraction * n_c) test samples from each class c, chosen by a
    permutation that depends only on ``seed`` (torch's CPU generator is stable across versions and machines)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"stratified_split: test_fraction must be in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    test = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        n_test = round(test_fraction * len(idx))
        test.append(idx[torch.randperm(len(idx), generator=g)[:n_test]])
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[torch.cat(test)] = True
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()


def to_uint8(x: Tensor) -> Tensor:
    """Float [0, 1] -> uint8 [0, 255], rounded."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@functools.lru_cache(maxsize=4)
def _digits(image_size: int) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as uint8 (N, 1, S, S) and labels (N,); cached because scikit-learn parses a CSV each call
    (datasets never modify their tensors, so sharing them is safe)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return to_uint8(x), torch.from_numpy(digits.target).long()


def load_digits(image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0) -> Splits:
    """scikit-learn's digits as 1 x image_size x image_size uint8 images; 1,438 train / 359 test by default.

    The 8x8 originals are too small for a pad-and-crop or a 3-stage CNN; bilinear upsampling gives smooth strokes
    at a size the CIFAR-style augmentations and models suit.
    """
    if image_size < 8:
        raise ValueError(f"load_digits: image_size must be >= 8 (the originals are 8x8), got {image_size}")
    images, labels = _digits(image_size)
    train, test = stratified_split(labels, test_fraction, split_seed)
    full = ImageDataset(images, labels, tuple(str(c) for c in range(10)))
    return Splits(full.subset(train), full.subset(test))


def _cifar_root(root: Path) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"load_cifar10: {root} is not a directory; expected {CIFAR10_LAYOUT}")
    if not (root / "test_batch").exists() and (root / "cifar-10-batches-py").is_dir():
        return root / "cifar-10-batches-py"
    return root


def _read_cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One pickle batch -> images (N, 3, 32, 32) uint8, labels (N,). Pickle runs code when loaded: only point
    this at data you trust (it is the format CIFAR-10 ships in)."""
    if not path.is_file():
        raise FileNotFoundError(f"load_cifar10: missing {path}; expected {CIFAR10_LAYOUT}")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data, labels = batch[b"data"], batch[b"labels"]
        images = torch.as_tensor(data, dtype=torch.uint8).reshape(-1, 3, 32, 32)
        labels = torch.as_tensor(labels, dtype=torch.long)
    except Exception as e:  # unpickling, a missing key or a wrong size all mean "not a CIFAR-10 batch"
        raise ValueError(f"load_cifar10: {path} is not a CIFAR-10 python batch (a pickled dict with b'data' "
                         f"(N, 3072) uint8 and b'labels'): {type(e).__name__}: {e}") from e
    if labels.shape != (images.shape[0],) or (labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < 10):
        raise ValueError(f"load_cifar10: {path} has {images.shape[0]} images but labels "
                         f"{tuple(labels.shape)} (expected one label in 0..9 per image)")
    return images, labels


def load_cifar10(data_dir: str | os.PathLike) -> Splits:
    """CIFAR-10 from its python-pickle folder: 50,000 train and 10,000 test 3x32x32 images."""
    root = _cifar_root(Path(data_dir))
    parts = [_read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = _read_cifar_batch(root / "test_batch")
    train = ImageDataset(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), CIFAR10_CLASSES)
    return Splits(train, ImageDataset(test_images, test_labels, CIFAR10_CLASSES))


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise ValueError(f"load_image_folder: {root} has no class sub-folders; expected {FOLDER_LAYOUT}")
    return dirs


def _image_files(class_dir: Path) -> list[Path]:
    files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"load_image_folder: class folder {class_dir} holds no images; expected {FOLDER_LAYOUT}")
    return files


def _scan(root: Path, classes: tuple[str, ...] | None = None) -> tuple[list[Path], list[int], tuple[str, ...]]:
    dirs = _class_dirs(root)
    names = tuple(d.name for d in dirs)
    if classes is not None and names != classes:
        raise ValueError(f"load_image_folder: {root} has classes {list(names)} but the train folder has "
                         f"{list(classes)}; both must hold the same class sub-folders")
    files, labels = [], []
    for label, d in enumerate(dirs):
        found = _image_files(d)
        files += found
        labels += [label] * len(found)
    return files, labels, names


def _eight_bit(im):
    """16-bit and float grayscale as 8-bit L: PIL's convert("L") clips these at 255 instead of scaling them (a
    16-bit ramp 0..63000 came out as 0 and 255). Integer modes are read as 16-bit (0..65535, as PNG stores them),
    float mode "F" as [0, 1]."""
    from PIL import Image

    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return im
    values = np.asarray(im, dtype=np.float64) * (255.0 if im.mode == "F" else 255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _read_images(files: list[Path], image_size: int) -> Tensor:
    """Decode with PIL, resize to image_size (bilinear) and stack as uint8 (N, C, H, W); grayscale stays 1
    channel only if every image is grayscale."""
    from PIL import Image

    from augpipe.loader import to_chw_uint8

    opened = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                opened.append(im.copy())
        except Exception as e:
            raise ValueError(f"load_image_folder: cannot read image {path}: {type(e).__name__}: {e}") from e
    mode = "L" if all(im.mode in _GRAY_MODES for im in opened) else "RGB"
    resized = [_eight_bit(im).convert(mode) for im in opened]
    resized = [im if im.size == (image_size, image_size) else im.resize((image_size, image_size), Image.BILINEAR)
               for im in resized]
    return torch.stack([to_chw_uint8(im) for im in resized])  # (N, C, H, W) uint8


def load_image_folder(data_dir: str | os.PathLike, image_size: int = 32, test_fraction: float = 0.2,
                      split_seed: int = 0) -> Splits:
    """An image folder tree (one sub-folder per class) decoded into memory, each image squashed to image_size x
    image_size; meant for small data sets of small images (``open_image_folder`` streams photos instead)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"load_image_folder: {root} is not a directory; expected {FOLDER_LAYOUT}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, train_labels, classes = _scan(root / "train")
        test_files, test_labels, _ = _scan(root / "test", classes)
        files, labels = train_files + test_files, train_labels + test_labels
        n_train = len(train_files)
        full = ImageDataset(_read_images(files, image_size), torch.tensor(labels), classes)
        return Splits(full.subset(torch.arange(n_train)), full.subset(torch.arange(n_train, len(files))))
    files, labels, classes = _scan(root)
    full = ImageDataset(_read_images(files, image_size), torch.tensor(labels), classes)
    train, test = stratified_split(full.labels, test_fraction, split_seed)
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"load_image_folder: {root} has too few images ({len(files)}) to hold out "
                         f"{test_fraction:.0%} per class; add images or use ROOT/train and ROOT/test")
    return Splits(full.subset(train), full.subset(test))


def open_image_folder(data_dir: str | os.PathLike, test_fraction: float = 0.2, split_seed: int = 0) -> Splits:
    """An image folder tree (one sub-folder per class) listed, not decoded: ``PhotoFolder`` splits whose items are
    decoded when read. ROOT/train and ROOT/test when both exist, else ROOT/<class> split by ``stratified_split`` of
    the file list (fixed seed, as digits)."""
    from augpipe import ImageFolder

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"open_image_folder: {root} is not a directory; expected {FOLDER_LAYOUT}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = ImageFolder(root / "train", IMAGE_EXTENSIONS)
        test = ImageFolder(root / "test", IMAGE_EXTENSIONS)
        if test.classes != train.classes:
            raise ValueError(f"open_image_folder: {root / 'test'} has classes {test.classes} but the train folder "
                             f"has {train.classes}; both must hold the same class sub-folders")
        return Splits(PhotoFolder(train, range(len(train))), PhotoFolder(test, range(len(test))))
    folder = ImageFolder(root, IMAGE_EXTENSIONS)
    train, test = stratified_split(torch.tensor(folder.targets), test_fraction, split_seed)
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"open_image_folder: {root} has too few images ({len(folder)}) to hold out "
                         f"{test_fraction:.0%} per class; add images or use ROOT/train and ROOT/test")
    return Splits(PhotoFolder(folder, train.tolist()), PhotoFolder(folder, test.tolist()))


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, image_size: int = 32) -> Splits:
    """Dispatch on the --dataset name; cifar10 and folder need --data-dir. ``image_size`` is the side digits are
    upsampled to; a folder is opened for streaming (``open_image_folder``), its photos at their own sizes."""
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits(image_size)
    if data_dir is None:
        layout = CIFAR10_LAYOUT if name == "cifar10" else FOLDER_LAYOUT
        raise ValueError(f"load_dataset: dataset {name!r} needs a data directory (--data-dir); expected {layout}")
    return load_cifar10(data_dir) if name == "cifar10" else open_image_folder(data_dir)
