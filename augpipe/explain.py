"""``Pipeline.explain``: the plan of a call, in words, without running it.

The text follows the executor's own decisions (``fuse._segments``, ``fuse.window_plan``, ``backends.stage_cuts``), so
what it says is what a call at that shape does: which read each run of geometric ops gets and why, which ops then
run in order, where a compiled CPU call stops, and which buffers the pipeline keeps between calls.
"""
from __future__ import annotations

import math

import torch

from . import functional as F
from . import fuse, memory
from .backends import stage_cuts
from .functional import compute_dtype
from .ops import Shape


def explain(pipe, images_shape, dtype: torch.dtype = torch.uint8, device="cpu") -> str:
    """The plan of ``pipe`` for images of ``images_shape`` ((B, C, H, W) or (C, H, W)), ``dtype`` and ``device``."""
    shape = Shape(*((1, *images_shape) if len(images_shape) == 3 else images_shape))
    pipe.check(shape)
    device = torch.device(device)
    work = compute_dtype(dtype)
    out_dtype = dtype if dtype.is_floating_point else torch.float32
    out_shape = (shape.batch, shape.channels, *pipe.output_size(shape.size))
    mode = "compiled" if pipe.compiled else "eager"
    lines = [f"{type(pipe).__name__}, {mode}, on {device.type}: {_dtype(dtype)} {tuple(shape)} -> "
             f"{_dtype(out_dtype)} {out_shape}, computed in {_dtype(work)}"]
    requests, made, _ = pipe._draw_plans.plan(pipe, shape, device)
    lines.append(f"draws: {len(requests)} requests from sample(), made as {len(made)} draw(s) from the pipeline's "
                 f"generator per call")

    ops = pipe.static_steps()
    windowed = pipe.compiled and device.type == "cpu"
    window = fuse.window_plan(ops) if windowed else None
    size, previous = shape.size, None
    stages, then = fuse.hoist(fuse._segments([(op, None) for op in ops]))
    for n, stage in enumerate(stages):
        if isinstance(stage, list):
            segment = [op for op, _ in stage]
            before = size
            for op in segment:
                size = op.output_size(size)
            split = ""
            if isinstance(previous, list):
                resized = any(op.antialias for op, _ in previous) or any(op.antialias for op in segment)
                split = (" (a read of its own: an antialiased resize shares a read only with axis-aligned ops)"
                         if resized else " (a read of its own: a bilinear read extends no edge, so reflect or "
                         "replicate padding shares a read only with whole-pixel ops)")
            lines.append(f"{n + 1}. geometry {_names(segment)} -> {size[0]}x{size[1]}:")
            read = _read(segment, window if n == 0 else None, dtype, windowed and n == 0)
            if _antialiased(segment, before):
                read = ("axis-aligned and shrinking, one antialiased read (PIL's bilinear resize: each output pixel "
                        "averages its footprint, up to 2s + 1 pixels per axis for a downscale by s)")
            lines.append(f"   {read}{split}")
            if n == 0 and then:
                lines.append(f"   then {_names(node for node, _ in then)} on the gathered pixels, before the fills "
                             f"(they change each pixel by its own value, so they commute with moving whole pixels)")
        else:
            node = stage[0]
            size = node.output_size(size)
            lines.append(f"{n + 1}. {_name(node)}: {_step(node)}")
        previous = stage

    kept = 0
    if pipe.compiled:
        if device.type == "cpu":
            cuts = stage_cuts(ops, shape, work)
            if cuts:
                at = ", ".join(f"before {_name(ops[i])} ({_mb(math.prod(s) * work.itemsize)})" for i, s in cuts)
                lines.append(f"compiled calls: {len(cuts) + 1}, stopping {at}: each stop's image goes into "
                             f"a buffer kept for the next call, as fresh memory that large costs a page fault per "
                             f"4 KiB")
                kept += sum(math.prod(s) for s in {s for _, s in cuts}) * work.itemsize
            else:
                large = _mb(memory.LARGE_BYTES)
                lines.append(f"compiled calls: 1 (no whole-input read of an image of {large} or more)")
            if window is None and dtype == torch.uint8:
                window = F.WindowPlan()
            if window is not None:
                source = _window_bytes(window, shape, work)
                kept += source
                lines.append(f"window copy: {_mb(source)}, made by ATen before the compiled call, kept for the next")
            out_bytes = math.prod(out_shape) * out_dtype.itemsize
            if out_bytes >= memory.LARGE_BYTES:
                lines.append(f"output: {_mb(out_bytes)} of fresh memory a call, mapped in 2 MiB pages")
        else:
            lines.append("compiled calls: 1 (sampling and every step in one compiled graph)")
    lines.append(f"kept between calls: {_mb(kept)} per calling thread" if kept else "kept between calls: nothing")
    return "\n".join(lines)


def _read(segment, window, dtype, windowed: bool) -> str:
    """Which read a run of geometric ops gets, and why."""
    kind = fuse.segment_kind(segment)
    if kind == "exact":
        if window is not None:
            copy = "a float copy" + (f" padded by {window.mode}" if window.mode else "") \
                + (" with mirrored rows" if window.mirrored else "")
            return f"whole pixels, as row windows of {copy} (whole-vector loads, where a gather loads lane by lane)"
        return "whole pixels, one gather through per-sample row and column tables"
    if windowed and dtype == torch.uint8:
        source = " from a plain float copy of the uint8 images"
    else:
        source = ""
    if kind == "axis":
        return f"axis-aligned, one separable bilinear read (a row pass, then a column pass){source}"
    if kind == "affine":
        return f"affine, one bilinear read of four taps per pixel{source}"
    if kind == "projective":
        return f"projective, one bilinear read of four taps per pixel after the perspective divide{source}"
    return (f"dense, each output pixel taken back through every map of the run (fields read bilinearly), then one "
            f"bilinear read of four taps{source}")


def _antialiased(segment, before) -> bool:
    """Does the executor read this run antialiased (``fuse.warp``): axis-aligned, an op asks for it, and the
    run may shrink the image."""
    if fuse.segment_kind(segment) != "axis" or not any(op.antialias for op in segment):
        return False
    sizes = [before]
    for op in segment:
        sizes.append(op.output_size(sizes[-1]))
    return max(fuse.tap_counts(segment, sizes)) > 2


def _step(node) -> str:
    if hasattr(node, "select"):
        return "a per-sample choice: each branch runs, each sample keeps its own"
    if not fuse._own_apply(node):  # a user's op or Lambda: what it reads is its own business
        return "its own apply(), on the whole batch"
    if getattr(node, "reads_whole_input", False):
        return "reads its whole input (a mean, neighbouring pixels, a partner sample), which is complete first"
    return "per pixel"


def _window_bytes(plan: F.WindowPlan, shape: Shape, dtype: torch.dtype) -> int:
    B, C, H, W = plan.padded_shape(shape)
    return (2 if plan.mirrored else 1) * (B * C * H * W + 2 * plan.reach) * dtype.itemsize


def _names(ops) -> str:
    return "[" + ", ".join(_name(op) for op in ops) + "]"


def _name(node) -> str:
    inner = getattr(node, "branches", None) or ([node.node] if hasattr(node, "node") else None)
    extra = ", ".join(_name(n) for n in inner) if inner else node.extra_repr()
    if hasattr(node, "p") and inner:
        extra += f", p={node.p}"
    return f"{type(node).__name__}({extra})"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
