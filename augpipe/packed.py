"""PackedImages: a batch of images, each of its own size, in one contiguous buffer.

Sample b, (C, H_b, W_b) in CHW order, lies at ``data[offsets[b] : offsets[b] + C * H_b * W_b]``, the samples back
to back. Pixels, sizes and offsets share one byte buffer, so a move to a device is one copy and pinning is one pin.
The sizes are also kept on the host as Python ints, so ``max_size``, ``image_sizes``, ``unpack`` and indexing never
read the device.
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from torch import Tensor

_INT64_BYTES = 8


def _aligned(nbytes: int) -> int:
    """The first multiple of 8 at or after nbytes: where the int64 sizes and offsets start in the buffer (a byte
    slice views as int64 only at such a position)."""
    return -(-nbytes // _INT64_BYTES) * _INT64_BYTES


def _starts(counts: list[int]) -> list[int]:
    """Exclusive running sum: where each sample starts when the samples lie back to back."""
    starts, total = [], 0
    for n in counts:
        starts.append(total)
        total += n
    return starts


class PackedImages:
    """B images of one channel count and dtype, each (C, H_b, W_b), in one contiguous buffer.

    ``data`` (N,) the pixels, ``sizes`` (B, 2) int64 (H, W) per sample and ``offsets`` (B,) int64 where each sample
    starts in ``data`` are views into one uint8 ``buffer`` (pixels first, then sizes and offsets at an 8-byte aligned
    position), which ``.to(device)`` copies once and ``.pin_memory()`` pins once. ``max_size`` and ``image_sizes``
    come from a host copy of the sizes, carried along by ``.to`` and ``.pin_memory``, so they never wait for a device.

    Build one with ``PackedImages.pack(images)`` from (C, H, W) tensors, or ``PackedImages(data, sizes, offsets,
    channels)`` from the three tensors; both copy, neither modifies its arguments. ``unpack()`` and ``packed[i]``
    give views of the buffer: writing into them writes into the packed batch.
    """

    def __init__(self, data: Tensor, sizes: Tensor, offsets: Tensor, channels: int):
        """Copy ``data`` (N,), ``sizes`` (B, 2) (H, W) and ``offsets`` (B,) into one buffer on data's device.

        Reads ``sizes`` and ``offsets`` back to the host once (a device sync when they live on a device), to keep
        the host copy behind ``max_size`` and to check that the samples lie back to back and fill ``data``."""
        if not isinstance(data, Tensor) or data.dim() != 1:
            raise TypeError(f"PackedImages: data must be a 1-D tensor, got "
                            f"{tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__}")
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"PackedImages: channels must be a positive int, got {channels!r}")
        sizes, offsets = torch.as_tensor(sizes), torch.as_tensor(offsets)
        if sizes.dim() != 2 or sizes.shape[1] != 2 or sizes.shape[0] == 0 or offsets.shape != sizes.shape[:1]:
            raise ValueError(f"PackedImages: sizes must be (B, 2) and offsets (B,) with B >= 1, got sizes "
                             f"{tuple(sizes.shape)} and offsets {tuple(offsets.shape)}")
        if sizes.is_floating_point() or sizes.is_complex() or offsets.is_floating_point() or offsets.is_complex():
            raise TypeError(f"PackedImages: sizes and offsets must be integer tensors, got {sizes.dtype} and "
                            f"{offsets.dtype}")
        values = torch.cat([sizes.reshape(-1), offsets.to(sizes.device).reshape(-1)]).tolist()  # the one read-back
        batch = sizes.shape[0]
        host_sizes = [(int(h), int(w)) for h, w in zip(values[0:2 * batch:2], values[1:2 * batch:2])]
        _check_sizes(host_sizes, "PackedImages")
        counts = [channels * h * w for h, w in host_sizes]
        if values[2 * batch:] != _starts(counts) or data.numel() != sum(counts):
            raise ValueError(f"PackedImages: samples must lie back to back and fill data: for sizes {host_sizes[:4]}"
                             f"{' ...' if batch > 4 else ''} and {channels} channels expected offsets "
                             f"{_starts(counts)[:4]} and {sum(counts)} values, got offsets {values[2 * batch:][:4]} "
                             f"and {data.numel()} values")
        self._set(_new_buffer(host_sizes, channels, data.dtype, data.device), channels, data.dtype, host_sizes)
        with torch.no_grad():  # a packed batch is data: it keeps no autograd history
            self._data.copy_(data)
        self._write_meta()

    @classmethod
    def pack(cls, images: Sequence[Tensor]) -> PackedImages:
        """Pack (C, H_b, W_b) tensors of one channel count, dtype and device into one new buffer there."""
        images = list(images)
        if not images:
            raise ValueError("PackedImages.pack: got no images; expected at least one (C, H, W) tensor")
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                got = f"shape {tuple(image.shape)}" if isinstance(image, Tensor) else f"a {type(image).__name__}"
                raise TypeError(f"PackedImages.pack: image {i} is {got}, expected a (C, H, W) tensor")
        first = images[0]
        for i, image in enumerate(images):
            if image.shape[0] != first.shape[0]:
                raise ValueError(f"PackedImages.pack: image {i} has {image.shape[0]} channels and image 0 has "
                                 f"{first.shape[0]}; expected one channel count for the batch")
            if image.dtype != first.dtype:
                raise TypeError(f"PackedImages.pack: image {i} is {image.dtype} and image 0 is {first.dtype}; "
                                f"expected one dtype for the batch")
            if image.device != first.device:
                raise ValueError(f"PackedImages.pack: image {i} is on {image.device} and image 0 on "
                                 f"{first.device}; expected one device for the batch")
        host_sizes = [(image.shape[1], image.shape[2]) for image in images]
        _check_sizes(host_sizes, "PackedImages.pack", channels=first.shape[0])
        packed = cls._wrap(_new_buffer(host_sizes, first.shape[0], first.dtype, first.device), first.shape[0],
                           first.dtype, host_sizes)
        with torch.no_grad():
            if first.device.type == "cpu":  # copies each image straight in, strided or not: no flattened copy
                for view, image in zip(packed.unpack(), images):
                    view.copy_(image)
            else:  # one kernel for the batch rather than one per image
                torch.cat([image.reshape(-1) for image in images], out=packed._data)
        packed._write_meta()
        return packed

    @classmethod
    def _wrap(cls, buffer: Tensor, channels: int, dtype: torch.dtype, host_sizes) -> PackedImages:
        """A PackedImages around an existing buffer laid out for these sizes (no copy, no check)."""
        packed = cls.__new__(cls)
        packed._set(buffer, channels, dtype, host_sizes)
        return packed

    def _set(self, buffer: Tensor, channels: int, dtype: torch.dtype, host_sizes) -> None:
        self._buffer, self._channels, self._dtype = buffer, int(channels), dtype
        self._host_sizes = tuple((int(h), int(w)) for h, w in host_sizes)
        self._counts = [self._channels * h * w for h, w in self._host_sizes]
        pixel_bytes = sum(self._counts) * dtype.itemsize
        batch, start = len(self._host_sizes), _aligned(pixel_bytes)
        self._data = buffer[:pixel_bytes].view(dtype)  # (N,)
        self._meta = buffer[start:start + 3 * batch * _INT64_BYTES].view(torch.int64)  # (3B,): sizes, offsets
        self._sizes = self._meta[:2 * batch].view(batch, 2)  # (B, 2)
        self._offsets = self._meta[2 * batch:]  # (B,)

    def _write_meta(self) -> None:
        """Write the host sizes and offsets into the buffer's int64 part, and zero the alignment bytes before it (so
        equal batches have equal buffers, and no stale memory travels with one)."""
        pixel_bytes = self._data.numel() * self._dtype.itemsize
        if pixel_bytes % _INT64_BYTES:
            self._buffer[pixel_bytes:_aligned(pixel_bytes)].zero_()
        values = [v for hw in self._host_sizes for v in hw] + _starts(self._counts)
        host = torch.tensor(values, dtype=torch.int64)
        asynchronous = self._meta.device.type == "cuda"
        if asynchronous:
            host = host.pin_memory()  # a copy from pinned memory is queued, not waited for
        self._meta.copy_(host, non_blocking=asynchronous)

    # ------------------------------------------------------------------------------------------- the batch
    @property
    def data(self) -> Tensor:
        """(N,) the pixels of every sample, CHW one after another (a view into ``buffer``)."""
        return self._data

    @property
    def sizes(self) -> Tensor:
        """(B, 2) int64 (H, W) of each sample, on the batch's device (a view into ``buffer``)."""
        return self._sizes

    @property
    def offsets(self) -> Tensor:
        """(B,) int64 where each sample starts in ``data``, on the batch's device (a view into ``buffer``)."""
        return self._offsets

    @property
    def buffer(self) -> Tensor:
        """The one uint8 tensor that holds pixels, sizes and offsets."""
        return self._buffer

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._buffer.device

    @property
    def max_size(self) -> tuple[int, int]:
        """(largest H, largest W) of the batch, from the host copy of the sizes (no device read)."""
        return max(h for h, _ in self._host_sizes), max(w for _, w in self._host_sizes)

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of each sample, from the host copy of the sizes (no device read)."""
        return list(self._host_sizes)

    def __len__(self) -> int:
        return len(self._host_sizes)

    def __getitem__(self, index: int) -> Tensor:
        """Image ``index`` as a (C, H, W) view of the buffer."""
        batch = len(self)
        if isinstance(index, bool):
            raise TypeError("PackedImages: index with an int, got bool")
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(f"PackedImages: index with an int, got {type(index).__name__}") from None
        if not -batch <= index < batch:
            raise IndexError(f"PackedImages: index {index} is out of range for {batch} images")
        index %= batch
        start = sum(self._counts[:index])
        h, w = self._host_sizes[index]
        return self._data[start:start + self._counts[index]].view(self._channels, h, w)

    def unpack(self) -> list[Tensor]:
        """The B images as (C, H_b, W_b) views of the buffer (no copy)."""
        return [chunk.view(self._channels, h, w)
                for chunk, (h, w) in zip(self._data.split(self._counts), self._host_sizes)]

    # ------------------------------------------------------------------------------------------- moving
    def to(self, device, non_blocking: bool = False) -> PackedImages:
        """The batch on ``device``: one copy of the buffer (self when it is there already)."""
        buffer = self._buffer.to(device, non_blocking=non_blocking)
        return self if buffer is self._buffer else self._wrap(buffer, self._channels, self._dtype, self._host_sizes)

    def pin_memory(self) -> PackedImages:
        """The batch in pinned (page-locked) host memory, for an asynchronous copy to a GPU: one pin."""
        buffer = self._buffer.pin_memory()
        return self if buffer is self._buffer else self._wrap(buffer, self._channels, self._dtype, self._host_sizes)

    def is_pinned(self) -> bool:
        return self._buffer.is_pinned()

    def record_stream(self, stream) -> None:
        """Tell the CUDA caching allocator the buffer is used on ``stream`` (see ``Tensor.record_stream``)."""
        self._buffer.record_stream(stream)

    def __reduce__(self):
        # Pickled as the one buffer (shared memory between DataLoader workers), so the views stay one storage.
        return PackedImages._wrap, (self._buffer, self._channels, self._dtype, self._host_sizes)

    def __repr__(self) -> str:
        heights = [h for h, _ in self._host_sizes]
        widths = [w for _, w in self._host_sizes]
        return (f"PackedImages(B={len(self)}, C={self._channels}, dtype={self._dtype}, device={self.device}, "
                f"H {min(heights)}..{max(heights)}, W {min(widths)}..{max(widths)})")


def _check_sizes(host_sizes, who: str, channels: int = 1) -> None:
    for i, (h, w) in enumerate(host_sizes):
        if h < 1 or w < 1 or channels < 1:
            raise ValueError(f"{who}: image {i} is {channels}x{h}x{w}; expected at least one channel and one pixel")


def _new_buffer(host_sizes, channels: int, dtype: torch.dtype, device) -> Tensor:
    """An uninitialised uint8 buffer for the pixels, then (at an 8-byte aligned position) sizes and offsets."""
    pixel_bytes = sum(channels * h * w for h, w in host_sizes) * dtype.itemsize
    return torch.empty(_aligned(pixel_bytes) + 3 * len(host_sizes) * _INT64_BYTES, dtype=torch.uint8, device=device)
