"""Composition: Pipeline, OneOf, RandomApply.

Every node answers the same three questions: ``check(shape)`` (can it run?), ``output_size(size)`` and
``sample(shape, generator, device) -> params``. ``steps(params)`` flattens a node into the (op, params) list the
executor runs. The Pipeline owns the one torch.Generator (per device) that every parameter is drawn from.
"""
from __future__ import annotations

import itertools
import math
import threading
import types
import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from . import draws as D
from . import functional as F
from . import fuse, memory, streams, validate
from .explain import explain
from .functional import compute_dtype
from .ops import CutMix, GeometricOp, Mixup, Op, Shape, _bernoulli, _check_probability


def _check_node(node, owner: str) -> None:
    if not isinstance(node, (Op, Pipeline, OneOf, RandomApply)):
        raise TypeError(f"{owner}: expected augpipe ops or graphs (Pipeline, OneOf, RandomApply), got {node!r}")


def _where(keep: Tensor, a: dict, b: dict) -> dict:
    """Per sample, the state a where keep else b, for every tensor in it (images, targets, masks, ...)."""
    out = dict(b)
    for key, value in b.items():
        if value is not None:
            out[key] = torch.where(keep.view(-1, *([1] * (value.dim() - 1))), a[key], value)
    return out


class _Composite(nn.Module):
    # Counts the nodes assigned to this one (``random_apply.node = op``): a graph of another shape may ask for
    # other draws, so a Pipeline holding this node plans again, as for an op's edits (``Op._edits``).
    _edits = 0

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):
            object.__setattr__(self, "_edits", self._edits + 1)

    def forward(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is a graph node: put it in augpipe.Pipeline(...) to call it")


class OneOf(_Composite):
    """Each sample goes through one of the branches, chosen per sample with probabilities ``weights``.

    All branches read the same input (a Mixup branch mixes with un-CutMixed partners), so branches must agree on
    the output size.
    """

    def __init__(self, *nodes, weights: Sequence[float] | None = None):
        super().__init__()
        if not nodes:
            raise ValueError("OneOf: needs at least one branch")
        for n in nodes:
            _check_node(n, "OneOf")
        self.branches = nn.ModuleList(nodes)
        w = torch.as_tensor([1.0] * len(nodes) if weights is None else weights, dtype=torch.float64)
        if w.shape != (len(nodes),) or bool((w < 0).any()) or not float(w.sum()) > 0:
            raise ValueError(f"OneOf: weights must be {len(nodes)} non-negative numbers with a positive sum, "
                             f"got {weights!r}")
        # Branch k takes the draws u in [cut[k-1], cut[k]); a zero weight's interval is empty. Cut points are
        # partial sums over the last partial sum, so trailing zero weights sit at exactly 1 and are never drawn.
        cumulative = w.cumsum(0)
        self._cuts = (cumulative / cumulative[-1])[:-1].tolist()

    def check(self, shape: Shape) -> None:
        sizes = set()
        for b in self.branches:
            b.check(shape)
            sizes.add(tuple(b.output_size(shape.size)))
        if len(sizes) > 1:
            raise ValueError(f"OneOf: branches give different image sizes {sorted(sizes)}; a per-sample choice "
                             f"needs one size")

    def output_size(self, size):
        return self.branches[0].output_size(size)

    def sample(self, shape, generator, device):
        # Inverse CDF with Python-number cut points: nothing is copied to the device and nothing waits for it.
        u = D.uniform(shape.batch, generator, device, torch.float64)
        choice = torch.zeros(shape.batch, dtype=torch.long, device=device)
        for cut in self._cuts:
            choice += u >= cut
        return {"choice": choice, "branches": [b.sample(shape, generator, device) for b in self.branches]}

    def steps(self, params):
        yield self, params

    def select(self, state, params, run):
        out = run(state, [(self.branches[0], params["branches"][0])])
        for k in range(1, len(self.branches)):
            branch = run(state, [(self.branches[k], params["branches"][k])])
            out = _where(params["choice"] == k, branch, out)
        return out


class RandomApply(_Composite):
    """Apply ``node`` to each sample with probability p.

    For an op with a neutral parameter (flip off, factor 1, empty box) this only rewrites its params, so it fuses
    with its neighbours; any other node runs and is selected per sample.
    """

    def __init__(self, node, p: float = 0.5):
        super().__init__()
        _check_node(node, "RandomApply")
        self.node = node
        self.p = _check_probability(p, "RandomApply")

    def extra_repr(self) -> str:
        return f"p={self.p}"

    @property
    def _masks_params(self) -> bool:
        return isinstance(self.node, Op) and hasattr(self.node, "skip")

    def check(self, shape):
        self.node.check(shape)
        if tuple(self.node.output_size(shape.size)) != tuple(shape.size):
            raise ValueError(f"RandomApply({self.node!r}): the node changes the image size "
                             f"{shape.height}x{shape.width} -> {self.node.output_size(shape.size)}, so it cannot "
                             f"be skipped per sample")

    def output_size(self, size):
        return size

    def sample(self, shape, generator, device):
        keep = _bernoulli(shape.batch, self.p, generator, device)
        params = self.node.sample(shape, generator, device)
        if self._masks_params:
            params = self.node.skip(params, keep)
        return {"keep": keep, "node": params}

    def steps(self, params):
        if self._masks_params:
            yield self.node, params["node"]
        else:
            yield self, params

    def select(self, state, params, run):
        return _where(params["keep"], run(state, [(self.node, params["node"])]), state)


class Pipeline(_Composite):
    """A batched augmentation graph: ``pipe(images)`` or ``pipe(images, labels) -> (images, targets)``.

    images: (B, C, H, W) or (C, H, W), uint8 in [0, 255] or float in [0, 1], any device. uint8 comes out float32;
    float dtypes are kept. labels: int (B,) with ``num_classes`` set, or float soft labels (B, K); targets come out
    float (B, K). Every parameter is drawn from this pipeline's generator, seeded by ``seed``; ``last_params``
    holds the last call's, and ``pipe(images, labels, params=...)`` replays them.
    ``compile=True`` runs the fused executor through torch.compile.

    Inputs that are refused or warned about: a shape that reads as channels last, (H, W, C) or (B, H, W, C) with
    C = 1, 3 or 4 and H, W > 4, is refused (``img.permute(2, 0, 1)``, ``images.permute(0, 3, 1, 2)``). A 3-dim
    tensor is one image, so a (B, H, W) grayscale batch would read as B channels: more than 4 channels warn; pass
    ``x.unsqueeze(1)`` for (B, 1, H, W), or a multi-channel image as ``x.unsqueeze(0)``. Float images outside
    [0, 1] (``validate.RANGE_SLACK`` aside) or not finite are refused: a ValueError on a CPU, a device-side assert
    on CUDA.
    """

    def __init__(self, *nodes, seed: int | None = None, num_classes: int | None = None, compile: bool = False):
        super().__init__()
        for n in nodes:
            _check_node(n, "Pipeline")
        if num_classes is not None and not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"Pipeline: num_classes must be a positive int, got {num_classes!r}")
        self.nodes = nn.ModuleList(nodes)
        self.num_classes = num_classes
        self._streams = streams.Streams(seed)
        self.last_params = None
        self.compiled = bool(compile)
        self._forget_compiled()

    def _forget_compiled(self) -> None:
        self._compiled_fns: dict = {}  # (which, device type, scalar) -> compiled callable, made on first use
        self._draw_plans = streams.DrawPlans()
        # The calling thread's window copy (``window``) and stage buffers (``stages``): per thread, so that threads
        # never share one, and freed with the thread.
        self._kept = threading.local()
        self._stage_cuts: dict = {}  # (shape, dtype) -> [(step index, image shape)]: see _stages
        # The window copy that the first segment reads as rows (padded, mirrored) when all its ops are exact;
        # otherwise None, and _window makes a plain copy of uint8 images (read by a bilinear segment or a first op
        # that is not geometric). An op changed later only makes warp fall back to reading the images.
        self._window_plan = fuse.window_plan(_static_steps(self.nodes))
        leading = list(itertools.takewhile(lambda op: isinstance(op, GeometricOp), _static_steps(self.nodes)))
        self._separable_first = not all(op.exact for op in leading) and all(op.axis_aligned for op in leading)
        self._buffer_slots = None  # (module, buffer name) of every buffer, found on first use (_follow)
        self._mixers = None  # does the graph hold a Mixup or CutMix? Found on first use (_mixes)

    def _compiled(self, which: str, device: torch.device, scalar: bool = False):
        """The compiled executor (``"run"``) or sample-and-run (``"sample_run"``) for ``device``'s type.

        compile=True also compiles sample(), together with the run: its random draws are made ahead, as planned
        per input shape (``streams.DrawPlans``), and one compiled call draws nothing, computes the params and applies
        them. Each device type gets its own callable because inductor's fusion options (INDUCTOR_OPTIONS) differ by
        device.

        ``scalar``: compiled to scalar C++ (SCALAR_OPTIONS), for a CPU call that is mostly the gather of a leading
        axis-aligned bilinear segment (a resized crop, with flips and crops around it): one that stops before any
        op reads its whole input (``_stages``). Inductor vectorizes a gather by storing the lane indices, loading
        lane by lane into a stack buffer and reloading that as a vector, a stall on every gather that scalar code
        does not have. A call that also holds the contrast reduction and the mixing (small images, unstaged), or a
        rotation's per-pixel taps, is faster vectorized, so only this kind of call is scalar. Measurements:
        docs/design.md, "Scalar compile".
        """
        key = (which, device.type, scalar)
        if key not in self._compiled_fns:
            if which == "sample_run":
                fn = types.MethodType(_own_copy(Pipeline._sample_and_run), self)
            else:  # "run", or a later stage of a staged call ("stage1", ...): each compiled separately
                fn = _own_copy(fuse.run_returning_tables)
            options = INDUCTOR_OPTIONS.get(device.type)
            if scalar:
                options = {**options, **SCALAR_OPTIONS}
            self._compiled_fns[key] = torch.compile(fn, dynamic=None, options=options)
        return self._compiled_fns[key]

    def _run(self, steps, state: dict, dtype, window=None) -> dict:
        if not self.compiled:
            return fuse.run(steps, state, dtype)
        state, _ = self._compiled("run", state["images"].device)(steps, state, dtype, window=window)
        return state

    def _window(self, images: Tensor, dtype) -> fuse.Window | None:
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
        if not self.compiled or images.device.type != "cpu":
            return None
        plan = self._window_plan
        if images.dtype == torch.uint8 and plan is None:
            plan = F.WindowPlan()  # a plain copy, read as floats: by a bilinear read, or by the first op
        if plan is None:
            return None
        kept = getattr(self._kept, "window", None)
        source = F.window_source(images, plan, dtype, out=None if kept is None else kept.source)
        self._kept.window = fuse.Window(source, plan)
        return self._kept.window

    def _stages(self, shape: Shape, dtype, device: torch.device) -> list[tuple[int, Tensor]]:
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
        if device.type != "cpu":
            return []
        key = (shape, dtype)
        if key not in self._stage_cuts:
            self._stage_cuts[key] = stage_cuts(list(_static_steps(self.nodes)), shape, dtype)
        cuts = self._stage_cuts[key]
        if not cuts:
            return []
        kept = getattr(self._kept, "stages", None)
        if kept is None or [(i, tuple(b.shape), b.dtype) for i, b in kept] != [(i, s, dtype) for i, s in cuts]:
            by_shape = {s: torch.empty(s, dtype=dtype) for s in {s for _, s in cuts}}
            kept = self._kept.stages = [(i, by_shape[s]) for i, s in cuts]
        return kept

    def _output_buffer(self, shape: Shape, dtype, device: torch.device) -> Tensor | None:
        """Fresh memory for a compiled CPU call's output images when they are large (``memory.empty``: mapped in
        huge pages), for the last compiled call to write them into; None otherwise."""
        out = (shape.batch, shape.channels, *self.output_size(shape.size))
        if device.type != "cpu" or math.prod(out) * dtype.itemsize < memory.LARGE_BYTES:
            return None
        return memory.empty(out, dtype)

    def explain(self, images_shape, dtype: torch.dtype = torch.uint8, device="cpu") -> str:
        """The plan of a call on images of ``images_shape``, ``dtype`` and ``device``, in words: which read each run
        of geometric ops gets and why, the steps after it, where a compiled CPU call stops, and the buffers kept
        between calls. Nothing is run or drawn."""
        return explain(self, images_shape, dtype, device)

    def kept_bytes(self) -> int:
        """Bytes of the buffers this pipeline keeps for the calling thread between compiled CPU calls: its window copy
        (``_window``) and stage buffers (``_stages``). Remade on a shape change, freed with the thread, not pickled."""
        window = getattr(self._kept, "window", None)
        kept = ([] if window is None else [window.source]) + [b for _, b in getattr(self._kept, "stages", [])]
        unique = {b.untyped_storage().data_ptr(): b.untyped_storage().nbytes() for b in kept}
        return sum(unique.values())

    def __getstate__(self):
        """Pickle without the compiled callables (they do not pickle) and caches; unpickling compiles afresh."""
        caches = ("_compiled_fns", "_draw_plans", "_kept", "_stage_cuts", "_buffer_slots", "_mixers")
        return {k: v for k, v in self.__dict__.items() if k not in caches}

    def __setstate__(self, state):
        super().__setstate__(state)
        self._forget_compiled()

    # ------------------------------------------------------------------------------------------- graph protocol
    def check(self, shape: Shape) -> None:
        for n in self.nodes:
            n.check(shape)
            shape = Shape(shape.batch, shape.channels, *n.output_size(shape.size))

    def output_size(self, size):
        for n in self.nodes:
            size = n.output_size(size)
        return tuple(size)

    def sample(self, shape: Shape, generator: torch.Generator, device) -> list:
        params = []
        for n in self.nodes:
            params.append(n.sample(shape, generator, device))
            shape = Shape(shape.batch, shape.channels, *n.output_size(shape.size))
        return params

    def steps(self, params):
        for n, p in zip(self.nodes, params):
            yield from n.steps(p)

    # ------------------------------------------------------------------------------------------- randomness
    def generator(self, device) -> torch.Generator:
        """This pipeline's generator on ``device``, created from ``seed`` on first use.

        In a DataLoader worker it is seeded from ``seed`` and the worker's seed instead: every worker starts as a
        copy of the pipeline, so the same stream would give each worker, and each epoch's fresh workers, the same
        draws. The worker's seed differs per worker and per epoch, and follows the main process's torch seed (or
        the DataLoader's generator), as every torch draw in a worker does."""
        return self._streams.generator(device)

    @property
    def seed(self) -> int:
        """The seed of this pipeline's streams (``manual_seed`` sets it)."""
        return self._streams.seed

    def manual_seed(self, seed: int) -> "Pipeline":
        """Restart every stream from ``seed`` (for example seed + rank per process)."""
        self._streams.manual_seed(seed)
        return self

    def get_extra_state(self):
        return self._streams.state()

    def set_extra_state(self, state):
        self._streams.set_state(state)

    def _sample_and_run(self, shape: Shape, source, device, state: dict, dtype, window=None, stop=None,
                        keep_in=None) -> tuple[list, dict, list]:
        """Sample, then run the steps before ``stop`` (all by default), the images ending in ``keep_in``. Returns
        the per-sample tables too (``fuse.run``): compiled, returning them has inductor store them once."""
        params = self.sample(shape, source, device)
        steps = list(self.steps(params))[:stop]
        state, tables = fuse.run_returning_tables(steps, state, dtype, window=window, keep_in=keep_in)
        return params, state, tables

    def _draw_and_run(self, shape: Shape, state: dict, dtype) -> tuple[list, dict]:
        """Draw this call's params and apply them. The draws are planned per shape and made ahead
        (``streams.DrawPlans``); ``sample`` turns them into params, eagerly, or compiled with the run into one call.
        On a CPU that call may stop where a large image is stored, and further compiled calls go on (``_stages``)."""
        device = state["images"].device
        source = self._draw_plans.draws(self, shape, device, self.generator(device))
        if not self.compiled:
            params = self.sample(shape, source, device)
            return params, fuse.run(list(zip(self.nodes, params)), state, dtype)
        window = self._window(state["images"], dtype)
        stages = self._stages(shape, dtype, device)
        stops = [i for i, _ in stages] + [None]  # stage k runs steps[stops[k - 1]:stops[k]] into buffers[k]
        buffers = [b for _, b in stages] + [self._output_buffer(shape, dtype, device)]
        scalar = bool(stages) and self._separable_first  # the first call is then mostly the resample's gather
        params, state, _ = self._compiled("sample_run", device, scalar)(shape, source, device, state, dtype, window,
                                                                         stops[0], buffers[0])
        if not stages:
            return params, state
        steps = list(self.steps(params))
        for k in range(1, len(stops)):
            run = self._compiled(f"stage{k}", device)
            state, _ = run(steps[stops[k - 1]:stops[k]], state, dtype, keep_in=buffers[k])
        if any(state["images"].untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for b in buffers[:-1]):
            state["images"] = state["images"].clone()  # never hand out a buffer the next call overwrites
        return params, state

    # ------------------------------------------------------------------------------------------- calling
    def forward(self, images: Tensor, labels: Tensor | None = None, *, masks: Tensor | None = None,
                boxes: Tensor | None = None, keypoints: Tensor | None = None, params: list | None = None):
        """Augment a batch. Returns images; (images, targets) with labels; a dict when masks, boxes or keypoints
        are given, with "images" and, for each input given, "targets", "masks", "boxes", "keypoints"."""
        single = validate.check_images(images)
        x = images.unsqueeze(0) if single else images
        shape = Shape(*x.shape)
        targets = None if labels is None else validate.targets(labels, shape.batch, single, x.device,
                                                                self.num_classes)
        state = {"images": x, "targets": targets}
        state.update(validate.dense_and_points(shape, single, masks=masks, boxes=boxes, keypoints=keypoints))
        self.check(shape)
        validate.check_carried(self.modules(), state)
        if labels is None and masks is None and self._mixes():  # masks are a segmentation CutMix's targets
            # stacklevel: the caller's line, above nn.Module's __call__ and _call_impl
            warnings.warn("Pipeline: Mixup/CutMix mix the images but no labels were given, so nothing says how much "
                          "of each image a sample holds; pass labels, pipe(images, labels), unless image-only "
                          "mixing is meant", stacklevel=4)
        self._follow(x.device)
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        if shape.batch == 0:
            self.last_params = None
            state["images"] = x.new_empty((0, shape.channels, *self.output_size(shape.size)), dtype=out_dtype)
            if masks is not None:
                state["masks"] = state["masks"].new_empty((0, 1, *self.output_size(shape.size)))
            return self._result(state, labels, masks, boxes, keypoints, single)
        if params is None:
            params, state = self._draw_and_run(shape, state, compute_dtype(x.dtype))
        else:
            validate.check_params(params, len(self.nodes), shape.batch)
            dtype = compute_dtype(x.dtype)
            state = self._run(list(zip(self.nodes, params)), state, dtype, self._window(x, dtype))
        self.last_params = params
        state["images"] = state["images"].to(out_dtype)
        return self._result(state, labels, masks, boxes, keypoints, single)

    def _follow(self, device: torch.device) -> None:
        """Keep the graph's constants (Normalize's mean and std) on the images' device, as nn.Module.to would:
        moved once, not copied from the host on every call, which on a GPU would make the host wait.
        Where the buffers live is looked up once (walking the modules costs as much as the rest of a call's checks);
        ``.to`` replaces a buffer in place in its module, so the lookup stays right."""
        if self._buffer_slots is None:
            self._buffer_slots = [(m, name) for m in self.modules() for name, b in m._buffers.items() if b is not None]
        if any(m._buffers[name].device != device for m, name in self._buffer_slots):
            self.to(device)

    @staticmethod
    def _result(state, labels, masks, boxes, keypoints, single):
        """Shape the outputs like the inputs: one image stays one image, (B, H, W) masks stay (B, H, W)."""
        out = {k: (v[0] if single else v) for k, v in state.items() if v is not None}
        if masks is not None and masks.dim() == (2 if single else 3):
            out["masks"] = out["masks"].squeeze(-3)
        if masks is None and boxes is None and keypoints is None:
            return out["images"] if labels is None else (out["images"], out["targets"])
        return out

    def _mixes(self) -> bool:
        """Does the graph hold a Mixup or CutMix, at any depth? Looked up once, as ``_follow``'s buffers are."""
        if self._mixers is None:
            self._mixers = any(isinstance(m, (Mixup, CutMix)) for m in self.modules())
        return self._mixers

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


# Inductor options for a CPU call that gathers a bilinear resample's taps: scalar C++ (see Pipeline._compiled).
SCALAR_OPTIONS = {"cpp.simdlen": 1}


# Images this large are fresh memory on every call, a page fault per 4 KiB (see augpipe.memory), so a compiled CPU
# call keeps them in buffers of its own instead (Pipeline._stages). Smaller blocks are reused from malloc's heap.
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


def stage_cuts(ops, shape: Shape, dtype) -> list[tuple[int, tuple[int, ...]]]:
    """(step index, image shape) where a compiled CPU call on ``shape`` stops (``Pipeline._stages``): before each op
    but the first that reads its whole input, when that input is an image of STAGE_MIN_BYTES or more."""
    cuts, size = [], shape.size
    for i, op in enumerate(ops):
        image = (shape.batch, shape.channels, *size)
        large = math.prod(image) * dtype.itemsize >= STAGE_MIN_BYTES
        if i and large and getattr(op, "reads_whole_input", False):
            cuts.append((i, image))
        size = op.output_size(size)
    return cuts


def _static_steps(nodes):
    """The ops a graph's steps will run, in order, as far as they are known without params: a node that picks per
    sample (OneOf, a RandomApply that runs its node) stands for itself."""
    for node in nodes:
        if isinstance(node, Pipeline):
            yield from _static_steps(node.nodes)
        elif isinstance(node, RandomApply) and node._masks_params:
            yield node.node
        else:
            yield node

