"""The 8-bit level ops: Sharpness, Posterize, Solarize, Equalize, AutoContrast and Invert.

PIL's ImageOps and ImageEnhance define them on uint8 levels, and the AutoAugment and RandAugment authors used those;
torchvision's ``adjust_sharpness``, ``posterize``, ``solarize``, ``equalize``, ``autocontrast`` and ``invert``
follow them. Here they act on the float images of a pipeline through each pixel's level round(255 x), so uint8 and
float input agree within one level (docs/references.md, "Levels"). Each applies per sample with probability ``p``,
0.5 by default as torchvision's RandomX transforms; "not applied" is the neutral parameter, which returns exactly the
input. Every channel is a band of its own, whatever the channel count (a fourth channel too).

The params are (B,) tensors that a policy can build itself and hand to the kernels in ``augpipe.functional``:
``sharpness(x, factor)``, ``posterize(x, bits)``, ``solarize(x, threshold)``, ``equalize(x, apply)``,
``autocontrast(x, apply)`` and ``invert(x, apply)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import functional as F
from .ops import Op, _bernoulli, _check_finite, _check_probability, _uniform


def _number(value, op: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__} {value!r}")
    _check_finite(op, name, value)
    return float(value)


class Sharpness(Op):
    """Blend with the smoothed image by a factor f (torchvision RandomAdjustSharpness(sharpness_factor, p=0.5)).

    ``factor``: a number f >= 0, the same for every sample (torchvision's ``sharpness_factor``), or a range
    (lo, hi) with 0 <= lo <= hi, f ~ U[lo, hi] per sample. f = 0 gives the smoothed image, 1 the image, 2 a sharper
    one. The smoothing kernel is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 and the 1-pixel border is left as it is, as
    PIL's ImageEnhance.Sharpness (``F.sharpness``). Not applied: f = 1.
    """

    reads_whole_input = True

    def __init__(self, factor, p: float = 0.5):
        super().__init__()
        if isinstance(factor, Sequence) and not isinstance(factor, str) and len(factor) == 2:
            lo, hi = (_number(v, "Sharpness", "factor") for v in factor)
        else:
            lo = hi = _number(factor, "Sharpness", "factor (a number or a range (lo, hi))")
        if not 0 <= lo <= hi:
            raise ValueError(f"Sharpness: factor must be >= 0, or a range (lo, hi) with 0 <= lo <= hi, got {factor!r}")
        self.range = (lo, hi)
        self.p = _check_probability(p, "Sharpness")

    def extra_repr(self) -> str:
        factor = self.range[0] if self.range[0] == self.range[1] else self.range
        return f"factor={factor}, p={self.p}"

    def sample(self, shape, generator, device):
        factor = _uniform(shape.batch, *self.range, generator, device)
        return self.skip({"factor": factor}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"factor": torch.where(keep, params["factor"], 1.0)}

    def apply(self, state, params):
        return {**state, "images": F.sharpness(state["images"], params["factor"])}


class Posterize(Op):
    """Keep the top ``bits`` bits (1..8) of each 8-bit level (torchvision RandomPosterize(bits, p=0.5); PIL
    ImageOps.posterize, whose range 1..8 this takes: torchvision also takes 0, which makes every image black).
    ``F.posterize``. Not applied: bits = 8.
    """

    pointwise = True

    def __init__(self, bits: int, p: float = 0.5):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise TypeError(f"Posterize: bits must be an int in 1..8, got {type(bits).__name__} {bits!r}")
        if not 1 <= bits <= 8:
            raise ValueError(f"Posterize: bits must be in 1..8, got {bits}")
        self.bits = bits
        self.p = _check_probability(p, "Posterize")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, p={self.p}"

    def sample(self, shape, generator, device):
        bits = torch.full((shape.batch,), self.bits, dtype=torch.long, device=device)
        return self.skip({"bits": bits}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"bits": torch.where(keep, params["bits"], 8)}

    def apply(self, state, params):
        return {**state, "images": F.posterize(state["images"], params["bits"])}


class Solarize(Op):
    """Invert the pixels at or above ``threshold`` (torchvision RandomSolarize(threshold, p=0.5)).

    ``threshold`` is on the float scale, in [0, 1], whatever the input dtype: a pixel is inverted where its 8-bit
    level reaches 255 threshold, so 128 / 255 is PIL's ``ImageOps.solarize(image, 128)``. (torchvision reads the
    threshold on the input's own scale: 128 for uint8 images, 128 / 255 for float ones.) ``F.solarize``. Not
    applied: the threshold inf, which no level reaches.
    """

    pointwise = True

    def __init__(self, threshold: float, p: float = 0.5):
        super().__init__()
        threshold = _number(threshold, "Solarize", "threshold")
        if not 0 <= threshold <= 1:
            raise ValueError(f"Solarize: threshold must be in [0, 1] (the float scale: 128 / 255 for level 128), "
                             f"got {threshold}")
        self.threshold = threshold
        self.p = _check_probability(p, "Solarize")

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, p={self.p}"

    def sample(self, shape, generator, device):
        threshold = torch.full((shape.batch,), self.threshold, device=device)
        return self.skip({"threshold": threshold}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"threshold": torch.where(keep, params["threshold"], math.inf)}

    def apply(self, state, params):
        return {**state, "images": F.solarize(state["images"], params["threshold"])}


class _Switched(Op):
    """An op without a magnitude: a per-sample flag, true with probability p, under the key ``key``."""

    key = ""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_probability(p, type(self).__name__)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def sample(self, shape, generator, device):
        return {self.key: _bernoulli(shape.batch, self.p, generator, device)}

    def skip(self, params, keep):
        return {self.key: params[self.key] & keep}


class Equalize(_Switched):
    """Histogram equalization of each channel's levels (torchvision RandomEqualize(p=0.5); PIL ImageOps.equalize,
    per band). ``F.equalize``. Not applied: the flag "equalize" false."""

    key = "equalize"
    reads_whole_input = True

    def apply(self, state, params):
        return {**state, "images": F.equalize(state["images"], params["equalize"])}


class AutoContrast(_Switched):
    """Stretch each channel's darkest to lightest level onto 0 to 255 (torchvision RandomAutocontrast(p=0.5); PIL
    ImageOps.autocontrast, per band, no cutoff). A channel of one level is left as it is. ``F.autocontrast``.
    Not applied: the flag "autocontrast" false."""

    key = "autocontrast"
    reads_whole_input = True

    def apply(self, state, params):
        return {**state, "images": F.autocontrast(state["images"], params["autocontrast"])}


class Invert(_Switched):
    """1 - x (torchvision RandomInvert(p=0.5); PIL ImageOps.invert: level 255 - q). ``F.invert``. Not applied: the
    flag "invert" false."""

    key = "invert"
    pointwise = True

    def apply(self, state, params):
        return {**state, "images": F.invert(state["images"], params["invert"])}
