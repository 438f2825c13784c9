"""augpipe: batched image augmentation graphs with per-sample randomness, fused into one pass."""
from . import draws, functional
from .colour import ColorJitter, Grayscale, Hue, PCALighting, RandomGrayscale, Saturation
from .graph import OneOf, Pipeline, RandomApply
from .io import ImageFolder, read_image
from .levels import AutoContrast, Equalize, Invert, Posterize, Sharpness, Solarize
from .loader import DeviceLoader, collate
from .packed import PackedImages
from .policies import AugMix, AutoAugment, RandAugment, TrivialAugmentWide
from .ops import (Brightness, CenterCrop, Contrast, CutMix, Cutout, ElasticTransform, FiveCrop, FractionalPool,
                  GaussianBlur, GeometricOp, HorizontalFlip, LabelSmoothing, Lambda, Mixup, Normalize, Op, RandomAffine,
                  RandomCrop, RandomErasing, RandomPerspective, RandomResize, RandomResizedCrop, RandomRotation, Resize,
                  Shape, Sizes, TenCrop, VerticalFlip)

__all__ = [
    "Pipeline", "OneOf", "RandomApply", "functional", "draws", "collate", "DeviceLoader", "PackedImages",
    "read_image", "ImageFolder",
    "HorizontalFlip", "VerticalFlip", "RandomCrop", "RandomResizedCrop", "RandomRotation", "RandomAffine",
    "RandomPerspective", "ElasticTransform", "Resize", "RandomResize", "CenterCrop", "FiveCrop", "TenCrop",
    "Brightness", "Contrast", "Normalize", "Cutout", "Mixup", "CutMix", "LabelSmoothing", "FractionalPool",
    "Sharpness", "Posterize", "Solarize", "Equalize", "AutoContrast", "Invert",
    "Saturation", "Hue", "ColorJitter", "Grayscale", "RandomGrayscale", "PCALighting", "GaussianBlur", "RandomErasing",
    "Lambda", "Op", "GeometricOp", "Shape", "Sizes",
    "RandAugment", "TrivialAugmentWide", "AutoAugment", "AugMix",
]
__version__ = "0.1.0"
