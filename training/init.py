"""Weight initialization from the formulas (docs/references.md, "Initialization").

Only the random primitives (``Tensor.normal_`` / ``uniform_``) come from torch; the standard deviations and bounds
are computed here so that the tests can check them against the papers and against ``torch.nn.init``.

Which schemes use the nonlinearity's gain:
  kaiming_*     std = gain / sqrt(fan_in) (He et al. 2015); uniform bound = sqrt(3) * std.
  xavier_*      Var = 2 / (fan_in + fan_out), the paper's formula (gain 1, like torch's default); the
                nonlinearity is still validated so that a typo is not silently ignored.
  lecun_normal  std = 1 / sqrt(fan_in): the SELU fixed point needs exactly this, so no gain (use it with "selu").
  small_random  N(0, 0.01^2); zeros: all zeros (symmetry is never broken: a teaching scheme).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .activations import LEAKY_SLOPE, NAMES

SCHEMES = ("zeros", "small_random", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
           "lecun_normal")
NONLINEARITIES = ("linear",) + NAMES  # every activation training.activations.get builds, and none
# 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), by quadrature: the gain that keeps a unit pre-activation variance from layer
# to layer (Var(y) = fan_in Var(w) E[f(y_prev)^2] for zero-mean weights). It gives ReLU's sqrt 2; torch.nn.init has
# no gain for these three.
FIXED_POINT_GAINS = {"elu": 1.2451983007007066, "gelu": 1.5335304411955353, "gelu_tanh": 1.533580521666147}
SMALL_RANDOM_STD = 0.01
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def gain(nonlinearity: str, negative_slope: float = LEAKY_SLOPE) -> float:
    """The factor Kaiming init multiplies 1 / sqrt(fan_in) by, for each name of NONLINEARITIES.

    linear and sigmoid 1, tanh 5/3, relu sqrt 2, leaky_relu sqrt(2 / (1 + a^2)), selu 3/4: torch.nn.init's values
    (selu's 3/4 is torch's choice for Kaiming with SELU; the SELU fixed point itself is ``lecun_normal``, gain 1).
    elu 1.2452, gelu 1.5335, gelu_tanh 1.5336: FIXED_POINT_GAINS, 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1), which keeps
    the pre-activation variance at 1 through a deep stack as sqrt 2 does for ReLU.
    """
    if nonlinearity in ("linear", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 0.75
    if nonlinearity in FIXED_POINT_GAINS:
        return FIXED_POINT_GAINS[nonlinearity]
    raise ValueError(f"init.gain: unknown nonlinearity {nonlinearity!r}; expected one of {', '.join(NONLINEARITIES)}")


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in / groups, *kernel) weight; conv fans count the
    kernel: fan_in = in_channels * kH * kW."""
    if weight.dim() < 2:
        raise ValueError(f"init.fans: expected a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def std_for(scheme: str, fan_in: int, fan_out: int, nonlinearity: str = "relu") -> float:
    """The standard deviation each scheme gives a weight (uniform schemes draw U(-sqrt 3 std, sqrt 3 std))."""
    g = gain(nonlinearity)
    if scheme == "zeros":
        return 0.0
    if scheme == "small_random":
        return SMALL_RANDOM_STD
    if scheme in ("xavier_uniform", "xavier_normal"):
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        return g / math.sqrt(fan_in)
    if scheme == "lecun_normal":
        return 1.0 / math.sqrt(fan_in)
    raise ValueError(f"init: unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


@torch.no_grad()
def initialize(module: nn.Module, scheme: str, nonlinearity: str = "relu",
               generator: torch.Generator | None = None) -> nn.Module:
    """Initialize every Linear and Conv weight of ``module`` with ``scheme`` and zero their biases.

    Other layers (normalization, embeddings) keep their own defaults. ``generator`` defaults to torch's global RNG,
    which training seeds with ``torch.manual_seed``. Returns ``module`` for chaining.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"initialize: unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"initialize: unknown nonlinearity {nonlinearity!r}; "
                         f"expected one of {', '.join(NONLINEARITIES)}")
    for layer in module.modules():
        if not isinstance(layer, _LAYERS):
            continue
        w = layer.weight
        std = std_for(scheme, *fans(w), nonlinearity)
        if std == 0.0:
            w.zero_()
        elif scheme.endswith("_uniform"):
            bound = math.sqrt(3.0) * std  # Var of U(-b, b) is b^2 / 3
            w.uniform_(-bound, bound, generator=generator)
        else:
            w.normal_(0.0, std, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()
    return module
