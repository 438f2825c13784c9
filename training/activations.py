"""The lecture's activations as small pure functions, each with a thin ``nn.Module`` wrapper.

Written from docs/references.md, "Activations", rather than by calling ``torch.nn.functional``, so that the tests can
hold them against torch. Every function is stable at large |x| in float32 and float64, values and gradients:
exponentials only ever see non-positive arguments, and ``expm1`` / ``erfc`` avoid the cancellation of
``exp(x) - 1`` near 0 and of ``1 + erf(x)`` for negative x.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543773
LEAKY_SLOPE = 0.01
_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _neg_abs(x: Tensor) -> Tensor:
    """-|x| whose gradient at 0 is -1 (``-x.abs()`` has gradient 0 there, which would zero sigmoid'(0))."""
    return torch.where(x >= 0, -x, x)


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + e^-x), computed from e^-|x| so that exp never overflows."""
    e = torch.exp(_neg_abs(x))  # in (0, 1]
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x: Tensor) -> Tensor:
    """(1 - e^-2|x|) / (1 + e^-2|x|) with the sign of x; expm1 keeps full relative precision near 0."""
    m = torch.expm1(2 * _neg_abs(x))  # e^-2|x| - 1, in (-1, 0]
    t = -m / (2 + m)  # tanh|x|
    return torch.where(x >= 0, t, -t)


def relu(x: Tensor) -> Tensor:
    """max(0, x); gradient 0 at x = 0 and NaN kept (a diverged run must show), like torch's relu."""
    return torch.where(x <= 0, torch.zeros_like(x), x)


def leaky_relu(x: Tensor, negative_slope: float = LEAKY_SLOPE) -> Tensor:
    """max(x, slope x) for slope < 1 (Maas et al. 2013 use 0.01)."""
    return torch.where(x > 0, x, negative_slope * x)


def _exp_minus_one_negative(x: Tensor) -> Tensor:
    """e^min(x, 0) - 1: clamping first keeps exp finite for large positive x, whose branch torch.where discards
    (an inf there would turn into a NaN gradient)."""
    return torch.expm1(x.clamp(max=0))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha (e^x - 1) (Clevert et al. 2015)."""
    return torch.where(x > 0, x, alpha * _exp_minus_one_negative(x))


def selu(x: Tensor) -> Tensor:
    """lambda * (x if x > 0 else alpha (e^x - 1)) with the self-normalizing constants (Klambauer et al. 2017)."""
    return SELU_LAMBDA * torch.where(x > 0, x, SELU_ALPHA * _exp_minus_one_negative(x))


def gelu(x: Tensor) -> Tensor:
    """x Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, the same as 0.5 x (1 + erf(x / sqrt 2)) but without the
    cancellation of 1 + erf for negative x."""
    return 0.5 * x * torch.erfc(-x / _SQRT_2)


def gelu_tanh(x: Tensor) -> Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated as x sigmoid(2 z) (the identity
    1 + tanh z = 2 sigmoid(2 z)) so that it neither cancels nor overflows for large |x|."""
    z = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
    return x * sigmoid(2 * z)


class Sigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return sigmoid(x)


class Tanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


class ReLU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return relu(x)


class LeakyReLU(nn.Module):
    def __init__(self, negative_slope: float = LEAKY_SLOPE):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(nn.Module):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        return elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return selu(x)


class GELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return gelu(x)


class GELUTanh(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return gelu_tanh(x)


MODULES: dict[str, type[nn.Module]] = {
    "sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU,
    "elu": ELU, "selu": SELU, "gelu": GELU, "gelu_tanh": GELUTanh,
}
FUNCTIONS = {
    "sigmoid": sigmoid, "tanh": tanh, "relu": relu, "leaky_relu": leaky_relu,
    "elu": elu, "selu": selu, "gelu": gelu, "gelu_tanh": gelu_tanh,
}
NAMES = tuple(MODULES)


def get(name: str) -> nn.Module:
    """A new activation module by name, e.g. ``get("gelu")``."""
    if name not in MODULES:
        raise ValueError(f"activations.get: unknown activation {name!r}; expected one of {', '.join(NAMES)}")
    return MODULES[name]()
