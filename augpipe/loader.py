"""DataLoader integration: collate uint8 batches on the CPU, augment them on the device.

The worker processes only decode and stack bytes; every random choice and every float is made on the device by
the Pipeline, where the batch is a quarter of the size it would be as float32.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from .packed import PackedImages
from .validate import looks_channels_last

_PER_SAMPLE_KEYS = {"image": "images", "label": "labels", "mask": "masks", "boxes": "boxes", "keypoints": "keypoints"}

# PIL modes whose pixels are not L, RGB or RGBA values: palette indices, other colour spaces, 1-bit. Converted, so
# that brightness, contrast and Normalize see colours (np.asarray of a "P" image gives indices, not colours).
_PIL_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "LA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
                "HSV": "RGB", "RGBX": "RGB", "RGBa": "RGBA", "La": "RGBA"}


def to_chw_uint8(image) -> Tensor:
    """A PIL image, an HWC (or HW) uint8 numpy array or a uint8 tensor -> CHW uint8 tensor (no float).

    A tensor is read as (C, H, W), or as (H, W) grayscale, except one whose shape reads as (H, W, C)
    (``validate.looks_channels_last``: last dimension 1, 3 or 4, the other two larger than 4, as
    ``torch.from_numpy`` of a decoded picture gives), which is permuted to (C, H, W)."""
    if isinstance(image, Tensor):
        if image.dtype != torch.uint8 or image.dim() not in (2, 3):
            raise TypeError(f"collate: a tensor image must be uint8 (C, H, W), (H, W, C) or (H, W), got "
                            f"{image.dtype} {tuple(image.shape)}")
        if image.dim() == 2:
            return image.unsqueeze(0)
        return image.permute(2, 0, 1) if looks_channels_last(tuple(image.shape)) else image
    if not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pillow is a core dependency; this only guards odd installs
            Image = None
        if Image is None or not isinstance(image, Image.Image):
            raise TypeError(f"collate: expected a PIL image, an HWC uint8 numpy array or a CHW uint8 tensor, "
                            f"got {type(image).__name__}")
        if image.mode not in ("L", "RGB", "RGBA") and image.mode not in _PIL_CONVERT:
            raise TypeError(f"collate: PIL mode {image.mode!r} holds 16-bit or float pixels; make them 8-bit in the "
                            f"Dataset first (scale to 0..255, then .convert('L'))")
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        elif image.mode in _PIL_CONVERT:
            image = image.convert(_PIL_CONVERT[image.mode])
        return _pil_planes(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError(f"collate: a numpy image must be HW or HWC uint8, got {image.dtype} {image.shape}")
    array = image[:, :, None] if image.ndim == 2 else image
    # Always a copy: CHW needs one for RGB anyway, and PIL's arrays are read-only.
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), order="C"))


def _pil_planes(image) -> Tensor:
    """An L, RGB or RGBA PIL image -> a new (C, H, W) uint8 tensor. PIL packs one band at a time into a plane of its
    own (``tobytes`` with the band's raw mode), so each channel is one contiguous copy into the tensor, where
    reading the interleaved pixels channel by channel would be a strided one."""
    out = torch.empty((len(image.getbands()), image.height, image.width), dtype=torch.uint8)
    for plane, band in zip(out.numpy(), image.getbands()):
        plane[...] = np.frombuffer(image.tobytes("raw", band), dtype=np.uint8).reshape(plane.shape)
    return out


def _to_label_map(mask) -> Tensor:
    if isinstance(mask, Tensor):
        return mask
    array = np.asarray(mask)
    if array.dtype.kind not in "iub":
        raise TypeError(f"collate: a mask must hold integer labels, got {array.dtype}")
    if not (array.flags.writeable and array.flags.c_contiguous):  # PIL's arrays are read-only
        array = np.array(array, order="C")
    return torch.from_numpy(array)


# Channels a picture may have, and how a sample with fewer is brought to more, as PIL's convert does: grayscale
# repeated into R, G and B, an opaque alpha (255) added.
_PICTURE_CHANNELS = (1, 3, 4)


def _with_channels(image: Tensor, channels: int) -> Tensor:
    """A (c, H, W) uint8 picture (c = 1 or 3) as (channels, H, W), channels = 3 or 4."""
    colour = image.expand(3, *image.shape[1:]) if image.shape[0] == 1 else image
    if channels == 3:
        return colour
    return torch.cat((colour, torch.full_like(image[:1], 255)))


def _batch_images(images: list[Tensor]) -> Tensor | PackedImages:
    """CHW uint8 images -> (B, C, H, W) when they share one size, else a PackedImages; a batch that mixes
    grayscale, RGB and RGBA is first brought to the most channels."""
    channels = sorted({t.shape[0] for t in images})
    if len(channels) > 1:
        if not set(channels) <= set(_PICTURE_CHANNELS):
            raise ValueError(f"collate: images in one batch have different channel counts {channels}; only "
                             f"grayscale (1), RGB (3) and RGBA (4) are brought to the most channels here, so give "
                             f"every sample the same channels in the Dataset first")
        images = [t if t.shape[0] == channels[-1] else _with_channels(t, channels[-1]) for t in images]
    if len({tuple(t.shape) for t in images}) == 1:
        return torch.stack(images)
    return PackedImages.pack(images)


def _batch_masks(masks: list[Tensor], images: list[Tensor]) -> Tensor | PackedImages:
    """Each sample's mask, (H, W) or (1, H, W) of its own image's size: stacked when the images stack, packed
    with one channel (same sizes, the masks' dtype) when they pack."""
    for i, (mask, image) in enumerate(zip(masks, images)):
        size = tuple(image.shape[1:])
        if tuple(mask.shape) not in (size, (1, *size)):
            raise ValueError(f"collate: sample {i} has a mask of shape {tuple(mask.shape)} for an image of size "
                             f"{size[0]}x{size[1]}; expected a mask (H, W) = {size}, the size of its image")
    if len({tuple(t.shape[1:]) for t in images}) == 1:
        return _stack_same_size(masks, "masks")
    dtype = functools.reduce(torch.promote_types, (m.dtype for m in masks))  # as torch.stack promotes
    return PackedImages.pack([m.to(dtype).reshape(1, *m.shape[-2:]) for m in masks])


def _stack_same_size(tensors: list[Tensor], what: str) -> Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"collate: {what} in one batch have different shapes {sorted(shapes)[:4]}; give every "
                         f"sample's {what[:-1]} the same layout")
    return torch.stack(tensors)


def _pad_rows(rows: list, width: int, what: str) -> Tensor:
    """Stack (N_i, width) arrays into (B, max N, width) float32, padding with NaN rows."""
    arrays = []
    for i, r in enumerate(rows):
        a = np.asarray(r, dtype=np.float32)
        if a.size == 0:
            a = a.reshape(0, width)
        if a.ndim != 2 or a.shape[1] != width:
            extra = "; drop the visibility column first" if what == "keypoints" and a.shape[-1:] == (3,) else ""
            raise ValueError(f"collate: {what} must be (N, {width}) per sample, sample {i} has shape "
                             f"{a.shape}{extra}")
        arrays.append(torch.from_numpy(a))
    n = max((a.shape[0] for a in arrays), default=0)
    out = torch.full((len(arrays), n, width), math.nan)
    for i, a in enumerate(arrays):  # collate runs per sample on the CPU worker, before any device work
        out[i, :a.shape[0]] = a
    return out


def _labels(labels: list) -> Tensor:
    try:
        return torch.stack([torch.as_tensor(l) for l in labels])
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"collate: labels must be numbers, numpy numbers or tensors of one shape, got "
                        f"{sorted({type(l).__name__ for l in labels})} ({e})") from None


def collate(samples: list):
    """DataLoader ``collate_fn``: (image, label) pairs -> (images, labels); dicts -> a dict.

    Images may be PIL images, HW or HWC uint8 arrays, or uint8 tensors: (C, H, W), (H, W), or (H, W, C) when the
    shape reads so (last dimension 1, 3 or 4, the others larger than 4), which is permuted to (C, H, W). A batch
    that mixes grayscale, RGB and RGBA samples is brought to the most channels, as PIL's convert would (grayscale
    repeated, alpha 255); nothing is converted to float.

    Images of one size become a uint8 (B, C, H, W) tensor; images of different sizes become a uint8
    ``PackedImages`` (one contiguous buffer, each sample at its own size), which ``DeviceLoader`` moves in one copy
    and a Pipeline that brings every sample to one size reads.

    A dict sample may hold "image", "label", "mask" (H, W) integer, "boxes" (N, 4) xyxy and "keypoints" (K, 2) xy;
    the batch dict uses the Pipeline's argument names ("images", "labels", "masks", "boxes", "keypoints") so that
    ``pipe(**batch)`` works. Each mask must have its own image's size; the masks are stacked when the images are
    and packed (one channel, their own dtype) when the images are packed. Boxes and keypoints of different counts
    are padded with NaN rows.
    """
    if not samples:
        raise ValueError("collate: got an empty list of samples")
    first = samples[0]
    kind = _sample_kind(first)
    for i, s in enumerate(samples):
        if _sample_kind(s) != kind or (kind == "dict" and set(s) != set(first)):
            described = f"keys {sorted(s)}" if isinstance(s, dict) else _sample_kind(s)
            expected = f"keys {sorted(first)}" if kind == "dict" else kind
            raise ValueError(f"collate: every sample of a batch must be alike; sample 0 is {expected}, sample {i} "
                             f"is {described}")
    if kind == "dict":
        unknown = set(first) - set(_PER_SAMPLE_KEYS)
        if unknown or "image" not in first:
            raise ValueError(f"collate: dict samples need 'image' and may have {sorted(_PER_SAMPLE_KEYS)}, got "
                             f"keys {sorted(first)}")
        images = [to_chw_uint8(s["image"]) for s in samples]
        batch = {"images": _batch_images(images)}
        if "label" in first:
            batch["labels"] = _labels([s["label"] for s in samples])
        if "mask" in first:
            batch["masks"] = _batch_masks([_to_label_map(s["mask"]) for s in samples], images)
        if "boxes" in first:
            batch["boxes"] = _pad_rows([s["boxes"] for s in samples], 4, "boxes")
        if "keypoints" in first:
            batch["keypoints"] = _pad_rows([s["keypoints"] for s in samples], 2, "keypoints")
        return batch
    if kind == _PAIR:
        images = _batch_images([to_chw_uint8(s[0]) for s in samples])
        return images, _labels([s[1] for s in samples])
    return _batch_images([to_chw_uint8(s) for s in samples])


_PAIR = "an (image, label) pair"


def _sample_kind(sample) -> str:
    if isinstance(sample, dict):
        return "dict"
    return _PAIR if isinstance(sample, (tuple, list)) and len(sample) == 2 else "an image"


def _move(batch, device: torch.device, non_blocking: bool):
    """Move every tensor and PackedImages of a batch (tensor, tuple, list or dict) to the device."""
    if isinstance(batch, (Tensor, PackedImages)):
        if device.type == "cuda" and batch.device.type == "cpu" and not batch.is_pinned():
            batch = batch.pin_memory()  # (a batch already on a GPU is copied, or kept, as it is)
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _move(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_move(v, device, non_blocking) for v in batch)
    return batch


def _record(batch, stream) -> None:
    """Tell the caching allocator the tensors made on the side stream are used on the current one."""
    if isinstance(batch, (Tensor, PackedImages)):
        batch.record_stream(stream)
    elif isinstance(batch, dict):
        for v in batch.values():
            _record(v, stream)
    elif isinstance(batch, (tuple, list)):
        for v in batch:
            _record(v, stream)


class DeviceLoader:
    """Wrap a DataLoader: move each batch to ``device`` and run ``pipeline`` there.

    Yields what the pipeline returns: images; (images, targets) for (images, labels) batches; a dict for dict
    batches. On CUDA the next batch is copied from pinned memory on a side stream while the current one trains.
    """

    def __init__(self, loader: Iterable, pipeline, device=None, non_blocking: bool = True):
        self.loader = loader
        self.pipeline = pipeline
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.non_blocking = non_blocking

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Forward to a DistributedSampler (or any sampler with set_epoch), so each epoch reshuffles; also one
        inside the loader's batch_sampler (DataLoader(batch_sampler=BatchSampler(DistributedSampler(...))))."""
        batch_sampler = getattr(self.loader, "batch_sampler", None)
        for sampler in (getattr(self.loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

    def _augment(self, batch):
        if isinstance(batch, dict):
            return self.pipeline(**batch)
        if isinstance(batch, (tuple, list)):
            return self.pipeline(*batch)
        return self.pipeline(batch)

    def __iter__(self):
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self._augment(_move(batch, self.device, self.non_blocking))
            return
        side = torch.cuda.Stream(self.device)
        batches = iter(self.loader)

        def preload():
            batch = next(batches, None)
            if batch is None:
                return None
            with torch.cuda.stream(side):
                return _move(batch, self.device, self.non_blocking)

        upcoming = preload()
        while upcoming is not None:
            current_stream = torch.cuda.current_stream(self.device)
            current_stream.wait_stream(side)
            batch = upcoming
            _record(batch, current_stream)
            upcoming = preload()
            yield self._augment(batch)
