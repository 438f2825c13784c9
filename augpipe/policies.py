"""Augmentation policies as graph nodes: RandAugment, TrivialAugmentWide, AutoAugment and AugMix, each sample
drawing its own ops and magnitudes (docs/references.md, "Policies").

A policy chooses, per sample and per slot, one member of a fixed set (``MEMBERS``) and its magnitude. The params
say what each sample drew: ``"op"``, the member's index in ``MEMBERS``, and ``"magnitude"``, its signed magnitude
in the unit torchvision hands the member (the shear's tangent, whole pixels, degrees, the enhance factor minus 1,
bits, the solarize threshold on the float scale; 0 for members without one). ``MEMBERS[op]`` names a draw.

RandAugment, TrivialAugmentWide and AutoAugment run as leaf steps of the executor, two per slot:
- a geometric step (``PolicyGeometry``, an affine map per sample): the sample's shear, translation or rotation, the
  identity where it drew another member. It fuses with the geometry before it, so a crop, a flip and the first
  slot's rotation are read from the images once;
- a pixel step (``PolicyPixels``): the sample's photometric member with its magnitude, the input unchanged where
  it drew a geometric member or Identity.
A member a sample did not draw is a neutral parameter: no per-sample branch, no subset, no host sync.

AugMix blends chains of members with the original image, which no executor step can express; it is one node whose
``apply`` runs every chain over the whole batch, one chain step at a time, each step a warp and a pixel step.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from . import draws as D
from . import functional as F
from . import hints
from .ops import GeometricOp, Op, _beta, _check_finite, _randint

# Every member a policy draws from, by the index its "op" params hold.
MEMBERS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
           "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
(IDENTITY, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE, BRIGHTNESS, COLOR, CONTRAST, SHARPNESS, POSTERIZE,
 SOLARIZE, AUTOCONTRAST, EQUALIZE, INVERT) = range(len(MEMBERS))
GEOMETRIC = frozenset({SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE})


class Scale(NamedTuple):
    """How a member's magnitude grows with its bin: from ``start`` at bin 0 to ``end`` at the last bin, linearly.
    ``signed``: negated with probability 1/2. ``per_pixel``: ``end`` is a fraction of the image's width (TranslateX)
    or height (TranslateY), not pixels."""

    start: float
    end: float
    signed: bool = False
    per_pixel: bool = False


# The magnitude scales of torchvision's policies, member by member; a member absent from a scale has no magnitude
# (Identity, AutoContrast, Equalize, Invert). Posterize's bits are rounded and translations truncated to whole pixels
# (``_magnitudes``).
RANDAUGMENT_SCALE = {
    SHEAR_X: Scale(0.0, 0.3, True), SHEAR_Y: Scale(0.0, 0.3, True),
    TRANSLATE_X: Scale(0.0, 150 / 331, True, True), TRANSLATE_Y: Scale(0.0, 150 / 331, True, True),
    ROTATE: Scale(0.0, 30.0, True),
    BRIGHTNESS: Scale(0.0, 0.9, True), COLOR: Scale(0.0, 0.9, True), CONTRAST: Scale(0.0, 0.9, True),
    SHARPNESS: Scale(0.0, 0.9, True),
    POSTERIZE: Scale(8.0, 4.0), SOLARIZE: Scale(1.0, 0.0),
}
WIDE_SCALE = {
    SHEAR_X: Scale(0.0, 0.99, True), SHEAR_Y: Scale(0.0, 0.99, True),
    TRANSLATE_X: Scale(0.0, 32.0, True), TRANSLATE_Y: Scale(0.0, 32.0, True),
    ROTATE: Scale(0.0, 135.0, True),
    BRIGHTNESS: Scale(0.0, 0.99, True), COLOR: Scale(0.0, 0.99, True), CONTRAST: Scale(0.0, 0.99, True),
    SHARPNESS: Scale(0.0, 0.99, True),
    POSTERIZE: Scale(8.0, 2.0), SOLARIZE: Scale(1.0, 0.0),
}
AUGMIX_SCALE = {
    **RANDAUGMENT_SCALE,
    TRANSLATE_X: Scale(0.0, 1 / 3, True, True), TRANSLATE_Y: Scale(0.0, 1 / 3, True, True),
    POSTERIZE: Scale(4.0, 0.0),
}

# Which members each policy draws from, uniformly.
RANDAUGMENT_MEMBERS = (IDENTITY, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE, BRIGHTNESS, COLOR, CONTRAST,
                       SHARPNESS, POSTERIZE, SOLARIZE, AUTOCONTRAST, EQUALIZE)
WIDE_MEMBERS = RANDAUGMENT_MEMBERS
AUGMIX_MEMBERS = (SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE, POSTERIZE, SOLARIZE, AUTOCONTRAST, EQUALIZE)
AUGMIX_ENHANCE = (BRIGHTNESS, COLOR, CONTRAST, SHARPNESS)  # AugMix's all_ops adds these

# AutoAugment's learned policies (Cubuk et al. 2019, as torchvision's AutoAugment holds them): 25 sub-policies per
# dataset, one a line, each two "member probability [bin]" entries; the bins index a scale of 10 (RandAugment's
# scale, with Invert added), and a member without a magnitude has no bin.
AUTOAUGMENT_POLICIES = {
    "imagenet": """
        Posterize .4 8 ; Rotate .6 9
        Solarize .6 5 ; AutoContrast .6
        Equalize .8 ; Equalize .6
        Posterize .6 7 ; Posterize .6 6
        Equalize .4 ; Solarize .2 4
        Equalize .4 ; Rotate .8 8
        Solarize .6 3 ; Equalize .6
        Posterize .8 5 ; Equalize 1
        Rotate .2 3 ; Solarize .6 8
        Equalize .6 ; Posterize .4 6
        Rotate .8 8 ; Color .4 0
        Rotate .4 9 ; Equalize .6
        Equalize 0 ; Equalize .8
        Invert .6 ; Equalize 1
        Color .6 4 ; Contrast 1 8
        Rotate .8 8 ; Color 1 2
        Color .8 8 ; Solarize .8 7
        Sharpness .4 7 ; Invert .6
        ShearX .6 5 ; Equalize 1
        Color .4 0 ; Equalize .6
        Equalize .4 ; Solarize .2 4
        Solarize .6 5 ; AutoContrast .6
        Invert .6 ; Equalize 1
        Color .6 4 ; Contrast 1 8
        Equalize .8 ; Equalize .6
    """,
    "cifar10": """
        Invert .1 ; Contrast .2 6
        Rotate .7 2 ; TranslateX .3 9
        Sharpness .8 1 ; Sharpness .9 3
        ShearY .5 8 ; TranslateY .7 9
        AutoContrast .5 ; Equalize .9
        ShearY .2 7 ; Posterize .3 7
        Color .4 3 ; Brightness .6 7
        Sharpness .3 9 ; Brightness .7 9
        Equalize .6 ; Equalize .5
        Contrast .6 7 ; Sharpness .6 5
        Color .7 7 ; TranslateX .5 8
        Equalize .3 ; AutoContrast .4
        TranslateY .4 3 ; Sharpness .2 6
        Brightness .9 6 ; Color .2 8
        Solarize .5 2 ; Invert 0
        Equalize .2 ; AutoContrast .6
        Equalize .2 ; Equalize .6
        Color .9 9 ; Equalize .6
        AutoContrast .8 ; Solarize .2 8
        Brightness .1 3 ; Color .7 0
        Solarize .4 5 ; AutoContrast .9
        TranslateY .9 9 ; TranslateY .7 9
        AutoContrast .9 ; Solarize .8 3
        Equalize .8 ; Invert .1
        TranslateY .7 9 ; AutoContrast .9
    """,
    "svhn": """
        ShearX .9 4 ; Invert .2
        ShearY .9 8 ; Invert .7
        Equalize .6 ; Solarize .6 6
        Invert .9 ; Equalize .6
        Equalize .6 ; Rotate .9 3
        ShearX .9 4 ; AutoContrast .8
        ShearY .9 8 ; Invert .4
        ShearY .9 5 ; Solarize .2 6
        Invert .9 ; AutoContrast .8
        Equalize .6 ; Rotate .9 3
        ShearX .9 4 ; Solarize .3 3
        ShearY .8 8 ; Invert .7
        Equalize .9 ; TranslateY .6 6
        Invert .9 ; Equalize .6
        Contrast .3 3 ; Rotate .8 4
        Invert .8 ; TranslateY 0 2
        ShearY .7 6 ; Solarize .4 8
        Invert .6 ; Rotate .8 4
        ShearY .3 7 ; TranslateX .9 3
        ShearX .1 6 ; Invert .6
        Solarize .7 2 ; TranslateY .6 7
        ShearY .8 4 ; Invert .8
        ShearX .7 9 ; TranslateY .8 3
        ShearY .8 5 ; AutoContrast .7
        ShearX .7 2 ; Invert .1
    """,
}
AUTOAUGMENT_BINS = 10


def autoaugment_policy(name: str) -> list[tuple[tuple[int, float, int | None], ...]]:
    """A learned policy as sub-policies of (member index, probability, bin or None) entries."""
    if name not in AUTOAUGMENT_POLICIES:
        raise ValueError(f"AutoAugment: policy must be one of {sorted(AUTOAUGMENT_POLICIES)}, got {name!r}")
    subs = []
    for line in AUTOAUGMENT_POLICIES[name].strip().splitlines():
        entries = []
        for entry in line.split(";"):
            member, probability, *level = entry.split()
            entries.append((MEMBERS.index(member), float(probability), int(level[0]) if level else None))
        subs.append(tuple(entries))
    return subs


# ----------------------------------------------------------------------------------------------- kernels
def member_matrix(op: Tensor, magnitude: Tensor, size: tuple[int, int]) -> Tensor:
    """Per sample, the sampling matrix (B, 3, 3) of its geometric member, torchvision's conventions: ShearX by
    ``m`` reads x + m y (a shear about the image's top-left corner, as torchvision's ``center=[0, 0]`` and PIL's
    affine), ShearY y + m x, TranslateX by ``t`` whole pixels reads x - t (the image moves right), TranslateY
    y - t, Rotate by ``a`` degrees turns counter-clockwise about the centre (torchvision's ``rotate``); the
    identity for any other member. op, magnitude: (B,)."""
    m = magnitude.double()
    zero, one = torch.zeros_like(m), torch.ones_like(m)
    sheared = F.affine_rows(one, torch.where(op == SHEAR_X, m, zero), torch.where(op == TRANSLATE_X, -m, zero),
                            torch.where(op == SHEAR_Y, m, zero), one, torch.where(op == TRANSLATE_Y, -m, zero))
    no_shift = torch.zeros(m.shape[0], 2, dtype=m.dtype, device=m.device)
    # augpipe's affine_matrix turns clockwise for a positive angle, torchvision's rotate the other way
    rotated = F.affine_matrix(-torch.where(op == ROTATE, m, zero), no_shift, one, no_shift, size).double()
    return torch.where((op == ROTATE).view(-1, 1, 1), rotated, sheared).float()


def _posterize(x: Tensor, bits: Tensor) -> Tensor:
    """``F.posterize`` for bits in 0..8; 0 bits keeps no bit of a level, black, as torchvision's posterize(0)
    (AugMix's scale reaches it at severity 9 and 10)."""
    black = F.from_levels(x, F.to_levels(x), torch.zeros_like(x))
    return torch.where((bits == 0).view(-1, 1, 1, 1), black, F.posterize(x, bits.clamp_min(1)))


def apply_members(x: Tensor, op: Tensor, magnitude: Tensor, members=MEMBERS) -> Tensor:
    """Per sample, its photometric member applied with its magnitude (torchvision's ``_apply_op``: factors
    1 + magnitude, Posterize's bits, Solarize's threshold on the float scale); the input values exactly where the
    sample drew another member. x (B, C, H, W) float in [0, 1]; op, magnitude (B,); ``members``: the member indices
    the policy can draw (only their kernels run).

    Each candidate kernel reads ``x`` itself, with the sample's magnitude or its neutral one, and the result takes,
    per sample, the candidate it drew (``torch.where``). Compiled, the reductions the candidates need (contrast's
    mean, the level ranges, the histograms) all read the same input and the selection is one elementwise pass; a
    chain of the kernels with neutral values would give the same values, but each reduction would wait for the
    kernel before it. Color needs RGB: a 1-channel image is its own grayscale, and Color leaves it as it is (as
    torchvision and PIL do for a gray image)."""
    if torch.compiler.is_compiling():
        return _select(x, op, magnitude.to(x.dtype), members)
    with hints.overwriting(None):  # every candidate reads x: none may write into it
        return _select(x, op, magnitude.to(x.dtype), members)


def _select(x: Tensor, op: Tensor, m: Tensor, members) -> Tensor:
    def factor(member):
        return torch.where(op == member, 1 + m, 1.0)

    candidates = {
        BRIGHTNESS: lambda: F.brightness(x, factor(BRIGHTNESS)),
        COLOR: lambda: F.saturation(x, factor(COLOR)) if x.shape[1] == 3 else x,
        CONTRAST: lambda: F.contrast(x, factor(CONTRAST)),
        SHARPNESS: lambda: F.sharpness(x, factor(SHARPNESS)),
        POSTERIZE: lambda: _posterize(x, torch.where(op == POSTERIZE, m, 8.0)),
        SOLARIZE: lambda: F.solarize(x, torch.where(op == SOLARIZE, m, math.inf)),
        AUTOCONTRAST: lambda: F.autocontrast(x, op == AUTOCONTRAST),
        EQUALIZE: lambda: F.equalize(x, op == EQUALIZE),
        INVERT: lambda: F.invert(x, op == INVERT),
    }
    out = x
    for member, candidate in candidates.items():
        if member in members:
            out = torch.where((op == member).view(-1, 1, 1, 1), candidate(), out)
    return out


# ----------------------------------------------------------------------------------------------- the leaf steps
class PolicyGeometry(GeometricOp):
    """A policy's geometric step: per sample the affine map of the geometric member it drew in this slot
    (``member_matrix``), the identity otherwise, read with the geometry around it. Pixels from outside the image
    take ``fill``. Params: a slot of the policy's, {"op": (B,), "magnitude": (B,)}."""

    def __init__(self, policy: str, fill: float):
        super().__init__()
        self.policy, self.fill = policy, fill

    def extra_repr(self) -> str:
        return f"{self.policy}, fill={self.fill}"

    def border(self):
        return "constant", self.fill

    def sample(self, shape, generator, device):
        raise TypeError(f"{self!r} is a step of {self.policy}, which draws its params")

    def map(self, params, size):
        return member_matrix(params["op"], params["magnitude"], size)


class PolicyPixels(Op):
    """A policy's photometric step: per sample the photometric member it drew in this slot (``apply_members``),
    the input unchanged otherwise. Only the members of the policy's own set run: replayed params that name another
    leave that sample unchanged. Params: a slot of the policy's, {"op": (B,), "magnitude": (B,)}."""

    reads_whole_input = True  # contrast's mean, the level ranges and histograms

    def __init__(self, policy: str, members: tuple[int, ...]):
        super().__init__()
        self.policy, self.members = policy, tuple(m for m in members if m not in GEOMETRIC and m != IDENTITY)

    def extra_repr(self) -> str:
        return f"{self.policy}: {', '.join(MEMBERS[m] for m in self.members)}"

    def sample(self, shape, generator, device):
        raise TypeError(f"{self!r} is a step of {self.policy}, which draws its params")

    def apply(self, state, params):
        return {**state, "images": apply_members(state["images"], params["op"], params["magnitude"], self.members)}


# ----------------------------------------------------------------------------------------------- the policies
def _int(value, name: str, op: str, low: int, high: float = math.inf) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in {low}..{high}"
        raise ValueError(f"{op}: {name} must be {bound}, got {value}")
    return value


def _fill(value, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: fill must be a number (a value of the float image), got {value!r}")
    _check_finite(op, "fill", value)
    return float(value)


class _Policy(Op):
    """What the policies share: the magnitude scale of their members (buffers, on the images' device), the check
    of the channel count, and "not applied" as Identity in every slot."""

    def _set_scale(self, scale: dict, bins: int, choices: tuple[int, ...]) -> None:
        """The members drawn uniformly (``choices``), and per member (indexed by ``MEMBERS``) its scale's start,
        end, signed and per_pixel; members without a magnitude 0. Buffers: a Pipeline keeps them on the images'
        device, so indexing them copies nothing from the host."""
        rows = [scale.get(m, Scale(0.0, 0.0)) for m in range(len(MEMBERS))]
        self.bins = bins
        self.register_buffer("_choices", torch.tensor(choices, dtype=torch.long), persistent=False)
        self.register_buffer("_start", torch.tensor([r.start for r in rows], dtype=torch.float64), persistent=False)
        self.register_buffer("_end", torch.tensor([r.end for r in rows], dtype=torch.float64), persistent=False)
        self.register_buffer("_signed", torch.tensor([r.signed for r in rows]), persistent=False)
        self.register_buffer("_per_pixel", torch.tensor([r.per_pixel for r in rows]), persistent=False)

    def _draw_members(self, size: tuple[int, ...], generator, device) -> Tensor:
        """Members drawn uniformly from the policy's choices, (size) indices into ``MEMBERS``."""
        count = self._choices.shape[0]
        pick = _randint(math.prod(size), count, generator, device).clamp_max(count - 1)
        return self._choices[pick].view(size)

    def _magnitudes(self, op: Tensor, level: Tensor, generator, device, size) -> Tensor:
        """The magnitude of member ``op`` at bin ``level`` (whole or fractional, float64), signed at random where
        the member is signed, in float32 as torchvision's tables hold them; Posterize's bits rounded,
        translations truncated to whole pixels (torchvision's ``int(magnitude)``)."""
        start, end = self._start[op], self._end[op]
        extent = torch.where(op == TRANSLATE_Y, float(size[0]), float(size[1]))
        end = torch.where(self._per_pixel[op], end * extent, end)
        value = (start + (end - start) * (level / (self.bins - 1))).float()
        flip = D.uniform(op.shape, generator, device) < 0.5
        value = torch.where(self._signed[op] & flip, -value, value)
        value = torch.where(op == POSTERIZE, torch.round(value), value)
        return torch.where((op == TRANSLATE_X) | (op == TRANSLATE_Y), torch.trunc(value), value)

    def _check_channels(self, shape, members) -> None:
        needs = {MEMBERS[m] for m in members if m in (COLOR, CONTRAST)}
        if needs and shape.channels not in (1, 3):
            names = " and ".join(sorted(needs)) + (" need" if len(needs) > 1 else " needs")
            raise ValueError(f"{self!r}: {names} RGB or grayscale images, 3 or 1 channels, got {shape.channels}")

    def skip(self, params, keep):
        """Identity in every slot of the samples not kept."""
        k = keep.view(-1, *([1] * (params["op"].dim() - 1)))
        return {**params, "op": torch.where(k, params["op"], IDENTITY),
                "magnitude": torch.where(k, params["magnitude"], 0.0)}


class _Slotted(_Policy):
    """A policy applied as slots of leaf steps: a geometric step and a pixel step per slot (the module docstring).
    Params: "op" (B, slots) member indices and "magnitude" (B, slots)."""

    slots = 1

    def _set_steps(self, members, fill) -> None:
        name = type(self).__name__
        self.members = tuple(members)
        # Not submodules: the policy is the node users see, these are how it runs
        self._steps = (PolicyGeometry(name, _fill(fill, name)), PolicyPixels(name, self.members))

    @property
    def fill(self) -> float:
        return self._steps[0].fill

    def check(self, shape):
        self._check_channels(shape, self.members)

    def steps(self, params):
        for k in range(params["op"].shape[1]):
            slot = {"op": params["op"][:, k], "magnitude": params["magnitude"][:, k]}
            yield self._steps[0], slot
            yield self._steps[1], slot

    def static_steps(self) -> list:
        """The steps a call runs, known without params: a geometric and a pixel step per slot."""
        return list(self._steps) * self.slots


class RandAugment(_Slotted):
    """RandAugment (Cubuk et al. 2020) as torchvision defines it, drawn per sample: in each of ``num_ops`` slots a
    member uniformly from 14 (Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast,
    Sharpness, Posterize, Solarize, AutoContrast, Equalize) at bin ``magnitude`` of ``num_magnitude_bins``, signed
    members negated with probability 1/2.

    ``magnitude_std`` > 0: the bin is drawn per sample and slot from N(magnitude, magnitude_std), clipped to
    [0, num_magnitude_bins - 1] and used as it falls between bins (timm's magnitude noise, ``mstd``, in bins);
    ``math.inf`` draws it from U[0, magnitude]. ``fill``: the value of pixels from outside the image.
    Geometry is read bilinearly (torchvision's default is nearest). Params: "op" (B, num_ops) indices into
    ``augpipe.policies.MEMBERS``, "magnitude" (B, num_ops) signed magnitudes; docs/references.md, "Policies".
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 magnitude_std: float = 0.0, fill: float = 0.0):
        super().__init__()
        self.num_ops = _int(num_ops, "num_ops", "RandAugment", 0)
        bins = _int(num_magnitude_bins, "num_magnitude_bins", "RandAugment", 2)
        self.magnitude = _int(magnitude, "magnitude", "RandAugment", 0, bins - 1)
        if isinstance(magnitude_std, bool) or not isinstance(magnitude_std, (int, float)) \
                or not magnitude_std >= 0:
            raise ValueError(f"RandAugment: magnitude_std must be a number >= 0 (math.inf: uniform), "
                             f"got {magnitude_std!r}")
        self.magnitude_std = float(magnitude_std)
        self._set_scale(RANDAUGMENT_SCALE, bins, RANDAUGMENT_MEMBERS)
        self._set_steps(RANDAUGMENT_MEMBERS, fill)

    @property
    def slots(self) -> int:
        return self.num_ops

    def extra_repr(self) -> str:
        std = f", magnitude_std={self.magnitude_std}" if self.magnitude_std else ""
        return (f"num_ops={self.num_ops}, magnitude={self.magnitude}, num_magnitude_bins={self.bins}{std}, "
                f"fill={self.fill}")

    def _levels(self, size, generator, device) -> Tensor:
        m, std = float(self.magnitude), self.magnitude_std
        if std == 0:
            return torch.full(size, m, dtype=torch.float64, device=device)
        if std == math.inf:
            return m * D.uniform(size, generator, device, torch.float64)
        return (m + std * D.normal(size, generator, device, torch.float64)).clamp(0, self.bins - 1)


    def sample(self, shape, generator, device):
        size = (shape.batch, self.num_ops)
        op = self._draw_members(size, generator, device)
        level = self._levels(size, generator, device)
        return {"op": op, "magnitude": self._magnitudes(op, level, generator, device, shape.size)}


class TrivialAugmentWide(_Slotted):
    """TrivialAugment (Mueller & Hutter 2021) with torchvision's wide scales, drawn per sample: one member
    uniformly from RandAugment's 14, at a bin uniform over ``num_magnitude_bins``, signed members negated with
    probability 1/2. Translations are up to 32 pixels whatever the image size, as torchvision's. ``fill``: the value
    of pixels from outside the image. Geometry is read bilinearly (torchvision's default is nearest).
    Params: "op" (B, 1) indices into ``augpipe.policies.MEMBERS``, "magnitude" (B, 1); docs/references.md,
    "Policies".
    """

    def __init__(self, num_magnitude_bins: int = 31, fill: float = 0.0):
        super().__init__()
        self._set_scale(WIDE_SCALE, _int(num_magnitude_bins, "num_magnitude_bins", "TrivialAugmentWide", 2),
                        WIDE_MEMBERS)
        self._set_steps(WIDE_MEMBERS, fill)

    def extra_repr(self) -> str:
        return f"num_magnitude_bins={self.bins}, fill={self.fill}"

    def sample(self, shape, generator, device):
        size = (shape.batch, 1)
        op = self._draw_members(size, generator, device)
        level = _randint(shape.batch, self.bins, generator, device).clamp_max(self.bins - 1).double().view(size)
        return {"op": op, "magnitude": self._magnitudes(op, level, generator, device, shape.size)}


class AutoAugment(_Slotted):
    """AutoAugment's learned policy for ``policy`` "imagenet", "cifar10" or "svhn" (Cubuk et al. 2019), as
    torchvision holds them (``AUTOAUGMENT_POLICIES``), drawn per sample: one of the 25 sub-policies uniformly, then
    each of its two entries applied with its probability, at its bin of RandAugment's scale over 10 bins (with
    Invert), signed members negated with probability 1/2. ``fill``: the value of pixels from outside the image.
    Geometry is read bilinearly (torchvision's default is nearest).
    Params: "policy" (B,) the sub-policy drawn, "op" (B, 2) indices into ``augpipe.policies.MEMBERS`` (Identity
    where the entry was not applied), "magnitude" (B, 2); docs/references.md, "Policies".
    """

    slots = 2

    def __init__(self, policy: str = "imagenet", fill: float = 0.0):
        super().__init__()
        if not isinstance(policy, str):
            raise TypeError(f"AutoAugment: policy must be a string, one of {sorted(AUTOAUGMENT_POLICIES)}, "
                            f"got {policy!r}")
        subs = autoaugment_policy(policy)
        self.policy = policy
        members = sorted({m for sub in subs for m, _, _ in sub})
        self._set_scale(RANDAUGMENT_SCALE, AUTOAUGMENT_BINS, tuple(members))  # Invert has no magnitude
        self._set_steps(members, fill)
        self.register_buffer("_sub_members", torch.tensor([[m for m, _, _ in sub] for sub in subs]),
                             persistent=False)
        self.register_buffer("_sub_chances", torch.tensor([[p for _, p, _ in sub] for sub in subs],
                                                          dtype=torch.float64), persistent=False)
        self.register_buffer("_sub_levels", torch.tensor([[b or 0 for _, _, b in sub] for sub in subs],
                                                         dtype=torch.float64), persistent=False)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}, fill={self.fill}"

    def sample(self, shape, generator, device):
        count = self._sub_members.shape[0]
        sub = _randint(shape.batch, count, generator, device).clamp_max(count - 1)
        applied = D.uniform((shape.batch, 2), generator, device, torch.float64) < self._sub_chances[sub]
        op = torch.where(applied, self._sub_members[sub], IDENTITY)
        magnitude = self._magnitudes(op, self._sub_levels[sub], generator, device, shape.size)
        return {"policy": sub, "op": op, "magnitude": magnitude}


class AugMix(_Policy):
    """AugMix (Hendrycks et al. 2020) as torchvision defines it, drawn per sample: ``mixture_width`` chains of
    ``chain_depth`` members each (U{1, 2, 3} per chain where ``chain_depth`` <= 0), each member uniform from
    AugMix's set (ShearX, ShearY, TranslateX, TranslateY, Rotate, Posterize, Solarize, AutoContrast, Equalize, and
    with ``all_ops`` Brightness, Color, Contrast, Sharpness) at a bin uniform over the first ``severity`` of 10;
    then ``out = m x + (1 - m) sum_i w_i chain_i(x)``, m ~ Beta(alpha, alpha), w ~ Dirichlet(alpha, ...).

    One node: the chains read the image, not the pipeline's geometry, so each chain step is a bilinear warp of the
    whole batch by that step's geometric members (the identity for the other samples: an exact read) and a pixel
    step (``apply_members``), chain after chain. A blend of label maps or boxes is none, so AugMix carries none.
    ``fill``: the value of pixels from outside the image. Params: "op" (B, width, depth) indices into
    ``augpipe.policies.MEMBERS`` (Identity past a chain's depth), "magnitude" (B, width, depth), "weights"
    (B, width) the w, "mix" (B,) the m; not applied: m = 1. docs/references.md, "Policies".
    """

    carries = frozenset()
    reads_whole_input = True
    MAX_SEVERITY = 10

    def __init__(self, severity: int = 3, mixture_width: int = 3, chain_depth: int = -1, alpha: float = 1.0,
                 all_ops: bool = True, fill: float = 0.0):
        super().__init__()
        self.severity = _int(severity, "severity", "AugMix", 1, self.MAX_SEVERITY)
        self.mixture_width = _int(mixture_width, "mixture_width", "AugMix", 1)
        if isinstance(chain_depth, bool) or not isinstance(chain_depth, int):
            raise TypeError(f"AugMix: chain_depth must be an int (<= 0: drawn per chain), got {chain_depth!r}")
        self.chain_depth = chain_depth
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
            raise ValueError(f"AugMix: alpha must be a finite number > 0, got {alpha!r}")
        if not isinstance(all_ops, bool):
            raise TypeError(f"AugMix: all_ops must be True or False, got {all_ops!r}")
        self.alpha, self.all_ops = float(alpha), all_ops
        self.members = AUGMIX_MEMBERS + (AUGMIX_ENHANCE if all_ops else ())
        self.fill = _fill(fill, "AugMix")
        self._set_scale(AUGMIX_SCALE, self.MAX_SEVERITY, self.members)

    def extra_repr(self) -> str:
        return (f"severity={self.severity}, mixture_width={self.mixture_width}, chain_depth={self.chain_depth}, "
                f"alpha={self.alpha}, all_ops={self.all_ops}, fill={self.fill}")

    @property
    def depth(self) -> int:
        """The longest chain: ``chain_depth``, or 3 where it is drawn."""
        return self.chain_depth if self.chain_depth > 0 else 3

    def check(self, shape):
        self._check_channels(shape, self.members)

    def sample(self, shape, generator, device):
        n, width, depth = shape.batch, self.mixture_width, self.depth
        size = (n, width, depth)
        op = self._draw_members(size, generator, device)
        level = _randint(math.prod(size), self.severity, generator, device).clamp_max(self.severity - 1)
        magnitude = self._magnitudes(op, level.double().view(size), generator, device, shape.size)
        if self.chain_depth <= 0:
            drawn = 1 + _randint(n * width, 3, generator, device).clamp_max(2).view(n, width, 1)
            active = torch.arange(depth, device=device) < drawn
            op, magnitude = torch.where(active, op, IDENTITY), torch.where(active, magnitude, 0.0)
        return {"op": op, "magnitude": magnitude, "weights": _dirichlet(self.alpha, (n, width), generator, device),
                "mix": _beta(self.alpha, n, generator, device)}

    def skip(self, params, keep):
        return {**params, "mix": torch.where(keep, params["mix"], 1.0)}

    def apply(self, state, params):
        x = state["images"]
        size = tuple(x.shape[-2:])
        mix = params["mix"].to(x.dtype).view(-1, 1, 1, 1)
        weights = (1 - mix.flatten()[:, None]) * params["weights"].to(x.dtype)  # (B, width): each chain's share
        out = mix * x
        for i in range(params["op"].shape[1]):
            chain = x
            for d in range(params["op"].shape[2]):
                op, magnitude = params["op"][:, i, d], params["magnitude"][:, i, d]
                chain = F.warp_affine(chain, member_matrix(op, magnitude, size).to(x.dtype), size, self.fill,
                                      "fill", x.dtype)
                chain = apply_members(chain, op, magnitude, self.members)
            out = out + weights[:, i].view(-1, 1, 1, 1) * chain
        return {**state, "images": out}


def _dirichlet(alpha: float, size: tuple[int, int], generator, device) -> Tensor:
    """Dirichlet(alpha, ..., alpha) rows (float64) from Gamma(alpha, 1) draws, normalized. Where every gamma of a
    row underflows to 0 (tiny alpha, where the Dirichlet puts its mass on the corners), the row is the corner of
    its largest draw."""
    g = D.standard_gamma(alpha, size, generator, device)
    total = g.sum(1, keepdim=True)
    corner = (torch.arange(size[1], device=device) == g.argmax(1, keepdim=True)).double()
    return torch.where(total > 0, g / total.clamp_min(1e-300), corner)
