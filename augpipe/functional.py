"""Pure batched kernels.

Every function takes a batch and explicit per-sample parameter tensors and returns a new tensor: no randomness
(except where a ``generator`` argument says so), no state, no Python loop over the batch, no host sync. The ops in
``augpipe.ops`` draw the parameters; the fused executor in ``augpipe.fuse`` calls these kernels.

Conventions
- Images are ``(B, C, H, W)`` floating point in [0, 1] unless a function says it accepts uint8.
- Geometry uses continuous pixel coordinates: the image spans [0, W] x [0, H] and the centre of pixel (i, j) is
  (j + 0.5, i + 0.5). A sampling matrix is ``(B, 3, 3)`` and maps an *output* point (x, y, 1) to the *input*
  point it reads, so composing ops in pipeline order is a plain matrix product ``M1 @ M2 @ ...``.
- Boxes for Cutout and CutMix are integer ``(..., 4)`` rows ``(y1, x1, y2, x2)``, half-open, already clipped;
  an empty box (y1 == y2) means "not applied".
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import draws, hints, memory

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
CPU_BLOCK_BYTES = 8 << 20  # eager CPU resampling works in groups of samples whose intermediate fits this


# ----------------------------------------------------------------------------------------------- dtype helpers
def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic runs in: float64 stays float64, everything else (uint8, halves) computes in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_float(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 [0, 255] -> float [0, 1]; floating input is only cast (and returned as is when already ``dtype``)."""
    if x.dtype == torch.uint8:
        return x.to(dtype).div_(255)  # divides the new tensor in place: one allocation, not two
    return x.to(dtype)


# Constants are made on the images' device by a fill, never copied from host memory: on a GPU such a copy
# makes the host wait for the device (torch.cuda.set_sync_debug_mode reports it), on every call.
def _scalar(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor of ``value`` in ``like``'s dtype and on its device."""
    return torch.full((), value, dtype=like.dtype, device=like.device)


def _clamp_xy(xyxy: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp (B, ..., 4) x1, y1, x2, y2 to at most the width (x) and the height (y) of ``size`` = (H, W): ints, or
    (B,) tensors per sample."""
    h, w = (v.view(-1, *[1] * (xyxy.dim() - 1)).to(xyxy.dtype) if isinstance(v, Tensor) else v for v in size)
    x, y = torch.clamp(xyxy[..., 0::2], max=w), torch.clamp(xyxy[..., 1::2], max=h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), -1)


def per_sample(value, dims: int):
    """An extent (an int, or a (B,) tensor per sample) shaped to broadcast against (B, ...) of ``dims`` dims."""
    return value.view(-1, *[1] * (dims - 1)) if isinstance(value, Tensor) else value


# ----------------------------------------------------------------------------------------------- flips and crops
def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the samples where ``flip`` (B,) is true."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def vflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror top-bottom the samples where ``flip`` (B,) is true."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-2), x)


def take_rows(x: Tensor, rows: Tensor) -> Tensor:
    """out[b, :, i, :] = x[b, :, rows[b, i], :]; rows (B, Ho) in range.

    Whole rows are copied with one index_select over the (B C H, W) view: a row is W contiguous values, which
    copies far faster than an element-wise gather.
    """
    B, C, H, W = x.shape
    x = x.contiguous()
    first_row = (torch.arange(B, device=x.device)[:, None, None] * C
                 + torch.arange(C, device=x.device)[None, :, None]) * H  # (B, C, 1)
    index = (first_row + rows[:, None, :]).reshape(-1)  # (B C Ho,)
    return x.view(B * C * H, W).index_select(0, index).view(B, C, rows.shape[1], W)


def take_cols(x: Tensor, cols: Tensor) -> Tensor:
    """out[b, :, :, j] = x[b, :, :, cols[b, j]]; cols (B, Wo) in range."""
    B, C, H, _ = x.shape
    return x.gather(3, cols[:, None, None, :].expand(B, C, H, cols.shape[1]))


def take_grid(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]]; rows (B, Ho) and cols (B, Wo) in range.

    Eager: whole rows, then columns (take_rows, take_cols). Compiled: one indexed load per pixel, at
    b C H W + c H W + row W + col; the flat (B C H, W) view of take_rows left inductor working the sample back out
    of the row index with an integer division per pixel.
    """
    if not torch.compiler.is_compiling():
        return take_cols(take_rows(x, rows), cols)
    B, C = x.shape[:2]
    b = torch.arange(B, device=x.device).view(-1, 1, 1, 1)
    c = torch.arange(C, device=x.device).view(1, -1, 1, 1)
    return x[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def _remap_index(index: Tensor, size: int, padding_mode: str) -> Tensor:
    """Map possibly out-of-range indices onto [0, size) the way ``F.pad`` extends an image."""
    if padding_mode == "reflect":  # mirror without repeating the edge: -1 -> 1, size -> size - 2
        period = (2 * (size - 1)).clamp(min=1) if isinstance(size, Tensor) else 2 * (size - 1) if size > 1 else 1
        index = torch.remainder(index, period)
        return torch.where(index >= size, period - index, index)
    return torch.minimum(index.clamp(min=0), size - 1) if isinstance(size, Tensor) else index.clamp(0, size - 1)


def gather_separable(x: Tensor, rows: Tensor, cols: Tensor, padding_mode: str | None = "constant",
                     fill: float = 0.0, dtype: torch.dtype | None = None) -> Tensor:
    """out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]], indices outside the image padded per ``padding_mode``
    (None: the indices are in range, as ``exact_map`` makes them, and nothing is padded).

    This is every flip, crop and padded crop (and any composition of them) as one gather. It reads uint8 as uint8
    and, when ``dtype`` is given, converts only the output with ``to_float``, so the bytes are touched once;
    without ``dtype`` the values keep theirs (label maps).
    x (B, C, H, W); rows (B, Ho) and cols (B, Wo) integer.
    """
    H, W = x.shape[-2:]
    read_rows, read_cols = rows, cols
    if padding_mode is not None:
        read_rows, read_cols = _remap_index(rows, H, padding_mode), _remap_index(cols, W, padding_mode)
    out = take_grid(x, read_rows, read_cols)
    if dtype is not None:
        out = to_float(out, dtype)  # (B, C, Ho, Wo)
    if padding_mode == "constant":  # out is a new tensor: fill it in place where the unpadded index is outside
        inside = ((rows >= 0) & (rows < H))[:, None, :, None] & ((cols >= 0) & (cols < W))[:, None, None, :]
        out = _select(out, fill, ~inside, True)
    return out


def crop(x: Tensor, top: Tensor, left: Tensor, size: tuple[int, int], padding: Sequence[int] = (0, 0, 0, 0),
         padding_mode: str = "constant", fill: float = 0.0) -> Tensor:
    """Pad by ``padding`` (left, top, right, bottom), then take the ``size`` window at per-sample (top, left).

    top, left: (B,) integer offsets in the padded image. Equals ``F.pad`` followed by slicing, for every sample.
    """
    h, w = size
    pad_l, pad_t = padding[0], padding[1]
    rows = top[:, None] - pad_t + torch.arange(h, device=x.device)  # (B, h)
    cols = left[:, None] - pad_l + torch.arange(w, device=x.device)  # (B, w)
    return gather_separable(x, rows, cols, padding_mode, fill)


def axis_points(matrix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Source coordinates sy (B, Ho) and sx (B, Wo) of the output pixel centres under an axis-aligned map."""
    h, w = size
    dev, m = matrix.device, matrix.double()  # float64, rounded once: see sample_points
    ys = torch.arange(h, device=dev, dtype=torch.float64) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float64) + 0.5
    return ((m[:, 1, 1, None] * ys + m[:, 1, 2, None]).to(matrix.dtype),
            (m[:, 0, 0, None] * xs + m[:, 0, 2, None]).to(matrix.dtype))


def index_steps(matrix: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """First source index (B, 1) and step +-1 (B, 1) along ``axis`` (0: columns, 1: rows) of an integer map.

    Such a map sends pixel centre j + 0.5 to s (j + 0.5) + t with step s = +-1 and t whole, landing on the centre
    of source pixel s j + t - (s < 0). Flips and shifts compose into such entries exactly in floating point. The
    indices are integer steps from that start: per pixel, float-to-integer conversions are slow in a compiled CPU
    loop.
    """
    s, t = matrix[:, axis, axis, None], matrix[:, axis, 2, None]
    mirrored = s < 0
    return (t - mirrored.to(t.dtype)).long(), torch.where(mirrored, -1, 1)


def axis_index(matrix: Tensor, axis: int, n: int) -> Tensor:
    """Integer source indices (B, n) along ``axis`` (0: columns, 1: rows) of an integer map."""
    start, step = index_steps(matrix, axis)
    j = torch.arange(n, device=matrix.device)
    return torch.where(step < 0, start - j, start + j)


def index_map(matrix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Integer source rows (B, Ho) and cols (B, Wo) of an axis-aligned integer map (flips and crops)."""
    return axis_index(matrix, 1, size[0]), axis_index(matrix, 0, size[1])


class ExactMap(NamedTuple):
    """Whole-pixel maps (flips, crops, padded crops, in any order) composed into per-sample tables (``exact_map``).

    Output pixel (i, j) of sample b shows source pixel (rows[b, i], cols[b, j]), unless a ``fills`` entry (fill,
    row test, column test) says it lies outside: where row test[b, i] and column test[b, j] are not both true it
    shows that fill. The entries apply in order, so a later one wins (the fill of the op nearest the output).
    """

    rows: Tensor  # (B, Ho) source rows, in range
    cols: Tensor  # (B, Wo) source columns, in range
    fills: list[tuple[float, Tensor, Tensor]]  # (fill, row test (B, Ho) bool, column test (B, Wo) bool)


def _compose_axis(maps, axis: int, n: int) -> tuple[Tensor, list[Tensor | None]]:
    """Source indices (B, n) along ``axis`` (0: columns, 1: rows) of ``n`` output positions through ``maps`` (see
    ``exact_map``), and per map the inside test of its constant padding (None for a map without one).

    Walked from the output back to the source. Each map sends its output index to its input index (start + step i,
    ``index_steps``); an index outside the input is brought back the way the map's own padding extends that input
    (reflect, replicate), or, for constant padding, tested and clamped: the clamped index reads some pixel that
    the test's fill then replaces. So any order and any number of edge-padded crops compose exactly.
    """
    index = torch.arange(n, device=maps[0][0].device)
    tests = [None] * len(maps)
    for k in range(len(maps) - 1, -1, -1):
        matrix, size, border = maps[k]
        start, step = index_steps(matrix, axis)
        index = start + step * index  # (B, n)
        extent = size[1 - axis]
        mode = None if border is None else border[0]
        if mode == "constant":
            tests[k] = (index >= 0) & (index < extent)
        if mode is not None:
            index = _remap_index(index, extent, mode)
    # In range for any map of these ops; clamped as well, for a replayed params list of another graph: compiled CPU
    # loops do not check indices (backends.INDUCTOR_OPTIONS). Sizes may be (B, 1) tensors (images of their own sizes).
    return _remap_index(index, maps[0][1][1 - axis], "replicate"), tests


def exact_map(maps: Sequence[tuple[Tensor, tuple[int, int], tuple[str, float] | None]],
              size: tuple[int, int]) -> ExactMap:
    """Whole-pixel maps composed into one gather: maps are, in pipeline order, each op's (sampling matrix (B, 3, 3)
    with steps +-1 and whole shifts, input (H, W), ``border()``: (padding mode, fill) or None); size the output's
    (H, W). Each map's out-of-range reads follow its own padding mode, whichever maps come before or after it."""
    rows, row_tests = _compose_axis(maps, 1, size[0])
    cols, col_tests = _compose_axis(maps, 0, size[1])
    fills = [(border[1], r, c) for (_, _, border), r, c in zip(maps, row_tests, col_tests) if r is not None]
    return ExactMap(rows, cols, fills)


def fill_outside(x: Tensor, fills: Sequence[tuple[float, Tensor, Tensor]]) -> Tensor:
    """x with each ``ExactMap.fills`` entry's fill where its row or column test fails, in order.

    Consecutive entries with one fill are one test (a pixel is inside both when it passes both row tests and both
    column tests). The tests are made 0 or 1 in x's dtype (float32 for label maps), and a pixel is inside where
    their product is 1. Compiled, each test is kept (``hints.keep``, see ``box_mask``).
    """
    merged, inplace = [], hints.writable(x)
    for fill, rows, cols in fills:
        if merged and merged[-1][0] == fill:
            merged[-1] = (fill, merged[-1][1] & rows, merged[-1][2] & cols)
        else:
            merged.append((fill, rows, cols))
    dtype = x.dtype if x.is_floating_point() else torch.float32
    for fill, rows, cols in merged:
        rows, cols = rows.to(dtype), cols.to(dtype)
        hints.keep(rows, cols)
        inside = rows[:, None, :, None] * cols[:, None, None, :] != 0
        x = _select(x, fill, ~inside, inplace)
        inplace = True  # _select made a new tensor, or wrote into x as allowed
    return x


class WindowPlan(NamedTuple):
    """How ``window_source`` copies the images for the exact geometric ops that read it (``fuse.window_plan``).

    The default is a plain copy: the values as they are, in the images' shape.
    """

    reach: int = 0  # zeros at each end of a row: the columns the ops may read beyond the (padded) images
    mirrored: bool = False  # a second row holds each image reversed, for samples that read columns right to left
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (left, top, right, bottom) added to each image in ``mode``
    mode: str | None = None  # with padding, "reflect" (as ``F.pad``: the edge not repeated) or "replicate"

    def padded_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        left, top, right, bottom = self.padding
        B, C, H, W = shape
        return B, C, H + top + bottom, W + left + right


def window_source(x: Tensor, plan: WindowPlan, dtype: torch.dtype, out: Tensor | None = None) -> Tensor:
    """The images as ``gather_windows`` reads them: (M, N + 2 reach) in ``dtype``, N the number of padded values.

    Row 0 is x cast to ``dtype``, each image padded by ``plan.padding`` (an edge-extending crop's, which then
    reads inside the copy), flattened, with ``plan.reach`` zeros at each end; when ``plan.mirrored`` (M = 2), row
    1 is the same with each image's values reversed in place. Image by image, not the whole row reversed: a sample's
    mirror then lies where the sample does, so the thread that reads a sample in the compiled loop finds it where
    its own share of this copy was written, which matters when two cores sit on different caches
    (docs/design.md, "The window copy"). uint8 values are not divided by 255 here: ``gather_windows`` divides what
    it reads, in the compiled loop, where a pass of its own over the copy costs as much as making it. ``out``, when
    given, is a tensor this function made before for the same shape: only the image values are written again.
    """
    if plan.mode:  # padded in x's dtype, then converted with the copy: one pass, where copying the image and then
        # each padding band into the float copy is several small ones
        left, top, right, bottom = plan.padding
        x = F.pad(x, (left, right, top, bottom), mode=plan.mode)
    n, reach = x.numel(), plan.reach
    shape = (1 + plan.mirrored, n + 2 * reach)
    if out is None or out.shape != shape or out.dtype != dtype or out.device != x.device:
        out = torch.zeros(shape, dtype=dtype, device=x.device)
    images = x.reshape(x.shape[0], -1)
    for m, values in enumerate((images, images.flip(1)) if plan.mirrored else (images,)):
        out[m, reach:reach + n].view_as(images).copy_(values)
    return out


def window_reach(source: Tensor, n: int) -> int:
    """The padding at each end of the rows of a ``window_source`` of n image values."""
    return (source.shape[1] - n) // 2


def window_images(source: Tensor, shape: Sequence[int]) -> Tensor:
    """The images as row 0 of a ``window_source`` holds them, viewed in their ``shape``: float, uint8 values not
    divided by 255 (a bilinear read gathers from this, see ``fuse.warp``)."""
    n = math.prod(shape)
    reach = window_reach(source, n)
    return source[0, reach:reach + n].view(shape)


def gather_windows(source: Tensor, matrix: Tensor, size: tuple[int, int], in_shape: Sequence[int],
                   fill: float | None = 0.0, uint8: bool = False) -> Tensor:
    """``gather_separable`` with constant padding, read as one contiguous window per output row.

    source: ``window_source`` of the images, whose reach covers every column the map reads outside the image and
    which is mirrored if any sample's column step is -1; matrix: an integer map (flips, crops) of the images;
    in_shape: their (B, C, H, W); uint8: they were uint8, so what is read is divided by 255 (as ``to_float``).
    Compiled, each row's window start and copy, and each sample's inside columns, are kept (``hints.keep``).
    Output row i of sample b copies ``size[1]`` consecutive values of the flattened images, starting at a per-row
    position (in the reversed copy for a mirrored sample), so a compiled loop reads whole vectors where a per-pixel
    index loads lane by lane. A window that starts left of its row reads the end of the row before (or the
    padding): those values are outside the image, and the fill replaces them. With ``fill=None`` they are left for
    the caller to replace (``fuse.warp`` does, with ``fill_outside``: every such read is outside some crop).
    Returns (B, C, Ho, Wo) in the source's dtype.
    """
    B, C, H, W = in_shape
    h, w = size
    n = B * C * H * W
    reach = window_reach(source, n)
    dev = source.device
    rows = axis_index(matrix, 1, h)  # (B, h)
    c0, cs = index_steps(matrix, 0)
    mirrored = (cs < 0)[:, :, None]  # (B, 1, 1): this sample reads its columns right to left
    b = torch.arange(B, device=dev)[:, None, None]
    first = ((b * C + torch.arange(C, device=dev)[None, :, None]) * H
             + rows.clamp(0, H - 1)[:, None, :]) * W + c0[:, :, None]  # (B, C, h): flat index of the first value
    # Reading right to left from ``first``, in image b of m values, is reading the copy whose images are each
    # reversed left to right from (2 b + 1) m - 1 - first.
    # Clamped, though in range for any map of the ops the source was made for: compiled CPU loops do not check
    # indices (backends.INDUCTOR_OPTIONS), so a replayed params list of another graph must not read past the source.
    reversed_first = (2 * b + 1) * (C * H * W) - 1 - first
    start = (reach + torch.where(mirrored, reversed_first, first)).clamp(0, source.shape[1] - w)
    copy = mirrored.long() if source.shape[0] == 2 else torch.zeros_like(mirrored, dtype=torch.long)
    out = source.unfold(1, w, 1)[copy, start]  # (B, C, h, w)
    if uint8:
        out = out / 255
    if fill is None:
        hints.keep(start, copy)
        return out
    # Output column j lies in the image for j in [lo, hi): per sample, a row test (B, h) and a column test (B, w),
    # 0 or 1 in float, stored once (``hints.keep``), whose product each pixel tests (see ``box_mask``).
    j = torch.arange(w, device=dev)
    lo = torch.where(cs < 0, c0 - W + 1, -c0)
    hi = torch.where(cs < 0, c0 + 1, W - c0)
    row_inside = ((rows >= 0) & (rows < H)).to(source.dtype)
    col_inside = ((j >= lo) & (j < hi)).to(source.dtype)
    hints.keep(start, copy, row_inside, col_inside)
    inside = row_inside[:, None, :, None] * col_inside[:, None, None, :] != 0
    return torch.where(inside, out, _scalar(fill, out))


def _bilinear_taps(coord: Tensor, n: int, extend: str):
    """Indices and weights of the two pixels a coordinate (B, m) interpolates, per ``warp_affine``'s extend."""
    u = coord - 0.5  # pixel-centre index space
    i0 = torch.floor(u)
    w1 = u - i0
    i0 = i0.long()
    i1 = i0 + 1
    w0 = 1 - w1
    if extend == "fill":  # taps outside the image weigh nothing; the fill makes up the missing weight
        w0 = w0 * ((i0 >= 0) & (i0 < n))
        w1 = w1 * ((i1 >= 0) & (i1 < n))
        inside = None
    else:
        inside = (coord >= 0) & (coord <= n)
    return i0.clamp(0, n - 1), i1.clamp(0, n - 1), w0, w1, inside


def _tap_pair(i0: Tensor, i1: Tensor, w0: Tensor, w1: Tensor, n: int):
    """The taps of ``_bilinear_taps`` as (first index, step, w0, w1), the second tap at first + step, the step the
    same for every point: 1, or 0 when n == 1. Where both taps are one pixel (at or past an edge), the pair moves to
    (0, 1) or (n - 2, n - 1) with all the weight on that pixel. A compiled loop then loads one index per pixel and
    axis and reads the other tap at a fixed offset from it."""
    if n == 1:
        return i0, 0, w0, w1
    same = i0 == i1
    right = same & (i0 == n - 1)
    both = w0 + w1
    return (torch.where(right, n - 2, i0), 1, torch.where(same, torch.where(right, 0, both), w0),
            torch.where(same, torch.where(right, both, 0), w1))


def _unit(taps: Tensor, dtype: torch.dtype, unit: int | None) -> Tensor:
    """Gathered taps (a new tensor) in ``dtype``, divided by ``unit`` (255 for uint8 values) when given: a correctly
    rounded division, so 255 becomes exactly 1 and nothing exceeds it."""
    taps = taps.to(dtype)
    return taps if unit is None else taps / unit


def take_flat(x: Tensor, index: Tensor) -> Tensor:
    """out[b, c, i, j] = x[b, c].flatten()[index[b, 0, i, j]]; x (B, C, H, W), index (B, 1, Ho, Wo) in range.

    For compiled code: ``torch.gather``'s indices are not tested for being negative, so each pixel's load is its
    index plus constants, where advanced indexing (``take_grid``) adds a test and a select per index and pixel."""
    B, C, H, W = x.shape
    Ho, Wo = index.shape[-2:]
    return torch.gather(x.reshape(B, C, 1, H * W).expand(B, C, Ho, H * W), 3, index.expand(B, C, Ho, Wo))


def resample_separable(x: Tensor, matrix: Tensor, size: tuple[int, int], fill: float = 0.0, extend: str = "edge",
                       dtype: torch.dtype | None = None, uint8: bool = False) -> Tensor:
    """``warp_affine`` for axis-aligned maps (flips, crops, resized crops): bilinear as two 1-D passes.

    Rows are gathered and blended first, then columns, so uint8 is read as uint8 and converted once, while the
    bilinear weights of a point are the product of its row and column weights, as in ``warp_affine``.
    x (B, C, H, W) uint8 or float; returns (B, C, Ho, Wo) in ``dtype`` (default: x's compute dtype). ``uint8``:
    float x holds uint8 values (a window copy, ``window_source``), which are divided by 255 as uint8 input is.
    Compiled, the per-row and per-column taps and weights are kept (``hints.keep``).
    """
    H, W = x.shape[-2:]
    dtype = dtype or compute_dtype(x.dtype)
    sy, sx = axis_points(matrix.to(dtype), size)
    r0, r1, wr0, wr1, in_r = _bilinear_taps(sy, H, extend)
    c0, c1, wc0, wc1, in_c = _bilinear_taps(sx, W, extend)
    # uint8 values are divided by 255 as they are read, never folded into the weights: 255 / 255 is exactly 1, and
    # values in [0, 1] blended by weights that sum to at most 1 cannot leave [0, 1], where 255 * (w / 255) can
    # round above w (1.0000001 was seen after a resized crop).
    unit = 255 if uint8 or x.dtype == torch.uint8 else None
    wr0, wr1 = wr0[:, None, :, None], wr1[:, None, :, None]  # (B, 1, Ho, 1)
    wc0, wc1 = wc0[:, None, None, :], wc1[:, None, None, :]  # (B, 1, 1, Wo)
    if torch.compiler.is_compiling():
        # Compiled, the four taps are read straight from the input in the one fused loop that writes the output:
        # no row-pass image is stored. Each pixel only loads its row's and its column's first tap and weights,
        # which the caller has inductor store (``hints.keep``): points outside the image get zero weights here instead
        # of a mask, so no per-pixel test is left.
        if extend != "fill":
            in_r, in_c = in_r[:, None, :, None].to(dtype), in_c[:, None, None, :].to(dtype)
            wr0, wr1, wc0, wc1 = wr0 * in_r, wr1 * in_r, wc0 * in_c, wc1 * in_c
        r0, row_step, wr0, wr1 = _tap_pair(r0[:, None, :, None], r1[:, None, :, None], wr0, wr1, H)
        c0, col_step, wc0, wc1 = _tap_pair(c0[:, None, None, :], c1[:, None, None, :], wc0, wc1, W)
        row_at = r0 * W
        hints.keep(row_at, c0, wr0, wr1, wc0, wc1)
        at, below = row_at + c0, row_step * W  # the flat index of each pixel's first tap; the taps' offsets
        rows = [_unit(take_flat(x, at + c), dtype, unit) * wr0 + _unit(take_flat(x, at + below + c), dtype, unit) * wr1
                for c in (0, col_step)]
        out = rows[0] * wc0 + rows[1] * wc1  # rows first, then columns, as the eager passes
        if extend != "fill":
            return out + fill * (1 - in_r * in_c) if fill else out
    else:
        # Eager, two 1-D passes written into one output. On a CPU the passes run over groups of samples whose
        # row-pass image stays small (CPU_BLOCK_BYTES): the allocator then hands the same memory back to every
        # group, where one batch-sized intermediate would be fresh, page-faulting memory on every call
        # (docs/design.md, "Eager groups"). Each group is still a batched call, not a per-sample loop.
        out = memory.empty((x.shape[0], x.shape[1], *size), dtype, x.device)
        row_bytes = x.shape[1] * size[0] * W * out.element_size()  # one sample's row-pass image
        step = max(1, CPU_BLOCK_BYTES // row_bytes) if x.device.type == "cpu" else x.shape[0]
        for s in range(0, x.shape[0], step):
            g = slice(s, s + step)
            rows = _unit(take_rows(x[g], r0[g]), dtype, unit).mul_(wr0[g])
            rows.addcmul_(_unit(take_rows(x[g], r1[g]), dtype, unit), wr1[g])
            target = None if rows.requires_grad else out[g]  # an out= argument has no gradient
            cols = torch.mul(take_cols(rows, c0[g]), wc0[g], out=target).addcmul_(take_cols(rows, c1[g]), wc1[g])
            if target is None:  # one more copy, for autograd only
                out[g] = cols
    if extend == "fill":
        return out.add_(fill * (1 - (wr0 + wr1) * (wc0 + wc1)))
    return _select(out, fill, ~(in_r[:, None, :, None] & in_c[:, None, None, :]), True)


# ----------------------------------------------------------------------------------------------- resampling
def sample_points(matrix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Source coordinates (sx, sy), each (B, Ho, Wo), read by every output pixel centre."""
    # A point is a column term plus a row term, each worked out in float64 and rounded once to the matrix dtype,
    # then added: no multiply-add is left for a compiler to fuse, so eager and compiled code get the same points.
    h, w = size
    dev, dt = matrix.device, matrix.dtype
    ys = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5).view(1, 1, w)
    m = matrix.double()[:, :2, :, None, None]  # (B, 2, 3, 1, 1)
    sx = (m[:, 0, 0] * xs).to(dt) + (m[:, 0, 1] * ys + m[:, 0, 2]).to(dt)
    sy = (m[:, 1, 0] * xs).to(dt) + (m[:, 1, 1] * ys + m[:, 1, 2]).to(dt)
    return sx, sy


# Where a point that a homography sends to or past the line at infinity (its third coordinate <= 0) is read
# from: far outside every image, so it takes the fill (the picture has no such point).
BEYOND = -4.0


def map_points(matrix: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Source coordinates (sx, sy), each (B, Ho, Wo), of the output pixel centres under ``matrix`` (B, 3, 3), affine
    or projective: (x, y, w) = matrix (j + 0.5, i + 0.5, 1), divided by w. For an affine matrix (last row 0, 0, 1)
    this is ``sample_points`` exactly (a divide by 1), at the cost of the divide: affine reads use that instead."""
    sx, sy = sample_points(matrix, size)
    h, w = size
    dev, dt = matrix.device, matrix.dtype
    ys = (torch.arange(h, device=dev, dtype=torch.float64) + 0.5).view(1, h, 1)
    xs = (torch.arange(w, device=dev, dtype=torch.float64) + 0.5).view(1, 1, w)
    m = matrix.double()[:, 2, :, None, None]  # (B, 3, 1, 1): the row that gives w
    den = ((m[:, 0] * xs).to(dt) + (m[:, 1] * ys + m[:, 2]).to(dt))
    ahead = den > 0
    den = torch.where(ahead, den, 1)
    return torch.where(ahead, sx / den, BEYOND), torch.where(ahead, sy / den, BEYOND)


def grid_points(size: tuple[int, int], batch: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """The output pixel centres (x, y), each (B, Ho, Wo): where a chain of maps evaluated point by point starts."""
    h, w = size
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5).view(1, h, 1).expand(batch, h, w)
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5).view(1, 1, w).expand(batch, h, w)
    return xs, ys


def move_points(matrix: Tensor, sx: Tensor, sy: Tensor) -> tuple[Tensor, Tensor]:
    """Points (sx, sy), each (B, ...), sent through the maps ``matrix`` (B, 3, 3) with the perspective divide."""
    m = matrix.to(sx.dtype).view(-1, 9, *([1] * (sx.dim() - 1))).unbind(1)
    den = m[6] * sx + m[7] * sy + m[8]
    ahead = den > 0
    den = torch.where(ahead, den, 1)
    x = torch.where(ahead, (m[0] * sx + m[1] * sy + m[2]) / den, BEYOND)
    y = torch.where(ahead, (m[3] * sx + m[4] * sy + m[5]) / den, BEYOND)
    return x, y


def displace_points(displacement: Tensor, sx: Tensor, sy: Tensor) -> tuple[Tensor, Tensor]:
    """Points (sx, sy) (B, Ho, Wo) of a dense map's output moved to its input: p + d(p), the displacement field
    (B, H, W, 2) (x, y pixels, given at the output's pixel centres) read bilinearly at p, its edges extended. At the
    pixel centres themselves (a field that no later map moves) this is the field's own value."""
    B, H, W, _ = displacement.shape
    field = displacement.permute(0, 3, 1, 2).to(sx.dtype)  # (B, 2, H, W)
    u, v = (sx - 0.5).clamp(0, W - 1), (sy - 0.5).clamp(0, H - 1)
    c0, r0 = torch.floor(u), torch.floor(v)
    wc, wr = (u - c0)[:, None], (v - r0)[:, None]
    c0, r0 = c0.long(), r0.long()
    c1, r1 = (c0 + 1).clamp(max=W - 1), (r0 + 1).clamp(max=H - 1)
    flat = field.flatten(2)

    def tap(r, c):
        return flat.gather(2, (r * W + c).view(B, 1, -1).expand(B, 2, -1)).view(B, 2, *sx.shape[1:])

    d = tap(r0, c0).lerp(tap(r0, c1), wc).lerp(tap(r1, c0).lerp(tap(r1, c1), wc), wr)
    return sx + d[:, 0], sy + d[:, 1]


def points_inside(sx: Tensor, sy: Tensor, in_size: tuple[int, int]) -> Tensor:
    """(B, 1, Ho, Wo) bool: the points (sx, sy) lie inside the input image [0, W] x [0, H] (ints, or (B,) tensors
    per sample)."""
    h, w = (per_sample(v, sx.dim()) for v in in_size)
    return ((sx >= 0) & (sx <= w) & (sy >= 0) & (sy <= h))[:, None]


def inside_mask(matrix: Tensor, in_size: tuple[int, int], out_size: tuple[int, int],
                axis_aligned: bool = False, projective: bool = False) -> Tensor:
    """(B, 1, Ho, Wo) bool: the output pixel centre maps inside the input image [0, W] x [0, H].

    For an axis-aligned map the test is a row test (B, 1, Ho, 1) and a column test (B, 1, 1, Wo), broadcast:
    no per-pixel coordinate map is made.
    """
    if not axis_aligned:
        return points_inside(*(map_points if projective else sample_points)(matrix, out_size), in_size)
    sy, sx = axis_points(matrix, out_size)
    h, w = (per_sample(v, 2) for v in in_size)
    rows = (sy >= 0) & (sy <= h)
    cols = (sx >= 0) & (sx <= w)
    return rows[:, None, :, None] & cols[:, None, None, :]


def warp_affine(x: Tensor, matrix: Tensor, size: tuple[int, int], fill: float = 0.0, extend: str = "edge",
                dtype: torch.dtype | None = None, uint8: bool = False, projective: bool = False) -> Tensor:
    """Bilinear resample of x at ``matrix`` (out -> in pixel coordinates) into ``size``; ``projective``: the
    matrix may be a homography (its points are divided by their third coordinate, ``map_points``).

    extend="edge": points inside the image [0, W] x [0, H] interpolate with the edge pixels extended (as
    ``F.interpolate`` and ``grid_sample(padding_mode="border")`` do) and points outside take ``fill``; the hard
    edge keeps whole-pixel maps exact.
    extend="fill": the image is taken as surrounded by ``fill`` pixels, so the border blends into the fill, as
    padding and then resampling would (a padded crop or a rotation).
    x (B, C, H, W) uint8 or float; matrix (B, 3, 3); returns (B, C, Ho, Wo) in ``dtype`` (default: x's compute
    dtype). ``uint8``: float x holds uint8 values, divided by 255 as uint8 input is (see ``resample_separable``).
    """
    dtype = dtype or compute_dtype(x.dtype)
    sx, sy = (map_points if projective else sample_points)(matrix.to(dtype), size)
    return warp_points(x, sx, sy, fill, extend, dtype, uint8)


def warp_points(x: Tensor, sx: Tensor, sy: Tensor, fill: float = 0.0, extend: str = "edge",
                dtype: torch.dtype | None = None, uint8: bool = False) -> Tensor:
    """Bilinear read of x at the source points (sx, sy), each (B, Ho, Wo) in pixel coordinates: the read of every
    map that is neither whole-pixel nor axis-aligned (a rotation, a homography, a dense field). Borders as
    ``warp_affine``'s ``extend``.

    The four taps are gathered and weighted here rather than by ``grid_sample``: its grid is normalized to
    [-1, 1] and back, roundings that torch.compile rearranges (multiply-adds fuse on a GPU), so compiled and eager
    results drifted apart by more than 1e-5 after Normalize. These weights are computed the same way by both.
    """
    B, C, H, W = x.shape
    size = tuple(sx.shape[-2:])
    dtype = dtype or compute_dtype(x.dtype)
    u, v = sx - 0.5, sy - 0.5  # pixel-centre index space
    c0, r0 = torch.floor(u), torch.floor(v)
    wc1, wr1 = (u - c0)[:, None], (v - r0)[:, None]  # (B, 1, Ho, Wo)
    image = x.to(dtype) / 255 if uint8 else to_float(x, dtype)  # 255 / 255 is exactly 1
    pad = int(extend == "fill")
    if pad:  # the image surrounded by fill pixels: a tap outside reads the fill, one pixel out or further
        image = F.pad(image, (1, 1, 1, 1), value=fill)
    Hp, Wp = image.shape[-2:]
    # Clamped tap positions and their flat index, kept in floating point (exact below 2^24 pixels) and converted
    # once per tap: integer tensors cost twice the bytes of every step on the way.
    exact = dtype if Hp * Wp <= 1 << 24 else torch.float64
    rows = [(r + pad).clamp(0, Hp - 1).to(exact) * Wp for r in (r0, r0 + 1)]
    cols = [(c + pad).clamp(0, Wp - 1).to(exact) for c in (c0, c0 + 1)]
    flat = image.flatten(2)  # (B, C, Hp Wp)

    def tap(row, col):
        return flat.gather(2, (row + col).long().view(B, 1, -1).expand(B, C, -1)).view(B, C, *size)

    # Two lerps along a row, one between them: each stays between its two values (torch.lerp is exact at both
    # ends), so the output stays within the range of its four taps. Four products of weights summed may not: they
    # added up to 1.0000001 on a white image.
    top = tap(rows[0], cols[0]).lerp_(tap(rows[0], cols[1]), wc1)
    out = top.lerp_(tap(rows[1], cols[0]).lerp_(tap(rows[1], cols[1]), wc1), wr1)
    if pad:
        return out
    return _select(out, fill, ~points_inside(sx, sy, (H, W)), True)


# ----------------------------------------------------------------------------------------------- images of own sizes
class Flat(NamedTuple):
    """Images of their own sizes, each (C, H_b, W_b) laid out one after another in one buffer: sample b's pixel
    (c, y, x) is ``data[offsets[b] + (c H_b + y) W_b + x]`` (``augpipe.PackedImages``). ``sizes``: the
    ``ops.Sizes`` (per-sample (H, W) and their bounds). A batch of one size is such a buffer too (``flat_view``)."""

    data: Tensor  # (N,)
    offsets: Tensor  # (B,) int64
    sizes: "object"  # ops.Sizes
    channels: int

    @property
    def batch(self) -> int:
        return self.offsets.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device


def flat_view(x: Tensor, sizes) -> Flat:
    """A (B, C, H, W) batch as a ``Flat`` without a copy (a non-contiguous batch is copied once)."""
    B, C, H, W = x.shape
    offsets = torch.arange(B, device=x.device) * (C * H * W)
    return Flat(x.contiguous().view(-1), offsets, sizes, C)


def _flat_base(flat: Flat) -> tuple[Tensor, Tensor]:
    """(base (B, C, 1, 1), width (B, 1)): the start of each sample's channel planes, and each sample's row length."""
    h, w = (v.long() for v in flat.sizes.per_sample())
    planes = torch.arange(flat.channels, device=flat.offsets.device) * (h * w)[:, None]  # (B, C)
    return (flat.offsets[:, None] + planes)[:, :, None, None], w[:, None]


def _flat_take(flat: Flat, index: Tensor, dtype, unit) -> Tensor:
    """The values at ``index`` (B, C, Ho, Wo) of ``flat.data``, in ``dtype``, divided by ``unit`` where given."""
    return _unit(flat.data[index], dtype, unit)


def axis_taps(coord: Tensor, extent: Tensor, scale: Tensor, k: int, antialias: bool):
    """The k source pixels an output position reads along one axis, and their weights, as PIL's bilinear resize:
    a triangle of half-width ``support`` = max(scale, 1) about the point (scale: source pixels per output pixel)
    when ``antialias``, else 1 (plain bilinear, two pixels); taps outside [0, extent) weigh nothing.

    coord (B, n): the source coordinate of each output pixel centre; extent, scale (B, 1). Returns index (B, n, k)
    in range, weight (B, n, k) over the taps as if the image went on (summing to 1 inside the image), and
    ``inside`` (B, n, k) bool. A k smaller than 2 support + 1 cuts the support short (less smoothing)."""
    support = scale.clamp(min=1)[..., None] if antialias else torch.ones_like(scale)[..., None]  # (B, 1, 1)
    centre = coord[..., None]
    first = torch.floor(centre - support + 0.5)
    pixel = first + torch.arange(k, device=coord.device, dtype=coord.dtype)  # (B, n, k)
    weight = (1 - ((pixel + 0.5 - centre) / support).abs()).clamp(min=0)
    weight = weight / weight.sum(-1, keepdim=True).clamp(min=1e-12)
    ext = extent[..., None].to(coord.dtype)
    inside = (pixel >= 0) & (pixel < ext)
    index = torch.minimum(pixel.clamp(min=0), ext - 1).long()
    return index, weight, inside


def axis_tap_count(scale_bound: float, antialias: bool) -> int:
    """Taps per axis that cover the triangle of every scale up to ``scale_bound``: 2 support + 1, or 2."""
    if not antialias or scale_bound <= 1:
        return 2
    return int(math.ceil(2 * scale_bound)) + 1


def read_axis(flat: Flat, matrix: Tensor, size: tuple[int, int], taps: tuple[int, int], antialias: bool,
              fill: float = 0.0, extend: str = "edge", dtype: torch.dtype = torch.float32) -> Tensor:
    """An axis-aligned read of images of their own sizes (``Flat``): bilinear, or with ``antialias`` as PIL's
    bilinear resize, which averages a downscaled pixel's whole footprint (``axis_taps``; ``taps`` = (rows,
    columns) per output pixel). ``extend`` as ``warp_affine``'s: "edge" gives the taps inside the image all the
    weight (PIL's rule at the image edge), and points outside the image the fill; "fill" takes the image as
    surrounded by fill pixels. Returns (B, C, Ho, Wo) in ``dtype``."""
    m = matrix.double()
    sy, sx = axis_points(m, size)
    heights, widths = (v[:, None] for v in flat.sizes.per_sample())
    rows, wr, in_r = axis_taps(sy, heights, m[:, 1, 1, None].abs(), taps[0], antialias)
    cols, wc, in_c = axis_taps(sx, widths, m[:, 0, 0, None].abs(), taps[1], antialias)
    wr, wc = (w * inside for w, inside in ((wr, in_r), (wc, in_c)))
    if extend == "edge":  # the taps inside carry all the weight
        wr, wc = (w / w.sum(-1, keepdim=True).clamp(min=1e-12) for w in (wr, wc))
    wr, wc = wr.to(dtype), wc.to(dtype)
    unit = 255 if flat.data.dtype == torch.uint8 else None
    base, width = _flat_base(flat)
    row_at = rows * width[..., None]  # (B, Ho, kr)
    # per-sample tables every pixel reads: stored once by a compiled call, not worked out again per pixel
    hints.keep(base, row_at, cols, wr, wc)
    widest = flat.sizes.high[1]
    if taps[0] * taps[1] > taps[0] * widest / size[1] + taps[1]:
        out = _read_rows_then_columns(flat, base + row_at[:, None], wr, cols, wc, widest, dtype, unit)
    else:
        out = None
        for i in range(taps[0]):
            line = None
            for j in range(taps[1]):
                index = base + row_at[:, None, :, i, None] + cols[:, None, None, :, j]
                term = _flat_take(flat, index, dtype, unit) * wc[:, None, None, :, j]
                line = term if line is None else line + term
            term = line * wr[:, None, :, i, None]
            out = term if out is None else out + term
    if extend == "fill":
        covered = wr.sum(-1)[:, None, :, None] * wc.sum(-1)[:, None, None, :]
        out = out + fill * (1 - covered)
    else:
        inside = (((sy >= 0) & (sy <= heights))[:, None, :, None] & ((sx >= 0) & (sx <= widths))[:, None, None, :])
        out = torch.where(inside, out, _scalar(fill, out))
    return out.clamp(min(0.0, fill), max(1.0, fill)) if unit else out


def _read_rows_then_columns(flat: Flat, starts: Tensor, wr: Tensor, cols: Tensor, wc: Tensor, widest: int, dtype,
                            unit) -> Tensor:
    """A separable read, for many taps per axis (a large antialiased downscale): each output row first blends its
    source rows into a row of the batch's widest width, then each output pixel blends its columns of that row.
    starts (B, C, Ho, kr): where each tap's source row begins in the buffer; wr (B, Ho, kr), cols and wc
    (B, Wo, kc). A row read past its image's width reads the next row's pixels, which no column tap uses."""
    data = flat.data
    if torch.compiler.is_compiling():  # a gather per value, fused into the blend
        def window(k):
            return data[(starts[..., k, None] + torch.arange(widest, device=data.device)).clamp(max=data.numel() - 1)]
    else:  # each row a strided window of the buffer, padded so the last one fits: copies of rows, no index per value
        rows = torch.cat((data, data.new_zeros(widest))).unfold(0, widest, 1)

        def window(k):  # index_select copies whole rows; advanced indexing copied value by value, 8x slower
            return torch.index_select(rows, 0, starts[..., k].flatten()).view(*starts.shape[:-1], widest)
    wr = wr / unit if unit else wr  # uint8 values scaled to [0, 1] through the row weights
    blended = window(0).to(dtype).mul_(wr[:, None, :, 0, None])
    for k in range(1, starts.shape[-1]):
        blended.addcmul_(window(k).to(dtype), wr[:, None, :, k, None])
    B, C, Ho, _ = blended.shape
    index = cols[:, None, None, :, 0].expand(B, C, Ho, cols.shape[1])
    out = blended.gather(3, index).mul_(wc[:, None, None, :, 0])
    for k in range(1, cols.shape[-1]):
        index = cols[:, None, None, :, k].expand(B, C, Ho, cols.shape[1])
        out.addcmul_(blended.gather(3, index), wc[:, None, None, :, k])
    return out


def read_exact(flat: Flat, rows: Tensor, cols: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Whole pixels (B, C, Ho, Wo) of images of their own sizes: output (i, j) of sample b is its source pixel
    (rows[b, i], cols[b, j]), indices in range (``exact_map``). In ``dtype`` (None: the data's own dtype)."""
    base, width = _flat_base(flat)
    row_at = rows * width
    hints.keep(base, row_at, cols)
    values = flat.data[base + row_at[:, None, :, None] + cols[:, None, None, :]]
    if dtype is None:
        return values
    return _unit(values, dtype, 255 if flat.data.dtype == torch.uint8 else None)


def read_points(flat: Flat, sx: Tensor, sy: Tensor, fill: float = 0.0, extend: str = "edge",
                dtype: torch.dtype = torch.float32) -> Tensor:
    """``warp_points`` for images of their own sizes: a bilinear read at the source points (sx, sy), each
    (B, Ho, Wo) in pixels. ``extend`` as ``warp_affine``'s."""
    heights, widths = (v.view(-1, 1, 1) for v in flat.sizes.per_sample())
    u, v = sx - 0.5, sy - 0.5
    c0, r0 = torch.floor(u), torch.floor(v)
    wc1, wr1 = (u - c0), (v - r0)
    unit = 255 if flat.data.dtype == torch.uint8 else None
    base, width = _flat_base(flat)
    width = width[..., None]

    def tap(r, c):
        inside = (r >= 0) & (r < heights) & (c >= 0) & (c < widths)
        r, c = torch.minimum(r.clamp(min=0), heights - 1), torch.minimum(c.clamp(min=0), widths - 1)
        value = _flat_take(flat, base + (r * width + c).long()[:, None], dtype, unit)
        if extend == "fill":
            value = torch.where(inside[:, None], value, _scalar(fill, value))
        return value

    top = tap(r0, c0).lerp_(tap(r0, c0 + 1), wc1[:, None].to(dtype))
    out = top.lerp_(tap(r0 + 1, c0).lerp_(tap(r0 + 1, c0 + 1), wc1[:, None].to(dtype)), wr1[:, None].to(dtype))
    if extend == "fill":
        return out
    return _select(out, fill, ~points_inside(sx, sy, (heights[:, 0, 0], widths[:, 0, 0])), True)


def read_nearest(flat: Flat, sx: Tensor, sy: Tensor, fill=0) -> Tensor:
    """Nearest read of label maps of their own sizes (a packed mask) at the points (sx, sy) (B, Ho, Wo): ``fill``
    outside."""
    heights, widths = (v.view(-1, 1, 1) for v in flat.sizes.per_sample())
    r, c = torch.floor(sy), torch.floor(sx)
    inside = (r >= 0) & (r < heights) & (c >= 0) & (c < widths)
    r, c = torch.minimum(r.clamp(min=0), heights - 1), torch.minimum(c.clamp(min=0), widths - 1)
    base, width = _flat_base(flat)
    values = flat.data[base + (r * width[..., None] + c).long()[:, None]]
    return torch.where(inside[:, None], values, torch.full((), fill, dtype=values.dtype, device=values.device))


def affine_rows(m00: Tensor, m01: Tensor, m02: Tensor, m10: Tensor, m11: Tensor, m12: Tensor) -> Tensor:
    """(B, 3, 3) affine matrices [[m00, m01, m02], [m10, m11, m12], [0, 0, 1]] from six (B,) tensors."""
    zero, one = torch.zeros_like(m00), torch.ones_like(m00)
    return torch.stack((m00, m01, m02, m10, m11, m12, zero, zero, one), -1).view(-1, 3, 3)


def affine_matrix(angle: Tensor, translate: Tensor, scale: Tensor, shear: Tensor, size: tuple[int, int]) -> Tensor:
    """Sampling matrix (B, 3, 3) of the affine map about the image centre, in torchvision's ``affine`` convention.

    The forward map is p -> c + t + s R(angle) Shy(shear y) Shx(shear x) (p - c) with torchvision's signs: a
    positive angle turns the image clockwise on screen, Shx(a) = [[1, -tan a], [0, 1]], Shy(a) = [[1, 0],
    [-tan a, 1]]; translate (B, 2) = (tx, ty) pixels, scale (B,), shear (B, 2) = (x, y) degrees. (torchvision's
    ``rotate``, and so RandomRotation, turns the other way: it passes -angle.) Returned is the inverse, as every
    sampling matrix maps output to input.
    """
    dt = torch.float64
    a = torch.deg2rad(angle.to(dt))
    tan_x, tan_y = torch.tan(torch.deg2rad(shear.to(dt))).unbind(-1)
    cos, sin, s = torch.cos(a), torch.sin(a), scale.to(dt)
    # R (y axis points down, so clockwise is [[cos, -sin], [sin, cos]]) times Shy Shx = [[1, -tx], [-ty, 1 + ty tx]]
    m00, m01 = s * (cos + sin * tan_y), s * (-cos * tan_x - sin * (1 + tan_y * tan_x))
    m10, m11 = s * (sin - cos * tan_y), s * (-sin * tan_x + cos * (1 + tan_y * tan_x))
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det  # inverse of the 2 x 2 part
    cx, cy = size[1] / 2, size[0] / 2
    dx, dy = -cx - translate[:, 0].to(dt), -cy - translate[:, 1].to(dt)  # undo the shift, then the centring
    return affine_rows(i00, i01, cx + i00 * dx + i01 * dy, i10, i11, cy + i10 * dx + i11 * dy).float()


def sample_nearest(x: Tensor, matrix: Tensor, size: tuple[int, int], fill: float = 0,
                   projective: bool = False) -> Tensor:
    """Nearest-neighbour resample at ``matrix`` (label maps: values are copied, never blended); fill outside.

    x (B, C, H, W) any dtype; returns (B, C, Ho, Wo) in x's dtype.
    """
    sx, sy = (map_points if projective else sample_points)(matrix.float(), size)
    return nearest_points(x, sx, sy, fill)


def nearest_points(x: Tensor, sx: Tensor, sy: Tensor, fill: float = 0) -> Tensor:
    """x read at the points (sx, sy) (B, Ho, Wo), each taking the pixel that contains it; ``fill`` outside."""
    B, C, H, W = x.shape
    col = torch.floor(sx).long().clamp(0, W - 1)  # the pixel containing the point, edge pixels extended
    row = torch.floor(sy).long().clamp(0, H - 1)
    index = (row * W + col).view(B, 1, -1).expand(B, C, -1)
    out = x.flatten(2).gather(2, index).view(B, C, *sx.shape[1:])
    return torch.where(points_inside(sx, sy, (H, W)), out, _scalar(fill, x))


def compose(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for batches of 3 x 3 maps (B, 3, 3), as three broadcast products summed in order. Compiled, this
    fuses with the arithmetic that makes and uses the matrices, where a matmul is a library call of its own (on a
    GPU one more launch per call; docs/design.md, "GPU").

    Worked out in float64 and rounded once to ``a``'s dtype: Triton fuses a * b + c into one rounding (an FMA)
    where eager rounds twice, and in float32 that last-bit difference in a resized crop's matrix moves compiled
    pixels measurably away from eager ones on a GPU; in float64 both round to the same float32 matrix."""
    a64, b64 = a.double(), b.double()
    product = (a64[:, :, 0, None] * b64[:, None, 0, :] + a64[:, :, 1, None] * b64[:, None, 1, :]
               + a64[:, :, 2, None] * b64[:, None, 2, :])
    return product.to(a.dtype)


def invert_map(matrix: Tensor) -> Tensor:
    """Inverse of maps (B, 3, 3), affine or projective, by the adjugate (no solver, no host sync), scaled so the
    last entry is 1 where it can be: a sampling matrix (out -> in) becomes the forward map (in -> out)."""
    m = matrix.double()
    a, b, c, d, e, f, g, h, i = m.flatten(1).unbind(1)
    adj = torch.stack((e * i - f * h, c * h - b * i, b * f - c * e,
                       f * g - d * i, a * i - c * g, c * d - a * f,
                       d * h - e * g, b * g - a * h, a * e - b * d), 1)
    last = adj[:, 8:9]
    adj = adj / torch.where(last.abs() > 1e-12, last, 1)
    return adj.view(-1, 3, 3).to(matrix.dtype)


def _moved(points: Tensor, forward: Tensor) -> Tensor:
    """Points (B, N, 2) xy through the forward maps (B, 3, 3), divided by their third coordinate; NaN where that
    is not positive (the point leaves the picture through the line at infinity)."""
    f = forward.to(points.dtype)
    moved = points @ f[:, :2, :2].transpose(1, 2) + f[:, None, :2, 2]
    den = points @ f[:, 2, :2, None] + f[:, None, 2, 2:]  # (B, N, 1)
    return torch.where(den > 0, moved / den, float("nan"))


def transform_points(points: Tensor, forward: Tensor, size: tuple[int, int]) -> Tensor:
    """Move points (B, K, 2) xy by the forward maps (B, 3, 3), affine or projective; points that leave
    [0, W] x [0, H] become NaN."""
    moved = _moved(points, forward)
    x, y = moved.unbind(-1)
    h, w = (per_sample(v, x.dim()) for v in size)
    inside = (x >= 0) & (x <= w) & (y >= 0) & (y <= h)
    return torch.where(inside[..., None], moved, torch.full_like(moved, float("nan")))


def transform_boxes(boxes: Tensor, forward: Tensor, size: tuple[int, int]) -> Tensor:
    """Move boxes (B, N, 4) xyxy by the forward maps: the box around the moved corners, clipped to the image.

    A homography maps segments to segments while the box stays on one side of the line at infinity, so the moved
    box is the quadrilateral of its moved corners, and the box around those bounds it exactly. Boxes left with no
    area (or with a corner sent to infinity) become NaN rows, like the NaN rows that pad a batch.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    corners = torch.stack((torch.stack((x1, y1), -1), torch.stack((x2, y1), -1), torch.stack((x1, y2), -1),
                           torch.stack((x2, y2), -1)), dim=2)  # (B, N, 4, 2)
    moved = _moved(corners.flatten(1, 2), forward).view(corners.shape)
    lo, hi = moved.amin(2), moved.amax(2)  # (B, N, 2); NaN rows stay NaN
    out = _clamp_xy(torch.cat((lo, hi), -1).clamp(min=0), size)
    empty = (out[..., 2:] <= out[..., :2]).any(-1, keepdim=True) | out.isnan().any(-1, keepdim=True)
    return torch.where(empty, torch.full_like(out, float("nan")), out)


def square_to_quad(quad: Tensor) -> Tensor:
    """The homographies (B, 3, 3) that send the unit square's corners (0, 0), (1, 0), (1, 1), (0, 1) to ``quad``
    (B, 4, 2), in that order, in closed form (Heckbert 1989): no solver, so nothing waits on a device. An affine
    quad (a parallelogram) gives the last row (0, 0, 1)."""
    q = quad.double()
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (q[:, k].unbind(-1) for k in range(4))
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    den = dx1 * dy2 - dx2 * dy1
    g = (dx3 * dy2 - dx2 * dy3) / den
    h = (dx1 * dy3 - dx3 * dy1) / den
    one = torch.ones_like(g)
    rows = (x1 - x0 + g * x1, x3 - x0 + h * x3, x0, y1 - y0 + g * y1, y3 - y0 + h * y3, y0, g, h, one)
    return torch.stack(rows, -1).view(-1, 3, 3)


def perspective_matrix(start: Tensor, end: Tensor) -> Tensor:
    """Sampling matrices (B, 3, 3) of the homographies that send the corners ``start`` (B, 4, 2) onto ``end``
    (B, 4, 2): an output point on end's quad reads the input at the matching point of start's. Corner coordinates
    are taken as pixel coordinates as given (torchvision's perspective takes its corner pixels' indices so), and the
    map is the one homography through the four pairs: start's square-to-quad after the inverse of end's."""
    m = compose(square_to_quad(start), invert_map(square_to_quad(end)))
    m = m / m[:, 2:3, 2:3]
    # Three end corners on one line (possible for a strong distortion of a small image) have no homography: such a
    # sample keeps the identity map rather than reading NaN points.
    finite = torch.isfinite(m).flatten(1).all(1).view(-1, 1, 1)
    return torch.where(finite, m, torch.eye(3, dtype=m.dtype, device=m.device)).float()


def gaussian_kernel(sigma: float, device=None) -> Tensor:
    """A normalized 1-D Gaussian of std ``sigma`` (float64), int(8 sigma + 1) taps rounded up to odd, as
    torchvision's elastic displacement blur: the weights at integer offsets from the centre, summed to 1."""
    k = int(8 * sigma + 1)
    k += 1 - k % 2
    x = torch.arange(k, dtype=torch.float64, device=device) - (k - 1) / 2
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def blur_reflect(x: Tensor, kernel: Tensor) -> Tensor:
    """x (B, C, H, W) convolved with the 1-D ``kernel`` along rows and then columns, its edges mirrored without
    repeating the edge pixel (``F.pad``'s "reflect", folded again where the kernel reaches past a small image)."""
    k = kernel.numel()
    r = k // 2
    w = kernel.to(x)
    for dim in (x.dim() - 1, x.dim() - 2):
        n = x.shape[dim]
        index = _remap_index(torch.arange(-r, n + r, device=x.device), n, "reflect")
        x = x.index_select(dim, index).unfold(dim, k, 1) @ w  # each pixel's k neighbours along dim, weighted
    return x


def elastic_displacement(noise: Tensor, alpha: float, sigma: float) -> Tensor:
    """Displacement fields (B, H, W, 2), (x, y) in pixels, from uniform noise (B, 2, H, W) in [-1, 1]: each
    component blurred by a Gaussian of std ``sigma`` (``gaussian_kernel``, mirrored edges) and scaled by alpha / 2.
    torchvision scales by alpha / W (x) and alpha / H (y) in grid units, whose pixel size is W / 2 and H / 2: the
    same alpha / 2 pixels per unit of smoothed noise along either axis (docs/references.md, "Geometry")."""
    d = noise
    if sigma > 0:
        d = blur_reflect(d, gaussian_kernel(sigma, d.device))
    return (d * (alpha / 2)).permute(0, 2, 3, 1)


def resized_crop(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop each sample to its box (B, 4) = (top, left, height, width) in pixels and resize bilinearly to size."""
    return warp_affine(x, resized_crop_matrix(boxes, size), size)


def resized_crop_matrix(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Sampling matrix (B, 3, 3) that maps an output of ``size`` onto the box (top, left, height, width)."""
    top, left, h, w = boxes.unbind(-1)
    zero = torch.zeros_like(top)
    return affine_rows(w / size[1], zero, left, zero, h / size[0], top)


# ----------------------------------------------------------------------------------------------- photometric
# The pointwise kernels overwrite their input only where the executor says it may (``hints.writable``: the batch
# it made itself), so a chain of them writes one buffer instead of allocating a new image per step (fresh memory
# is the main cost of eager execution on a CPU).
def _scaled(x: Tensor, factor: Tensor) -> Tensor:
    return x.mul_(factor) if hints.writable(x) else x * factor


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f * x, 0, 1) with f (B,) per sample (torchvision adjust_brightness)."""
    return _scaled(x, factor.to(x.dtype).view(-1, 1, 1, 1)).clamp_(0, 1)


def grayscale_mean(x: Tensor) -> Tensor:
    """Per-image mean of the grayscale image (B, 1, 1, 1); single-channel images use the plain mean.

    The mean of 0.299 R + 0.587 G + 0.114 B over the pixels, without making the grayscale image: eagerly, the same
    blend of the channel means; compiled, one sum per image of each pixel times its channel's weight over the pixel
    count. Compiled, the blend of channel means was inlined into the loop that reads the mean, which blended them
    again for every 8 pixels (three scalar divisions each); the one sum is stored as one number per image. (Eagerly
    that sum would make an image-sized product first.)
    """
    if x.shape[1] != 3:
        return x.mean((1, 2, 3)).view(-1, 1, 1, 1)
    if not torch.compiler.is_compiling():
        r, g, b = x.mean((2, 3)).unbind(1)
        return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).view(-1, 1, 1, 1)
    n = x.shape[2] * x.shape[3]
    channel = torch.arange(3, device=x.device).view(1, 3, 1, 1)
    weight = torch.full((1, 3, 1, 1), GRAY_WEIGHTS[2] / n, dtype=x.dtype, device=x.device)  # no host copy
    weight = torch.where(channel == 0, GRAY_WEIGHTS[0] / n, torch.where(channel == 1, GRAY_WEIGHTS[1] / n, weight))
    return (x * weight).sum((1, 2, 3)).view(-1, 1, 1, 1)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f * x + (1 - f) * m, 0, 1), m the image's grayscale mean (torchvision adjust_contrast)."""
    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    m = grayscale_mean(x)  # read before x may be overwritten
    return _scaled(x, f).add_((1 - f) * m).clamp_(0, 1)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std per channel; mean and std are (C,), kept for a compiled call (``hints.keep``)."""
    hints.keep(mean, std)
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return (x.sub_(mean) if hints.writable(x) else x - mean).div_(std)


# ----------------------------------------------------------------------------------------------- erase and mix
def box_mask(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) bool, true inside any of the boxes (B, N, 4) or (B, 4) of (y1, x1, y2, x2).

    Built from a row test (B, N, H) and a column test (B, N, W), each 0 or 1 in float32: a pixel is inside a box
    where their product is 1. Compiled, the two tests are kept (``hints.keep``), so inductor stores them once and
    each pixel loads its column test as part of a vector, where it would otherwise compare a vector of indices with
    the box's edges itself, converted from int64 (docs/design.md, "Compiling").
    """
    if boxes.dim() == 2:
        boxes = boxes[:, None]
    h, w = size
    ys = torch.arange(h, device=boxes.device, dtype=torch.float32)
    xs = torch.arange(w, device=boxes.device, dtype=torch.float32)
    boxes = boxes.to(torch.float32)
    rows = ((ys >= boxes[..., 0, None]) & (ys < boxes[..., 2, None])).to(torch.float32)  # (B, N, H)
    cols = ((xs >= boxes[..., 1, None]) & (xs < boxes[..., 3, None])).to(torch.float32)  # (B, N, W)
    hints.keep(rows, cols)
    inside = rows[..., :, None] * cols[..., None, :] != 0  # (B, N, H, W)
    return (inside[:, 0] if inside.shape[1] == 1 else inside.any(1))[:, None]


def cutout_boxes(centres: Tensor, side: int, size: tuple[int, int]) -> Tensor:
    """Squares of ``side`` centred at (cy, cx) (B, N, 2), clipped to the image (DeVries & Taylor)."""
    lo = centres - side // 2
    hi = lo + side
    return torch.cat((lo.clamp(min=0), hi[..., :1].clamp(max=size[0]), hi[..., 1:].clamp(max=size[1])), dim=-1)


def select(x: Tensor, other: Tensor, mask: Tensor) -> Tensor:
    """``other`` where the bool ``mask`` is true, else ``x``: where(mask, other, x); written into x where the
    executor says it may (``hints.writable``)."""
    return _select(x, other, mask, hints.writable(x))


def _select(x: Tensor, other: Tensor, mask: Tensor, inplace: bool) -> Tensor:
    """``select``, writing into x when ``inplace`` (a tensor the caller made itself).

    Eager, float images use lerp with a 0/1 weight, which is exact at 0 and 1 and several times faster than a
    broadcast boolean where on a CPU; label maps (integers) and compiled graphs use where.
    """
    if not x.is_floating_point() or torch.compiler.is_compiling():  # compiled, where fuses into its neighbours
        if not x.is_floating_point() and not isinstance(other, Tensor):
            other = _scalar(other, x)  # a Python int would promote a bool or int8 label map to int64
        return torch.where(mask, other, x)
    weight = mask.to(x.dtype)
    other = _scalar(other, x) if not isinstance(other, Tensor) else other
    return x.lerp_(other, weight) if inplace else torch.lerp(x, other, weight)


def cutout(x: Tensor, boxes: Tensor, fill: float = 0.0) -> Tensor:
    """Set the pixels inside the boxes (B, N, 4) to ``fill`` (images or label maps)."""
    return select(x, fill, box_mask(boxes, x.shape[-2:]))


def partner(x: Tensor, perm: Tensor) -> Tensor:
    """x[perm] as a new tensor: index_select copies whole samples (several times faster than x[perm] here)."""
    if torch.compiler.is_compiling() or x.requires_grad:  # an out= argument has no gradient
        return x.index_select(0, perm)
    return torch.index_select(x, 0, perm, out=memory.empty((len(perm), *x.shape[1:]), x.dtype, x.device))


def mixup(x: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    """lam * x + (1 - lam) * x[perm] with lam (B,) per sample and perm a permutation of the batch.

    Written into the partner copy, the one new tensor: x[perm] + lam (x - x[perm]).
    """
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return partner(x, perm).lerp_(x, lam)


# Device types on which a compiled CutMix reads each pixel from the one sample it shows, its own or its partner's
# (a gather over the batch), where ``where(mask, x[perm], x)`` loads both. Inductor stores x once either way under
# its default options (so a GPU pass reads 4 bytes a pixel less); with its realize thresholds raised, only the
# gather form leaves x unstored, each pixel computing its chain once, for the sample it shows (a CPU stand-in of
# the CUDA graph, CIFAR recipe: the output the only image stored; ``benchmarks/gpu_check.sh`` measures that
# option). Not on a CPU, whose C++ loops load a gathered sample lane by lane (docs/design.md, "GPU").
SAMPLE_GATHER_DEVICES = frozenset({"cuda"})


def cutmix(x: Tensor, boxes: Tensor, perm: Tensor) -> Tensor:
    """Paste the partner's pixels x[perm] inside each sample's box (B, 4)."""
    mask = box_mask(boxes, x.shape[-2:])
    if torch.compiler.is_compiling() and x.device.type in SAMPLE_GATHER_DEVICES:
        own = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1, 1)
        return torch.gather(x, 0, torch.where(mask, perm.view(-1, 1, 1, 1), own).expand_as(x))
    return select(x, partner(x, perm), mask)


def cutmix_lambda(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """1 - box area / image area: the exact fraction of the sample's own pixels that CutMix keeps. (B,)"""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return 1 - area.double() / (size[0] * size[1])


def label_smoothing(targets: Tensor, eps: float) -> Tensor:
    """(1 - eps) * y + eps / K for soft targets (B, K) (Szegedy et al. 2016)."""
    return (1 - eps) * targets + eps / targets.shape[-1]


# ----------------------------------------------------------------------------------------------- fractional pooling
def graham_pseudorandom_sequence(n_in: int, n_out: int, u: Tensor) -> Tensor:
    """Boundaries a_i = ceil(alpha (i + u)) - ceil(alpha u), i = 0..n_out, alpha = n_in / n_out (Graham 2014).

    u (B,) in (0, 1); returns (B, n_out + 1) integers with a_0 = 0, a_n_out = n_in and increments of 1 or 2.
    Only s = n_in u is computed in floating point; the rest is integer arithmetic on
    ceil((n_in i + s) / n_out), so no rounding can move the last boundary off n_in.
    """
    s = n_in * u.to(torch.float64)[:, None]  # (B, 1)
    f = torch.floor(s).long()
    i = torch.arange(n_out + 1, device=u.device)
    num = n_in * i + f  # (B, n_out + 1)
    # s not whole: ceil((n_in i + s) / n_out) = (n_in i + f) // n_out + 1, and the +1 cancels in the difference
    fractional = num // n_out - f // n_out
    whole = -((-num) // n_out) + (-f) // n_out  # ceil(num / n_out) - ceil(f / n_out)
    return torch.where(s == f, whole, fractional)


def graham_random_sequence(n_in: int, n_out: int, batch: int, generator: torch.Generator | None = None,
                           device: torch.device | str | None = None) -> Tensor:
    """Boundaries whose increments are a random permutation of (n_in - n_out) twos and (2 n_out - n_in) ones.

    One independent permutation per sample, drawn by sorting uniform keys (no loop). Returns (B, n_out + 1).
    """
    twos = n_in - n_out
    keys = draws.uniform((batch, n_out), generator, device)
    ranks = keys.argsort(dim=1).argsort(dim=1)  # a uniformly random permutation of 0..n_out-1 per row
    steps = 1 + (ranks < twos).long()  # exactly `twos` positions get a 2
    zero = torch.zeros(batch, 1, dtype=torch.long, device=steps.device)
    return torch.cat((zero, steps.cumsum(1)), dim=1)


def _pool_axis(x: Tensor, bounds: Tensor, take, overlapping: bool) -> Tensor:
    """Max over regions [a_{i-1}, a_i - 1] (disjoint) or [a_{i-1}, a_i] (overlapping) on the axis ``take`` reads.

    Regions are 1 to 3 pixels long, so the max is taken over three gathers whose index is clipped to the region's
    end: repeating the last pixel does not change a max.
    """
    start = bounds[:, :-1]  # (B, n_out)
    last = bounds[:, -1:] - 1  # the final boundary is the input length
    end = torch.minimum(bounds[:, 1:] if overlapping else bounds[:, 1:] - 1, last)
    out = take(x, start)
    for k in (1, 2):
        out = torch.maximum(out, take(x, torch.minimum(start + k, end)))
    return out


def fractional_max_pool2d_from_bounds(x: Tensor, row_bounds: Tensor, col_bounds: Tensor,
                                      overlapping: bool = True) -> Tensor:
    """Max-pool each sample over its own row and column boundaries (B, Ho + 1), (B, Wo + 1)."""
    return _pool_axis(_pool_axis(x, row_bounds, take_rows, overlapping), col_bounds, take_cols, overlapping)


def fractional_output_size(size: int, alpha: float) -> int:
    """The pooled length round(size / alpha), kept in [ceil(size / 2), size - 1] so that 1 < ratio <= 2."""
    return min(max(round(size / alpha), math.ceil(size / 2)), size - 1)


def fractional_max_pool2d(x: Tensor, output_size: int | tuple[int, int], samples: Tensor | None = None, *,
                          overlapping: bool = True, pseudo_random: bool = True,
                          generator: torch.Generator | None = None) -> Tensor:
    """Graham's fractional max pooling of x (B, C, H, W) to ``output_size``.

    samples: (B, 2) of u in (0, 1) for rows and columns of the pseudorandom sequences; drawn from ``generator``
    (torch's default generator when None, like ``torch.rand``) when not given. With ``pseudo_random=False`` the
    increments are random permutations drawn from ``generator`` and ``samples`` must be None.
    Differs from ``torch.nn.functional.fractional_max_pool2d``, which uses fixed k x k windows.
    """
    if x.dim() != 4:
        raise ValueError(f"fractional_max_pool2d: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    ho, wo = (output_size, output_size) if isinstance(output_size, int) else output_size
    H, W = x.shape[-2:]
    for name, n_in, n_out in (("height", H, ho), ("width", W, wo)):
        if not n_in / 2 <= n_out < n_in:
            raise ValueError(f"fractional_max_pool2d: {name} {n_in} -> {n_out} needs 1 < {n_in}/{n_out} <= 2")
    B = x.shape[0]
    if pseudo_random and samples is not None and samples.shape != (B, 2):
        raise ValueError(f"fractional_max_pool2d: samples must be (B, 2) = ({B}, 2), got {tuple(samples.shape)}")
    if not pseudo_random and samples is not None:
        raise ValueError("fractional_max_pool2d: samples are the u of pseudorandom sequences; "
                         "pass pseudo_random=True or samples=None")
    rows, cols = graham_bounds((H, W), (ho, wo), B, pseudo_random, samples, generator, x.device)
    return fractional_max_pool2d_from_bounds(x, rows, cols, overlapping)


def graham_bounds(size: tuple[int, int], pooled: tuple[int, int], batch: int, pseudo_random: bool = True,
                  samples: Tensor | None = None, generator: torch.Generator | None = None, device=None):
    """Row and column boundaries (B, Ho + 1), (B, Wo + 1) of one pooling draw per sample.

    Pseudorandom: from u = samples (B, 2), drawn from ``generator`` when None. Random: permutations drawn from
    ``generator``.
    """
    (H, W), (ho, wo) = size, pooled
    if not pseudo_random:
        return graham_random_sequence(H, ho, batch, generator, device), graham_random_sequence(W, wo, batch, generator,
                                                                                               device)
    if samples is None:
        samples = draws.uniform((batch, 2), generator, device, torch.float64)
    return graham_pseudorandom_sequence(H, ho, samples[:, 0]), graham_pseudorandom_sequence(W, wo, samples[:, 1])


def upsample_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize (pixel-centre aligned), used to bring pooled images back to their size."""
    return F.interpolate(x, size=size, mode="nearest-exact")


# ---- colour
# Colour kernels (docs/references.md, "Colour"): images (B, 3, H, W) float in [0, 1], one magnitude per sample, the
# result clamped to [0, 1]. The neutral magnitude (factor 1, shift 0, alpha 0) returns the input's values exactly,
# so a policy may run a kernel over the whole batch with the neutral value for the samples that did not draw it.
# None of them writes into its input.
def _check_rgb(x: Tensor, fn: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{fn}: expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}")


def luma(x: Tensor) -> Tensor:
    """0.299 R + 0.587 G + 0.114 B per pixel (B, 1, H, W), not clamped: the grayscale that saturation blends with."""
    _check_rgb(x, "luma")
    r, g, b = x.unbind(1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def grayscale(x: Tensor, num_output_channels: int = 1) -> Tensor:
    """The luma image clamped to [0, 1], as 1 channel or repeated in 3 (torchvision rgb_to_grayscale).

    Per sample, ``saturation(x, factor)`` with factor 0 gives the same values in 3 channels."""
    y = luma(x).clamp_(0, 1)
    # A new tensor, not an expanded view: a later step may write into the batch it is given.
    return y.repeat(1, 3, 1, 1) if num_output_channels == 3 else y


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """clamp(f x + (1 - f) luma(x), 0, 1) with f (B,) >= 0 per sample (torchvision adjust_saturation)."""
    f = factor.to(x.dtype).view(-1, 1, 1, 1)
    return (x * f + (1 - f) * luma(x)).clamp_(0, 1)


def hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate each pixel's HSV hue by ``shift`` (B,) turns, in [-0.5, 0.5] (torchvision adjust_hue).

    Value (the largest channel) and saturation stay. In hue sectors h6 = 6 h, channel n of the rotated pixel is
    v - c clamp(min(k, 4 - k), 0, 1) with k = (n + h6 + 6 shift) mod 6 and n = 5, 3, 1 for R, G, B, c = max - min
    the chroma: the usual HSV-to-RGB map written without branching on the sector. A gray pixel (c = 0) stays as it
    is. The samples whose shift is 0 keep their input values exactly (the round trip alone would move them by an
    ulp)."""
    _check_rgb(x, "hue")
    r, g, b = x.unbind(1)
    v, m = x.amax(1), x.amin(1)
    c = v - m
    safe = torch.where(c > 0, c, 1.0)  # gray pixels: any hue gives v - 0
    # The sector, in [-1, 5); where two channels tie for the largest, either formula gives the same sector.
    h6 = torch.where(v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    s = shift.to(x.dtype).view(-1, 1, 1, 1)
    n = torch.arange(5, 0, -2, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)  # a fill on the device, no copy
    k = torch.remainder(n + h6.unsqueeze(1) + 6 * s, 6)
    out = (v.unsqueeze(1) - c.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)).clamp_(0, 1)
    return torch.where(s == 0, x, out)


def pca_lighting(x: Tensor, alpha: Tensor, eigval: Tensor, eigvec: Tensor) -> Tensor:
    """AlexNet's lighting noise: clamp(x + eigvec @ (alpha * eigval), 0, 1) per pixel.

    alpha (B, 3) per sample and component; eigval (3,); eigvec (3, 3) with one principal component per column, as
    fb.resnet.torch stores ImageNet's. The per-sample offset (B, 3) is kept for a compiled call (``hints.keep``)."""
    _check_rgb(x, "pca_lighting")
    offset = (alpha.to(x.dtype) * eigval.to(x.dtype)) @ eigvec.to(x.dtype).T  # (B, 3): RGB shift of each sample
    hints.keep(offset)
    return (x + offset.view(-1, 3, 1, 1)).clamp_(0, 1)


def color_jitter(x: Tensor, order: Tensor, brightness_factor: Tensor | None = None,
                 contrast_factor: Tensor | None = None, saturation_factor: Tensor | None = None,
                 hue_shift: Tensor | None = None) -> Tensor:
    """Brightness, contrast, saturation and hue, each sample in its own order.

    ``order`` (B, 4): per sample the ops by index (0 brightness, 1 contrast, 2 saturation, 3 hue) in the order they
    apply, as torchvision's ColorJitter draws them; the factors and the shift are (B,) each, or None for an op that
    is absent (applied to no sample, and not run). With n ops present the batch goes through n slots; in each,
    every op runs over the whole batch with its neutral value for the samples whose order puts another op in that
    slot, which leaves them exactly as they were: no per-sample branch and no subset. That is n * n kernel passes
    over the batch (compiled, they fuse).
    """
    steps = [(brightness, brightness_factor, 1.0), (contrast, contrast_factor, 1.0),
             (saturation, saturation_factor, 1.0), (hue, hue_shift, 0.0)]
    present = [j for j, (_, f, _) in enumerate(steps) if f is not None]
    slot = order.argsort(1)  # (B, 4): where op j comes in each sample's order
    # Among the ops present, op j runs in slot rank[j]: the number of present ops before it.
    rank = {j: sum((slot[:, i] < slot[:, j]).long() for i in present) for j in present}
    for s in range(len(present)):
        for j in present:
            kernel, f, neutral = steps[j]
            x = kernel(x, torch.where(rank[j] == s, f, neutral))
    return x


# ---- levels
# The 8-bit level ops of PIL's ImageOps and ImageEnhance.Sharpness, as torchvision defines them (docs/references.md,
# "Levels"). Each decides on a pixel's 8-bit level q = round(255 x), so that float images give what the uint8 image
# gives, within a level. A pixel whose level the op leaves as it is keeps its own value, so that a neutral parameter
# (factor 1, bits 8, a threshold above 1, the flag off) returns exactly the input; a moved pixel takes new level / 255.
LEVEL_MAX = 255
# Solarize: a level this close below 255 t counts as reaching it, so that t = k / 255 rounded to float32 (up to
# about 2e-5 of a level above k) still inverts level k, as PIL's integer threshold k does.
_THRESHOLD_SLACK = 1e-3


def to_levels(x: Tensor) -> Tensor:
    """round(255 x), x clamped to [0, 1]: the uint8 level each pixel stands for, in x's float dtype (B, C, H, W)."""
    return torch.round(x.clamp(0, 1) * LEVEL_MAX)


def from_levels(x: Tensor, levels: Tensor, new: Tensor) -> Tensor:
    """``new / 255`` where an op moved a pixel's level, ``x`` where it did not."""
    return torch.where(new == levels, x, new / LEVEL_MAX)


def _per_sample(value, x: Tensor, name: str, fn: str) -> Tensor:
    """A per-sample parameter (B,) as a (B, 1, 1, 1) tensor to broadcast against x."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: {name} must be a (B,) tensor, one value per sample, got {type(value).__name__}")
    if value.shape != x.shape[:1]:
        raise ValueError(f"{fn}: {name} must be ({x.shape[0]},), one value per sample, got {tuple(value.shape)}")
    return value.view(-1, 1, 1, 1)


def _images(x: Tensor, fn: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{fn}: expected float images (B, C, H, W) in [0, 1], got {what}")


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the top ``bits`` bits of each 8-bit level, bits (B,) per sample in 1..8: ``q & ~(2^(8 - bits) - 1)``
    (PIL ImageOps.posterize). 8 keeps every level: the neutral value.

    Whole numbers in 1..8 are checked where looking costs no wait for the device (eager, on the CPU: ValueError);
    elsewhere a value outside is clamped to 1..8."""
    _images(x, "posterize")
    bits = _per_sample(bits, x, "bits", "posterize")
    if not torch.compiler.is_compiling() and bits.device.type == "cpu":
        bad = (bits < 1) | (bits > 8) | (bits != torch.round(bits.double()))
        if bool(bad.any()):
            raise ValueError(f"posterize: bits must be whole numbers in 1..8, got {bits.flatten().tolist()}")
    dropped = 8 - torch.round(bits.double()).clamp(1, 8).long()
    step = torch.bitwise_left_shift(torch.ones_like(dropped), dropped).to(x.dtype)  # 2^(8 - bits), exactly
    q = to_levels(x)
    return from_levels(x, q, torch.floor(q / step) * step)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """Invert (1 - x) each pixel whose level reaches ``255 t``, t (B,) per sample on the float scale (PIL
    ImageOps.solarize with the level threshold 255 t; torchvision's ``solarize(img, t)`` on float images). t = 0
    inverts every pixel, t = 1 only level 255, and any t above 1 none: the neutral value."""
    _images(x, "solarize")
    t = _per_sample(threshold, x, "threshold", "solarize").to(x.dtype)
    inverted = (to_levels(x) >= t * LEVEL_MAX - _THRESHOLD_SLACK) & (t <= 1)
    return torch.where(inverted, 1 - x, x)


def invert(x: Tensor, apply: Tensor) -> Tensor:
    """1 - x for the samples whose ``apply`` (B,) is true (PIL ImageOps.invert: level 255 - q)."""
    _images(x, "invert")
    return torch.where(_per_sample(apply, x, "apply", "invert") != 0, 1 - x, x)


def autocontrast(x: Tensor, apply: Tensor) -> Tensor:
    """Stretch each channel's levels from [lo, hi] (its darkest and lightest level) onto [0, 255]:
    ``floor(255 (q - lo) / (hi - lo))`` (PIL ImageOps.autocontrast, per band, no cutoff) for the samples whose
    ``apply`` (B,) is true; a channel with hi == lo is left as it is."""
    _images(x, "autocontrast")
    on = _per_sample(apply, x, "apply", "autocontrast") != 0
    if x.shape[-1] * x.shape[-2] == 0:
        return x
    q = to_levels(x)
    lo, hi = q.amin((2, 3), keepdim=True), q.amax((2, 3), keepdim=True)
    span = hi - lo
    # 255 (q - lo) / span is a whole number or at least 1/255 from one: the slack keeps floor from falling a level
    # below a whole quotient that division rounded down, and can never reach the next one.
    stretched = torch.floor((q - lo) * LEVEL_MAX / span.clamp_min(1) + 1e-3)
    return from_levels(x, q, torch.where(on & (span > 0), stretched, q))


def equalize(x: Tensor, apply: Tensor) -> Tensor:
    """Histogram equalization of each channel's 256 levels (PIL ImageOps.equalize, per band) for the samples whose
    ``apply`` (B,) is true.

    With n pixels, ``h`` the channel's histogram and ``last`` the count of its highest level present,
    ``step = (n - last) // 255`` and level q becomes ``min(255, (step // 2 + sum of h below q) // step)``; a
    channel with step 0 (fewer than 255 pixels below its highest level) is left as it is. One histogram per sample
    and channel, batched: a scatter-add of ones into (B * C, 256) bins."""
    _images(x, "equalize")
    on = _per_sample(apply, x, "apply", "equalize") != 0
    B, C, H, W = x.shape
    if H * W == 0:
        return x
    q = to_levels(x)
    index = q.reshape(B * C, H * W).long()  # (B*C, n)
    hist = torch.zeros(B * C, LEVEL_MAX + 1, dtype=torch.long, device=x.device)
    hist = hist.scatter_add(1, index, index.new_ones(()).expand_as(index))  # (B*C, 256): one per pixel
    last = hist.gather(1, index.amax(1, keepdim=True))  # (B*C, 1): pixels at the highest level present
    step = (H * W - last) // LEVEL_MAX
    below = hist.cumsum(1) - hist  # pixels under each level
    lut = ((below + step // 2) // step.clamp_min(1)).clamp_max(LEVEL_MAX)
    equalized = lut.gather(1, index).view(B, C, H, W).to(x.dtype)
    keep = ~on | (step == 0).view(B, C, 1, 1)
    return from_levels(x, q, torch.where(keep, q, equalized))


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend each channel's levels with their smoothed image, factor f (B,) per sample (PIL ImageEnhance.Sharpness,
    torchvision adjust_sharpness): ``floor(s + f (q - s))`` clamped to [0, 255], where s is q smoothed by the 3 x 3
    kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded to a level, and s = q on the 1-pixel border, which
    therefore stays as it is. f = 1 is the neutral value, 0 the smoothed image, above 1 sharper; images under
    3 x 3 are all border."""
    _images(x, "sharpness")
    f = _per_sample(factor, x, "factor", "sharpness").to(x.dtype)
    if x.shape[-2] < 3 or x.shape[-1] < 3:
        return x
    q = to_levels(x)
    rows = q[..., :, :-2] + q[..., :, 1:-1] + q[..., :, 2:]  # (B, C, H, W - 2): sums across of three
    centre = q[..., 1:-1, 1:-1]
    smooth = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :] + 4 * centre  # whole numbers up to 13 * 255
    # sum / 13 is never a whole number plus a half (the sum is an integer), so rounding it is PIL's round-half-up
    smoothed = q + F.pad(torch.round(smooth / 13) - centre, (1, 1, 1, 1))
    new = torch.floor(smoothed + f * (q - smoothed)).clamp(0, LEVEL_MAX)
    return from_levels(x, q, new)

# ---- blur and erasing
def gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """(B, size) normalized 1-D Gaussians, one per sigma (B,): exp(-x^2 / (2 sigma^2)) at the offsets
    x = -(size - 1) / 2 .. (size - 1) / 2 from the centre, summed to 1 (docs/references.md, "Gaussian blur").
    Float64. A sigma of 0 gives the identity kernel, 1 at the centre and 0 elsewhere: the neutral value."""
    x = torch.arange(size, dtype=torch.float64, device=sigma.device) - (size - 1) / 2
    s = sigma.to(torch.float64)[:, None]
    # x^2 / s^2 is inf off the centre for s = 0 (weight 0); at the centre it would be 0 / 0, whose weight is 1.
    w = torch.where(x == 0, 1.0, torch.exp(-0.5 * x ** 2 / s ** 2))
    return w / w.sum(1, keepdim=True)


def mirror_pad(x: Tensor, r: int, dim: int) -> Tensor:
    """x extended by r pixels at both ends of ``dim``, mirrored without repeating the edge pixel (``F.pad``'s
    "reflect"), folded again where r reaches past a small image (r >= its size). The usual case is a concatenation
    of flipped edge slices, which torch.compile reads as plain slices, where a gather of mirrored indices would
    load pixel by pixel."""
    n = x.shape[dim]
    if r == 0:
        return x
    if r < n:
        return torch.cat((x.narrow(dim, 1, r).flip(dim), x, x.narrow(dim, n - 1 - r, r).flip(dim)), dim)
    return x.index_select(dim, _remap_index(torch.arange(-r, n + r, device=x.device), n, "reflect"))


def convolve_reflect(x: Tensor, kernels: Tensor, dim: int) -> Tensor:
    """x (B, ...) convolved along ``dim`` with each sample's own odd-length kernel (B, k), edges mirrored
    (``mirror_pad``).

    A sum of k shifted slices of the mirrored image, each weighted per sample: no image-sized copy per tap, and
    exact float arithmetic (a convolution may run in TF32 on a GPU), so an identity kernel returns x exactly."""
    k, n = kernels.shape[1], x.shape[dim]
    if k % 2 != 1:
        raise ValueError(f"convolve_reflect: the kernels need an odd length, got {k}")
    padded = mirror_pad(x, k // 2, dim)
    w = kernels.to(x.dtype).view(-1, *([1] * (x.dim() - 1)), k)  # (B, 1, ..., 1, k)
    out = padded.narrow(dim, 0, n) * w[..., 0]
    for i in range(1, k):  # the k taps, each over the whole batch
        out = out.addcmul_(padded.narrow(dim, i, n), w[..., i])
    return out


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """x (B, C, H, W) blurred by a Gaussian of std sigma (B,) per sample, with ``kernel_size`` = (kx, ky) taps
    across (along W) and down (along H), both odd, as torchvision orders them; separable, mirrored edges
    (torchvision's ``gaussian_blur``; docs/references.md, "Gaussian blur"). A sigma of 0 leaves the sample as it is."""
    kx, ky = kernel_size
    x = convolve_reflect(x, gaussian_kernels(sigma, ky), x.dim() - 2)
    return convolve_reflect(x, gaussian_kernels(sigma, kx), x.dim() - 1)


def erasing_boxes(area: Tensor, log_aspect: Tensor, u_top: Tensor, u_left: Tensor, size: tuple[int, int]) -> Tensor:
    """RandomErasing's boxes (..., 4) of (y1, x1, y2, x2) from its draws: per box, attempts (..., T) of an area
    in pixels and a log aspect ratio (height / width), and two U[0, 1) (...) that place it.

    Attempt t gives h = round(sqrt(area e^a)), w = round(sqrt(area / e^a)) (half to even, as Python's round); the
    first with h < H and w < W is the box, its corner uniform over the positions that fit: top = floor(u (H - h + 1)),
    left likewise. No attempt fits: the empty box (docs/references.md, "Random erasing")."""
    H, W = size
    aspect = torch.exp(log_aspect)
    h = torch.round(torch.sqrt(area * aspect)).long()
    w = torch.round(torch.sqrt(area / aspect)).long()
    tries = area.shape[-1]
    fits = (h < H) & (w < W)
    attempt = torch.arange(tries, device=area.device)
    first = torch.where(fits, attempt, tries).amin(-1, keepdim=True)  # tries where none fits
    found = first < tries
    h = torch.where(found, h.gather(-1, first.clamp(max=tries - 1)), 0)[..., 0]
    w = torch.where(found, w.gather(-1, first.clamp(max=tries - 1)), 0)[..., 0]
    top = torch.floor(u_top.double() * (H - h + 1)).long()
    left = torch.floor(u_left.double() * (W - w + 1)).long()
    return torch.stack((top, left, top + h, left + w), -1) * found


_MASK32 = 0xFFFFFFFF


def _times32(h: Tensor, c: int) -> Tensor:
    """(h * c) mod 2^32 for h in [0, 2^32), in int64 without overflow (c in two 16-bit halves), written into h."""
    high = (h * (c >> 16)).bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return h.mul_(c & 0xFFFF).add_(high).bitwise_and_(_MASK32)


def _mix32(h: Tensor) -> Tensor:
    """A bijection of [0, 2^32) in which every output bit depends on every input bit (the finalizer of
    MurmurHash3, whose shifts and constants these are), written into h, a tensor of the caller's own making."""
    h = _times32(h.bitwise_xor_(h >> 16), 0x85EBCA6B)
    h = _times32(h.bitwise_xor_(h >> 13), 0xC2B2AE35)
    return h.bitwise_xor_(h >> 16)


def hashed_normal(keys: Tensor, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise of ``shape`` (B, ...), a pure function of per-sample keys (B, 2) int64 in [0, 2^32).

    Each value takes two 32-bit uniforms, (h + 1/2) / 2^32 for h = mix(mix(i ^ k1) ^ k2) at the counters i = 2 n
    and 2 n + 1 of its flat index n within the sample, through the Box-Muller transform. So the params of an op
    hold two integers per sample, not an image of noise, and a replay with them gives the same noise; compiled,
    the noise is made where it is used and never stored. For a sample, distinct counters give distinct h (mix is a
    bijection); samples with different keys get unrelated noise. The integer steps write into the tensors made
    here, so an eager call allocates one image-sized temporary per step, not two."""
    batch, rest = shape[0], tuple(shape[1:])
    n = torch.arange(math.prod(rest), device=keys.device, dtype=torch.int64).view(1, *rest)
    k1, k2 = (keys[:, i].view(batch, *([1] * len(rest))) for i in (0, 1))

    def uniform(counter):
        h = _mix32(_mix32(counter ^ k1).bitwise_xor_(k2))
        return h.to(dtype).add_(0.5).mul_(2.0 ** -32)

    radius = uniform(2 * n).log_().mul_(-2).sqrt_()
    return radius.mul_(uniform(2 * n + 1).mul_(2 * math.pi).cos_())


def erase(x: Tensor, boxes: Tensor, value: float | Tensor) -> Tensor:
    """x with the pixels inside the boxes (B, N, 4) set to ``value``: a number, one value per channel (C,), or a
    tensor of x's shape (noise) read where the boxes are. Cutout's fill, with a value per channel or per pixel."""
    if isinstance(value, Tensor) and value.dim() == 1:
        value = value.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    return select(x, value, box_mask(boxes, x.shape[-2:]))
