"""What the executor tells the kernels without an argument, so that no op or kernel signature carries it.

Two things, each a promise about memory or compilation that never changes a result:
- ``writable(x)``: may the running step overwrite ``x``? Yes only for the batch the executor made itself, while it
  runs a built-in op on it (``overwriting``), and never under torch.compile, where writing in place buys nothing.
  A chain of pointwise steps then writes one buffer instead of allocating an image per step, which is most of an
  eager CPU call's cost; the caller's tensors are never the batch the executor made, so they are never written.
- ``keep(*tensors)``: per-sample tensors that every pixel reads (a composed matrix, a crop's row and column tests).
  A compiled call collects them (``keeping``) and returns them, so that inductor stores each once where it would
  otherwise work it out again for every pixel. Outside such a call ``keep`` does nothing.

Both are per thread: threads that run pipelines at once never see each other's.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
from torch import Tensor


class _Said(threading.local):
    def __init__(self):
        self.writable = None  # the one tensor the running step may overwrite, or None
        self.kept: list[list[Tensor]] = []  # the lists collecting kept tensors, innermost last


_said = _Said()


def writable(x: Tensor) -> bool:
    """May the running step overwrite ``x`` (see the module docstring)?"""
    return x is _said.writable and not torch.compiler.is_compiling()


@contextmanager
def overwriting(x: Tensor | None):
    """Within this block, steps may overwrite ``x`` (None: nothing)."""
    before, _said.writable = _said.writable, x
    try:
        yield
    finally:
        _said.writable = before


def keep(*tensors: Tensor) -> None:
    """Note per-sample tensors every pixel reads, for the compiled call that collects them (see ``collect``)."""
    if _said.kept:
        _said.kept[-1].extend(tensors)


def collect(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), kept)``: the result and the tensors its kernels noted with ``keep``. Written as a
    plain push and pop, which torch.compile traces into the compiled call (a ``with`` block of a generator-based
    context manager is traced less reliably)."""
    kept: list[Tensor] = []
    _said.kept.append(kept)
    try:
        result = fn(*args, **kwargs)
    finally:
        _said.kept.pop()
    return result, kept
