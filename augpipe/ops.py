"""One small class per augmentation.

Each op separates drawing from applying:
- ``sample(shape, generator, device) -> params``: a dict of per-sample tensors (B, ...) on the data's device, its
  randomness drawn through ``augpipe.draws`` (a torch.Generator, or the draws a compiled pipeline made ahead);
- ``apply(state, params) -> state``: a pure function of the batch and the params, calling ``augpipe.functional``;
- ``skip(params, keep) -> params`` (where the op has one): the same params with "not applied" written in as the
  neutral value (flip off, factor 1, empty box, lambda 1) for samples whose ``keep`` is false. This is how a
  per-sample ``p`` and ``RandomApply`` work without branching or indexing subsets.
Geometric ops give their sampling ``map`` instead of ``apply``, so that ``augpipe.fuse`` composes them into one read.

``state`` is a dict with "images" (B, C, H, W), "targets" (B, K) or None, and where given "masks" (B, 1, H, W)
integer label maps, "boxes" (B, N, 4) xyxy pixels and "keypoints" (B, K, 2) xy pixels (NaN rows are padding).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from . import draws as D
from . import functional as F


class Sizes(NamedTuple):
    """The sizes of a batch whose images differ in size: a packed batch of photos (``augpipe.PackedImages``), or
    images after an op that gives each sample its own size (``RandomResize``, ``Resize(int)``).

    ``hw`` (B, 2) float64 (H, W) per sample, on the images' device; None where not yet drawn (``output_size`` of
    RandomResize). ``low`` and ``high`` bound them: the smallest and the largest (H, W) over the batch, as Python
    ints known on the host without reading ``hw`` back (checks and static loop bounds use them).
    """

    hw: Tensor | None
    low: tuple[int, int]
    high: tuple[int, int]

    def per_sample(self) -> tuple[Tensor, Tensor]:
        """(heights, widths), each (B,) float64."""
        return self.hw[:, 0], self.hw[:, 1]


class _ShapeFields(NamedTuple):
    batch: int
    channels: int
    height: int
    width: int


class Shape(_ShapeFields):
    """The shape of the images an op receives, as ``sample`` and ``check`` are given it: (batch, channels, height,
    width), a 4-tuple; ``size`` is (H, W).

    For images of different sizes (a packed batch), ``sizes`` holds them per sample (``Sizes``), and height and
    width are the largest; an op sees such a shape only if it declares ``GeometricOp.mixed_sizes``. ``sizes`` is
    not one of the tuple's items, so ``tuple(shape)`` and ``B, C, H, W = shape`` read as for any batch.
    """

    def __new__(cls, batch: int, channels: int, height: int, width: int, sizes: "Sizes | None" = None):
        shape = super().__new__(cls, batch, channels, height, width)
        shape.sizes = sizes
        return shape

    def _replace(self, **changes) -> "Shape":
        fields = {**self._asdict(), "sizes": self.sizes, **changes}
        return Shape(**fields)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def given_size(self):
        """The size an op's ``output_size`` and ``map`` are given: (H, W), or the ``Sizes`` of mixed sizes."""
        return self.size if self.sizes is None else self.sizes

    def extent(self) -> tuple:
        """(H, W): Python ints for one size, (B,) float64 tensors per sample for mixed sizes."""
        return self.size if self.sizes is None else self.sizes.per_sample()


def per_sample_size(size) -> tuple:
    """An op's ``size`` argument as (H, W): ints for one size, (B,) float64 tensors for ``Sizes``."""
    return size.per_sample() if isinstance(size, Sizes) else tuple(size)


def shape_after(shape: Shape, size) -> Shape:
    """The shape of a node's output of ``size``: (H, W) ints, or ``Sizes`` when its samples differ."""
    if isinstance(size, Sizes):
        return Shape(shape.batch, shape.channels, *size.high, size)
    return Shape(shape.batch, shape.channels, *size)


# ----------------------------------------------------------------------------------------------- sampling helpers
def _uniform(n: int, lo: float, hi: float, generator, device) -> Tensor:
    return lo + (hi - lo) * D.uniform(n, generator, device)


def _bernoulli(n: int, p: float, generator, device) -> Tensor:
    return D.bernoulli(p, n, generator, device)


def _beta(alpha: float, n: int, generator, device) -> Tensor:
    """Beta(alpha, alpha) draws (n,) in float64 from two Gamma draws; torch.distributions takes no generator."""
    g = D.standard_gamma(alpha, (2, n), generator, device)
    total = g.sum(0)
    # Both gammas underflow to 0 only for tiny alpha, where Beta puts its mass at 0 and 1 equally.
    return torch.where(total > 0, g[0] / total.clamp_min(1e-300), (g[0] >= g[1]).double())


def _randint(n: int, high: Tensor | int, generator, device) -> Tensor:
    """Integers uniform on [0, high) with a per-sample ``high`` (B,) >= 1."""
    return torch.floor(D.uniform(n, generator, device, torch.float64) * high).long()


def _pair(value, name: str, op: str) -> tuple[int, int]:
    """A positive (height, width) from an int or a pair of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (height, width), got {value!r}")
    if min(value) <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {value!r}")
    return int(value[0]), int(value[1])


def _check_finite(op: str, name: str, *values) -> None:
    """Constructor arguments that are inf or NaN would pass every range check below and fail later, or not at all
    (a NaN factor makes NaN images): say so where they are given."""
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{op}: {name} must be finite, got {values[0] if len(values) == 1 else values}")


def _factor_range(value, name: str) -> tuple[float, float]:
    """torchvision ColorJitter: b -> [max(0, 1 - b), 1 + b]; a pair (lo, hi) is taken as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_finite(name, "the strength", value)
        if value < 0:
            raise ValueError(f"{name}({value}): the strength must be >= 0")
        return max(0.0, 1.0 - value), 1.0 + value
    if isinstance(value, Sequence) and len(value) == 2 and 0 <= value[0] <= value[1]:
        _check_finite(name, "the range", *value)
        return float(value[0]), float(value[1])
    raise ValueError(f"{name}: expected a strength >= 0 or a range (lo, hi) with 0 <= lo <= hi, got {value!r}")


def _check_probability(p: float, op: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    return float(p)


def _eye(n: int, device) -> Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


# ----------------------------------------------------------------------------------------------- base classes
_UNSET = object()  # no attribute of that name yet


class Op(nn.Module):
    """The base class of every op, and of an op of your own.

    Define ``sample(shape, generator, device) -> params``: a dict of (B, ...) tensors on ``device``, one row per
    sample, for images of ``shape`` (an ``augpipe.Shape``: batch, channels, height, width). Draw every random number
    with the helpers of ``augpipe.draws`` (uniform, normal, bernoulli, permutation, standard_gamma), passing them
    ``generator``: a Pipeline plans its draws ahead and hands ``sample`` a stand-in for its generator, so seeds,
    replay (``pipe(x, params=pipe.last_params)``) and compiled pipelines cover them; torch's own random functions
    refuse the stand-in. ``sample`` must not branch on a drawn value: it also runs once as a dry run on zeros.

    Define ``apply(state, params) -> state``, a pure function: ``state["images"]`` is (B, C, H, W) float (float32,
    or float64 for float64 input; in [0, 1] before a Normalize), ``state["targets"]`` (B, K) soft labels or None.
    Return a new dict, ``{**state, "images": ...}``; never write into the tensors given (they may be the caller's).

    Optionally define ``skip(params, keep) -> params``: the same params with "not applied" written in (a factor 1,
    an empty box) for the samples whose (B,) bool ``keep`` is false. ``RandomApply(op, p)`` then only rewrites the
    params and runs the op once; without ``skip`` it runs the op and keeps its result per sample. An op's own ``p``
    is ``skip`` applied to ``draws.bernoulli(p, ...)`` in ``sample``. Also optional: ``check(shape)`` (raise a
    ValueError naming the op when it cannot run on ``shape``) and ``output_size(size)`` when apply changes (H, W).
    ``carries``: the targets given with the images ("masks", "boxes", "keypoints") that stay right after ``apply``;
    an op that moves or blends pixels without moving those sets fewer, and a call with the others is refused.

    A per-sample gamma, out = x ** g with log g ~ U(-log(1 + s), log(1 + s)), applied with probability p::

        import math
        import torch
        import augpipe
        from augpipe import draws

        class Gamma(augpipe.Op):
            def __init__(self, strength=0.5, p=1.0):
                super().__init__()
                self.log_range, self.p = math.log1p(strength), p

            def sample(self, shape, generator, device):
                u = draws.uniform(shape.batch, generator, device)
                keep = draws.bernoulli(self.p, shape.batch, generator, device)
                return self.skip({"gamma": torch.exp(self.log_range * (2 * u - 1))}, keep)

            def skip(self, params, keep):
                return {"gamma": torch.where(keep, params["gamma"], 1.0)}

            def apply(self, state, params):
                x = state["images"]
                return {**state, "images": x ** params["gamma"].to(x.dtype).view(-1, 1, 1, 1)}

        pipe = augpipe.Pipeline(augpipe.HorizontalFlip(), Gamma(0.5, p=0.8), seed=0)
        out = pipe(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    """

    carries = frozenset({"masks", "boxes", "keypoints"})
    # apply gives each pixel a function of that pixel's own values and the sample's params (a brightness factor, a
    # per-channel normalization): such an op commutes with moving whole pixels, so flips and crops after it may read
    # first (see fuse.hoist).
    pointwise = False
    # apply reads more of its input than the pixel it writes (the image's mean, another sample's pixels), so its
    # input is computed in full before it runs.
    reads_whole_input = False
    # How many times this op's attributes were assigned. A Pipeline plans its draws once per input shape; an op
    # changed between calls (Mixup's alpha on a schedule, Cutout's count) may ask for other draws, so a Pipeline
    # that holds this op plans again when its count moved (streams.DrawPlans). Assign a new value to change an op;
    # a value changed in place (a list appended to) is not seen.
    _edits = 0
    def __setattr__(self, name, value):
        unchanged = self.__dict__.get(name, _UNSET) is value  # pipe.eval() on an op already in eval mode
        super().__setattr__(name, value)
        if not unchanged:
            object.__setattr__(self, "_edits", self._edits + 1)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return size

    def check(self, shape: Shape) -> None:
        """Raise a ValueError naming the op when it cannot run on images of ``shape``."""

    def sample(self, shape: Shape, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__}: an op defines sample(shape, generator, device)")

    def apply(self, state: dict, params: dict[str, Tensor]) -> dict:
        raise NotImplementedError(f"{type(self).__name__}: an op defines apply(state, params) (or, to move "
                                  f"pixels, is an augpipe.GeometricOp with a map)")

    def steps(self, params):
        yield self, params

    def forward(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is an op, not a callable: put it in augpipe.Pipeline(...)")


class GeometricOp(Op):
    """An op that moves pixels, given by a sampling map; subclass it for a geometric op of your own.

    Define ``sample`` as for any op, and ``map(params, size) -> (B, 3, 3)``: per sample, the matrix that sends a
    point of the *output* image to the point of the *input* image it reads, in pixel units (the image spans
    [0, W] x [0, H], the centre of pixel (i, j) is (j + 0.5, i + 0.5)); ``size`` is the input's (H, W). The matrix
    is affine (last row 0, 0, 1) unless the op's ``kind`` is "projective", where points are divided by their third
    coordinate; an op of kind "dense" returns instead a displacement field (B, H, W, 2), (x, y) pixels at each
    output pixel centre, which the source point adds to it. Define ``output_size(size)`` when the output has another
    size, and ``border()`` when the map reads outside the input: ``("constant", fill)`` gives those pixels ``fill``;
    with None they repeat the edge pixels. There is no apply: the executor composes consecutive geometric ops into
    one map and reads the pixels once, bilinearly, moving masks (nearest), boxes and keypoints with them. ``skip``
    writes in the identity map.

    ``kind`` (one of ``KINDS``) is a promise about every map the op gives, by which the executor picks the read of
    a run of geometric ops: "axis" (no rotation or shear: rows stay rows, so a row pass and a column pass),
    "affine" (the default), "projective" or "dense". Whole-pixel ops ("exact": flips and crops, built in) also
    state ``keeps_bounds`` (the image rectangle maps onto itself), ``reach`` (the columns read beyond either side of
    the input) and ``mirrors`` (whether it may read right to left), which the window copy relies on. The flags
    ``exact`` and ``axis_aligned`` are the older spelling of the first two kinds.

    A zoom about the centre by s ~ U(lo, hi) per sample, the new border black::

        import torch
        import augpipe
        from augpipe import draws

        class Zoom(augpipe.GeometricOp):
            kind = "axis"

            def __init__(self, lo=0.8, hi=1.25):
                super().__init__()
                self.lo, self.hi = lo, hi

            def sample(self, shape, generator, device):
                return {"scale": self.lo + (self.hi - self.lo) * draws.uniform(shape.batch, generator, device)}

            def skip(self, params, keep):
                return {"scale": torch.where(keep, params["scale"], 1.0)}

            def border(self):
                return "constant", 0.0

            def map(self, params, size):  # output point p reads c + (p - c) / s, c the centre
                inv = 1 / params["scale"]
                zero, one = torch.zeros_like(inv), torch.ones_like(inv)
                (h, w) = size
                rows = (inv, zero, w / 2 * (1 - inv), zero, inv, h / 2 * (1 - inv), zero, zero, one)
                return torch.stack(rows, -1).view(-1, 3, 3)

        pipe = augpipe.Pipeline(Zoom(), augpipe.RandomApply(Zoom(1.0, 2.0), p=0.5), seed=0)
        out = pipe(torch.rand(4, 3, 16, 16))
    """

    exact = False  # the map sends pixel centres onto pixel centres (flips, whole-pixel shifts): no interpolation
    # The op takes a batch whose images differ in size (a packed batch; ``Shape.sizes``): its sample, map and
    # output_size read per-sample sizes, given as ``Sizes``; ``per_sample_size(size)`` gives (B,) tensors.
    mixed_sizes = False
    # A run of axis-aligned ops holding an op with antialias=True reads a downscale as PIL's bilinear resize does:
    # each output pixel averages its source footprint (``F.read_axis``).
    antialias = False
    # Views per image (FiveCrop, TenCrop): a pipeline holding such an op returns (B, views, C, h, w), each image
    # read once per view in the same pass.
    views = 1
    keeps_bounds = False  # the map sends the image rectangle onto itself (flips)
    axis_aligned = False  # rows map to rows and columns to columns: bilinear reads split into two 1-D passes
    reach = 0  # exact ops: how many columns beyond either side of its input the op may read
    mirrors = False  # exact ops: the op may read columns right to left

    def border(self) -> tuple[str, float] | None:
        """(padding_mode, fill) if the op reads outside its input image, else None."""
        return None

    # How the executor reads a map of this op, from cheapest to most general; a run of ops reads as the most general
    # of its members: "exact" (whole pixels: a gather), "axis" (rows stay rows: a separable bilinear read), "affine"
    # (four taps per pixel), "projective" (four taps after the perspective divide), "dense" (a per-pixel field).
    KINDS = ("exact", "axis", "affine", "projective", "dense")

    @property
    def kind(self) -> str:
        """This op's map kind (``KINDS``): by default what the flags ``exact`` and ``axis_aligned`` promise."""
        return "exact" if self.exact else "axis" if self.axis_aligned else "affine"

    def map(self, params: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}: a geometric op defines map(params, size)")

    def sizes_after(self, params: dict[str, Tensor], size):
        """The output size given this call's params: ``output_size`` unless the size is drawn (RandomResize)."""
        return self.output_size(size)


# ----------------------------------------------------------------------------------------------- geometry
class _Flip(GeometricOp):
    axis = 0  # 0: x (left-right), 1: y (top-bottom)
    exact, axis_aligned, keeps_bounds, mixed_sizes = True, True, True, True

    @property
    def mirrors(self) -> bool:
        return self.axis == 0

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_probability(p, type(self).__name__)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def sample(self, shape, generator, device):
        return {"flip": _bernoulli(shape.batch, self.p, generator, device)}

    def skip(self, params, keep):
        return {"flip": params["flip"] & keep}

    def map(self, params, size):
        flip = params["flip"]
        m = _eye(flip.shape[0], flip.device)
        a = self.axis
        m[:, a, a] = torch.where(flip, -1.0, 1.0)  # x -> extent - x
        extent = per_sample_size(size)[1 - a]
        extent = extent.to(m.dtype) if isinstance(extent, Tensor) else float(extent)
        m[:, a, 2] = torch.where(flip, extent, 0.0)
        return m


class HorizontalFlip(_Flip):
    """Mirror left-right with probability p per sample."""

    axis = 0


class VerticalFlip(_Flip):
    """Mirror top-bottom with probability p per sample."""

    axis = 1


class RandomCrop(GeometricOp):
    """Pad by ``padding``, then take a ``size`` window at an offset uniform over every valid position.

    padding: int, (left/right, top/bottom) or (left, top, right, bottom), as torchvision. ``fill`` is a value of
    the float image (in [0, 1] for uint8 input: 0.5 is mid-grey), as every op's fill. ``pad_if_needed``: an image
    (after ``padding``) narrower or shorter than the crop is padded further on both sides of that axis by the
    difference, as torchvision does, so images of any size (a packed batch of photos) give the crop.
    """

    MODES = ("constant", "reflect", "replicate")
    exact, axis_aligned, mixed_sizes = True, True, True

    def __init__(self, size, padding=0, fill: float = 0.0, padding_mode: str = "constant",
                 pad_if_needed: bool = False):
        super().__init__()
        self.size = _pair(size, "size", "RandomCrop")
        _check_finite("RandomCrop", "fill", fill)
        self.padding = self._padding(padding)
        if padding_mode not in self.MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {self.MODES}, got {padding_mode!r}")
        if not isinstance(pad_if_needed, bool):
            raise TypeError(f"RandomCrop: pad_if_needed must be True or False, got {pad_if_needed!r}")
        self.padding_mode, self.fill, self.pad_if_needed = padding_mode, float(fill), pad_if_needed

    @staticmethod
    def _padding(padding) -> tuple[int, int, int, int]:
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,)
        if isinstance(padding, Sequence) and len(padding) in (1, 2, 4) and all(
                isinstance(v, int) and v >= 0 for v in padding):
            return tuple(padding * (4 // len(padding)))  # (l, t, r, b)
        raise ValueError(f"RandomCrop: padding must be ints >= 0: one, (left/right, top/bottom) or "
                         f"(left, top, right, bottom), got {padding!r}")

    def extra_repr(self) -> str:
        pad = self.padding[0] if len(set(self.padding)) == 1 else self.padding
        extra = ", pad_if_needed=True" if self.pad_if_needed else ""
        return f"size={self.size}, padding={pad}, padding_mode={self.padding_mode!r}{extra}"

    def _padded(self, size):
        l, t, r, b = self.padding
        return size[0] + t + b, size[1] + l + r

    def _extra(self, size) -> tuple:
        """(top/bottom, left/right): the padding ``pad_if_needed`` adds on each side, per sample for mixed sizes."""
        hp, wp = self._padded(per_sample_size(size))
        h, w = self.size
        if not self.pad_if_needed:
            return 0, 0
        if isinstance(hp, Tensor):
            return (h - hp).clamp(min=0), (w - wp).clamp(min=0)
        return max(0, h - hp), max(0, w - wp)

    def output_size(self, size):
        return self.size

    def check(self, shape):
        low = shape.size if shape.sizes is None else shape.sizes.low
        hp, wp = self._padded(low)
        h, w = self.size
        if not self.pad_if_needed and (h > hp or w > wp):
            which = "the image is" if shape.sizes is None else "the smallest image of the batch is"
            raise ValueError(f"{self!r}: {which} {hp}x{wp} after padding {self.padding}, smaller than the "
                             f"{h}x{w} crop; pass pad_if_needed=True to pad it")
        l, t, r, b = self.padding
        if self.padding_mode == "reflect" and (max(t, b) >= low[0] or max(l, r) >= low[1]):
            raise ValueError(f"{self!r}: reflect padding {self.padding} needs to be smaller than the "
                             f"{low[0]}x{low[1]} image")
        if self.pad_if_needed and self.padding_mode == "reflect" and any(self.padding) and (h > hp or w > wp):
            # torchvision reflects the padded image again, a reflection of a reflection that one remap of the
            # original's indices (F.exact_map) does not give
            raise ValueError(f"{self!r}: the {low[0]}x{low[1]} image, reflect-padded by {self.padding} and then "
                             f"padded again to the crop, would be reflected twice; use padding=0 with "
                             f"pad_if_needed=True, or padding_mode='constant' or 'replicate'")
        if self.pad_if_needed and self.padding_mode == "reflect" and (h > 2 * low[0] - 1 or w > 2 * low[1] - 1):
            raise ValueError(f"{self!r}: reflect padding to {h}x{w} needs images of at least "
                             f"{(h + 1) // 2}x{(w + 1) // 2}, got {low[0]}x{low[1]}")

    def border(self):
        return (self.padding_mode, self.fill) if any(self.padding) or self.pad_if_needed else None

    @property
    def reach(self) -> int | None:
        # pad_if_needed reads as far out as the image is small: not known ahead, so no window copy is planned
        return None if self.pad_if_needed else max(self.padding[0], self.padding[2])

    def sample(self, shape, generator, device):
        hp, wp = self._padded(shape.extent())
        extra_h, extra_w = self._extra(shape.given_size)
        h, w = self.size
        n = shape.batch
        return {"top": _randint(n, hp + 2 * extra_h - h + 1, generator, device),
                "left": _randint(n, wp + 2 * extra_w - w + 1, generator, device)}

    def skip(self, params, keep):
        """The window at the image's own place (top, left = the padding), for the samples not kept: the identity
        when the crop is the image's size, as ``RandomApply`` requires of what it skips."""
        return {"top": torch.where(keep, params["top"], self.padding[1]),
                "left": torch.where(keep, params["left"], self.padding[0])}

    def map(self, params, size):
        m = _eye(params["top"].shape[0], params["top"].device)
        extra_h, extra_w = self._extra(size)
        m[:, 0, 2] = (params["left"] - self.padding[0] - extra_w).float()
        m[:, 1, 2] = (params["top"] - self.padding[1] - extra_h).float()
        return m


class CenterCrop(GeometricOp):
    """The central ``size`` window, as torchvision: top = round((H - h) / 2) (halves to even), likewise left; an
    image smaller than the crop is padded with ``fill``, (h - H) // 2 rows above and the rest below. Images of
    any size (a packed batch) each give their own centre."""

    exact, axis_aligned, mixed_sizes = True, True, True
    reach = None  # an image smaller than the crop is read beyond its edge by as much as it is small

    def __init__(self, size, fill: float = 0.0):
        super().__init__()
        self.size = _pair(size, "size", "CenterCrop")
        _check_finite("CenterCrop", "fill", fill)
        self.fill = float(fill)

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def output_size(self, size):
        return self.size

    def border(self):
        return "constant", self.fill

    def sample(self, shape, generator, device):
        return {"top_left": _central_offsets(shape.extent(), self.size, shape.batch, device)}

    def map(self, params, size):
        offsets = params["top_left"]
        m = _eye(offsets.shape[0], offsets.device)
        m[:, 0, 2] = offsets[:, 1].float()
        m[:, 1, 2] = offsets[:, 0].float()
        return m


class FiveCrop(GeometricOp):
    """Test-time views: the four corner crops and the centre crop of ``size``, in torchvision's order (top-left,
    top-right, bottom-left, bottom-right, centre). In a Pipeline each image gives ``views`` images: the pipeline
    returns images (B, V, C, h, w), the ops before this one drawing once per image and the ops after it once per
    view. Images of any size (a packed batch) each give their own corners; a crop larger than an image is
    refused, as torchvision does."""

    exact, axis_aligned, mixed_sizes, mirrors = True, True, True, True
    views = 5

    def __init__(self, size):
        super().__init__()
        self.size = _pair(size, "size", type(self).__name__)

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def output_size(self, size):
        return self.size

    def check(self, shape):
        low = shape.size if shape.sizes is None else shape.sizes.low
        if self.size[0] > low[0] or self.size[1] > low[1]:
            raise ValueError(f"{self!r}: the crop is larger than the {low[0]}x{low[1]} image"
                             f"{' (the smallest of the batch)' if shape.sizes is not None else ''}")

    def _flips(self) -> list[tuple[bool, bool]]:
        """(mirrored left-right, mirrored top-bottom) of each view."""
        return [(False, False)] * 5

    def sample(self, shape, generator, device):
        """Per view v of image b (row b V + v): the crop's top and left in the (possibly mirrored) image, and the
        mirrors. No draw: the views are fixed."""
        n, (h, w) = shape.batch, self.size
        H, W = (torch.full((n,), float(v), dtype=torch.float64, device=device) if not isinstance(v, Tensor)
                else v.to(torch.float64) for v in shape.extent())
        zero = torch.zeros_like(H)
        centre = _central_offsets((H, W), self.size, n, device)
        tops = [zero, zero, H - h, H - h, centre[:, 0]]
        lefts = [zero, W - w, zero, W - w, centre[:, 1]]
        corner = torch.stack([torch.stack((tops[v % 5], lefts[v % 5]), 1) for v in range(self.views)], 1)
        mirror = torch.stack([torch.stack([torch.full((n,), f, dtype=torch.bool, device=device) for f in pair], 1)
                              for pair in self._flips()], 1)  # (B, V, 2), made on the device
        return {"top_left": corner.flatten(0, 1), "mirror": mirror.flatten(0, 1)}

    def map(self, params, size):
        """Crop at (top, left) of the image mirrored as the view says: x -> W - (x + left) when mirrored."""
        H, W = per_sample_size(size)
        top_left, mirror = params["top_left"].double(), params["mirror"]
        m = _eye(top_left.shape[0], top_left.device).double()
        for axis, extent in ((0, W), (1, H)):
            shift = top_left[:, 1 - axis]
            mirrored = mirror[:, axis]
            m[:, axis, axis] = torch.where(mirrored, -1.0, 1.0)
            m[:, axis, 2] = torch.where(mirrored, extent - shift, shift)
        return m.float()


class TenCrop(FiveCrop):
    """``FiveCrop``'s five views, then the same five crops of the image mirrored left-right (top-bottom with
    ``vertical_flip=True``), as torchvision's TenCrop: images (B, 10, C, h, w)."""

    views = 10

    def __init__(self, size, vertical_flip: bool = False):
        super().__init__(size)
        self.vertical_flip = _check_flag(vertical_flip, "vertical_flip", "TenCrop")

    def extra_repr(self) -> str:
        return f"size={self.size}, vertical_flip={self.vertical_flip}"

    def _flips(self):
        return [(False, False)] * 5 + [(not self.vertical_flip, self.vertical_flip)] * 5


def _central_offsets(extent, size, n: int, device) -> Tensor:
    """(B, 2) top, left of a centred ``size`` window in images of ``extent`` (ints or (B,) tensors), torchvision's
    rounding: round((H - h) / 2) where the image is larger, -((h - H) // 2) (the top padding) where smaller."""
    out = []
    for whole, part in zip(extent, size):
        whole = torch.full((n,), float(whole), dtype=torch.float64, device=device) \
            if not isinstance(whole, Tensor) else whole.to(torch.float64)
        inside = torch.round((whole - part) / 2)
        padded = -torch.div(part - whole, 2, rounding_mode="floor")
        out.append(torch.where(whole >= part, inside, padded))
    return torch.stack(out, 1)


class RandomResizedCrop(GeometricOp):
    """Crop a random area fraction ~ U(scale) and log aspect ratio ~ U(log ratio), resize to ``size`` (bilinear).

    Up to 10 tries per sample, then the central crop fallback, as Inception and torchvision; the area and aspect
    come from each image's own size, so a packed batch of photos crops each photo as it is. ``antialias`` (True,
    as torchvision v2): a crop larger than ``size`` is averaged over each output pixel's footprint, as PIL's
    bilinear resize; False reads four pixels per output pixel, faster, and aliased when shrinking.
    """

    axis_aligned, mixed_sizes = True, True
    TRIES = 10

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias: bool = True):
        super().__init__()
        self.size = _pair(size, "size", "RandomResizedCrop")
        if not (0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"RandomResizedCrop: need 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], "
                             f"got scale={scale}, ratio={ratio}")
        _check_finite("RandomResizedCrop", "scale and ratio", *scale, *ratio)
        self.scale, self.ratio = tuple(map(float, scale)), tuple(map(float, ratio))
        self.antialias = _check_flag(antialias, "antialias", "RandomResizedCrop")

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, antialias={self.antialias}"

    def output_size(self, size):
        return self.size

    def sample(self, shape, generator, device):
        n, k = shape.batch, self.TRIES
        H, W = (torch.full((n,), float(v), dtype=torch.float64, device=device) if not isinstance(v, Tensor) else v
                for v in shape.extent())
        area = (H * W)[:, None] * _uniform(n * k, *self.scale, generator, device).view(n, k).double()
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(_uniform(n * k, log_lo, log_hi, generator, device).view(n, k).double())
        w = torch.round(torch.sqrt(area * aspect))
        h = torch.round(torch.sqrt(area / aspect))
        fits = (w > 0) & (w <= W[:, None]) & (h > 0) & (h <= H[:, None])  # (n, k)
        first = fits.long().argmax(1, keepdim=True)  # index of the first try that fits (0 if none)
        w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
        fh, fw = self._fallback(H, W)
        found = fits.any(1)
        w = torch.where(found, w, fw)
        h = torch.where(found, h, fh)
        top = torch.where(found, _randint(n, H - h + 1, generator, device).double(),
                          torch.div(H - fh, 2, rounding_mode="floor"))
        left = torch.where(found, _randint(n, W - w + 1, generator, device).double(),
                           torch.div(W - fw, 2, rounding_mode="floor"))
        return {"box": torch.stack((top, left, h, w), dim=1).float()}  # (B, 4) top, left, height, width

    def _fallback(self, H: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
        """(height, width) of the central crop: the whole image, cut to the nearest allowed aspect ratio."""
        in_ratio = W / H
        narrow, wide = in_ratio < self.ratio[0], in_ratio > self.ratio[1]
        h = torch.where(narrow, torch.round(W / self.ratio[0]), H)
        w = torch.where(wide, torch.round(H * self.ratio[1]), W)
        return h, w

    def map(self, params, size):
        return F.resized_crop_matrix(params["box"], self.size)


class Resize(GeometricOp):
    """Resize to ``size``, as torchvision: an int resizes the shorter side to it, the longer to
    int(size * long / short), keeping the aspect (each image of a packed batch by its own sides); (h, w) gives
    exactly that size. Bilinear; ``antialias`` as RandomResizedCrop's."""

    axis_aligned, mixed_sizes = True, True

    def __init__(self, size, antialias: bool = True):
        super().__init__()
        self.shorter = size if isinstance(size, int) and not isinstance(size, bool) else None
        self.size = _pair(size, "size", type(self).__name__)
        self.antialias = _check_flag(antialias, "antialias", type(self).__name__)

    def extra_repr(self) -> str:
        return f"size={self.shorter if self.shorter is not None else self.size}, antialias={self.antialias}"

    def output_size(self, size):
        if self.shorter is None:
            return self.size
        if not isinstance(size, Sizes):
            return _shorter_side(*size, self.shorter)
        (lh, lw), (hh, hw) = size.low, size.high
        high = _shorter_side(hh, lw, self.shorter)[0], _shorter_side(lh, hw, self.shorter)[1]
        hw_out = None if size.hw is None else torch.stack(_shorter_side(*size.per_sample(), self.shorter), 1)
        return Sizes(hw_out, (self.shorter, self.shorter), (max(high[0], self.shorter), max(high[1], self.shorter)))

    def sizes_after(self, params, size):
        out = self.output_size(size)
        return out._replace(hw=params["size"]) if isinstance(out, Sizes) else out

    def sample(self, shape, generator, device):
        out = self.output_size(shape.given_size)
        if isinstance(out, Sizes):
            return {"size": out.hw}
        return {"size": torch.stack([torch.full((shape.batch,), float(v), dtype=torch.float64, device=device)
                                     for v in out], 1)}

    def map(self, params, size):
        H, W = per_sample_size(size)
        out = params["size"].double()
        zero = torch.zeros_like(out[:, 0])
        return F.affine_rows(W / out[:, 1], zero, zero, zero, H / out[:, 0], zero).float()


class RandomResize(Resize):
    """Resize each image's shorter side to L ~ U{min_size, ..., max_size} (both ends included), drawn per sample,
    the longer side in proportion: the scale augmentation of VGG and ResNet (shorter side in [256, 480], then a 224
    crop). torchvision v2's RandomResize draws one L per batch, its max_size excluded. The images then differ in
    size, so a crop (RandomCrop, CenterCrop) or a fixed-size resize must follow."""

    def __init__(self, min_size: int, max_size: int, antialias: bool = True):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (min_size, max_size)) \
                or not 0 < min_size <= max_size:
            raise ValueError(f"RandomResize: need ints 0 < min_size <= max_size, got {min_size!r}, {max_size!r}")
        super().__init__(min_size, antialias)
        self.min_size, self.max_size = min_size, max_size

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, max_size={self.max_size}, antialias={self.antialias}"

    def output_size(self, size):
        sizes = size if isinstance(size, Sizes) else Sizes(None, tuple(size), tuple(size))
        (lh, lw), (hh, hw) = sizes.low, sizes.high
        high = (max(self.max_size, int(self.max_size * hh / lw)), max(self.max_size, int(self.max_size * hw / lh)))
        return Sizes(None, (self.min_size, self.min_size), high)

    def sample(self, shape, generator, device):
        H, W = (torch.full((shape.batch,), float(v), dtype=torch.float64, device=device)
                if not isinstance(v, Tensor) else v for v in shape.extent())
        shorter = self.min_size + _randint(shape.batch, self.max_size - self.min_size + 1, generator, device)
        return {"size": torch.stack(_shorter_side(H, W, shorter.double()), 1)}


def _shorter_side(H, W, shorter):
    """(H, W) with the shorter side ``shorter`` and the longer int(shorter * long / short), torchvision's rule;
    ints, or (B,) float64 tensors per sample."""
    if not isinstance(H, Tensor) and not isinstance(shorter, Tensor):
        return (int(shorter * H / W), shorter) if W <= H else (shorter, int(shorter * W / H))
    H, W = (torch.as_tensor(v, dtype=torch.float64) for v in (H, W))
    tall = W <= H
    return (torch.where(tall, torch.floor(shorter * H / W), shorter),
            torch.where(tall, shorter, torch.floor(shorter * W / H)))


def _check_flag(value, name: str, op: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be True or False, got {value!r}")
    return value


def _symmetric_range(value, name: str, op: str) -> tuple[float, float]:
    """torchvision: a number d means (-d, d); a pair is taken as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_finite(op, name, value)
        if value < 0:
            raise ValueError(f"{op}: {name} must be >= 0 when one number, got {value}")
        return -float(value), float(value)
    if isinstance(value, Sequence) and len(value) == 2 and value[0] <= value[1]:
        _check_finite(op, name, *value)
        return float(value[0]), float(value[1])
    raise ValueError(f"{op}: {name} must be a number >= 0 or a pair (min, max), got {value!r}")


class RandomAffine(GeometricOp):
    """A per-sample affine map about the image centre, torchvision's parameters, sampling and signs:

    angle ~ U(degrees) (a number d means (-d, d); positive turns clockwise, as torchvision's affine), shift
    (tx, ty) ~ round(U(-a W, a W)), round(U(-b H, b H)) for translate=(a, b), zoom ~ U(scale), shear x ~
    U(shear[0:2]) and y ~ U(shear[2:4]) degrees (one number s means x ~ U(-s, s)). Bilinear; pixels from outside
    the image take ``fill``. Not applied: the identity map.
    """

    exact = False
    axis_aligned = False

    def __init__(self, degrees=0.0, translate=None, scale=None, shear=None, fill: float = 0.0):
        super().__init__()
        name = type(self).__name__
        self.degrees = _symmetric_range(degrees, "degrees", name)
        if translate is not None and not (len(translate) == 2 and all(0 <= t <= 1 for t in translate)):
            raise ValueError(f"{name}: translate must be (a, b) with 0 <= a, b <= 1, got {translate!r}")
        if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"{name}: scale must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
        if scale is not None:
            _check_finite(name, "scale", *scale)
        _check_finite(name, "fill", fill)
        self.translate, self.scale = translate, scale
        if shear is None:
            self.shear = ((0.0, 0.0), (0.0, 0.0))
        elif isinstance(shear, (int, float)):
            self.shear = (_symmetric_range(shear, "shear", name), (0.0, 0.0))
        elif len(shear) in (2, 4):
            self.shear = (_symmetric_range(tuple(shear[:2]), "shear", name),
                          _symmetric_range(tuple(shear[2:]), "shear", name) if len(shear) == 4 else (0.0, 0.0))
        else:
            raise ValueError(f"{name}: shear must be a number, 2 or 4 values, got {shear!r}")
        self.fill = float(fill)

    def extra_repr(self) -> str:
        return (f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}, shear={self.shear}, "
                f"fill={self.fill}")

    def border(self):
        return "constant", self.fill

    def sample(self, shape, generator, device):
        n, (H, W) = shape.batch, shape.size
        angle = _uniform(n, *self.degrees, generator, device)
        a, b = self.translate or (0.0, 0.0)
        tx = torch.round(_uniform(n, -a * W, a * W, generator, device))
        ty = torch.round(_uniform(n, -b * H, b * H, generator, device))
        zoom = _uniform(n, *(self.scale or (1.0, 1.0)), generator, device)
        shear = torch.stack([_uniform(n, *r, generator, device) for r in self.shear], dim=1)
        return {"angle": angle, "translate": torch.stack((tx, ty), dim=1), "scale": zoom, "shear": shear}

    def skip(self, params, keep):
        k = keep.view(-1, 1)
        return {"angle": params["angle"] * keep, "translate": params["translate"] * k,
                "scale": torch.where(keep, params["scale"], 1.0), "shear": params["shear"] * k}

    def map(self, params, size):
        return F.affine_matrix(params["angle"], params["translate"], params["scale"], params["shear"], size)


class RandomRotation(RandomAffine):
    """Rotate by angle ~ U(-degrees, degrees) (or U(degrees) for a pair), counter-clockwise, about the centre."""

    def __init__(self, degrees, fill: float = 0.0):
        super().__init__(degrees=degrees, fill=fill)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}, fill={self.fill}"

    def map(self, params, size):
        # torchvision's rotate turns counter-clockwise, its affine clockwise: the same map with the angle negated
        return F.affine_matrix(-params["angle"], params["translate"], params["scale"], params["shear"], size)



def _corner_sides(device) -> tuple[Tensor, Tensor]:
    """Per corner (top-left, top-right, bottom-right, bottom-left): 1.0 on the right, and 1.0 at the bottom. Made
    on the device from an arange: a constant copied from the host would make a GPU call wait."""
    k = torch.arange(4, device=device)
    return ((k == 1) | (k == 2)).float(), (k >= 2).float()


class RandomPerspective(GeometricOp):
    """A per-sample homography, torchvision's corner sampling: with d = ``distortion_scale``, each corner of the
    image moves inward by whole pixels, at most int(d W // 2) across and int(d H // 2) down or up, uniformly; the
    output's corners then read the input's corners, and the pixels between follow the one homography through the
    four pairs. Bilinear; pixels from outside the image take ``fill``. Applied with probability p per sample; not
    applied: the corners stay, the identity map. Boxes and keypoints move through the homography exactly.
    """

    kind = "projective"

    def __init__(self, distortion_scale: float = 0.5, p: float = 0.5, fill: float = 0.0):
        super().__init__()
        _check_finite("RandomPerspective", "distortion_scale and fill", distortion_scale, fill)
        if not 0 <= distortion_scale <= 1:
            raise ValueError(f"RandomPerspective: distortion_scale must be in [0, 1], got {distortion_scale}")
        self.distortion_scale, self.fill = float(distortion_scale), float(fill)
        self.p = _check_probability(p, "RandomPerspective")

    def extra_repr(self) -> str:
        return f"distortion_scale={self.distortion_scale}, p={self.p}, fill={self.fill}"

    def check(self, shape):
        if min(shape.size) < 2:
            raise ValueError(f"{self!r}: needs images of at least 2x2 (its corners must differ), got "
                             f"{shape.height}x{shape.width}")

    def border(self):
        return "constant", self.fill

    @staticmethod
    def corners(size: tuple[int, int], device=None) -> Tensor:
        """The image's corner pixels (4, 2) as x, y: top-left, top-right, bottom-right, bottom-left."""
        right, bottom = _corner_sides(device)
        return torch.stack((right * (size[1] - 1), bottom * (size[0] - 1)), -1)

    def sample(self, shape, generator, device):
        n, (H, W) = shape.batch, shape.size
        dx, dy = int(self.distortion_scale * (W // 2)), int(self.distortion_scale * (H // 2))
        inward = torch.stack([torch.stack((_randint(n, dx + 1, generator, device),
                                           _randint(n, dy + 1, generator, device)), -1) for _ in range(4)], 1)
        return self.skip({"inward": inward}, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        # Not applied: no corner moves inward, so the end corners are the image's own (inward distance 0).
        return {"inward": params["inward"] * keep.view(-1, 1, 1)}

    def map(self, params, size):
        inward = params["inward"]
        start = self.corners(size, inward.device).expand(inward.shape[0], 4, 2)
        toward_centre = 1 - 2 * torch.stack(_corner_sides(inward.device), -1)  # x, y per corner: +1 or -1
        return F.perspective_matrix(start, start + inward * toward_centre)


class ElasticTransform(GeometricOp):
    """Elastic distortion, torchvision's displacement field, one field per sample: every pixel reads the input
    displaced by (dx, dy), uniform noise in [-1, 1] per pixel and axis, smoothed by a Gaussian of std ``sigma``
    (kernel int(8 sigma + 1), odd; mirrored edges) and scaled by alpha / 2 pixels (torchvision's alpha / W and
    alpha / H in grid units). Bilinear; pixels from outside the image take ``fill``. Applied with probability p per
    sample; not applied: no displacement.

    Masks follow (nearest). The map has no closed-form inverse, so boxes and keypoints are not carried: a call that
    gives them is refused.
    """

    kind = "dense"
    carries = frozenset({"masks"})

    def __init__(self, alpha: float = 50.0, sigma: float = 5.0, p: float = 1.0, fill: float = 0.0):
        super().__init__()
        _check_finite("ElasticTransform", "alpha, sigma and fill", alpha, sigma, fill)
        if alpha < 0 or sigma < 0:
            raise ValueError(f"ElasticTransform: alpha and sigma must be >= 0, got alpha={alpha}, sigma={sigma}")
        self.alpha, self.sigma, self.fill = float(alpha), float(sigma), float(fill)
        self.p = _check_probability(p, "ElasticTransform")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, sigma={self.sigma}, p={self.p}, fill={self.fill}"

    def border(self):
        return "constant", self.fill

    def sample(self, shape, generator, device):
        n, (H, W) = shape.batch, shape.size
        noise = (2 * D.uniform(n * 2 * H * W, generator, device) - 1).view(n, 2, H, W)
        field = F.elastic_displacement(noise, self.alpha, self.sigma)
        return self.skip({"displacement": field}, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        return {"displacement": params["displacement"] * keep.view(-1, 1, 1, 1)}

    def map(self, params, size):
        return params["displacement"]


# ----------------------------------------------------------------------------------------------- photometric
class _Factor(Op):
    """A per-sample factor ~ U[lo, hi] (torchvision ColorJitter), factor 1 where not applied."""

    def __init__(self, strength=0.0, p: float = 1.0):
        super().__init__()
        self.range = _factor_range(strength, type(self).__name__)
        self.p = _check_probability(p, type(self).__name__)

    def extra_repr(self) -> str:
        return f"range={self.range}, p={self.p}"

    def sample(self, shape, generator, device):
        factor = _uniform(shape.batch, *self.range, generator, device)
        return self.skip({"factor": factor}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"factor": torch.where(keep, params["factor"], 1.0)}


class Brightness(_Factor):
    """out = clamp(f x, 0, 1), f ~ U[max(0, 1 - b), 1 + b] per sample."""

    pointwise = True

    def apply(self, state, params):
        return {**state, "images": F.brightness(state["images"], params["factor"])}


class Contrast(_Factor):
    """out = clamp(f x + (1 - f) m, 0, 1), m the image's grayscale mean, f ~ U[max(0, 1 - c), 1 + c]."""

    reads_whole_input = True

    def check(self, shape):
        if shape.channels not in (1, 3):
            raise ValueError(f"{self!r}: needs 1 or 3 channels for the grayscale mean, got {shape.channels}")

    def apply(self, state, params):
        return {**state, "images": F.contrast(state["images"], params["factor"])}


class Normalize(Op):
    """(x - mean) / std per channel."""

    pointwise = True

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
        std = torch.as_tensor(std, dtype=torch.float64).flatten()
        if mean.shape != std.shape or mean.numel() == 0:
            raise ValueError(f"Normalize: mean and std need the same number (> 0) of values, got {mean.numel()} "
                             f"and {std.numel()}")
        _check_finite("Normalize", "mean and std", *mean.tolist(), *std.tolist())
        if not bool((std > 0).all()):
            raise ValueError(f"Normalize: std must be > 0, got {std.tolist()}")
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def extra_repr(self) -> str:
        return f"mean={[round(v, 4) for v in self.mean.tolist()]}, std={[round(v, 4) for v in self.std.tolist()]}"

    def check(self, shape):
        if self.mean.numel() != shape.channels:
            raise ValueError(f"{self!r}: {self.mean.numel()} mean/std values but the images have "
                             f"{shape.channels} channels")

    def sample(self, shape, generator, device):
        return {}

    def apply(self, state, params):
        x = state["images"]
        return {**state, "images": F.normalize(x, self.mean.to(x), self.std.to(x))}


# ----------------------------------------------------------------------------------------------- erase and mix
class Cutout(Op):
    """``count`` squares of side ``size`` set to ``fill``, centres uniform over all pixels, clipped at the border.

    DeVries & Taylor 2017: put it after Normalize with fill 0 (the dataset mean) as in the paper.
    """

    def __init__(self, size: int, count: int = 1, fill: float = 0.0, p: float = 1.0, mask_fill: int | None = None):
        super().__init__()
        if not (isinstance(size, int) and size > 0 and isinstance(count, int) and count > 0):
            raise ValueError(f"Cutout: size and count must be positive ints, got size={size!r}, count={count!r}")
        _check_finite("Cutout", "fill", fill)
        self.size, self.count, self.fill = size, count, float(fill)
        self.p = _check_probability(p, "Cutout")
        if mask_fill is not None and (isinstance(mask_fill, bool) or not isinstance(mask_fill, int)):
            raise TypeError(f"Cutout: mask_fill must be an int label (or None), got {mask_fill!r}")
        self.mask_fill = mask_fill  # e.g. the loss's ignore_index; None leaves masks alone

    def extra_repr(self) -> str:
        extra = "" if self.mask_fill is None else f", mask_fill={self.mask_fill}"
        return f"size={self.size}, count={self.count}, fill={self.fill}, p={self.p}{extra}"

    def sample(self, shape, generator, device):
        n, (H, W) = shape.batch, shape.size
        cy = _randint(n * self.count, H, generator, device)
        cx = _randint(n * self.count, W, generator, device)
        centres = torch.stack((cy, cx), dim=1).view(n, self.count, 2)
        boxes = F.cutout_boxes(centres, self.size, shape.size)  # (B, count, 4)
        return self.skip({"boxes": boxes}, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        return {"boxes": params["boxes"] * keep.view(-1, 1, 1)}  # all-zero box = empty

    def apply(self, state, params):
        out = {**state, "images": F.cutout(state["images"], params["boxes"], self.fill)}
        masks = state.get("masks")
        if self.mask_fill is not None and masks is not None:
            info = None if masks.dtype == torch.bool else torch.iinfo(masks.dtype)
            lo, hi = (0, 1) if info is None else (info.min, info.max)
            if not lo <= self.mask_fill <= hi:
                raise ValueError(f"{self!r}: mask_fill {self.mask_fill} does not fit {masks.dtype} masks "
                                 f"(values {lo} to {hi})")
            out["masks"] = F.cutout(masks, params["boxes"], self.mask_fill)
        return out


def _mix_targets(targets: Tensor | None, lam: Tensor, perm: Tensor) -> Tensor | None:
    return None if targets is None else F.mixup(targets, lam, perm)


class Mixup(Op):
    """x = lam x_i + (1 - lam) x_j, same for targets; lam ~ Beta(alpha, alpha) per sample, j a batch permutation.

    ``per_batch=True`` draws one lam for the batch (as the paper's code); each sample still has its own partner
    ``perm[i]`` and its own ``p``. Not applied: lam = 1.
    A blend of two label maps, boxes or keypoint sets is not one of them, so Mixup carries none.

    timm's ``Mixup(mixup_alpha=a, cutmix_alpha=b, prob=q, switch_prob=s, mode, label_smoothing=e)`` in augpipe:
    ``RandomApply(OneOf(Mixup(a), CutMix(b), weights=(1 - s, s)), p=q), LabelSmoothing(e)`` (smoothing before or
    after mixing agree). mode="elem" is that graph: per sample, whether to mix, which mix, its lam and its box.
    mode="batch": ``per_batch=True`` on both gives one lam (and one box) per op for the batch, but OneOf and p still
    choose per sample; augpipe has no per-batch choice, so one batch has samples mixed each way and some not mixed,
    where timm mixes the whole batch one way or not at all. mode="pair" (samples i and B-1-i mix with each other
    and share lam) has no counterpart. In every mode timm's partner of i is B-1-i; here it is a random permutation,
    so i reads perm[i] while another sample reads i, and a sample can draw itself (about one per batch, unmixed).
    """

    carries = frozenset()
    reads_whole_input = True

    def __init__(self, alpha: float = 1.0, p: float = 1.0, per_batch: bool = False):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"Mixup: alpha must be > 0, got {alpha}")
        _check_finite("Mixup", "alpha", alpha)
        self.alpha, self.per_batch = float(alpha), bool(per_batch)
        self.p = _check_probability(p, "Mixup")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, p={self.p}, per_batch={self.per_batch}"

    def sample(self, shape, generator, device):
        n = shape.batch
        lam = _beta(self.alpha, 1 if self.per_batch else n, generator, device).expand(n).clone()
        perm = D.permutation(n, generator, device)
        return self.skip({"lam": lam, "perm": perm}, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        return {**params, "lam": torch.where(keep, params["lam"], 1.0)}

    def apply(self, state, params):
        lam, perm = params["lam"], params["perm"]
        return {**state, "images": F.mixup(state["images"], lam, perm),
                "targets": _mix_targets(state["targets"], lam, perm)}


class CutMix(Op):
    """Paste a partner's box; lam ~ Beta(alpha, alpha), box sides W sqrt(1 - lam), H sqrt(1 - lam), centre uniform,
    clipped, then lam := 1 - box area / image area (Yun et al. 2019, official code). Not applied: empty box.
    Masks get the partner's mask in the same box; boxes and keypoints have no defined CutMix.

    ``per_batch=True`` draws one lam and one box (its size and its place, so one corrected lam) for the whole batch,
    as the official code and timm's mode="batch" do; each sample still has its own partner ``perm[i]`` and its own
    ``p``. Mixup's docstring says how timm's modes and ``switch_prob`` map onto OneOf and ``per_batch``.
    """

    carries = frozenset({"masks"})
    reads_whole_input = True

    def __init__(self, alpha: float = 1.0, p: float = 1.0, per_batch: bool = False):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"CutMix: alpha must be > 0, got {alpha}")
        _check_finite("CutMix", "alpha", alpha)
        self.alpha, self.per_batch = float(alpha), bool(per_batch)
        self.p = _check_probability(p, "CutMix")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, p={self.p}, per_batch={self.per_batch}"

    def sample(self, shape, generator, device):
        n, (H, W) = shape.batch, shape.size
        m = 1 if self.per_batch else n  # how many boxes are drawn
        cut = torch.sqrt(1 - _beta(self.alpha, m, generator, device))
        cut_h, cut_w = (H * cut).long(), (W * cut).long()  # truncation, as the official code's int()
        cy, cx = _randint(m, H, generator, device), _randint(m, W, generator, device)
        boxes = torch.stack(((cy - cut_h // 2).clamp(0, H), (cx - cut_w // 2).clamp(0, W),
                             (cy + cut_h // 2).clamp(0, H), (cx + cut_w // 2).clamp(0, W)), dim=1)
        boxes = boxes.expand(n, 4)  # skip below makes each sample's row its own
        perm = D.permutation(n, generator, device)
        return self.skip({"box": boxes, "perm": perm}, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        return {**params, "box": params["box"] * keep.view(-1, 1)}

    def apply(self, state, params):
        x, box, perm = state["images"], params["box"], params["perm"]
        lam = F.cutmix_lambda(box, x.shape[-2:])
        out = {**state, "images": F.cutmix(x, box, perm),
               "targets": _mix_targets(state["targets"], lam, perm)}
        if state.get("masks") is not None:
            out["masks"] = F.cutmix(state["masks"], box, perm)
        return out


class LabelSmoothing(Op):
    """targets := (1 - eps) targets + eps / K. Mixing is linear, so smoothing before or after Mixup/CutMix agree."""

    def __init__(self, eps: float = 0.1):
        super().__init__()
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"LabelSmoothing: eps must be in [0, 1), got {eps}")
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"

    def sample(self, shape, generator, device):
        return {}

    def apply(self, state, params):
        t = state["targets"]
        return {**state, "targets": None if t is None else F.label_smoothing(t, self.eps)}


# ----------------------------------------------------------------------------------------------- a function
class Lambda(Op):
    """A function of the whole batch as a step, ``fn(images) -> images``: a kornia filter, say.

    ``fn`` gets the images (B, C, H, W) as the steps before left them, float in the compute dtype (float32, or
    float64 for float64 input), and returns a new tensor of the same shape, dtype and device, or of (B, C,
    *output_size) when ``output_size`` (an int or (height, width)) is given. It must not write into its input, which
    may be the caller's tensor. Targets pass through unchanged. Compiled, torch.compile traces ``fn`` with the rest
    of the call where it can and runs it eagerly where it cannot.

    Randomness inside ``fn`` is not drawn from the pipeline's generator: seeds and replay (``params=``) do not cover
    it. For that, write an op (``augpipe.Op``) that draws through ``augpipe.draws``. ``fn`` is known only by what it
    does to images, so a call with masks, boxes or keypoints is refused. For example::

        import kornia
        blur = augpipe.Lambda(lambda x: kornia.filters.gaussian_blur2d(x, (5, 5), (1.5, 1.5)))
        pipe = augpipe.Pipeline(augpipe.RandomCrop(32, padding=4), augpipe.RandomApply(blur, p=0.3))
    """

    carries = frozenset()
    reads_whole_input = True  # fn may read any pixel of its input

    def __init__(self, fn, output_size=None):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"Lambda: fn must be callable, got {type(fn).__name__} {fn!r}")
        self.fn = fn
        self.size = None if output_size is None else _pair(output_size, "output_size", "Lambda")

    def extra_repr(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return name + ("" if self.size is None else f", output_size={self.size}")

    def output_size(self, size):
        return size if self.size is None else self.size

    def sample(self, shape, generator, device):
        return {}

    def apply(self, state, params):
        x = state["images"]
        y = self.fn(x)
        if not isinstance(y, Tensor):
            raise TypeError(f"{self!r}: fn must return a tensor, got {type(y).__name__}")
        expected = (*x.shape[:2], *self.output_size(tuple(x.shape[-2:])))
        if tuple(y.shape) != expected or y.dtype != x.dtype or y.device != x.device:
            raise ValueError(f"{self!r}: fn must return {x.dtype} images of shape {expected} on {x.device}, got "
                             f"{y.dtype} {tuple(y.shape)} on {y.device}")
        return {**state, "images": y}


# ----------------------------------------------------------------------------------------------- pooling
class FractionalPool(Op):
    """Graham's fractional max pooling by ``alpha`` per axis, then a nearest resize back to the input size.

    One pooled size for the batch; each sample has its own u (pseudorandom) or its own random sequence.
    A max over neighbours moves no label map, box or point consistently, so it carries none.
    """

    carries = frozenset()

    def __init__(self, alpha: float = 2 ** 0.5, overlapping: bool = True, pseudo_random: bool = True):
        super().__init__()
        if not 1 < alpha <= 2:
            raise ValueError(f"FractionalPool: alpha must be in (1, 2], got {alpha}")
        self.alpha, self.overlapping, self.pseudo_random = float(alpha), bool(overlapping), bool(pseudo_random)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4f}, overlapping={self.overlapping}, pseudo_random={self.pseudo_random}"

    def pooled_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return tuple(F.fractional_output_size(s, self.alpha) for s in size)

    def check(self, shape):
        if min(shape.size) < 2:
            raise ValueError(f"{self!r}: needs images of at least 2x2, got {shape.height}x{shape.width}")

    def sample(self, shape, generator, device):
        rows, cols = F.graham_bounds(shape.size, self.pooled_size(shape.size), shape.batch, self.pseudo_random,
                                     generator=generator, device=device)
        return {"row_bounds": rows, "col_bounds": cols}

    def apply(self, state, params):
        x = state["images"]
        pooled = F.fractional_max_pool2d_from_bounds(x, params["row_bounds"], params["col_bounds"], self.overlapping)
        return {**state, "images": F.upsample_nearest(pooled, x.shape[-2:])}


# ----------------------------------------------------------------------------------------------- blur and erasing
def _odd_sizes(value, op: str) -> tuple[int, int]:
    """torchvision's kernel_size: an int, or (kx, ky) taps across and down; each odd and positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{op}: kernel_size must be an int or a pair of ints (kx, ky), got {value!r}")
    if min(value) <= 0 or value[0] % 2 == 0 or value[1] % 2 == 0:
        raise ValueError(f"{op}: kernel_size must be odd and positive, got {value!r}")
    return int(value[0]), int(value[1])


def _positive_range(value, name: str, op: str) -> tuple[float, float]:
    """A number v > 0 as (v, v), or (lo, hi) with 0 < lo <= hi."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{op}: {name} must be a number or a pair (min, max), got {value!r}")
    _check_finite(op, name, *value)
    if not 0 < value[0] <= value[1]:
        raise ValueError(f"{op}: {name} must be > 0 and of the form (min, max), got {value!r}")
    return float(value[0]), float(value[1])


class GaussianBlur(Op):
    """A Gaussian blur with sigma ~ U[min, max] per sample (torchvision's GaussianBlur; docs/references.md,
    "Gaussian blur"): separable, the same sigma across and down, mirrored edges.

    ``kernel_size``: an int, or (kx, ky) taps across (along the width) and down (along the height), odd, in
    torchvision's order, which is not the (height, width) of augpipe's sizes. ``sigma``: a number (fixed) or a range
    (min, max), > 0. Applied with probability ``p`` per sample (torchvision's has no p: p=1); not applied: sigma 0,
    whose kernel returns the sample exactly. Blurring moves no pixel, so masks, boxes and keypoints are unchanged.
    """

    reads_whole_input = True  # each output pixel reads its neighbours

    def __init__(self, kernel_size, sigma=(0.1, 2.0), p: float = 1.0):
        super().__init__()
        self.kernel_size = _odd_sizes(kernel_size, "GaussianBlur")
        self.sigma = _positive_range(sigma, "sigma", "GaussianBlur")
        self.p = _check_probability(p, "GaussianBlur")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, p={self.p}"

    def sample(self, shape, generator, device):
        sigma = _uniform(shape.batch, *self.sigma, generator, device)
        return self.skip({"sigma": sigma}, _bernoulli(shape.batch, self.p, generator, device))

    def skip(self, params, keep):
        return {"sigma": torch.where(keep, params["sigma"], 0.0)}

    def apply(self, state, params):
        return {**state, "images": F.gaussian_blur(state["images"], params["sigma"], self.kernel_size)}


def _ordered_pair(value, name: str, op: str) -> tuple[float, float]:
    """A pair of finite numbers (min, max) with min <= max."""
    if not (isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{op}: {name} must be a pair (min, max), got {value!r}")
    _check_finite(op, name, *value)
    if not value[0] <= value[1]:
        raise ValueError(f"{op}: {name} must be of the form (min, max) with min <= max, got {value!r}")
    return float(value[0]), float(value[1])


class RandomErasing(Op):
    """Erase up to ``count`` boxes per sample, torchvision's draw per box (Zhong et al. 2017; docs/references.md,
    "Random erasing"): an area fraction ~ U(scale), a log aspect (height / width) ~ U(log ratio),
    h = round(sqrt(area aspect)), w = round(sqrt(area / aspect)); the first of 10 attempts with h < H and w < W is
    the box, its corner uniform over the places it fits; none fits: no box. Applied with probability ``p``.

    ``value``: the fill, in the units of the images as the op receives them (after a Normalize, normalized units):
    a number, one number per channel, or "random" for standard normal noise per pixel and channel (timm's "pixel"
    mode). ``count`` > 1: timm's ``max_count``; each sample erases U{1..count} boxes, each of area
    U(scale) H W / (its number of boxes), so the erased share stays in scale; boxes may overlap.
    ``mask_fill``: the label erased masks get in the boxes (e.g. the loss's ignore_index); None, the default,
    leaves masks alone, as torchvision passes masks through. Boxes and keypoints are unchanged.

    Params: "boxes" (B, count, 4) of (y1, x1, y2, x2), all-zero where a sample has no box there; with "random",
    also "noise_key" (B, 2): the noise is a function of it (``functional.hashed_normal``), so replay repeats it
    while the params hold two integers per sample.
    """

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, count: int = 1,
                 mask_fill: int | None = None):
        super().__init__()
        self.p = _check_probability(p, "RandomErasing")
        self.scale = _ordered_pair(scale, "scale", "RandomErasing")
        if not 0 <= self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"RandomErasing: scale must be fractions of the image in [0, 1], got {scale!r}")
        self.ratio = _ordered_pair(ratio, "ratio", "RandomErasing")
        if not self.ratio[0] > 0:
            raise ValueError(f"RandomErasing: ratio must be > 0 (height / width), got {ratio!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"RandomErasing: count must be a positive int, got {count!r}")
        self.count = count
        self.random = isinstance(value, str)
        if self.random and value != "random":
            raise ValueError(f"RandomErasing: value must be a number, one number per channel or 'random', "
                             f"got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not self.random:
            if not (isinstance(value, Sequence) and len(value) > 0
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise TypeError(f"RandomErasing: value must be a number, a sequence of numbers (one per channel) "
                                f"or 'random', got {value!r}")
            _check_finite("RandomErasing", "value", *value)
        self.value = "random" if self.random else tuple(float(v) for v in value)
        self.register_buffer("fill", torch.tensor(() if self.random else self.value, dtype=torch.float64),
                             persistent=False)
        if mask_fill is not None and (isinstance(mask_fill, bool) or not isinstance(mask_fill, int)):
            raise TypeError(f"RandomErasing: mask_fill must be an int label (or None), got {mask_fill!r}")
        self.mask_fill = mask_fill

    def extra_repr(self) -> str:
        value = "'random'" if self.random else (self.value[0] if len(self.value) == 1 else self.value)
        extra = "" if self.mask_fill is None else f", mask_fill={self.mask_fill}"
        return f"p={self.p}, scale={self.scale}, ratio={self.ratio}, value={value}, count={self.count}{extra}"

    def check(self, shape):
        if not self.random and len(self.value) not in (1, shape.channels):
            raise ValueError(f"{self!r}: value has {len(self.value)} numbers; the images have {shape.channels} "
                             f"channels (give 1 or {shape.channels})")

    def sample(self, shape, generator, device):
        n, m, (H, W) = shape.batch, self.count, shape.size
        tries = 10  # torchvision's attempts per box

        def uniform(*size):
            return D.uniform(size, generator, device, torch.float64)

        drawn = 1 if m == 1 else 1 + torch.floor(uniform(n, 1) * m)  # boxes per sample, U{1..count}
        fraction = self.scale[0] + (self.scale[1] - self.scale[0]) * uniform(n, m, tries)
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        log_aspect = lo + (hi - lo) * uniform(n, m, tries)
        place = uniform(2, n, m)
        area = fraction * (H * W) / (drawn if m == 1 else drawn.unsqueeze(-1))  # timm: the area shared by the boxes
        boxes = F.erasing_boxes(area, log_aspect, place[0], place[1], shape.size)  # (B, count, 4)
        if m > 1:
            boxes = boxes * (torch.arange(m, device=device) < drawn).unsqueeze(-1)
        params = {"boxes": boxes}
        if self.random:
            params["noise_key"] = torch.floor(uniform(n, 2) * 2 ** 32).long()
        return self.skip(params, _bernoulli(n, self.p, generator, device))

    def skip(self, params, keep):
        return {**params, "boxes": params["boxes"] * keep.view(-1, 1, 1)}  # all-zero box = empty

    def apply(self, state, params):
        x = state["images"]
        if self.random:
            value = F.hashed_normal(params["noise_key"], x.shape, x.dtype)
        else:  # one number: a fill made on the images' device; one per channel: the buffer
            value = self.value[0] if len(self.value) == 1 else self.fill.to(x)
        out = {**state, "images": F.erase(x, params["boxes"], value)}
        masks = state.get("masks")
        if self.mask_fill is not None and masks is not None:
            info = None if masks.dtype == torch.bool else torch.iinfo(masks.dtype)
            lo, hi = (0, 1) if info is None else (info.min, info.max)
            if not lo <= self.mask_fill <= hi:
                raise ValueError(f"{self!r}: mask_fill {self.mask_fill} does not fit {masks.dtype} masks "
                                 f"(values {lo} to {hi})")
            out["masks"] = F.cutout(masks, params["boxes"], self.mask_fill)
        return out
