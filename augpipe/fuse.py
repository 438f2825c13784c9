"""The executor: runs a graph's ops over a batch with the params already drawn.

Fused (the default), consecutive geometric ops become one sampling map, composed as a product of their matrices, and
the pixels are read once: by one gather when every op maps pixels onto pixels (flips, crops, padded crops, in any
order: their per-sample row and column tables compose, each op's reads outside its input following its own padding,
``F.exact_map``), otherwise by one bilinear resample, done as a row pass and a column pass when the map is
axis-aligned (resized crops and flips). uint8 images stay uint8 until that read. Every other op is a pure function
that the executor calls in order, letting it overwrite the batch once the batch is a tensor the executor made. Under
``torch.compile`` (``Pipeline(..., compile=True)``) those elementwise steps, the contrast reduction, the Cutout mask
and the Mixup/CutMix partner reads are fused into a few kernels.

On a CPU, a compiled pipeline reads its leading flips and crops from a float copy of the images made by ATen before
the compiled call (``F.window_source``: converted once, padded, mirrored): each output row is one contiguous window
of it, which inductor's C++ loops load as whole vectors, where a per-pixel gather index and uint8 loads go lane by
lane (docs/design.md, "The window copy"). A reflect- or replicate-padded crop behind nothing but flips reads a copy
padded that way (``window_plan``). A leading bilinear segment (a resized crop, a rotation) gathers its taps lane by
lane in any case, but from the float copy (unpadded) rather than from uint8: inductor loads a gathered uint8 through
two stack buffers, a float through one (see ``backends.Runner.window``). A first op that is not geometric reads that
plain copy instead of the uint8 images, unless it is pointwise and whole-pixel ops follow (``hoist``).

Unfused (``run(..., fuse=False)``) every op runs on its own on float images, one resample per geometric op: the
reference the tests compare the composition with.

In a bilinear segment, the first op that reads outside its input (a padded crop, a rotation), when only flips
come before it, blends the image border into its fill, as padding and then resampling would. A later op that
reads outside its own input gets its fill through a mask computed from the partial product of the maps (a hard
edge), so fusing does not change which pixels are fill. Edge-extending padding ("reflect", "replicate") is
read only by a gather: a bilinear op after such a crop, or such a crop after a bilinear op, starts a new segment
(``_joins``). Inside a bilinear segment the one resample reads the true neighbours of a pixel where
op-by-op resampling would have extended an intermediate image's edge: the two differ only within a pixel of such
an edge.
"""
from __future__ import annotations

import itertools

from typing import NamedTuple

import torch
from torch import Tensor

from . import functional as F
from . import hints
from .ops import GeometricOp, Lambda, Sizes, per_sample_size


def as_float(state: dict, dtype) -> dict:
    return {**state, "images": F.to_float(state["images"], dtype)}


def _segments(steps):
    """Group the flat (node, params) steps into stages: lists of geometric steps, or single steps."""
    stages, segment = [], []
    for node, params in steps:
        if not isinstance(node, GeometricOp):
            if segment:
                stages.append(segment)
                segment = []
            stages.append((node, params))
            continue
        if segment and not _joins([op for op, _ in segment], node):
            stages.append(segment)
            segment = []
        segment.append((node, params))
    if segment:
        stages.append(segment)
    return stages


def _extends(op) -> bool:
    """Does ``op`` read outside its input by extending the input's edge (reflect or replicate padding)?"""
    border = op.border()
    return border is not None and border[0] != "constant"


def _joins(segment, node) -> bool:
    """Can ``node`` read through the composed map of the geometric ops ``segment``? Whole-pixel ops always can:
    their maps compose as index tables, each out-of-range read following its own op's padding (``F.exact_map``).
    A bilinear read extends no edge, so an edge-padded op never shares one. An antialiased resize shares a read
    only with axis-aligned ops: the footprint average is a row pass and a column pass, which a rotation or a
    homography would not keep, so such a map reads the resized image as torchvision's resize-then-rotate does."""
    if node.kind == "exact" and segment_kind(segment) == "exact":
        return True
    axis = segment_kind([*segment, node]) in ("exact", "axis")
    if not axis and (node.antialias or any(op.antialias for op in segment)):
        return False
    return not (_extends(node) or any(_extends(op) for op in segment))


def tap_counts(segment, sizes) -> tuple[int, int]:
    """Taps per output pixel (rows, columns) of an axis-aligned run's read (``F.axis_tap_count``): enough for the
    largest downscale the run can make, bounded on the host as the product of each resizing op's largest input
    over its smallest output (whole-pixel ops do not scale). ``sizes``: each op's input and the run's output,
    ints or ``Sizes``."""
    antialias = any(op.antialias for op in segment)
    bound = [1.0, 1.0]
    for op, before, after in zip(segment, sizes, sizes[1:]):
        if op.kind != "exact":
            high = before.high if isinstance(before, Sizes) else before
            low = after.low if isinstance(after, Sizes) else after
            bound = [b * h / max(lo, 1) for b, h, lo in zip(bound, high, low)]
    return tuple(F.axis_tap_count(b, antialias) for b in bound)


class Window(NamedTuple):
    """The images as a compiled CPU run's first segment reads them: ``F.window_source(images, plan, ...)``."""

    source: Tensor
    plan: F.WindowPlan


def window_plan(ops) -> F.WindowPlan | None:
    """The ``F.window_source`` whose row windows the first segment of these ops reads (the leading geometric ops
    that fuse into one map), or None when they interpolate, no geometric op comes first, or an edge-padded crop
    reads anything but the images' own rectangle.

    Each op reads at most ``op.reach`` columns beyond its input, and its input lies within its predecessor's reach,
    so the reaches add up. An edge-extending crop (reflect, replicate) behind nothing but ops that keep the image
    rectangle (flips) reads the images extended by its padding: the copy is padded that way, by the larger of the
    crop's two paddings on both sides of each axis. Such padding of an image is the same whichever way the image
    was flipped, and it holds the smaller padding of either side as a window, so a flip before the crop reads the
    same copy as a flip after it.
    """
    segment = []
    ops = list(ops)
    if any(isinstance(op, GeometricOp) for op in ops):  # pointwise ops before the run read after it (``hoist``)
        ops = list(itertools.dropwhile(lambda op: getattr(op, "pointwise", False), ops))
    for op in ops:
        if not isinstance(op, GeometricOp) or (segment and not _joins(segment, op)):
            break
        segment.append(op)
    if not segment or segment_kind(segment) != "exact" or any(op.reach is None for op in segment):
        return None  # interpolated, or reading beyond the image by as much as it is small (pad_if_needed)
    mirrored = any(op.mirrors for op in segment)
    edges = [k for k, op in enumerate(segment) if _extends(op)]
    if not edges:
        return F.WindowPlan(sum(op.reach for op in segment), mirrored)
    k = edges[0]
    if len(edges) > 1 or not all(op.keeps_bounds for op in segment[:k]):
        return None  # a crop extends an image that is itself a crop: read by one gather of composed tables
    left, top, right, bottom = segment[k].padding
    across, down = max(left, right), max(top, bottom)
    reach = sum(op.reach for n, op in enumerate(segment) if n != k)
    return F.WindowPlan(reach, mirrored, (across, down, across, down), segment[k].border()[0])


def _plain(window: Window | None, images: Tensor) -> bool:
    """Is ``window`` a plain float copy of uint8 ``images``, for a read other than row windows?"""
    return window is not None and images.dtype == torch.uint8 and window.plan == F.WindowPlan()


def hoist(stages: list) -> tuple[list, list]:
    """(stages, then): pointwise steps (``Op.pointwise``) that lead into a run of whole-pixel geometric ops move
    behind its gather, as ``then``, which ``warp`` applies to the gathered pixels before the run's fills. Moving
    whole pixels and then changing each pixel's values is changing them and then moving them, so the result is the
    same, while the run keeps the reads it would have as the first step (the window copy, a uint8 gather)."""
    k = 0
    while k < len(stages) and not isinstance(stages[k], list) and getattr(stages[k][0], "pointwise", False):
        k += 1
    if k == 0 or k == len(stages) or not isinstance(stages[k], list) \
            or segment_kind(op for op, _ in stages[k]) != "exact":
        return stages, []
    return stages[k:], stages[:k]


def warp(state: dict, segment: list, dtype, window=None, then: list = ()) -> dict:
    """Apply a segment of geometric ops with one read of the pixels (and of the masks).

    The composed matrix sends each output pixel to the original image. A later op that reads outside its own
    input (a padded crop, a rotation) is honoured by mapping the output pixel into that op's input with the
    product of the matrices after it, and writing that op's fill where the point falls outside. Boxes and
    keypoints are few, so they are moved op by op: each op clips them to its own output.
    ``window``: the images as ``F.window_source`` prepared them, for the first segment of a compiled CPU run: read
    as row windows by the exact segment it was planned for (``window_plan``), and as a plain float copy by a
    bilinear one.
    The composed matrices and tables are per-sample tensors every pixel reads: kept for a compiled call
    (``hints.keep``). ``then``: pointwise steps moved behind a whole-pixel run's gather (``hoist``).
    """
    x = state["images"]
    flat = x if isinstance(x, F.Flat) else None  # images of their own sizes (a packed batch)
    sizes = [flat.sizes if flat is not None else tuple(x.shape[-2:])]
    maps = []
    for op, params in segment:
        maps.append(op.map(params, sizes[-1]))
        after = op.sizes_after(params, sizes[-1])
        sizes.append(after if isinstance(after, Sizes) else tuple(after))
    kind = segment_kind(op for op, _ in segment)
    out_size = sizes[-1]
    if isinstance(out_size, Sizes):
        raise ValueError(f"{segment[-1][0]!r} leaves images of different sizes, which a batch tensor cannot hold; "
                         f"end the run of geometric ops with one that gives one size (Resize((h, w)), CenterCrop, "
                         f"RandomCrop, RandomResizedCrop)")
    extents = [per_sample_size(size) for size in sizes]  # ints, or (B,) float64 tensors per sample
    # The first op that reads outside its input, behind nothing but flips, sees the original's rectangle: its
    # padding goes into the one read (for a bilinear read, the border blends into its fill, as padding and then
    # resampling would). Any other later reader gets a hard edge from the mask below.
    first = next((k for k, (op, _) in enumerate(segment) if op.border() is not None), None)
    if first is not None and not all(op.keeps_bounds for op, _ in segment[:first]):
        first = None
    mode, fill = segment[first][0].border() if first is not None else ("constant", 0.0)
    masks = state.get("masks")
    if kind == "dense":
        x, masks = _read_dense(x, masks, segment, maps, extents, first, fill, dtype, window)
        return _moved(state, x, masks, segment, maps, extents)
    suffix = list(maps)  # suffix[k]: final output -> input of op k
    for k in range(len(maps) - 2, -1, -1):
        suffix[k] = F.compose(maps[k], suffix[k + 1])
    hints.keep(*suffix)
    exact = kind == "exact"
    if exact:
        # One gather through composed tables, every op's padding its own (F.exact_map); the fills after it. The
        # window is read when it was made for these ops (a changed op falls back to reading the images).
        read = F.exact_map([(m, _index_extent(size), op.border()) for (op, _), m, size in zip(segment, maps, extents)],
                           out_size)
        windowed = flat is None and window is not None and window.plan == window_plan(op for op, _ in segment)
        if not windowed or masks is not None:
            hints.keep(read.rows, read.cols)
        if flat is not None:
            x = F.read_exact(flat, read.rows, read.cols, dtype)
        elif windowed:
            matrix, (left, top) = suffix[0], window.plan.padding[:2]
            if left or top:  # the copy's padding moves the images right and down
                matrix = matrix + matrix.new_tensor([[0, 0, left], [0, 0, top], [0, 0, 0]])
            x = F.gather_windows(window.source, matrix, out_size, window.plan.padded_shape(x.shape), None,
                                 uint8=x.dtype == torch.uint8)
        else:
            x = F.gather_separable(x, read.rows, read.cols, None, dtype=dtype)
        for node, params in then:
            step = lambda images: node.apply({**state, "images": images}, params)["images"]  # noqa: E731
            x = _overwriting(x if _own_apply(node) else None, step, x)
        x = _overwriting(x, F.fill_outside, x, read.fills)
        if masks is not None:
            masks = F.read_exact(masks, read.rows, read.cols) if isinstance(masks, F.Flat) else \
                F.gather_separable(masks, read.rows, read.cols, None)
            masks = _overwriting(masks, F.fill_outside, masks, [(0, rows, cols) for _, rows, cols in read.fills])
    else:
        extend = "edge" if first is None else "fill"
        source, uint8 = x, False
        if _plain(window, x):  # its four taps are read from the float copy
            source, uint8 = F.window_images(window.source, x.shape), True
        projective = kind == "projective"
        antialias = kind == "axis" and any(op.antialias for op, _ in segment)
        taps = tap_counts([op for op, _ in segment], sizes) if antialias else (2, 2)
        if flat is not None or max(taps) > 2:
            # Images of their own sizes, or a downscale averaged over its footprint: read as one flat buffer
            src = flat if flat is not None else F.flat_view(x, _uniform_sizes(x))
            if kind == "axis":
                x = F.read_axis(src, suffix[0], out_size, taps, antialias, fill, extend, dtype)
            else:
                points = (F.map_points if projective else F.sample_points)(suffix[0].to(dtype), out_size)
                x = F.read_points(src, *points, fill, extend, dtype)
            if masks is not None:
                masks = _nearest(masks, suffix[0], out_size, projective)
        else:
            if kind == "axis":
                x = F.resample_separable(source, suffix[0], out_size, fill, extend, dtype, uint8=uint8)
            else:
                x = F.warp_affine(source, suffix[0].to(dtype), out_size, fill, extend, dtype, uint8=uint8,
                                  projective=projective)
            if masks is not None:
                masks = F.sample_nearest(masks, suffix[0], out_size, 0, projective=projective)
    for k in range(1, len(segment)):
        border = segment[k][0].border()
        if border is not None and k != first and not exact:
            later = segment_kind(op for op, _ in segment[k:])
            inside = F.inside_mask(suffix[k].to(dtype), extents[k], out_size, later in ("exact", "axis"),
                                   later == "projective")
            x = torch.where(inside, x, border[1])
            if masks is not None:
                masks = torch.where(inside, masks, torch.zeros((), dtype=masks.dtype, device=masks.device))
    return _moved(state, x, masks, segment, maps, extents)


def _index_extent(extent):
    """An extent as ``F.exact_map`` compares indices with it: ints, or (B, 1) int64 per sample."""
    return tuple(v.long()[:, None] if isinstance(v, Tensor) else v for v in extent)


def _full_sizes(x: Tensor) -> Tensor:
    """(B, 2) float64 (H, W) of a batch of one size, made on its device (no copy from the host)."""
    return torch.stack([torch.full((x.shape[0],), float(v), dtype=torch.float64, device=x.device)
                        for v in x.shape[-2:]], 1)


def _nearest(masks, matrix: Tensor, size, projective: bool):
    """Masks read nearest through ``matrix``: a (B, 1, H, W) tensor, or label maps of their own sizes (``Flat``)."""
    if isinstance(masks, F.Flat):
        points = (F.map_points if projective else F.sample_points)(matrix.double(), size)
        return F.read_nearest(masks, *points, 0)
    return F.sample_nearest(masks, matrix, size, 0, projective=projective)


def segment_kind(ops) -> str:
    """The kind of read a run of geometric ops needs: the most general of its members' (``GeometricOp.KINDS``).
    A plain loop: torch.compile traces it, where max() over a generator with a default breaks the graph."""
    most = 0
    for op in ops:
        most = max(most, GeometricOp.KINDS.index(op.kind))
    return GeometricOp.KINDS[most]


def _read_dense(x, masks, segment, maps, sizes, first, fill, dtype, window):
    # sizes: each op's input extent, ints or (B,) tensors per sample
    """The read of a run that holds a dense map: each output pixel centre is taken back through every op's map in
    turn (a matrix with its divide, or a field), so the run still reads the pixels once. A later op that reads
    outside its input writes its fill where the point, taken back to that op's input, falls outside."""
    batch, device = (x.batch, x.data.device) if isinstance(x, F.Flat) else (x.shape[0], x.device)
    sx, sy = F.grid_points(sizes[-1], batch, dtype, device)
    at = [None] * len(segment)  # at[k]: the points in op k's input
    for k in range(len(segment) - 1, -1, -1):
        if segment[k][0].kind == "dense":
            sx, sy = F.displace_points(maps[k], sx, sy)
        else:
            sx, sy = F.move_points(maps[k], sx, sy)
        at[k] = (sx, sy)
    extend = "edge" if first is None else "fill"
    if isinstance(x, F.Flat):
        x = F.read_points(x, sx, sy, fill, extend, dtype)
    else:
        source, uint8 = x, False
        if _plain(window, x):
            source, uint8 = F.window_images(window.source, x.shape), True
        x = F.warp_points(source, sx, sy, fill, extend, dtype, uint8)
    if masks is not None:
        masks = F.read_nearest(masks, sx, sy, 0) if isinstance(masks, F.Flat) else F.nearest_points(masks, sx, sy, 0)
    for k in range(1, len(segment)):
        border = segment[k][0].border()
        if border is not None and k != first:
            inside = F.points_inside(*at[k], sizes[k])
            x = torch.where(inside, x, border[1])
            if masks is not None:
                masks = torch.where(inside, masks, torch.zeros((), dtype=masks.dtype, device=masks.device))
    return x, masks


def _moved(state: dict, x, masks, segment, maps, sizes) -> dict:
    """The state after a run: its images and masks as read, its boxes and keypoints moved op by op (they are few),
    each op clipping them to its own output."""
    out = {**state, "images": x}
    if masks is not None:
        out["masks"] = masks
    for key, move in (("boxes", F.transform_boxes), ("keypoints", F.transform_points)):
        if state.get(key) is not None:
            points = state[key]
            for m, size in zip(maps, sizes[1:]):
                points = move(points, F.invert_map(m), size)
            out[key] = points
    return out


def run(steps, state: dict, dtype, fuse: bool = True, window=None, keep_in=None) -> dict:
    """Run (node, params) steps over ``state``; images come out in ``dtype`` (float).

    ``window``: ``F.window_source`` of the images, which the first segment reads when it can (see ``warp``), and
    the first op reads when it is not geometric.
    ``keep_in``: a tensor the images are written into and returned as, when its shape and dtype are theirs (a
    compiled CPU stage writes there; see ``backends.Runner.stages``).
    Steps of augpipe's own ops may overwrite the images once they are a tensor made here, never the caller's
    (``hints.overwriting``)."""
    flat = [leaf for node, params in steps for leaf in node.steps(params)]
    flat, state = _expand_views(flat, state)
    stages, then = hoist(_segments(flat)) if fuse else ([[s] if isinstance(s[0], GeometricOp) else s for s in flat], [])
    images = state["images"]
    if _plain(window, images) and not (stages and isinstance(stages[0], list)):
        # Compiled on a CPU with no geometric op first: read the plain float copy, as a bilinear first read does
        # (backends.Runner.window); the same values as to_float's.
        state = {**state, "images": F.window_images(window.source, images.shape) / 255}
    owned = False  # may ops overwrite the images? Not while they are the caller's tensor
    for n, stage in enumerate(stages):
        if isinstance(stage, list):
            state = warp(state, stage, dtype, window if n == 0 else None, then if n == 0 else ())
        else:
            node, params = stage
            state = as_float(state, dtype)
            owned = owned or state["images"] is not images
            if hasattr(node, "select"):  # OneOf / RandomApply over a sub-graph: run the branches, pick per sample
                state = node.select(state, params, lambda s, sub: run(sub, s, dtype, fuse))
            elif _own_apply(node):
                state = _overwriting(state["images"] if owned else None, node.apply, state, params)
            else:
                # An apply of one's own may return a tensor it keeps, or a view of its input, which may be the
                # caller's: the ops after it must not overwrite that.
                images = state["images"]
                state = node.apply(state, params)
                owned = owned and state["images"] is images
                images = state["images"]
        owned = owned or state["images"] is not images
        images = state["images"]
    state = as_float(state, dtype)
    x = state["images"]
    if keep_in is not None and keep_in.shape == x.shape and keep_in.dtype == x.dtype:
        keep_in.copy_(x)  # compiled: the loop that computes the images stores them there, and nowhere else
        state = {**state, "images": keep_in}
    return state


def _expand_views(steps: list, state: dict) -> tuple[list, dict]:
    """Before an op that gives several views of each image (FiveCrop, TenCrop; ``GeometricOp.views``): every
    image, its targets and its draws of the ops before stand once per view, (B V, ...), view v of image b at row
    b V + v. The images are not copied: each view reads its image's place in the one buffer (``F.Flat``), so the
    views are read in the same pass as the rest of the geometry."""
    k = next((i for i, (node, _) in enumerate(steps) if getattr(node, "views", 1) > 1), None)
    if k is None:
        return steps, state
    count = steps[k][0].views
    steps = [(node, _repeat(params, count) if i < k else params) for i, (node, params) in enumerate(steps)]
    out = {}
    for key, value in state.items():
        if key in ("images", "masks") and value is not None:
            flat = value if isinstance(value, F.Flat) else F.flat_view(value, _uniform_sizes(value))
            sizes = flat.sizes._replace(hw=flat.sizes.hw.repeat_interleave(count, 0))
            out[key] = F.Flat(flat.data, flat.offsets.repeat_interleave(count, 0), sizes, flat.channels)
        else:
            out[key] = _repeat(value, count)
    return steps, out


def _uniform_sizes(x: Tensor) -> Sizes:
    size = tuple(x.shape[-2:])
    return Sizes(_full_sizes(x), size, size)


def _repeat(value, count: int):
    """Every per-sample tensor of ``value`` (a tensor, or dicts and lists of them) repeated ``count`` times per
    sample, in place."""
    if isinstance(value, Tensor):
        return value.repeat_interleave(count, 0)
    if isinstance(value, dict):
        return {k: _repeat(v, count) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_repeat(v, count) for v in value)
    return value


def run_returning_tables(steps, state: dict, dtype, window=None, keep_in=None) -> tuple[dict, list]:
    """``run``, returning (state, tables): what a compiled pipeline compiles. The tables are the per-sample tensors
    every pixel's formula reads (composed sampling matrices, source rows and columns, the row and column tests of
    crop edges and boxes, Normalize's mean and std), which the kernels name with ``hints.keep``: inductor stores a
    tensor that the graph returns and that other nodes read, and those then load it, where otherwise each pixel
    would work out its sample's matrix product again."""
    return hints.collect(run, steps, state, dtype, window=window, keep_in=keep_in)


def _own_apply(node) -> bool:
    """Is ``node.apply`` augpipe's own? Those never read their input after a kernel has written it, and return a
    new tensor or their input, so they may be handed a batch the executor made to overwrite; an apply of one's own
    (or a Lambda's function, which may return a view of the caller's tensor) might not, so it never is."""
    module = getattr(type(node).apply, "__module__", None) or ""
    return module.split(".")[0] == GeometricOp.__module__.split(".")[0] and not isinstance(node, Lambda)


def _overwriting(target, fn, *args):
    """``fn(*args)``, its kernels allowed to overwrite ``target`` (a tensor made here; None: nothing), eagerly only:
    compiled, writing in place buys nothing (``hints.writable`` is False there)."""
    if target is None or torch.compiler.is_compiling():
        return fn(*args)
    with hints.overwriting(target):
        return fn(*args)
