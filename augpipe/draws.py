"""Where sampling takes its randomness from: two kinds of draw, from a torch.Generator or from a plan drawn ahead.

An op's ``sample`` (an op of your own too, see ``augpipe.Op``) draws through ``uniform``, ``normal``,
``bernoulli``, ``permutation`` and ``standard_gamma``, passing on the ``generator`` it was given: that may be a
torch.Generator or a stand-in for the pipeline's, and these helpers take either.

Underneath, every draw is a ``uniform`` or a ``standard_gamma`` (the others transform uniforms), and the rest of
``sample`` is arithmetic on what they return. Called with a generator, they call torch. A Pipeline
instead plans its draws once per input shape: a dry run of ``sample`` notes which draws it asks for (``Planner``,
which draws nothing), and ``plan`` groups them, all uniforms of one dtype into one draw and all gammas of one
alpha into another. Each call then makes those few draws from the pipeline's generator (``draw``) and hands
``sample`` a ``Replay`` that gives each request its own slice. Eager and compiled calls share the plan, so they
give the same params; on a GPU each draw is a kernel launch the host waits to issue, so a few grouped draws beat
many small ones. Compiled, ``sample`` is traced with the rest of the call: its dozens of small arithmetic ops run
as part of a few fused kernels instead of one launch each.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def uniform(size, generator, device, dtype: torch.dtype = torch.float32) -> Tensor:
    """U[0, 1) of ``size`` (an int or a tuple)."""
    if isinstance(generator, _Source):
        return generator.take(("uniform", _tuple(size), dtype))
    return torch.rand(_tuple(size), generator=generator, device=device, dtype=dtype)


def normal(size, generator, device, dtype: torch.dtype = torch.float32) -> Tensor:
    """N(0, 1) of ``size``, by the Box-Muller transform of two float64 uniforms per value: a plan draws them with
    the other float64 uniforms, where torch's normal sampler would be a draw of its own."""
    u = uniform((2, *_tuple(size)), generator, device, torch.float64)
    return (torch.sqrt(-2 * torch.log1p(-u[0])) * torch.cos(2 * math.pi * u[1])).to(dtype)


def bernoulli(p: float, size, generator, device) -> Tensor:
    """True with probability ``p``, bool of ``size``: the samples an op with probability p applies to."""
    return uniform(size, generator, device) < p


def standard_gamma(alpha: float, size, generator, device) -> Tensor:
    """Gamma(alpha, 1) in float64 of ``size``.

    Gamma(1, 1) is the exponential distribution: -log(1 - U), from float64 uniforms, which a plan draws together
    with the other float64 uniforms. (Mixup and CutMix default to alpha = 1, where torch's gamma sampler would be
    a slower call and, on a GPU, a launch of its own.)"""
    if alpha == 1:
        return -torch.log1p(-uniform(size, generator, device, torch.float64))
    if isinstance(generator, _Source):
        return generator.take(("gamma", _tuple(size), float(alpha)))
    concentration = torch.full(_tuple(size), float(alpha), dtype=torch.float64, device=device)
    return torch._standard_gamma(concentration, generator=generator)


def permutation(n: int, generator, device) -> Tensor:
    """A uniformly random permutation of 0..n-1: the order of n float64 uniform keys (iid and continuous, so
    every order is equally likely; a tie, at odds of about n^2 / 2^54, is broken by position)."""
    return uniform(n, generator, device, torch.float64).argsort(stable=True)


def _tuple(size) -> tuple[int, ...]:
    return (int(size),) if isinstance(size, int) else tuple(int(s) for s in size)


class _Source:
    def take(self, request):
        raise NotImplementedError


class Planner(_Source):
    """Notes each request ``(kind, size, dtype or alpha)`` that ``sample`` makes, answering with zeros: it draws
    nothing, so planning leaves the generator where it was. (``sample`` never branches on a drawn value: it is
    traced by torch.compile.)"""

    def __init__(self, device):
        self.device, self.requests = device, []

    def take(self, request):
        self.requests.append(request)
        kind, size, extra = request
        return torch.zeros(size, dtype=extra if kind == "uniform" else torch.float64, device=self.device)


class Replay(_Source):
    """Hands out draws made ahead, in order; a request that differs from the planned one is an error.

    Request i is ``drawn[k][start:start + numel]`` reshaped to its size, for ``(k, start) = where[i]``."""

    def __init__(self, requests: list, drawn: list[Tensor], where: list[tuple[int, int]]):
        self.requests, self.drawn, self.where, self.next = requests, drawn, where, 0

    def take(self, request):
        if self.next >= len(self.requests) or self.requests[self.next] != request:
            raise RuntimeError(f"augpipe: sample() asked for {request}, the plan says "
                               f"{self.requests[self.next] if self.next < len(self.requests) else 'nothing more'}")
        k, start = self.where[self.next]
        self.next += 1
        size = request[1]
        return self.drawn[k][start:start + math.prod(size)].view(size)


def plan(requests: list) -> tuple[list, list[tuple[int, int]]]:
    """The draws that serve ``requests``: one per (kind, dtype or alpha), in order of first use, each as long as
    the requests of its group together; and where each request lies in them: (draw index, offset)."""
    made, where, group = [], [], {}
    for kind, size, extra in requests:
        k = group.setdefault((kind, extra), len(group))
        if k == len(made):
            made.append((kind, (0,), extra))
        start = made[k][1][0]
        made[k] = (kind, (start + math.prod(size),), extra)
        where.append((k, start))
    return made, where


def draw(made: list, generator: torch.Generator, device) -> list[Tensor]:
    """Make the planned draws from the generator, in order."""
    return [uniform(size, generator, device, extra) if kind == "uniform"
            else standard_gamma(extra, size, generator, device) for kind, size, extra in made]
