"""A Pipeline's randomness: its random streams, and the plan of the draws it makes from them.

``Streams`` is state (it pickles, and ``state_dict`` saves it): one torch.Generator per device, seeded from the
pipeline's seed, or in a DataLoader worker from that seed and the worker's. ``DrawPlans`` is a cache (it does not
pickle): per input shape, which draws ``sample`` asks for and how ``augpipe.draws`` groups them, made by a dry run
that draws nothing, and made again only when an op or node of that pipeline changed.
"""
from __future__ import annotations

import operator

import torch
from torch import Tensor, nn

from . import draws as D
from .ops import Op, Shape

# How many input shapes' draw plans a pipeline keeps (the oldest is dropped first); a plan is a few small lists,
# and remaking one costs one dry run of sample().
PLANS_KEPT = 64


class Streams:
    """The random streams of one pipeline: a generator per device, made from ``seed`` on first use."""

    def __init__(self, seed: int | None):
        self.seed = check_seed(torch.Generator().seed() if seed is None else seed)
        self._generators: dict[str, torch.Generator] = {}
        self._saved_states: dict[str, Tensor] = {}  # loaded by set_state, given to each device's generator when made
        self._worker_seed: int | None = None  # the DataLoader worker's seed the generators were made for, if any

    def generator(self, device) -> torch.Generator:
        """The generator on ``device`` (see ``Pipeline.generator``)."""
        device = torch.device(device)
        if device.type != "cpu" and device.index is None:
            device = torch.device(device.type, torch.get_device_module(device.type).current_device())
        worker = torch.utils.data.get_worker_info()
        worker_seed = None if worker is None else worker.seed
        if worker_seed != self._worker_seed:  # first use in this worker: the copied streams are not its own
            self._generators.clear()
            self._saved_states.clear()
            self._worker_seed = worker_seed
        key = str(device)
        if key not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed if worker_seed is None else _worker_stream_seed(self.seed, worker_seed))
            if key in self._saved_states:
                g.set_state(self._saved_states.pop(key))
            self._generators[key] = g
        return self._generators[key]

    def manual_seed(self, seed: int) -> None:
        """Restart every stream from ``seed``."""
        self.seed = check_seed(seed)
        self._generators.clear()
        self._saved_states.clear()

    def state(self) -> dict:
        """The seed and every generator's state, for ``state_dict``."""
        states = {k: g.get_state() for k, g in self._generators.items()}
        return {"seed": self.seed, "generators": {**self._saved_states, **states}}

    def set_state(self, state: dict) -> None:
        """Go on from a ``state()``: each device's generator takes its saved state when it is made."""
        self.seed = int(state["seed"])
        self._generators.clear()
        self._saved_states = dict(state["generators"])


class DrawPlans:
    """The plans of one pipeline's draws, per input shape and device; see ``augpipe.draws`` for what a plan is."""

    def __init__(self):
        self.by_shape: dict = {}  # (shape, device) -> (node_edits() when planned, (requests, made, where))
        self._nodes_seen = None  # node_edits()'s nodes and counts, found on first use

    def node_edits(self, graph) -> tuple:
        """(nodes, their marks): every op and node in ``graph``, the graph included, and every list of nodes in it
        (``pipe.nodes``, a OneOf's branches), each with a mark that moves when it is changed (``_mark``). The nodes
        are found once, as the pipeline's buffers are, and again after a change, which may have put another in."""
        if self._nodes_seen is not None:
            nodes, marks = self._nodes_seen
            if tuple(map(_mark, nodes)) == marks:
                return self._nodes_seen
        nodes = tuple(m for m in graph.modules() if hasattr(m, "_edits") or isinstance(m, nn.ModuleList))
        self._nodes_seen = (nodes, tuple(map(_mark, nodes)))
        return self._nodes_seen

    def plan(self, graph, shape: Shape, device: torch.device) -> tuple[list, list, list]:
        """(requests, draws, where): the draws ``graph.sample`` asks for at this shape and how ``augpipe.draws.plan``
        groups them; planned on the first call at a shape by a dry run of ``sample``, which draws nothing, and
        checked by another dry run after an op or node of this graph changed (``node_edits``)."""
        # Images of their own sizes: the draws depend on the batch and the graph, not on the sizes, which change
        # from batch to batch (and hold a tensor, which hashes by identity)
        key = (shape if shape.sizes is None else (shape.batch, shape.channels, "sizes"), str(device))
        edits, plan = self.by_shape.get(key, (None, None))
        now = self.node_edits(graph)
        if edits != now:
            planner = D.Planner(device)
            _dry_run(graph, shape, planner, device)
            if plan is None or planner.requests != plan[0]:  # kept when equal: a compiled call's guards hold
                plan = (planner.requests, *D.plan(planner.requests))
            self.by_shape.pop(key, None)
            if len(self.by_shape) >= PLANS_KEPT:  # images of ever-new sizes must not grow this without end
                del self.by_shape[next(iter(self.by_shape))]
            self.by_shape[key] = (now, plan)
        return plan

    def draws(self, graph, shape: Shape, device: torch.device, generator: torch.Generator) -> D.Replay:
        """This call's draws, made from ``generator`` as planned, for ``graph.sample`` to take."""
        requests, made, where = self.plan(graph, shape, device)
        return D.Replay(requests, D.draw(made, generator, device), where)


def _mark(node) -> int | tuple:
    """What moves when ``node`` is changed: an op's or a graph node's count of assignments to its attributes
    (``Op._edits``); for a list of nodes, which nodes it holds (their ids: the nodes seen are kept alive while
    compared, so no id is reused)."""
    if isinstance(node, nn.ModuleList):
        return tuple(map(id, node))
    return node._edits


def check_seed(seed) -> int:
    """torch.Generator takes seeds in [-2**63, 2**64): say so here rather than on the first call."""
    try:
        value = operator.index(seed)  # ints, numpy integers; not floats
    except TypeError:
        raise TypeError(f"Pipeline: seed must be an int, got {type(seed).__name__} {seed!r}") from None
    if isinstance(seed, bool) or not -2**63 <= value < 2**64:
        raise ValueError(f"Pipeline: seed must be an int in [-2**63, 2**64), got {seed!r}")
    return value


def _worker_stream_seed(seed: int, worker_seed: int) -> int:
    """The seed of a pipeline's stream in a DataLoader worker, from the pipeline's and the worker's. Python's hash
    of a tuple of ints is the same in every process (only str and bytes hashes are salted)."""
    return hash((seed, worker_seed)) % 2**64


def _dry_run(graph, shape: Shape, planner: D.Planner, device) -> None:
    """``graph.sample`` on the planner, which notes the draws that ``augpipe.draws`` is asked for. torch's own random
    functions refuse it; an op whose sample calls them gets told how to draw instead, as such draws would escape the
    plan, and with it the seed and replay."""
    try:
        graph.sample(shape, planner, device)
    except TypeError as error:
        if type(planner).__name__ not in str(error):
            raise
        op = next((s for s in reversed(_frame_selves(error)) if isinstance(s, Op)), None)
        name = "an op" if op is None else repr(op)
        raise TypeError(f"{name}: sample() handed its generator to a torch random function "
                        f"({str(error).splitlines()[0]}); draw through augpipe.draws (uniform, normal, bernoulli, "
                        f"permutation, standard_gamma), which the pipeline's seed and replay cover") from error


def _frame_selves(error: BaseException) -> list:
    """The ``self`` of each frame the error passed through, outermost first (None where there is none)."""
    selves, tb = [], error.__traceback__
    while tb is not None:
        selves.append(tb.tb_frame.f_locals.get("self"))
        tb = tb.tb_next
    return selves
