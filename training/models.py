"""An MLP and a small CNN whose activation, initialization, dropout and pooling are arguments.

One config dataclass describes both; ``build_model`` builds and initializes in one place so that an experiment
changes exactly one field. Inputs are float images (B, C, H, W), e.g. the output of an augpipe Pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import activations
from .dropout import AlphaDropout, Dropout
from .init import SCHEMES, initialize

ARCHS = ("cnn", "mlp")
POOLINGS = ("max", "fractional")

# The gain each activation's weights need. ELU and GELU behave like ReLU for x > 0 and are usually given ReLU's
# gain; SELU's fixed point needs LeCun's std 1/sqrt(fan_in), i.e. the linear gain.
NONLINEARITY = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu",
                "elu": "relu", "selu": "linear", "gelu": "relu", "gelu_tanh": "relu"}


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "cnn"                          # "cnn" or "mlp"
    in_channels: int = 1
    image_size: int = 32                       # square input side; the MLP needs it for its first layer
    num_classes: int = 10
    activation: str = "relu"                   # a name from training.activations.NAMES
    init: str = "kaiming_normal"               # a scheme from training.init.SCHEMES
    dropout: float = 0.0                       # drop probability; AlphaDropout when activation is "selu"
    pooling: str = "max"                       # CNN downsampling: "max" (2x2) or "fractional" (Graham 2014)
    fractional_alpha: float = 2 ** 0.5         # N_in / N_out of each fractional pool
    widths: tuple[int, ...] = (32, 64, 128)    # CNN: channels per stage (conv, [BN], act, pool); MLP: hidden units
    batch_norm: bool = True                    # off to study activations/init without normalization's help

    def __post_init__(self):
        checks = [("arch", self.arch, ARCHS), ("activation", self.activation, activations.NAMES),
                  ("init", self.init, SCHEMES), ("pooling", self.pooling, POOLINGS)]
        for field, value, valid in checks:
            if value not in valid:
                raise ValueError(f"ModelConfig: unknown {field} {value!r}; expected one of {', '.join(valid)}")
        if self.arch == "mlp" and self.pooling != "max":
            raise ValueError(f"ModelConfig: pooling {self.pooling!r} is the CNN's downsampling; the MLP has none")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout is a drop probability in [0, 1), got {self.dropout}")
        if not 1.0 < self.fractional_alpha <= 2.0:
            raise ValueError(f"ModelConfig: fractional_alpha must be in (1, 2], got {self.fractional_alpha}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"ModelConfig: widths must be positive channel counts, got {self.widths}")
        if self.in_channels < 1 or self.image_size < 1 or self.num_classes < 2:
            raise ValueError(f"ModelConfig: need in_channels >= 1, image_size >= 1, num_classes >= 2, got "
                             f"{self.in_channels}, {self.image_size}, {self.num_classes}")


class FractionalMaxPool2d(nn.Module):
    """Graham's fractional max pooling by ``alpha`` as a layer, on augpipe.functional's kernel.

    Training draws one u per sample and axis from torch's global RNG, so each pass sees different regions.
    Eval uses u = 0.5 for every sample: a single deterministic pass (Graham averaged many random test passes;
    one fixed pass keeps the test metric reproducible and cheap).
    """

    def __init__(self, alpha: float = 2 ** 0.5, overlapping: bool = True):
        super().__init__()
        self.alpha = alpha
        self.overlapping = overlapping

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, ~H / alpha, ~W / alpha)
        from augpipe.functional import fractional_max_pool2d, fractional_output_size

        H, W = x.shape[-2:]
        if min(H, W) < 2:
            raise ValueError(f"FractionalMaxPool2d: input {H}x{W} is too small to pool (needs >= 2x2)")
        out = (fractional_output_size(H, self.alpha), fractional_output_size(W, self.alpha))
        if self.training:
            # torch.rand is in [0, 1); the kernel wants u strictly inside (0, 1).
            u = torch.rand(x.shape[0], 2, dtype=torch.float64, device=x.device).clamp_(1e-6, 1 - 1e-6)
        else:
            u = torch.full((x.shape[0], 2), 0.5, dtype=torch.float64, device=x.device)
        return fractional_max_pool2d(x, out, u, overlapping=self.overlapping, pseudo_random=True)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4f}, overlapping={self.overlapping}"


def _dropout(cfg: ModelConfig) -> nn.Module:
    # Zeroing SELU units would shift their self-normalized mean; alpha dropout keeps mean 0 and variance 1.
    if cfg.dropout == 0.0:
        return nn.Identity()
    return AlphaDropout(cfg.dropout) if cfg.activation == "selu" else Dropout(cfg.dropout)


def _pool(cfg: ModelConfig) -> nn.Module:
    if cfg.pooling == "fractional":
        return FractionalMaxPool2d(cfg.fractional_alpha)
    return nn.MaxPool2d(2)


class CNN(nn.Module):
    """Stages of conv3x3 -> [BN] -> activation -> pool, then global average pool -> dropout -> linear.

    The global average pool makes the head independent of how far max or fractional pooling shrank the image.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for width in cfg.widths:
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=not cfg.batch_norm)]
            layers += [nn.BatchNorm2d(width)] if cfg.batch_norm else []
            layers += [activations.get(cfg.activation), _pool(cfg)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.dropout = _dropout(cfg)
        self.head = nn.Linear(c_in, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        x = self.features(x)  # (B, widths[-1], h, w)
        x = x.mean(dim=(2, 3))  # (B, widths[-1])
        return self.head(self.dropout(x))


class MLP(nn.Module):
    """Flatten -> (linear -> [BN] -> activation -> dropout) per hidden width -> linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        n_in = cfg.in_channels * cfg.image_size ** 2
        for width in cfg.widths:
            layers += [nn.Linear(n_in, width, bias=not cfg.batch_norm)]
            layers += [nn.BatchNorm1d(width)] if cfg.batch_norm else []
            layers += [activations.get(cfg.activation), _dropout(cfg)]
            n_in = width
        layers += [nn.Linear(n_in, cfg.num_classes)]
        self.net = nn.Sequential(*layers)
        self.expected = (cfg.in_channels, cfg.image_size, cfg.image_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, K)
        if tuple(x.shape[1:]) != self.expected:
            raise ValueError(f"MLP: expected input (B, {', '.join(map(str, self.expected))}), "
                             f"got {tuple(x.shape)}")
        return self.net(x)


def init_weights(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    """The one place weights are initialized: cfg.init with the gain of cfg.activation; norms keep (1, 0)."""
    return initialize(model, cfg.init, NONLINEARITY[cfg.activation])


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialized model for ``cfg`` (draws from torch's global RNG: seed it first)."""
    model = CNN(cfg) if cfg.arch == "cnn" else MLP(cfg)
    return init_weights(model, cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

