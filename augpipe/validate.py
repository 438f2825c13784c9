"""The checks of what a Pipeline is called with: images, labels, masks, boxes, keypoints and replayed params.

Each says what it got and what it expected, naming the Pipeline, before anything is drawn or run. Checks that would
make the host wait for a GPU are made on CPU tensors only, or as device-side asserts.
"""
from __future__ import annotations

import math
import os
import sys
import warnings

import torch
from torch import Tensor, nn

from . import functional as F
from .ops import Op, Shape, Sizes


def check_images(images) -> bool:
    """Validate the image batch; returns True for a single (C, H, W) image."""
    if not isinstance(images, Tensor):
        raise TypeError(f"Pipeline: images must be a torch.Tensor (B, C, H, W) or (C, H, W), or images of their "
                        f"own sizes (an augpipe.PackedImages, or a list of (C, H, W) tensors), got "
                        f"{type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"Pipeline: images must be uint8 in [0, 255] or floating point in [0, 1], got {images.dtype}")
    if images.dim() not in (3, 4):
        raise ValueError(f"Pipeline: images must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    if min(images.shape[-3:]) < 1:
        raise ValueError(f"Pipeline: images need C, H, W >= 1, got shape {tuple(images.shape)}")
    if images.is_meta:
        raise ValueError("Pipeline: images are on the meta device, which holds no values to draw for or augment")
    check_layout(tuple(images.shape))
    if images.is_floating_point():
        check_range(images)
    return images.dim() == 3


def packed(images, masks) -> tuple[F.Flat, Shape, F.Flat | None]:
    """A batch of images of their own sizes (an ``augpipe.PackedImages``, or a list of (C, H, W) tensors, packed
    here) as the executor reads it, its Shape (per-sample ``Sizes``; height and width the largest), and its masks
    (a PackedImages of one channel and the images' sizes) likewise."""
    from .packed import PackedImages

    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("Pipeline: got an empty list of images")
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise TypeError(f"Pipeline: a list of images must hold (C, H, W) tensors, image {i} is {got}")
        channels = sorted({image.shape[0] for image in images})
        if len(channels) > 1:
            raise ValueError(f"Pipeline: the images of a list have different channel counts {channels}; give "
                             f"them one (augpipe.collate brings grayscale, RGB and RGBA to the most)")
        images = PackedImages.pack(images)
    if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
        raise TypeError(f"Pipeline: images must be uint8 in [0, 255] or floating point in [0, 1], got {images.dtype}")
    if images.dtype.is_floating_point:
        check_range(images.data)
    host = images.image_sizes
    low = (min(h for h, _ in host), min(w for _, w in host))
    high = images.max_size
    sizes = Sizes(images.sizes.to(torch.float64), low, high)
    shape = Shape(len(images), images.channels, *high, sizes)
    flat = F.Flat(images.data, images.offsets, sizes, images.channels)
    if masks is None:
        return flat, shape, None
    if not isinstance(masks, PackedImages) or masks.channels != 1 or masks.image_sizes != host:
        got = type(masks).__name__ if not isinstance(masks, PackedImages) else \
            f"{masks.channels} channels and sizes {masks.image_sizes[:3]}..."
        raise ValueError(f"Pipeline: masks of a packed batch must be a PackedImages of 1 channel and the images' "
                         f"sizes (augpipe.collate packs them so), got {got}")
    if masks.dtype.is_floating_point or masks.dtype.is_complex:
        raise TypeError(f"Pipeline: masks must be integer label maps, got {masks.dtype}")
    return flat, shape, F.Flat(masks.data, masks.offsets, sizes, 1)


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a (..., A, B, K) image shape reads as (H, W, C) rather than (C, H, W): K is 1, 3 or 4 and A and B
    are both larger than 4. Such a (C, H, W) image would have more than 4 channels and be 1, 3 or 4 pixels wide
    yet more than 4 tall; an (H, W, C) picture is larger than 4 by 4 pixels. A small multi-band patch, (200, 3, 3)
    say, is not taken for (H, W, C)."""
    return len(shape) >= 3 and shape[-1] in (1, 3, 4) and shape[-3] > 4 and shape[-2] > 4


def check_layout(shape: tuple[int, ...]) -> None:
    """Refuse channels-last images; warn where one image may be a batch of grayscale images."""
    if looks_channels_last(shape):
        if len(shape) == 3:
            raise ValueError(f"Pipeline: an image of shape {shape} looks like (H, W, C) = channels last, where "
                             f"augpipe reads (C, H, W) and would see {shape[0]} channels; pass img.permute(2, 0, 1)")
        raise ValueError(f"Pipeline: images of shape {shape} look like (B, H, W, C) = channels last, where augpipe "
                         f"reads (B, C, H, W) and would see {shape[1]} channels; pass images.permute(0, 3, 1, 2)")
    if len(shape) == 3 and shape[0] > 4:
        warnings.warn(f"Pipeline: a tensor of shape {shape} is read as one (C, H, W) image with {shape[0]} "
                      f"channels. If it is a batch of {shape[0]} grayscale images, add their channel axis: "
                      f"x.unsqueeze(1) is (B, 1, H, W). Pass a multi-channel image as a batch of one, "
                      f"x.unsqueeze(0), to silence this warning.", UserWarning, stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside augpipe and torch.nn (the line that
    called the pipeline), so that Python shows it once per such line."""
    inside = (os.path.dirname(__file__) + os.sep, os.path.dirname(nn.__file__) + os.sep)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


# How far outside [0, 1] a float image may stray: float arithmetic on valid images (a resize, a colour conversion)
# can leave values a rounding step outside. Under a quarter of one 8-bit level, so [0, 255] or normalized images
# are still refused; for bfloat16, whose rounding step at 1 is larger, one of its steps.
RANGE_SLACK = 1e-3


def _range_slack(dtype: torch.dtype) -> float:
    return max(RANGE_SLACK, torch.finfo(dtype).eps)


def check_range(images: Tensor) -> None:
    """Float images must be finite and within [0, 1] (up to ``RANGE_SLACK``).

    On a CPU one min/max pass reads the range, and a bad batch raises a ValueError at once. On CUDA the host is
    not made to wait: the same comparison becomes a device-side assert (torch._assert_async), which fails at the
    next synchronizing call (``.item()``, ``.cpu()``, a print) with "device-side assert triggered" (torch
    versions that keep the message print it from the device), and the CUDA context cannot be used afterwards:
    restart the process, and look at the batch on the CPU or with CUDA_LAUNCH_BLOCKING=1. A host-side check would
    make every call wait for the device. Other accelerators are not checked."""
    if not images.numel() or images.device.type not in ("cpu", "cuda"):
        return
    slack = _range_slack(images.dtype)
    # One min/max pass, where isfinite(images).all() would also write and read a bool per value; a NaN makes both
    # NaN.
    lo, hi = torch.aminmax(images)
    if images.device.type == "cuda":
        inside = (lo >= -slack) & (hi <= 1 + slack)  # False for NaN too
        torch._assert_async(inside, "Pipeline: float images must be in [0, 1] and finite; divide by 255 or pass "
                                    "uint8")
        return
    lo, hi = lo.item(), hi.item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("Pipeline: images contain NaN or infinity")
    if lo < -slack or hi > 1 + slack:
        raise ValueError(f"Pipeline: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; divide "
                         f"by 255 (images / 255) or pass uint8 images in [0, 255]"
                         f"{'; normalize after augmenting (augpipe.Normalize last)' if lo < 0 else ''}")


def dense_and_points(shape: Shape, single: bool, **given) -> dict:
    """Validate masks (B, H, W) / (B, 1, H, W), boxes (B, N, 4), keypoints (B, K, 2); masks become (B, 1, H, W)."""
    out = {}
    lead = () if single else (shape.batch,)
    for name, value in given.items():
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise TypeError(f"Pipeline: {name} must be a torch.Tensor, got {type(value).__name__}")
        if single:
            value = value.unsqueeze(0)
        if name == "masks":
            if value.is_floating_point() or value.is_complex():
                raise TypeError(f"Pipeline: masks must be integer label maps, got {value.dtype}")
            if value.dim() == 3:
                value = value.unsqueeze(1)
            if value.dim() != 4 or value.shape[1] != 1 or tuple(value.shape[-2:]) != shape.size \
                    or value.shape[0] != shape.batch:
                raise ValueError(f"Pipeline: masks must be {(*lead, shape.height, shape.width)} or "
                                 f"{(*lead, 1, shape.height, shape.width)} to match the images, got "
                                 f"{tuple(value.shape[1:] if single else value.shape)}")
        else:
            width = 4 if name == "boxes" else 2
            if not value.is_floating_point():
                raise TypeError(f"Pipeline: {name} must be floating point pixels (NaN rows pad), got {value.dtype}")
            if value.dim() != 3 or value.shape[0] != shape.batch or value.shape[2] != width:
                what = "(B, N, 4) xyxy" if name == "boxes" else "(B, K, 2) xy"
                raise ValueError(f"Pipeline: {name} must be {what} with B = {shape.batch}"
                                 f"{' (no B for one image)' if single else ''}, got "
                                 f"{tuple(value.shape[1:] if single else value.shape)}")
        out[name] = value
    return out


def check_params(params, nodes: int, batch: int, views: int = 1) -> None:
    """A replayed params tree must come from this graph (of ``nodes`` nodes) and this batch size (or one draw per
    view, for the ops after a FiveCrop or TenCrop)."""
    if not isinstance(params, list) or len(params) != nodes:
        raise ValueError(f"Pipeline: params must be the list of {nodes} node params that "
                         f"pipe.last_params holds, got {type(params).__name__}")

    def walk(p):
        if isinstance(p, Tensor):
            if p.dim() == 0 or p.shape[0] % batch or p.shape[0] // batch not in (1, views):
                raise ValueError(f"Pipeline: params were drawn for a batch of {p.shape[0] if p.dim() else 1}, "
                                 f"the images are a batch of {batch}")
        elif isinstance(p, dict):
            for v in p.values():
                walk(v)
        elif isinstance(p, (list, tuple)):
            for v in p:
                walk(v)

    walk(params)


def targets(labels, batch: int, single: bool, device: torch.device, num_classes: int | None) -> Tensor:
    """Labels -> float soft targets (B, K) on the images' ``device``, for a graph of ``num_classes`` classes.

    labels: a tensor, a list of ints (or of K-lists of floats) or a numpy array; int class indices (B,) or float
    soft labels (B, K), each row summing to 1. Both are checked where it is free, while they are on the CPU."""
    if not isinstance(labels, Tensor):
        labels = as_label_tensor(labels)
    if single:
        labels = labels.unsqueeze(0)
    if labels.is_floating_point():
        if labels.dim() != 2 or labels.shape[0] != batch:
            raise ValueError(f"Pipeline: soft labels must be (B, K) = ({batch}, K), got {tuple(labels.shape)}")
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(f"Pipeline: soft labels have {labels.shape[1]} classes, num_classes is {num_classes}")
        if labels.device.type == "cpu":
            check_soft_sums(labels)
        return labels.to(device, torch.promote_types(labels.dtype, torch.float32))
    if labels.dtype in (torch.bool,) or labels.is_complex():
        raise TypeError(f"Pipeline: labels must be integer class indices or float soft labels, got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"Pipeline: integer labels must be (B,) = ({batch},), got {tuple(labels.shape)}")
    if num_classes is None:
        raise ValueError("Pipeline: integer labels need num_classes, e.g. Pipeline(..., num_classes=10)")
    if labels.device.type == "cpu" and labels.numel() and not (
            0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise ValueError(f"Pipeline: labels must be in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    labels = labels.to(device)
    return torch.zeros(batch, num_classes, device=device).scatter_(1, labels.long()[:, None], 1.0)


# How far a soft label's row sum may be from 1: float32 rounding of K values is far below it, a wrong row far above.
SOFT_SUM_TOLERANCE = 1e-3


def as_label_tensor(labels) -> Tensor:
    """A list, tuple, numpy array (or one int) of labels as a CPU tensor: ints stay integer, floats floating point."""
    one_int = isinstance(labels, int) and not isinstance(labels, bool)  # the label of one image
    if not (one_int or isinstance(labels, (list, tuple)) or hasattr(labels, "__array__")):
        raise TypeError(f"Pipeline: labels must be a torch.Tensor, a list or a numpy array, got "
                        f"{type(labels).__name__}")
    try:
        return torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"Pipeline: labels must be int class indices or float soft labels, got {type(labels).__name__}"
                        f" that torch cannot read as numbers: {e}") from None


def check_soft_sums(labels: Tensor) -> None:
    """Each row of soft labels (B, K) sums to 1: a distribution over the classes, as Mixup's blend and the loss
    assume. Run on CPU tensors only, where reading the sums makes nothing wait."""
    if not labels.numel():
        return
    sums = labels.double().sum(1)
    off = (sums - 1).abs() > SOFT_SUM_TOLERANCE
    if bool(off.any()):
        rows = off.nonzero().flatten()[:4].tolist()
        seen = ", ".join(f"row {r}: {sums[r].item():.6g}" for r in rows)
        raise ValueError(f"Pipeline: soft labels must sum to 1 in each row (within {SOFT_SUM_TOLERANCE}), got "
                         f"{int(off.sum())} rows that do not ({seen})")


def check_carried(nodes, state: dict) -> None:
    """Every op in ``nodes`` (a graph's modules) carries the masks, boxes and keypoints given."""
    present = {k for k in ("masks", "boxes", "keypoints") if state.get(k) is not None}
    if not present:  # the common call: nothing to check, and walking the modules costs a call's worth of ops
        return
    for op in nodes:
        if isinstance(op, Op) and present - op.carries:
            raise ValueError(f"{op!r}: cannot carry {', '.join(sorted(present - op.carries))} along with the "
                             f"images; remove them or the op")
