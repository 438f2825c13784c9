"""augpipe: batched image augmentation graphs with per-sample randomness, fused into one pass."""
from . import draws, functional
from .graph import OneOf, Pipeline, RandomApply
from .loader import DeviceLoader, collate
from .ops import (Brightness, Contrast, CutMix, Cutout, FractionalPool, GeometricOp, HorizontalFlip, LabelSmoothing,
                  ElasticTransform, GaussianBlur, Lambda, Mixup, Normalize, Op, RandomAffine, RandomCrop, RandomErasing,
                  RandomPerspective, RandomResizedCrop, RandomRotation, Shape, VerticalFlip)

__all__ = [
    "Pipeline", "OneOf", "RandomApply", "functional", "draws", "collate", "DeviceLoader",
    "HorizontalFlip", "VerticalFlip", "RandomCrop", "RandomResizedCrop", "RandomRotation", "RandomAffine",
    "RandomPerspective", "ElasticTransform",
    "Brightness", "Contrast", "Normalize", "Cutout", "Mixup", "CutMix", "LabelSmoothing", "FractionalPool",
    "Lambda", "Op", "GeometricOp", "Shape", "GaussianBlur", "RandomErasing",
]
__version__ = "0.1.0"
