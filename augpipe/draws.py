"""Where sampling takes its randomness from: three kinds of draw, from a torch.Generator or from a list drawn ahead.

Every op's ``sample`` draws through ``uniform``, ``standard_gamma`` and ``permutation``; everything else it does is
arithmetic on what they return. Eagerly those call torch with the pipeline's generator. For ``compile=True`` the
pipeline first records, once per input shape, which draws ``sample`` makes (``Recorder``); on later calls it makes
exactly those draws from the generator, in the same order (``draw``; on a CPU runs of them are drawn as one,
which gives the same numbers: ``merge``), and hands them (``Replay``) to one compiled
call that samples and applies. The generator advances exactly as eagerly and the params are the same; the dozens
of small arithmetic ops of sampling are compiled with the rest instead of being one launch each, which was most of
a call's host time on a GPU.
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


def standard_gamma(alpha: float, size, generator, device) -> Tensor:
    """Gamma(alpha, 1) in float64 of ``size``."""
    if isinstance(generator, _Source):
        return generator.take(("gamma", _tuple(size), float(alpha)))
    concentration = torch.full(_tuple(size), float(alpha), dtype=torch.float64, device=device)
    return torch._standard_gamma(concentration, generator=generator)


def permutation(n: int, generator, device) -> Tensor:
    """A uniformly random permutation of 0..n-1."""
    if isinstance(generator, _Source):
        return generator.take(("permutation", (int(n),), None))
    return torch.randperm(n, generator=generator, device=device)


def _tuple(size) -> tuple[int, ...]:
    return (int(size),) if isinstance(size, int) else tuple(int(s) for s in size)


class _Source:
    def take(self, request):
        raise NotImplementedError


class Recorder(_Source):
    """Draws from a generator like the eager path and notes each request: (kind, size, dtype or alpha)."""

    def __init__(self, generator: torch.Generator, device):
        self.generator, self.device, self.requests = generator, device, []

    def take(self, request):
        self.requests.append(request)
        return _draw(request, self.generator, self.device)


class Replay(_Source):
    """Hands out draws made ahead, in order; a request that differs from the recorded one is an error.

    ``drawn[i]`` answers request i, or, with ``where`` from ``merge``, request i is ``drawn[k][start:]`` reshaped for
    ``(k, start) = where[i]``."""

    def __init__(self, requests: list, drawn: list[Tensor], where: list[tuple[int, int | None]] | None = None):
        self.requests, self.drawn, self.next = requests, drawn, 0
        self.where = where if where is not None else [(i, None) for i in range(len(requests))]

    def take(self, request):
        if self.next >= len(self.requests) or self.requests[self.next] != request:
            raise RuntimeError(f"augpipe: sample() asked for {request}, the recording says "
                               f"{self.requests[self.next] if self.next < len(self.requests) else 'nothing more'}")
        k, start = self.where[self.next]
        self.next += 1
        if start is None:
            return self.drawn[k]
        size = request[1]
        return self.drawn[k][start:start + math.prod(size)].view(size)


def merge(requests: list, device) -> tuple[list, list[tuple[int, int | None]]]:
    """Fewer requests that make the same numbers as ``requests``, and where each of those lies in them.

    A CPU generator fills a uniform tensor number by number, so one draw of n + m numbers gives exactly the draw of
    n followed by the draw of m (a test checks it): on a CPU each run of uniform requests of one dtype becomes one
    request (CIFAR recipe: 15 draws, 9 after merging). A GPU generator advances by a rounded amount per call, so
    there every request stays its own.
    """
    made, where = [], []
    on_cpu = torch.device(device).type == "cpu"
    for kind, size, extra in requests:
        joins = on_cpu and kind == "uniform" and made and made[-1][0] == "uniform" and made[-1][2] == extra
        if joins:
            start = made[-1][1][0]
            made[-1] = ("uniform", (start + math.prod(size),), extra)
            where.append((len(made) - 1, start))
        elif kind == "uniform":
            made.append(("uniform", (math.prod(size),), extra))
            where.append((len(made) - 1, 0))
        else:
            made.append((kind, size, extra))
            where.append((len(made) - 1, None))
    return made, where


def draw(requests: list, generator: torch.Generator, device) -> list[Tensor]:
    """Make the recorded draws from the generator, in order."""
    return [_draw(r, generator, device) for r in requests]


def _draw(request, generator, device) -> Tensor:
    kind, size, extra = request
    if kind == "uniform":
        return uniform(size, generator, device, extra)
    if kind == "gamma":
        return standard_gamma(extra, size, generator, device)
    return permutation(size[0], generator, device)
