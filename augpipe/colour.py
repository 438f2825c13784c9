"""Colour ops: saturation, hue, ColorJitter, grayscale and AlexNet's PCA lighting (docs/references.md, "Colour").

Each draws its magnitudes per sample and applies one of the colour kernels of ``augpipe.functional``; "not applied"
is the neutral magnitude (factor 1, hue shift 0, lighting alpha 0), which leaves a sample's values exactly as they
were. They need RGB images: 3 channels. A 1-channel image has no colour to change, and a 4-channel one is refused
rather than guessed at (torchvision refuses it too): split off the alpha channel, ``images[:, :3]``, and put it
back after the pipeline.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import draws as D
from . import functional as F
from .ops import Op, _bernoulli, _check_probability, _Factor, _factor_range, _uniform

# ColorJitter's ops, in the index its "order" param uses.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")
# ImageNet's RGB principal components for images in [0, 1], as fb.resnet.torch publishes them
# (docs/references.md, "Colour"): eigenvalues in decreasing order, one eigenvector per column.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_strength_type(value, name: str, op: str) -> None:
    """A strength is a number or a (lo, hi) pair of numbers; anything else is a TypeError, where the range checks
    that follow raise ValueErrors."""
    if _is_number(value) or (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value))):
        return
    raise TypeError(f"{op}: {name} must be a number or a (lo, hi) pair of numbers, got {value!r}")


def _hue_range(value, op: str) -> tuple[float, float]:
    """torchvision ColorJitter's hue: h -> [-h, h] with 0 <= h <= 0.5; a pair (lo, hi) within [-0.5, 0.5]."""
    _check_strength_type(value, "hue", op)
    lo, hi = (-value, value) if _is_number(value) else value
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{op}: hue must be finite, got {value!r}")
    if _is_number(value) and value < 0:
        raise ValueError(f"{op}: hue must be >= 0 (a shift drawn in [-hue, hue]), got {value!r}")
    if not -0.5 <= lo <= hi <= 0.5:
        raise ValueError(f"{op}: hue shifts are turns of the colour wheel in [-0.5, 0.5]: expected a strength in "
                         f"[0, 0.5] or a range (lo, hi) with -0.5 <= lo <= hi <= 0.5, got {value!r}")
    return float(lo), float(hi)


def _check_rgb(op: Op, shape) -> None:
    if shape.channels != 3:
        alpha = " (for RGBA, pass images[:, :3] and put the alpha channel back after)" if shape.channels == 4 else ""
        raise ValueError(f"{op!r}: needs RGB images, 3 channels, got {shape.channels}{alpha}")


class Saturation(_Factor):
    """out = clamp(f x + (1 - f) gray(x), 0, 1), f ~ U[max(0, 1 - s), 1 + s] per sample (torchvision ColorJitter's
    saturation; factor 0 is the grayscale image, 1 the input). Params: "factor" (B,)."""

    pointwise = True

    def __init__(self, strength=0.0, p: float = 1.0):
        _check_strength_type(strength, "the strength", "Saturation")
        super().__init__(strength, p)

    def check(self, shape):
        _check_rgb(self, shape)

    def apply(self, state, params):
        return {**state, "images": F.saturation(state["images"], params["factor"])}


class Hue(Op):
    """Rotate the HSV hue by a shift ~ U[-h, h] turns per sample, 0 <= h <= 0.5, or ~ U[lo, hi] for a pair within
    [-0.5, 0.5] (torchvision ColorJitter's hue). Params: "shift" (B,), 0 where not applied."""

    pointwise = True

    def __init__(self, strength=0.0, p: float = 1.0):
        super().__init__()
        self.range = _hue_range(strength, "Hue")
        self.p = _check_probability(p, "Hue")

    def extra_repr(self) -> str:
        return f"range={self.range}, p={self.p}"

    def check(self, shape):
        _check_rgb(self, shape)

    def sample(self, shape, generator, device):
        shift = _uniform(shape.batch, *self.range, generator, device)
        return self.skip({"shift": shift}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"shift": torch.where(keep, params["shift"], 0.0)}

    def apply(self, state, params):
        return {**state, "images": F.hue(state["images"], params["shift"])}


class ColorJitter(Op):
    """Brightness, contrast, saturation and hue in a random order per sample, as torchvision's ColorJitter.

    brightness, contrast, saturation: a strength s (factor ~ U[max(0, 1 - s), 1 + s]) or a range (lo, hi); hue: a
    strength h in [0, 0.5] (shift ~ U[-h, h]) or a range within [-0.5, 0.5]. The ranges are Brightness's, Contrast's,
    Saturation's and Hue's, and so are the kernels. An op whose range is only its neutral value (strength 0) is
    absent: never drawn or run. Params: "order" (B, 4), per sample the ops by index (0 brightness, 1 contrast,
    2 saturation, 3 hue) in the order they apply; "brightness", "contrast", "saturation" (B,) factors and "hue" (B,)
    shifts, neutral for an absent op. Replaying the params replays the order.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        super().__init__()
        ranges = []
        for name, value in zip(JITTER_OPS[:3], (brightness, contrast, saturation)):
            _check_strength_type(value, name, "ColorJitter")
            ranges.append(_factor_range(value, f"ColorJitter {name}"))
        ranges.append(_hue_range(hue, "ColorJitter"))
        # The neutral values (factor 1, shift 0) of absent ops, in JITTER_OPS order; a range of only that value is
        # an op that changes nothing, as torchvision drops it.
        self.neutral = (1.0, 1.0, 1.0, 0.0)
        self.ranges = tuple(None if r == (n, n) else r for r, n in zip(ranges, self.neutral))

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={r}" for name, r in zip(JITTER_OPS, self.ranges) if r is not None)

    @property
    def pointwise(self) -> bool:
        return self.ranges[1] is None  # contrast reads the image's mean

    @property
    def reads_whole_input(self) -> bool:
        return self.ranges[1] is not None

    def check(self, shape):
        if self.ranges[2] is not None or self.ranges[3] is not None:
            _check_rgb(self, shape)
        elif self.ranges[1] is not None and shape.channels not in (1, 3):
            raise ValueError(f"{self!r}: contrast needs 1 or 3 channels for the grayscale mean, got {shape.channels}")

    def sample(self, shape, generator, device):
        n = shape.batch
        # A uniformly random order per sample: the ranks of 4 iid uniform keys (augpipe.draws.permutation, per row).
        params = {"order": D.uniform((n, 4), generator, device, torch.float64).argsort(dim=1, stable=True)}
        for name, r, neutral in zip(JITTER_OPS, self.ranges, self.neutral):
            params[name] = (torch.full((n,), neutral, device=device) if r is None
                            else _uniform(n, *r, generator, device))
        return params

    def skip(self, params, keep):
        out = dict(params)
        for name, neutral in zip(JITTER_OPS, self.neutral):
            out[name] = torch.where(keep, params[name], neutral)
        return out

    def apply(self, state, params):
        factors = [None if r is None else params[name] for name, r in zip(JITTER_OPS, self.ranges)]
        return {**state, "images": F.color_jitter(state["images"], params["order"], *factors)}


class Grayscale(Op):
    """The image's luma 0.299 R + 0.587 G + 0.114 B, in 1 channel or repeated in 3 (torchvision Grayscale).

    ``num_output_channels=1`` changes the channel count: the ops after it see 1 channel."""

    pointwise = True

    def __init__(self, num_output_channels: int = 1):
        super().__init__()
        if not (isinstance(num_output_channels, int) and not isinstance(num_output_channels, bool)):
            raise TypeError(f"Grayscale: num_output_channels must be an int, 1 or 3, got {num_output_channels!r}")
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = num_output_channels

    def extra_repr(self) -> str:
        return f"num_output_channels={self.num_output_channels}"

    def output_channels(self, channels: int) -> int:
        return self.num_output_channels

    def check(self, shape):
        _check_rgb(self, shape)

    def sample(self, shape, generator, device):
        return {}

    def apply(self, state, params):
        return {**state, "images": F.grayscale(state["images"], self.num_output_channels)}


class RandomGrayscale(Op):
    """Turn a sample to grayscale, kept in 3 channels, with probability p (torchvision RandomGrayscale).
    Params: "gray" (B,) bool."""

    pointwise = True

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = _check_probability(p, "RandomGrayscale")

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def check(self, shape):
        _check_rgb(self, shape)

    def sample(self, shape, generator, device):
        return {"gray": _bernoulli(shape.batch, self.p, generator, device)}

    def skip(self, params, keep):
        return {"gray": params["gray"] & keep}

    def apply(self, state, params):
        x = state["images"]
        return {**state, "images": torch.where(params["gray"].view(-1, 1, 1, 1), F.grayscale(x, 3), x)}


class PCALighting(Op):
    """AlexNet's lighting noise: add eigvec @ (alpha * eigval) to every pixel, alpha ~ N(0, std^2) per sample and
    component (Krizhevsky et al. 2012), then clamp to [0, 1].

    eigval (3,) and eigvec (3, 3), one principal component per column, describe the RGB covariance of images in
    [0, 1]; the default is ImageNet's, as fb.resnet.torch publishes it. Params: "alpha" (B, 3), 0 where not applied.
    """

    pointwise = True

    def __init__(self, std: float = 0.1, eigval: Sequence[float] | None = None,
                 eigvec: Sequence[Sequence[float]] | None = None, p: float = 1.0):
        super().__init__()
        if not _is_number(std):
            raise TypeError(f"PCALighting: std must be a number, got {std!r}")
        if not (math.isfinite(std) and std >= 0):
            raise ValueError(f"PCALighting: std must be finite and >= 0, got {std}")
        self.std = float(std)
        self.p = _check_probability(p, "PCALighting")
        values = self._tensor(IMAGENET_EIGVAL if eigval is None else eigval, "eigval", (3,))
        vectors = self._tensor(IMAGENET_EIGVEC if eigvec is None else eigvec, "eigvec", (3, 3))
        self.register_buffer("eigval", values, persistent=False)
        self.register_buffer("eigvec", vectors, persistent=False)

    @staticmethod
    def _tensor(value, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"PCALighting: {name} must be numbers of shape {shape}, got {value!r}") from error
        if tuple(t.shape) != shape:
            raise ValueError(f"PCALighting: {name} must have shape {shape} (one component per column for eigvec), "
                             f"got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"PCALighting: {name} must be finite, got {t.tolist()}")
        return t

    def extra_repr(self) -> str:
        return f"std={self.std}, eigval={[round(v, 4) for v in self.eigval.tolist()]}, p={self.p}"

    def check(self, shape):
        _check_rgb(self, shape)

    def sample(self, shape, generator, device):
        alpha = self.std * D.normal((shape.batch, 3), generator, device)
        return self.skip({"alpha": alpha}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"alpha": torch.where(keep.view(-1, 1), params["alpha"], 0.0)}

    def apply(self, state, params):
        x = state["images"]
        return {**state, "images": F.pca_lighting(x, params["alpha"], self.eigval, self.eigvec)}
