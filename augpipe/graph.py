"""Composition: Pipeline, OneOf, RandomApply.

Every node answers the same three questions: ``check(shape)`` (can it run?), ``output_size(size)`` and
``sample(shape, generator, device) -> params``. ``steps(params)`` flattens a node into the (op, params) list the
executor runs. The Pipeline owns the one torch.Generator (per device) that every parameter is drawn from.

What else a call needs lives beside it: ``validate`` checks the inputs, ``streams`` holds the random streams and
plans the draws, and ``backends`` runs the steps through ``fuse``, eagerly or compiled, with the passes of a
compiled CPU call.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn

from . import backends, streams, validate
from . import draws as D
from .explain import explain
from .functional import compute_dtype
from .packed import PackedImages
from .ops import CutMix, GeometricOp, Mixup, Op, Shape, Sizes, _bernoulli, _check_probability, shape_after


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
            yield from self.node.steps(params["node"])
        else:
            yield self, params

    def select(self, state, params, run):
        return _where(params["keep"], run(state, [(self.node, params["node"])]), state)


class Pipeline(_Composite):
    """A batched augmentation graph: ``pipe(images)`` or ``pipe(images, labels) -> (images, targets)``.

    images: (B, C, H, W) or (C, H, W), uint8 in [0, 255] or float in [0, 1], any device; or images of their own sizes,
    an ``augpipe.PackedImages`` or a list of (C, H, W) tensors, which the graph's geometry must bring to one size
    (each image read from its own size in the one fused read). uint8 comes out float32;
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
        self._make_caches()

    def _make_caches(self) -> None:
        """Set up the caches, made on first use and never pickled: the runner (compiled callables and the buffers
        compiled CPU calls keep), the draw plans, and where the graph's buffers and mixing ops are."""
        self._runner = backends.Runner(self.static_steps())
        self._draw_plans = streams.DrawPlans()
        self._buffer_slots = None  # (module, buffer name) of every buffer, found on first use (_follow)
        self._mixers = None  # does the graph hold a Mixup or CutMix? Found on first use (_mixes)

    def explain(self, images_shape, dtype: torch.dtype = torch.uint8, device="cpu") -> str:
        """The plan of a call on images of ``images_shape``, ``dtype`` and ``device``, in words: which read each run
        of geometric ops gets and why, the steps after it, where a compiled CPU call stops, and the buffers kept
        between calls. Nothing is run or drawn."""
        return explain(self, images_shape, dtype, device)

    def kept_bytes(self) -> int:
        """Bytes of the buffers this pipeline keeps for the calling thread between compiled CPU calls: its window copy
        and stage buffers (``backends.Runner``). Remade on a shape change, freed with the thread, not pickled."""
        return self._runner.kept_bytes()

    def __getstate__(self):
        """Pickle without the compiled callables (they do not pickle) and caches; unpickling compiles afresh."""
        caches = ("_runner", "_draw_plans", "_buffer_slots", "_mixers")
        return {k: v for k, v in self.__dict__.items() if k not in caches}

    def __setstate__(self, state):
        super().__setstate__(state)
        self._make_caches()

    # ------------------------------------------------------------------------------------------- graph protocol
    def check(self, shape: Shape) -> None:
        for n in self.nodes:
            if shape.sizes is not None:
                _check_takes_sizes(n)
            n.check(shape)
            shape = _views_after(n, shape_after(shape, n.output_size(shape.given_size)))

    def output_size(self, size):
        for n in self.nodes:
            size = n.output_size(size)
        return size if isinstance(size, Sizes) else tuple(size)

    def sizes_after(self, params, size):
        for n, p in zip(self.nodes, params):
            size = _sizes_after(n, p, size)
        return size

    def sample(self, shape: Shape, generator: torch.Generator, device) -> list:
        params = []
        for n in self.nodes:
            params.append(n.sample(shape, generator, device))
            shape = _views_after(n, shape_after(shape, _sizes_after(n, params[-1], shape.given_size)))
        return params

    def steps(self, params):
        for n, p in zip(self.nodes, params):
            yield from n.steps(p)

    def static_steps(self) -> list:
        """The ops a call's steps run, in order, as far as they are known without params: a node that picks per
        sample (OneOf, a RandomApply that runs its node) stands for itself."""
        return list(_static_steps(self.nodes))

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

    # ------------------------------------------------------------------------------------------- calling
    def forward(self, images, labels: Tensor | None = None, *, masks: Tensor | None = None,
                boxes: Tensor | None = None, keypoints: Tensor | None = None, params: list | None = None):
        """Augment a batch. Returns images; (images, targets) with labels; a dict when masks, boxes or keypoints
        are given, with "images" and, for each input given, "targets", "masks", "boxes", "keypoints"."""
        packed_masks = None
        if isinstance(images, (list, tuple, PackedImages)):  # images of their own sizes
            single = False
            x, shape, packed_masks = validate.packed(images, masks)
        else:
            single = validate.check_images(images)
            x = images.unsqueeze(0) if single else images
            shape = Shape(*x.shape)
        targets = None if labels is None else validate.targets(labels, shape.batch, single, x.device,
                                                                self.num_classes)
        state = {"images": x, "targets": targets}
        state.update(validate.dense_and_points(shape, single, masks=masks if packed_masks is None else None,
                                               boxes=boxes, keypoints=keypoints))
        if packed_masks is not None:
            state["masks"] = packed_masks
        self.check(shape)
        if isinstance(self.output_size(shape.given_size), Sizes):
            raise ValueError(f"Pipeline: the graph leaves images of different sizes, which a batch tensor cannot "
                             f"hold; end its geometry with {FIXES_SIZE}")
        validate.check_carried(self.modules(), state)
        if labels is None and masks is None and self._mixes():  # masks are a segmentation CutMix's targets
            # stacklevel: the caller's line, above nn.Module's __call__ and _call_impl
            warnings.warn("Pipeline: Mixup/CutMix mix the images but no labels were given, so nothing says how much "
                          "of each image a sample holds; pass labels, pipe(images, labels), unless image-only "
                          "mixing is meant", stacklevel=4)
        self._follow(x.device)
        out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        if shape.batch == 0:
            self.last_params = None
            state["images"] = x.new_empty((0, output_channels(self, shape.channels), *self.output_size(shape.size)),
                                          dtype=out_dtype)
            if masks is not None:
                state["masks"] = state["masks"].new_empty((0, 1, *self.output_size(shape.size)))
            return self._result(state, labels, masks, boxes, keypoints, single)
        dtype = compute_dtype(x.dtype)
        if params is None:
            source = self._draw_plans.draws(self, shape, x.device, self.generator(x.device))  # this call's draws
            params, state = self._runner.sample_and_run(self, shape, source, state, dtype)
        else:
            validate.check_params(params, len(self.nodes), shape.batch, views(self))
            state = self._runner.replay(self, list(zip(self.nodes, params)), state, dtype)
        self.last_params = params
        state["images"] = state["images"].to(out_dtype)
        count = views(self)
        if count > 1:
            state = _by_image(state, count)
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
        if masks is not None and (not isinstance(masks, Tensor) or masks.dim() == (2 if single else 3)):
            out["masks"] = out["masks"].squeeze(-3)
        if masks is None and boxes is None and keypoints is None:
            return out["images"] if labels is None else (out["images"], out["targets"])
        return out

    def _mixes(self) -> bool:
        """Does the graph hold a Mixup or CutMix, at any depth? Looked up once, as ``_follow``'s buffers are."""
        if self._mixers is None:
            self._mixers = any(isinstance(m, (Mixup, CutMix)) for m in self.modules())
        return self._mixers


# The ops that give every image of a batch of mixed sizes one size, named where a graph leaves them mixed.
FIXES_SIZE = "Resize((h, w)), RandomResizedCrop, CenterCrop or RandomCrop(pad_if_needed=True)"


def _check_takes_sizes(node) -> None:
    """Refuse a node that would see images of different sizes and does not read per-sample sizes."""
    if isinstance(node, Pipeline):
        return  # its nodes are checked in turn
    inner = node.node if isinstance(node, RandomApply) and node._masks_params else node
    if not (isinstance(inner, GeometricOp) and inner.mixed_sizes):
        raise ValueError(f"Pipeline: {node!r} gets images of different sizes (a packed batch, or the output of "
                         f"RandomResize or Resize(int)) and needs one size; put {FIXES_SIZE} before it")


def _by_image(state: dict, count: int) -> dict:
    """A batch of ``count`` views per image, (B V, ...), as (B, V, ...); the targets once per image (a view's own
    are its image's)."""
    out = {}
    for key, value in state.items():
        if value is None:
            out[key] = None
        elif key == "targets":
            out[key] = value[::count]
        else:
            out[key] = value.view(-1, count, *value.shape[1:])
    return out


def _views_after(node, shape: Shape) -> Shape:
    """The shape after a node, beyond its size: a batch of every view after one that gives several views of each
    image (FiveCrop, TenCrop), the channels of one that changes them (Grayscale(1))."""
    views = getattr(node, "views", 1)
    channels = output_channels(node, shape.channels)
    return shape._replace(batch=shape.batch * views, channels=channels)


def output_channels(node, channels: int) -> int:
    """The channels after a node (Grayscale(num_output_channels=1) makes one)."""
    if isinstance(node, Pipeline):
        for n in node.nodes:
            channels = output_channels(n, channels)
        return channels
    change = getattr(node, "output_channels", None)
    return channels if change is None else change(channels)


def views(graph) -> int:
    """Views per image of a graph's output (``FiveCrop``, ``TenCrop``), 1 without such an op."""
    count = 1
    for node in graph.nodes:
        count *= views(node) if isinstance(node, Pipeline) else getattr(node, "views", 1)
    return count


def _sizes_after(node, params, size):
    """A node's output size given its params: ``sizes_after`` where the size may be drawn, else ``output_size``."""
    if isinstance(node, (GeometricOp, Pipeline)):
        return node.sizes_after(params, size)
    return node.output_size(size)


def _static_steps(nodes):
    """The ops a graph's steps will run, in order, as far as they are known without params: a node that picks per
    sample (OneOf, a RandomApply that runs its node) stands for itself."""
    for node in nodes:
        if isinstance(node, Pipeline):
            yield from _static_steps(node.nodes)
        else:
            op = node.node if isinstance(node, RandomApply) and node._masks_params else node
            # an op that runs as several steps (a policy's slots) says which
            yield from op.static_steps() if hasattr(op, "static_steps") else (op,)

