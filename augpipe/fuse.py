"""The executor: runs a graph's ops over a batch with the params already drawn.

Fused (the default), consecutive geometric ops become one sampling map, composed as a product of their matrices,
and the pixels are read once: by one gather when every op maps pixels onto pixels (flips, crops, padded crops),
otherwise by one bilinear resample. uint8 images stay uint8 until that read. Every other op is a pure function
that the executor calls in order; under ``torch.compile`` (``Pipeline(..., compile=True)``) those elementwise
steps, the contrast reduction, the Cutout mask and the Mixup/CutMix partner reads are fused into a few kernels.

Unfused (``fuse=False``) every op applies its own kernel on float images: the reference the tests compare with.

A segment of geometric ops may read outside its input only in its first op: a later op that pads (a padded crop)
starts a new segment, since padding the cropped image is not padding the original. A non-constant padding mode
cannot be expressed in a bilinear map, so a reflect/replicate crop followed by a resized crop are two segments.
"""
from __future__ import annotations

from . import functional as F
from .ops import GeometricOp


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
        if segment:
            first_border = segment[0][0].border()
            reads_outside = node.border() is not None
            mode_needs_gather = first_border is not None and first_border[0] != "constant" and not node.exact
            if reads_outside or mode_needs_gather:
                stages.append(segment)
                segment = []
        segment.append((node, params))
    if segment:
        stages.append(segment)
    return stages


def warp(state: dict, segment: list, dtype) -> dict:
    """Apply a segment of geometric ops with one read of the pixels."""
    x = state["images"]
    size = tuple(x.shape[-2:])
    matrix = None
    for op, params in segment:
        m = op.matrix(params, size)
        matrix = m if matrix is None else matrix @ m
        size = op.output_size(size)
    mode, fill = segment[0][0].border() or ("constant", 0.0)
    if all(op.exact for op, _ in segment):
        rows, cols = F.index_map(matrix, size)
        x = F.gather_separable(x, rows, cols, mode, fill, dtype)
    else:
        x = F.warp_affine(F.to_float(x, dtype), matrix.to(dtype), size, fill)
    return {**state, "images": x}


def run(steps, state: dict, dtype, fuse: bool = True) -> dict:
    """Run (node, params) steps over ``state``; images come out in ``dtype`` (float)."""
    flat = [leaf for node, params in steps for leaf in node.steps(params)]
    if not fuse:
        state = as_float(state, dtype)
    for stage in _segments(flat) if fuse else flat:
        if isinstance(stage, list):
            state = warp(state, stage, dtype)
            continue
        node, params = stage
        state = as_float(state, dtype)
        if hasattr(node, "select"):  # OneOf / RandomApply over a sub-graph: run the branches, pick per sample
            state = node.select(state, params, lambda s, sub: run(sub, s, dtype, fuse))
        else:
            state = node.apply(state, params)
    return as_float(state, dtype)
