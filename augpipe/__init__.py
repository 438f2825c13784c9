"""augpipe: batched image augmentation graphs with per-sample randomness, fused into one pass."""
from . import functional
from .graph import OneOf, Pipeline, RandomApply
from .loader import DeviceLoader, collate
from .ops import (Brightness, Contrast, CutMix, Cutout, FractionalPool, HorizontalFlip, LabelSmoothing, Mixup,
                  Normalize, RandomAffine, RandomCrop, RandomResizedCrop, RandomRotation, VerticalFlip)

__all__ = [
    "Pipeline", "OneOf", "RandomApply", "functional", "collate", "DeviceLoader",
    "HorizontalFlip", "VerticalFlip", "RandomCrop", "RandomResizedCrop", "RandomRotation", "RandomAffine",
    "Brightness", "Contrast", "Normalize", "Cutout", "Mixup", "CutMix", "LabelSmoothing", "FractionalPool",
]
__version__ = "0.1.0"
