"""How a Pipeline's call runs: eagerly, or through torch.compile, and the passes that speed up a compiled CPU call.

A ``Runner`` holds one pipeline's compiled callables and the buffers its compiled CPU calls keep between calls (per
calling thread). The passes below change how a compiled CPU call reads and stores images, never what it computes:
each applies where its line says, and ``PASSES`` switches it off, for a test that its output is the same without
it, or to measure what it buys. ``pipe.explain(shape)`` says which of them a pipeline takes.
"""
from __future__ import annotations

import itertools
import math
import threading
import types

import torch
from torch import Tensor

from . import functional as F
from . import fuse, memory
from .ops import Shape, Sizes

# Each pass, on unless switched off here, and when it applies (compiled, on a CPU, always):
# - "window": uint8 images, or a first run of whole-pixel geometric ops, are copied to float by ATen before the
#   compiled call, which reads the copy (padded and mirrored for those ops) as whole vectors (``Runner.window``).
# - "stages": before each op but the first that reads its whole input from an image of STAGE_MIN_BYTES or more,
#   the call stops, storing the image in a buffer kept for the next call, and another call goes on (``stages``).
# - "huge_pages": output images of memory.LARGE_BYTES or more are written into fresh memory mapped in huge pages
#   (``Runner.output_buffer``).
# - "keep_freed_memory": on the first CPU call in a process, eager or compiled, glibc is asked to keep freed blocks
#   for reuse (``memory.keep_freed_memory_once``; the environment variable AUGPIPE_KEEP_FREED_MEMORY=0 opts out).
PASSES = {"window": True, "stages": True, "huge_pages": True, "keep_freed_memory": True}


# Inductor's fusion options per device type (torch.compile's ``options``). By default, on a CPU, inductor stores a
# full-size result of any pointwise formula longer than 50 ops that two consumers read, and of a long gather index.
# The per-pixel source index of a composed map is such a formula (matrix entries, steps, bounds), so compiled CPU
# pipelines wrote and read back full-size int64 indices, bool masks and uint8 copies on every call. A higher
# threshold keeps those formulas in the loop that gathers; a gathered image that two passes read (the contrast
# mean, then the apply) is still stored once.
# Inductor also checks every indirect index of a C++ loop against its bound, a branch per vector that keeps the
# per-row index work of window reads (``F.gather_windows``) inside the innermost loop; augpipe's indices are in
# range by construction (clamped, or windows within the source's reach, which an eager test reads with raising
# indexing), so the checks are off.
# On CUDA the checks of indirect indices are off for the same reason (a device assert per gathered pixel); the
# realization thresholds are inductor's: storing nothing image-sized but the output makes each pixel work out its
# sample's composed chain itself, for itself and for its CutMix partner, which was slower.
# On a CPU the code that allocates a call's buffers and calls the kernel is C++ too (``cpp_wrapper``), not Python:
# less host time a call, for a slightly longer first compile. Measurements: docs/design.md, "Compiling".
INDUCTOR_OPTIONS: dict[str, dict] = {"cpu": {"realize_opcount_threshold": 200, "assert_indirect_indexing": False,
                                             "cpp_wrapper": True},
                                     "cuda": {"assert_indirect_indexing": False}}


# Images this large are fresh memory on every call, a page fault per 4 KiB (see augpipe.memory), so a compiled CPU
# call keeps them in buffers of its own instead (Runner.stages). Smaller blocks are reused from malloc's heap.
STAGE_MIN_BYTES = memory.LARGE_BYTES

_copies = itertools.count()


def _own_copy(fn):
    """``fn`` with a code object of its own, named ``<name>_<n>``. Dynamo keeps compiled graphs per code object,
    with room for 8 (torch's recompile limit): shared by every pipeline, the 9th configuration in a process silently
    ran eager (seen with ten pipelines of different strengths). A copy per pipeline gives each its own 8, for its
    shapes. The new name matters too: dynamo remembers which sizes changed by (file, line, name), so copies under
    one name shared it, and a pipeline's first compile was already dynamic in shape when any other pipeline had
    seen two batch sizes, which made it slower than a pipeline compiled alone in its process.
    """
    name = f"{fn.__name__}_{next(_copies)}"
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


class Runner:
    """Runs one pipeline's calls, eagerly or compiled (as ``graph.compiled`` says at each call), with the callables
    it compiled and the buffers it keeps. Made with the ops of the graph as built (``ops``, its steps as far as they
    are known without params), it is a cache: never pickled, and made afresh for a copy."""

    def __init__(self, ops: list):
        self.fns: dict = {}  # (which, device type) -> compiled callable, made on first use
        # The calling thread's window copy (``window``) and stage buffers (``stages``): per thread, so that threads
        # never share one, and freed with the thread.
        self.kept = threading.local()
        self._stage_cuts: dict = {}  # (shape, dtype) -> [(step index, image shape)]: see stages
        # The window copy that the first segment reads as rows (padded, mirrored) when all its ops are exact;
        # otherwise None, and window() makes a plain copy of uint8 images (read by a bilinear segment or a first op
        # that is not geometric). An op changed later only makes warp fall back to reading the images.
        self.window_plan = fuse.window_plan(ops)

    def compiled(self, graph, which: str, device: torch.device):
        """The compiled executor (``"run"``) or sample-and-run (``"sample_run"``) for ``device``'s type.

        compile=True also compiles sample(), together with the run: its random draws are made ahead, as planned
        per input shape (``streams.DrawPlans``), and one compiled call draws nothing, computes the params and applies
        them. Each device type gets its own callable because inductor's fusion options (INDUCTOR_OPTIONS) differ by
        device.
        """
        key = (which, device.type)
        if key not in self.fns:
            if which == "sample_run":
                fn = types.MethodType(_own_copy(sample_then_run), graph)
            else:  # "run", or a later stage of a staged call ("stage1", ...): each compiled separately
                fn = _own_copy(fuse.run_returning_tables)
            options = INDUCTOR_OPTIONS.get(device.type)
            self.fns[key] = torch.compile(fn, dynamic=None, options=options)
        return self.fns[key]

    def replay(self, graph, steps, state: dict, dtype) -> dict:
        """Run the given steps (params given, nothing drawn)."""
        _keep_freed_memory(state["images"].device)
        if not graph.compiled:
            return fuse.run(steps, state, dtype)
        window = self.window(graph, state["images"], dtype)
        state, _ = self.compiled(graph, "run", state["images"].device)(steps, state, dtype, window=window)
        return state

    def sample_and_run(self, graph, shape: Shape, source, state: dict, dtype) -> tuple[list, dict]:
        """Turn this call's draws (``source``, made ahead as ``streams.DrawPlans`` planned them) into params with
        ``graph.sample`` and apply them: eagerly, or compiled with the run into one call. On a CPU that call may
        stop where a large image is stored, and further compiled calls go on (``stages``)."""
        device = state["images"].device
        _keep_freed_memory(device)
        if not graph.compiled:
            params = graph.sample(shape, source, device)
            return params, fuse.run(list(zip(graph.nodes, params)), state, dtype)
        window = self.window(graph, state["images"], dtype)
        stages = self.stages(graph, shape, dtype, device)
        stops = [i for i, _ in stages] + [None]  # stage k runs steps[stops[k - 1]:stops[k]] into buffers[k]
        buffers = [b for _, b in stages] + [self.output_buffer(graph, shape, dtype, device)]
        params, state, _ = self.compiled(graph, "sample_run", device)(shape, source, device, state, dtype, window,
                                                                      stops[0], buffers[0])
        if not stages:
            return params, state
        steps = list(graph.steps(params))
        for k in range(1, len(stops)):
            run = self.compiled(graph, f"stage{k}", device)
            state, _ = run(steps[stops[k - 1]:stops[k]], state, dtype, keep_in=buffers[k])
        if any(state["images"].untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for b in buffers[:-1]):
            state["images"] = state["images"].clone()  # never hand out a buffer the next call overwrites
        return params, state

    def window(self, graph, images: Tensor, dtype) -> fuse.Window | None:
        """The images as the first segment of a compiled CPU run reads them (``F.window_source``), or None.

        Inductor's C++ loops load a per-pixel gather lane by lane, and uint8 a quarter vector at a time through a
        stack buffer, where ATen converts uint8 to float at full vector width. So on a CPU the leading flips and
        crops read rows of a float copy made here by ATen, padded and mirrored once, which the compiled loop reads
        as whole vectors; a reflect- or replicate-padded first crop has its padding made in the copy. When the
        first segment is bilinear (a resized crop, a rotation), its taps are gathered lane by lane in any case, but
        from a plain float copy rather than from uint8: one stack buffer per gather instead of two. When no
        geometric op comes first, the first op reads a plain copy too. The copy's memory is kept for the next call
        (one copy per calling thread, remade when the shape changes, freed with the thread): fresh memory costs a
        page fault per 4 KiB, about as much as the whole read. Measurements: docs/design.md, "The window copy" and
        "The plain float copy".
        """
        if not (PASSES["window"] and graph.compiled and images.device.type == "cpu") or isinstance(images, F.Flat):
            return None  # images of their own sizes are read from their buffer
        plan = self.window_plan
        if images.dtype == torch.uint8 and plan is None:
            plan = F.WindowPlan()  # a plain copy, read as floats: by a bilinear read, or by the first op
        if plan is None:
            return None
        kept = getattr(self.kept, "window", None)
        source = F.window_source(images, plan, dtype, out=None if kept is None else kept.source)
        self.kept.window = fuse.Window(source, plan)
        return self.kept.window

    def stages(self, graph, shape: Shape, dtype, device: torch.device) -> list[tuple[int, Tensor]]:
        """Where a compiled CPU call stops: (step index, buffer) for each op that reads its whole input (contrast's
        mean, a mix partner) from an image of STAGE_MIN_BYTES or more, other than the first step. No stop on a GPU,
        whose caching allocator hands a call the memory the last call freed.

        Such an image is stored in full anyway. Inductor would allocate it afresh on every call, and glibc maps an
        allocation that large from the kernel each time, a page fault per 4 KiB. So the compiled call ends there,
        writing the image into a buffer kept for the next call (one set per calling thread, remade when the shape
        changes, freed with the thread), and a further compiled call goes on from it. Stops at images of one shape
        share a buffer: a stage that reads it pixel by pixel (contrast, Normalize) writes its result back in place;
        one that reads other pixels (a mix) has inductor store its result aside first, as functionalization
        requires.
        """
        if not PASSES["stages"] or device.type != "cpu":
            return []
        key = (shape if shape.sizes is None else shape._replace(sizes=None), dtype)
        if key not in self._stage_cuts:
            self._stage_cuts[key] = stage_cuts(graph.static_steps(), shape, dtype)
        cuts = self._stage_cuts[key]
        if not cuts:
            return []
        kept = getattr(self.kept, "stages", None)
        if kept is None or [(i, tuple(b.shape), b.dtype) for i, b in kept] != [(i, s, dtype) for i, s in cuts]:
            by_shape = {s: torch.empty(s, dtype=dtype) for s in {s for _, s in cuts}}
            kept = self.kept.stages = [(i, by_shape[s]) for i, s in cuts]
        return kept

    def output_buffer(self, graph, shape: Shape, dtype, device: torch.device) -> Tensor | None:
        """Fresh memory for a compiled CPU call's output images when they are large (``memory.empty``: mapped in
        huge pages), for the last compiled call to write them into; None otherwise."""
        out = (shape.batch, _output_channels(graph, shape.channels), *graph.output_size(shape.size))
        if not PASSES["huge_pages"] or device.type != "cpu" or math.prod(out) * dtype.itemsize < memory.LARGE_BYTES:
            return None
        return memory.empty(out, dtype)

    def kept_bytes(self) -> int:
        """Bytes of the buffers kept for the calling thread between compiled CPU calls: the window copy (``window``)
        and stage buffers (``stages``)."""
        window = getattr(self.kept, "window", None)
        kept = ([] if window is None else [window.source]) + [b for _, b in getattr(self.kept, "stages", [])]
        unique = {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in kept}
        return sum(unique.values())


def _output_channels(node, channels: int) -> int:
    from .graph import output_channels  # graph imports this module

    return output_channels(node, channels)


def _keep_freed_memory(device: torch.device) -> None:
    if PASSES["keep_freed_memory"] and device.type == "cpu":
        memory.keep_freed_memory_once()


def sample_then_run(graph, shape: Shape, source, device, state: dict, dtype, window=None, stop=None,
                    keep_in=None) -> tuple[list, dict, list]:
    """Sample, then run the steps before ``stop`` (all by default), the images ending in ``keep_in``. Returns
    the per-sample tables too (``fuse.run``): compiled, returning them has inductor store them once."""
    params = graph.sample(shape, source, device)
    steps = list(graph.steps(params))[:stop]
    state, tables = fuse.run_returning_tables(steps, state, dtype, window=window, keep_in=keep_in)
    return params, state, tables


def stage_cuts(ops, shape: Shape, dtype) -> list[tuple[int, tuple[int, ...]]]:
    """(step index, image shape) where a compiled CPU call on ``shape`` stops (``Runner.stages``): before each op
    but the first that reads its whole input, when that input is an image of STAGE_MIN_BYTES or more."""
    cuts, size, channels = [], shape.size, shape.channels
    for i, op in enumerate(ops):
        image = (shape.batch, channels, *size)
        large = math.prod(image) * dtype.itemsize >= STAGE_MIN_BYTES
        if i and large and getattr(op, "reads_whole_input", False):
            cuts.append((i, image))
        size = op.output_size(size)
        size = size.high if isinstance(size, Sizes) else size  # images of their own sizes: the largest
        channels = _output_channels(op, channels)
    return cuts
