"""Inverted dropout and alpha dropout (docs/references.md, "Dropout").

Training code may use torch's global RNG (seeded by ``torch.manual_seed`` and saved in checkpoints); a
``torch.Generator`` can be passed instead for reproducible tests.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from .activations import SELU_ALPHA, SELU_LAMBDA

# The value SELU saturates to for x -> -inf; alpha dropout sets dropped units to it so that they look like a
# "silent" SELU unit rather than 0, which would shift the self-normalized mean.
ALPHA_PRIME = -SELU_LAMBDA * SELU_ALPHA  # -1.7580993408473766


def _check_p(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name}: p is the drop probability, a number, got {type(p).__name__} {p!r}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: p is the drop probability and must be in [0, 1), got {p!r}")
    return float(p)


def _keep_mask(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Bernoulli(1 - p) mask with x's shape, in x's dtype (1 = keep)."""
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device)
    return (u >= p).to(device=x.device, dtype=x.dtype)


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """Zero each unit with probability p and scale the survivors by 1/(1 - p), so E[out] = x; identity in eval."""
    p = _check_p("dropout", p)
    if not training or p == 0.0:
        return x
    return x * _keep_mask(x, p, generator) / (1.0 - p)


def alpha_dropout_affine(p: float) -> tuple[float, float]:
    """(a, b) such that a * (kept x or alpha') + b has mean 0 and variance 1 when x does (Klambauer et al. 2017):
    a = ((1 - p)(1 + p alpha'^2))^(-1/2), b = -a alpha' p."""
    a = ((1.0 - p) * (1.0 + p * ALPHA_PRIME ** 2)) ** -0.5
    return a, -a * ALPHA_PRIME * p


def alpha_dropout(x: Tensor, p: float = 0.1, training: bool = True,
                  generator: torch.Generator | None = None) -> Tensor:
    """Set each unit to alpha' = -lambda alpha with probability p, then restore mean 0 / variance 1; identity in eval."""
    p = _check_p("alpha_dropout", p)
    if not training or p == 0.0:
        return x
    keep = _keep_mask(x, p, generator)
    a, b = alpha_dropout_affine(p)
    return a * (x * keep + ALPHA_PRIME * (1.0 - keep)) + b


class Dropout(nn.Module):
    """Inverted dropout; p is the drop probability (Srivastava et al. state p as the keep probability)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        self.p = _check_p("Dropout", p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class AlphaDropout(nn.Module):
    """Dropout for SELU networks: keeps the self-normalized mean 0 and variance 1."""

    def __init__(self, p: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        self.p = _check_p("AlphaDropout", p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return alpha_dropout(x, self.p, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"
