"""Cross-entropy against hard or soft targets (the targets an augpipe Pipeline returns after Mixup/CutMix)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def smooth(targets: Tensor, eps: float) -> Tensor:
    """q = (1 - eps) q + eps / K (Szegedy et al. 2016) for (B, K) probability targets."""
    return targets * (1.0 - eps) + eps / targets.shape[-1]


def soft_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0,
                       reduction: str = "mean") -> Tensor:
    """-sum_k q_k log softmax(logits)_k for logits (B, K) and targets either int labels (B,) or probabilities (B, K).

    With int labels this equals ``F.cross_entropy(logits, targets, label_smoothing=eps)``; soft targets are smoothed
    the same way torch does (mixing smoothed one-hots equals smoothing the mix, so the order is immaterial).
    """
    if logits.dim() != 2:
        raise ValueError(f"soft_cross_entropy: logits must be (B, K), got shape {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"soft_cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"soft_cross_entropy: reduction {reduction!r}; expected one of {', '.join(REDUCTIONS)}")
    B, K = logits.shape
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if targets.shape != (B,):
            raise ValueError(f"soft_cross_entropy: int targets must be (B,) = ({B},), got {tuple(targets.shape)}")
        try:
            q = F.one_hot(targets.long(), K).to(logits.dtype)  # (B, K)
        except RuntimeError as e:  # one_hot checks the range (and so reads it back from a GPU): say whose check
            raise ValueError(f"soft_cross_entropy: int labels must be in [0, {K}) for {K} logits ({e})") from None
    elif targets.is_floating_point():
        if targets.shape != (B, K):
            raise ValueError(f"soft_cross_entropy: soft targets must be (B, K) = ({B}, {K}), "
                             f"got {tuple(targets.shape)}")
        q = targets.to(logits.dtype)
    else:
        raise TypeError(f"soft_cross_entropy: targets must be int labels or float probabilities, got {targets.dtype}")
    if label_smoothing:
        q = smooth(q, label_smoothing)
    # Where q is 0 a term is 0, even for a logit of -inf (a masked class), whose log-probability is -inf.
    loss = -(q * F.log_softmax(logits, dim=-1)).masked_fill(q == 0, 0).sum(dim=-1)  # (B,)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss
