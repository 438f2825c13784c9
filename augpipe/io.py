"""Files: decode one photo at its own size (``read_image``) and read a class-per-folder tree (``ImageFolder``).

Decoding stays on the CPU, in the DataLoader workers; nothing here resizes, crops or converts to float. The
Pipeline does all of that on the batch, so each crop is read from the photo at its original resolution:

    loader = DataLoader(ImageFolder("photos/train"), batch_size=64, shuffle=True, num_workers=4, collate_fn=collate)

Errors. ``read_image`` raises ``ValueError`` naming the file for anything it cannot decode: not an image, a
truncated or corrupt file, or 16-bit / float pixels it will not narrow to 8 bits. Opening the file is left to
Python, so a missing or unreadable file raises its ``OSError`` (FileNotFoundError, PermissionError, ...), which
names the file too.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterable

from torch import Tensor

from .loader import _PIL_CONVERT, to_chw_uint8

# What PIL decodes and torchvision's ImageFolder lists by default; matched case-insensitively against the file name.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

_EIGHT_BIT_MODES = ("L", "RGB", "RGBA", *_PIL_CONVERT)


def read_image(path: str | os.PathLike) -> Tensor:
    """Decode an image file with PIL into a (C, H, W) uint8 tensor at its original size.

    The EXIF orientation is applied (a phone photo stored sideways comes out upright). Modes are converted as
    ``augpipe.collate`` converts PIL images: L stays one channel, RGB three, RGBA four; 1-bit images become L;
    palette, CMYK and YCbCr images RGB (RGBA for a palette with transparency, and for LA / PA). Modes with 16-bit
    or float pixels (I;16, I, F) are refused rather than clipped.

    The whole file is decoded here, so a truncated file raises now rather than in a later conversion (unless the
    caller has opted in to PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES``, in which case PIL fills the missing rows).

    Raises ``ValueError`` naming the file for a file PIL cannot decode; ``OSError`` from opening it (missing,
    unreadable, a directory) is raised as Python gives it.
    """
    from PIL import Image, ImageOps

    with open(path, "rb") as f:
        try:
            with Image.open(f) as im:
                im.load()  # a lazy open only reads the header; decode every byte inside this try
                upright = ImageOps.exif_transpose(im)  # a new image, independent of the file
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad files
            raise ValueError(f"read_image: cannot decode {os.fspath(path)!r}: {type(e).__name__}: {e}") from e
    if upright.mode not in _EIGHT_BIT_MODES:
        raise ValueError(f"read_image: {os.fspath(path)!r} has PIL mode {upright.mode!r} (16-bit or float pixels); "
                         f"expected 8-bit pixels (one of {', '.join(_EIGHT_BIT_MODES)}); decode it yourself and "
                         f"scale to 0..255")
    return to_chw_uint8(upright)  # (C, H, W) uint8, a fresh writable copy


def _extensions(extensions: str | Iterable[str]) -> tuple[str, ...]:
    extensions = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    if not extensions or not all(isinstance(e, str) and e for e in extensions):
        raise ValueError(f"ImageFolder: extensions must be non-empty strings such as '.jpg', got {extensions!r}")
    return tuple(e.lower() for e in extensions)


def _class_names(root: str) -> list[str]:
    """Sub-folders of root (symbolic links followed), sorted by name: their indices are the labels."""
    with os.scandir(root) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir())


def _class_files(folder: str, extensions: tuple[str, ...]) -> list[str]:
    """Files under folder, at any depth, whose lower-cased name ends with one of extensions: folder by folder in
    sorted path order, each folder's files sorted by name (torchvision's order)."""
    found = []
    for dirpath, _, filenames in sorted(os.walk(folder, followlinks=True)):
        found += [os.path.join(dirpath, name) for name in sorted(filenames) if name.lower().endswith(extensions)]
    return found


class ImageFolder:
    """A class-per-folder tree of images: ``root/<class>/**/<file>``, read one file per item with ``read_image``.

    Follows torchvision's ``ImageFolder``: ``classes`` are the sorted sub-folder names of root, ``class_to_idx``
    maps each to its index, ``samples`` lists ``(path, class index)`` class by class, walking each class folder
    recursively (folders in sorted path order, files sorted by name), and keeping files whose name ends with one
    of ``extensions`` (case-insensitive); ``targets`` are the class indices. A class folder with no such file is
    refused, as torchvision does by default.

    ``dataset[i]`` is ``(image, label)``: the photo as a (C, H, W) uint8 tensor at its own size and the class index
    as an int. Decoding happens in ``__getitem__``, so in the DataLoader workers; use ``augpipe.collate`` as the
    ``collate_fn`` and let the Pipeline resize and crop on the batch.

    A file that cannot be read (see ``read_image``):
      - ``on_error="raise"`` (default): the error propagates, naming the file.
      - ``on_error="skip"``: a warning names the file (once per file in each process: every DataLoader worker
        holds its own copy of the dataset), and the item is the next readable sample in ``samples`` order,
        wrapping around past the end, with that sample's label. Known bad files are not read again. If no file
        is readable, ``ValueError``.

    Raises ``FileNotFoundError`` if root is not a directory and ``ValueError`` if it has no class sub-folders or a
    class folder holds no file with one of the extensions.
    """

    def __init__(self, root: str | os.PathLike, extensions: str | Iterable[str] = IMG_EXTENSIONS,
                 on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"ImageFolder: on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = os.fspath(root)
        self.extensions = _extensions(extensions)
        self.on_error = on_error
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: {self.root!r} is not a directory; expected "
                                    f"root/<class>/<image> with images ending in {' '.join(self.extensions)}")
        self.classes = _class_names(self.root)
        if not self.classes:
            raise ValueError(f"ImageFolder: {self.root!r} has no class sub-folders; expected root/<class>/<image> "
                             f"with images ending in {' '.join(self.extensions)}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = []
        empty = []
        for name in self.classes:
            files = _class_files(os.path.join(self.root, name), self.extensions)
            empty += [] if files else [name]
            self.samples += [(path, self.class_to_idx[name]) for path in files]
        if empty:
            raise ValueError(f"ImageFolder: class folders {empty} of {self.root!r} hold no file ending in "
                             f"{' '.join(self.extensions)} (case-insensitive); add images, remove the folders or "
                             f"pass extensions=")
        self.targets = [label for _, label in self.samples]
        self._unreadable: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"ImageFolder: index {index} out of range for {n} samples")
        index %= n
        if self.on_error == "raise":
            path, label = self.samples[index]
            return read_image(path), label
        for step in range(n):
            path, label = self.samples[(index + step) % n]
            if path in self._unreadable:
                continue
            try:
                return read_image(path), label
            except (ValueError, OSError) as e:
                self._unreadable.add(path)
                warnings.warn(f"ImageFolder: skipping unreadable file {path!r} ({e}); item {index} gives the next "
                              f"readable sample instead", stacklevel=2)
        raise ValueError(f"ImageFolder: no file of the {n} in {self.root!r} is readable (on_error='skip')")

    def __repr__(self) -> str:
        return (f"ImageFolder({self.root!r}, {len(self.samples)} samples, {len(self.classes)} classes, "
                f"on_error={self.on_error!r})")
