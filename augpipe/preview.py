"""Picture grids of every op, policy and recipe: the originals, then several draws, each tile labelled with its
parameters.

    python -m augpipe.preview --out samples/preview [--images a.jpg b.png ...] [--seed 0] [--draws 4] [--size 96]

Writes ``DIR/<name>.png`` per op, policy and recipe. Every parameter is drawn by a seeded Pipeline and the text
under a tile is read back from ``pipe.last_params``, so it is exactly what produced the tile: the ops and magnitudes
each sample drew (a policy's members per slot, ColorJitter's order). The default images are scikit-image's bundled
photographs (no download). matplotlib, PIL and scikit-image are imported only inside the functions that need them
(``pip install -e ".[preview]"``).
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from . import functional as F
from . import policies
from .colour import JITTER_OPS, ColorJitter, Grayscale, Hue, PCALighting, RandomGrayscale, Saturation
from .graph import OneOf, Pipeline, RandomApply, views
from .levels import AutoContrast, Equalize, Invert, Posterize, Sharpness, Solarize
from .ops import (Brightness, CenterCrop, Contrast, CutMix, Cutout, ElasticTransform, FiveCrop, FractionalPool,
                  GaussianBlur, HorizontalFlip, LabelSmoothing, Mixup, Normalize, RandomAffine, RandomCrop,
                  RandomErasing, RandomPerspective, RandomResize, RandomResizedCrop, RandomRotation, Resize, Sizes,
                  TenCrop, VerticalFlip)
from .policies import AugMix, AutoAugment, RandAugment, TrivialAugmentWide

DEFAULT_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")  # >= 4 so that Mixup/CutMix partners differ
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# How the policy tiles write a magnitude: as the params hold it (augpipe.policies).
MAGNITUDES = ("magnitudes as the params hold them: shear tangent, translation px, rotation degrees, enhance factor "
              "- 1, bits, solarize threshold")
NUM_CLASSES = 10  # sample b has label b % 10, so that LabelSmoothing and the mixing ops have targets to act on


# ----------------------------------------------------------------------------------------------- inputs
def _square(image, size: int) -> np.ndarray:
    """A PIL image -> (size, size, 3) uint8: the central square, resized (bicubic)."""
    from PIL import Image

    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(image.convert("RGB").crop(box).resize((size, size), Image.BICUBIC))


def load_images(paths: Sequence[str] | None, size: int) -> tuple[Tensor, list[str]]:
    """(B, 3, size, size) uint8 and a name per image: the files at ``paths``, or scikit-image's photographs."""
    from PIL import Image, UnidentifiedImageError

    pictures, names = [], []
    if paths:
        for path in paths:
            try:
                with Image.open(path) as image:
                    pictures.append(_square(image, size))
            except FileNotFoundError:
                raise ValueError(f"--images: no such file: {path}") from None
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"--images: cannot read {path} as an image ({e})") from None
            names.append(Path(path).stem)
    else:
        import skimage.data

        for name in DEFAULT_IMAGES:
            pictures.append(_square(Image.fromarray(getattr(skimage.data, name)()), size))
            names.append(name)
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous(), names


# ----------------------------------------------------------------------------------------------- what is shown
class Preview(NamedTuple):
    name: str  # the file is DIR/<name>.png
    note: str  # how to read the tiles
    nodes: list  # the Pipeline's nodes
    targets: bool = False  # show the soft targets instead of the images
    fixed: bool = False  # nothing is drawn: one row shows every draw


def catalogue(size: int) -> list[Preview]:
    """Every op and policy alone, then the CIFAR and ImageNet recipes, for images of side ``size``.

    An op or policy joins the preview with one entry here and, where it draws per sample, one label function
    (``labels_for``) that writes its params as text."""
    pad, hole = max(1, size // 8), max(1, size // 2)  # CIFAR's pad 4 and Cutout 16 on 32 pixels, scaled
    half, two_thirds = max(1, size // 2), max(1, size * 2 // 3)
    blur = 2 * (size // 20) + 1  # odd taps, about a tenth of the side, as torchvision's recipes take
    return [
        Preview("horizontal_flip", "flip on/off per sample", [HorizontalFlip()]),
        Preview("vertical_flip", "flip on/off per sample", [VerticalFlip()]),
        Preview("random_crop", f"CIFAR's pad 4 of 32 scaled to {size} px; (top, left) in the padded image, "
                f"({pad}, {pad}) = centred", [RandomCrop(size, padding=pad)]),
        Preview("random_resized_crop", "box = top, left, height x width in the original, resized to the tile",
                [RandomResizedCrop(size)]),
        Preview("random_rotation", "angle in degrees, counter-clockwise", [RandomRotation(30)]),
        Preview("random_affine", "angle (clockwise, as torchvision), shift (x, y) px, scale, shear (x, y) degrees",
                [RandomAffine(15, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10)]),
        Preview("random_perspective", "how far each corner (top-left, top-right, bottom-right, bottom-left) moved "
                "inward, x/y px", [RandomPerspective(0.5, p=1.0)]),
        Preview("elastic_transform", "α = 50, σ = 5 (torchvision's defaults): the field's largest shift and its "
                "mean length", [ElasticTransform(50.0, 5.0)]),
        Preview("resize", f"the shorter side to {two_thirds} px, bilinear and antialiased; drawn at the "
                "originals' scale", [Resize(two_thirds)], fixed=True),
        Preview("random_resize", f"VGG's scale augmentation: the shorter side ~ U{{{half}..{size}}} per sample, "
                f"then a random {half} px crop; (top, left) in the resized image",
                [RandomResize(half, size), RandomCrop(half)]),
        Preview("random_crop_pad_if_needed", f"the shorter side ~ U{{{size // 3}..{size}}}, then a {two_thirds} "
                "px crop padded with 0 where the image is smaller; (top, left) in the padded image",
                [RandomResize(max(1, size // 3), size), RandomCrop(two_thirds, pad_if_needed=True)]),
        Preview("center_crop", "the central window, (top, left) in the original",
                [CenterCrop(two_thirds)], fixed=True),
        Preview("five_crop", "the views of the first image: four corners, then the centre; (top, left) of "
                "each", [FiveCrop(two_thirds)], fixed=True),
        Preview("ten_crop", "the views of the first image: FiveCrop's five, then the same five of the image "
                "mirrored left-right (h-mirror)", [TenCrop(two_thirds)], fixed=True),
        Preview("brightness", "out = clamp(f x, 0, 1)", [Brightness(0.4)]),
        Preview("contrast", "out = clamp(f x + (1 - f) gray mean, 0, 1)", [Contrast(0.4)]),
        Preview("saturation", "out = clamp(f x + (1 - f) gray(x), 0, 1); f = 0 is the grayscale image",
                [Saturation(0.8)]),
        Preview("hue", "HSV hue turned by a shift in turns of the colour wheel, in [-0.5, 0.5]", [Hue(0.25)]),
        Preview("color_jitter", "brightness (b), contrast (c), saturation (s) factors and the hue (h) shift, in "
                "the order each sample applies them", [ColorJitter(0.4, 0.4, 0.4, 0.1)]),
        Preview("grayscale", "luma 0.299 R + 0.587 G + 0.114 B in one channel", [Grayscale()], fixed=True),
        Preview("random_grayscale", "grayscale on/off per sample (kept in 3 channels)", [RandomGrayscale(0.5)]),
        Preview("pca_lighting", "AlexNet's lighting noise: α per principal component (largest first), std 0.5, "
                "five times AlexNet's 0.1 so that it shows", [PCALighting(0.5)]),
        Preview("sharpness", "factor f ~ U[0, 3] with p = 0.5: 0 smoothed, 1 the image, above 1 sharper",
                [Sharpness((0.0, 3.0))]),
        Preview("posterize", "the top bits of each 8-bit level kept, p = 0.5 (8 bits: the image)",
                [Posterize(3)]),
        Preview("solarize", "levels at or above the threshold inverted, p = 0.5", [Solarize(0.5)]),
        Preview("equalize", "each channel's histogram equalized, p = 0.5", [Equalize()]),
        Preview("autocontrast", "each channel's darkest to lightest level stretched to 0..255, p = 0.5",
                [AutoContrast()]),
        Preview("invert", "1 - x, p = 0.5", [Invert()]),
        Preview("gaussian_blur", f"σ ~ U[0.1, 2] per sample (torchvision's default), {blur} x {blur} taps, "
                "mirrored edges", [GaussianBlur(blur)]),
        Preview("cutout", "box rows y1:y2, columns x1:x2 (clipped at the border)", [Cutout(hole)]),
        Preview("random_erasing", "p = 0.75, up to 2 boxes, rows y1:y2, columns x1:x2, filled with normal noise "
                "after Normalize (timm's pixel mode); un-normalized for display",
                [Normalize(IMAGENET_MEAN, IMAGENET_STD), RandomErasing(0.75, value="random", count=2)]),
        Preview("mixup", "λ x + (1 - λ) x[#partner], partner numbered as in the first row", [Mixup(1.0)]),
        Preview("cutmix", "the partner's box pasted in; λ = the fraction of the sample's own pixels kept",
                [CutMix(1.0)]),
        Preview("fractional_pool_pseudorandom", "pooled then resized back; increments (1 or 2) of the row and "
                "column boundaries", [FractionalPool(overlapping=True, pseudo_random=True)]),
        Preview("fractional_pool_random", "pooled then resized back; increments (1 or 2) of the row and "
                "column boundaries", [FractionalPool(overlapping=True, pseudo_random=False)]),
        Preview("rand_augment", f"two slots per sample, each a member at bin 9 of 31; {MAGNITUDES}",
                [RandAugment(2, 9)]),
        Preview("trivial_augment_wide", f"one member per sample at a bin uniform over 31; {MAGNITUDES}",
                [TrivialAugmentWide()]),
        Preview("auto_augment", f"ImageNet's learned policy: the sub-policy drawn (of 25), then its two entries "
                f"(Identity where not applied); {MAGNITUDES}", [AutoAugment("imagenet")]),
        Preview("augmix", "the original's share m, then per chain its weight w and members: out = m x + (1 - m) "
                f"Σ w chain(x); {MAGNITUDES}", [AugMix()]),
        Preview("label_smoothing", f"targets of {NUM_CLASSES} classes before (grey) and after (blue); "
                "no randomness, every draw is the same", [LabelSmoothing(0.1)], targets=True),
        Preview("cifar_recipe", "He et al. crop + flip, ColorJitter, Cutout after Normalize (fill = mean), "
                "CutMix p=0.5; un-normalized for display",
                [RandomCrop(size, padding=pad), HorizontalFlip(), Brightness(0.2), Contrast(0.2),
                 Normalize(CIFAR_MEAN, CIFAR_STD), Cutout(hole), CutMix(1.0, p=0.5)]),
        Preview("imagenet_recipe", "Inception crop + flip, ColorJitter, Mixup α=0.2; un-normalized for display",
                [RandomResizedCrop(size), HorizontalFlip(), Brightness(0.4), Contrast(0.4),
                 Normalize(IMAGENET_MEAN, IMAGENET_STD), Mixup(0.2)]),
    ]


# ----------------------------------------------------------------------------------------------- parameters as text
def _box(y1, x1, y2, x2) -> str:
    return f"y {y1}:{y2} x {x1}:{x2}"


def _steps(bounds: Tensor, n: int = 14) -> str:
    s = "".join(str(v) for v in torch.diff(bounds).tolist())
    return s if len(s) <= n else s[:n] + "…"


def _partner(perm: Tensor, b: int) -> str:
    j = int(perm)
    return "itself" if j == b else f"#{j}"


# A label function writes sample b's params q of an op (each tensor without its batch dimension) as short lines,
# each of which must fit under a tile: LABEL_CHARS characters. size is the (H, W) of the images the op received.
LABEL_CHARS = 24  # at FONT points, what a column holds with a margin
LABELS: dict[type, Callable[[object, dict, int, tuple], list[str]]] = {}


def labels_for(*ops: type):
    """Register the decorated function as the label of ``ops`` and their subclasses (the nearest class wins)."""
    def register(fn):
        for op in ops:
            LABELS[op] = fn
        return fn
    return register


def describe_op(op, q: dict, b: int, size: tuple[int, int]) -> list[str]:
    """Sample ``b``'s params ``q`` (each tensor without its batch dimension) of ``op`` as short lines of text."""
    for cls in type(op).__mro__:
        if cls in LABELS:
            return LABELS[cls](op, q, b, size)
    return []  # Normalize, LabelSmoothing: nothing per sample


def _on(flag) -> str:
    return "on" if bool(flag) else "off"


@labels_for(HorizontalFlip, VerticalFlip)
def _flip(op, q, b, size):
    return [f"{'h' if isinstance(op, HorizontalFlip) else 'v'}flip {_on(q['flip'])}"]


@labels_for(RandomCrop)
def _random_crop(op, q, b, size):
    return [f"crop top {int(q['top'])} left {int(q['left'])}"]


@labels_for(RandomResizedCrop)
def _random_resized_crop(op, q, b, size):
    top, left, h, w = q["box"].round().long().tolist()
    return [f"box {top}, {left}, {h}x{w}"]


@labels_for(Resize)  # and RandomResize, whose drawn shorter side is in the size
def _resize(op, q, b, size):
    h, w = q["size"].round().long().tolist()
    return [f"resize to {h}x{w}"]


@labels_for(CenterCrop)
def _center_crop(op, q, b, size):
    top, left = q["top_left"].long().tolist()
    return [f"centre top {top} left {left}"]


@labels_for(FiveCrop)  # and TenCrop
def _view(op, q, b, size):
    top, left = q["top_left"].long().tolist()
    h_mirror, v_mirror = q["mirror"].tolist()
    mirror = ", h-mirror" if h_mirror else ", v-mirror" if v_mirror else ""
    return [f"top {top} left {left}{mirror}"]


@labels_for(RandomRotation)
def _rotation(op, q, b, size):
    return [f"angle {float(q['angle']):+.1f}°"]


@labels_for(RandomAffine)
def _affine(op, q, b, size):
    (tx, ty), (sx, sy) = q["translate"].tolist(), q["shear"].tolist()
    tx, ty = tx + 0, ty + 0  # -0.0 -> 0.0, so that a zero shift prints as +0
    return [f"angle {float(q['angle']):+.1f}°", f"shift {tx:+.0f}, {ty:+.0f} scale {float(q['scale']):.2f}",
            f"shear {sx:+.1f}°, {sy:+.1f}°"]


@labels_for(RandomPerspective)
def _perspective(op, q, b, size):
    moves = [f"{x}/{y}" for x, y in q["inward"].tolist()]
    return [f"corners in {moves[0]} {moves[1]}", f"{moves[2]} {moves[3]}"]  # two corners a line: they fit a tile


@labels_for(ElasticTransform)
def _elastic(op, q, b, size):
    length = q["displacement"].norm(dim=-1)
    return [f"shift max {float(length.max()):.1f} px", f"mean {float(length.mean()):.2f} px"]


@labels_for(Brightness, Contrast, Saturation)
def _factor(op, q, b, size):
    return [f"{type(op).__name__.lower()} {float(q['factor']):.3f}"]


@labels_for(Hue)
def _hue(op, q, b, size):
    return [f"hue {float(q['shift']):+.3f}"]


@labels_for(ColorJitter)
def _color_jitter(op, q, b, size):
    """The ops the jitter holds, in the order this sample applied them, two to a line."""
    steps = []
    for k in q["order"].tolist():
        if op.ranges[k] is not None:
            name = JITTER_OPS[k]
            value = float(q[name])
            steps.append(f"h {value:+.3f}" if name == "hue" else f"{name[0]} {value:.2f}")
    return [" → ".join(steps[i:i + 2]) + (" →" if i + 2 < len(steps) else "") for i in range(0, len(steps), 2)]


@labels_for(Grayscale)
def _grayscale(op, q, b, size):
    return [f"gray, {op.num_output_channels} channel{'s' if op.num_output_channels > 1 else ''}"]


@labels_for(RandomGrayscale)
def _random_grayscale(op, q, b, size):
    return [f"gray {_on(q['gray'])}"]


@labels_for(PCALighting)
def _pca_lighting(op, q, b, size):
    """The drawn α per component, then the RGB shift it adds to every pixel (what the tile shows)."""
    shift = op.eigvec @ (q["alpha"].double() * op.eigval)
    return ["α " + " ".join(f"{a + 0:+.2f}" for a in q["alpha"].tolist()),
            "rgb " + " ".join(f"{v + 0:+.3f}" for v in shift.tolist())]


@labels_for(Sharpness)
def _sharpness(op, q, b, size):
    return [f"sharpness {float(q['factor']):.2f}"]


@labels_for(Posterize)
def _posterize(op, q, b, size):
    return [f"posterize {int(q['bits'])} bits"]


@labels_for(Solarize)
def _solarize(op, q, b, size):
    t = float(q["threshold"])
    return [f"solarize from {t:.3f}" if t <= 1 else "solarize off"]  # not applied: the threshold inf


@labels_for(Equalize, AutoContrast, Invert)
def _switched(op, q, b, size):
    return [f"{op.key} {_on(q[op.key])}"]


@labels_for(GaussianBlur)
def _gaussian_blur(op, q, b, size):
    sigma = float(q["sigma"])
    return [f"blur σ {sigma:.2f}" if sigma > 0 else "blur off"]  # not applied: σ = 0


@labels_for(RandomErasing)
def _random_erasing(op, q, b, size):
    boxes = [box for box in q["boxes"].long().tolist() if box[0] < box[2] and box[1] < box[3]]
    return [f"erase {_box(*box)}" for box in boxes] or ["erase off"]


@labels_for(Cutout)
def _cutout(op, q, b, size):
    boxes = [box for box in q["boxes"].tolist() if box[0] < box[2] and box[1] < box[3]]
    return [f"cutout {_box(*box)}" for box in boxes] or ["cutout off"]


@labels_for(Mixup)
def _mixup(op, q, b, size):
    return [f"mixup λ {float(q['lam']):.2f} with {_partner(q['perm'], b)}"]  # not applied: λ = 1


@labels_for(CutMix)
def _cutmix(op, q, b, size):
    box = q["box"]
    if not (box[0] < box[2] and box[1] < box[3]):
        return ["cutmix off"]
    lam = float(F.cutmix_lambda(box[None], size)[0])
    return [f"cutmix {_box(*box.tolist())}", f"λ {lam:.2f}, patch of {_partner(q['perm'], b)}"]


@labels_for(FractionalPool)
def _fractional_pool(op, q, b, size):
    # The params hold the boundaries, not u: their increments show the regular pseudorandom pattern
    # against the shuffled random one.
    return ["pseudorandom" if op.pseudo_random else "random", f"rows {_steps(q['row_bounds'])}",
            f"cols {_steps(q['col_bounds'])}"]


# Policy members: the short names AugMix's chains are written with, and those without a magnitude.
SHORT_MEMBERS = {"Identity": "Id", "ShearX": "ShX", "ShearY": "ShY", "TranslateX": "TX", "TranslateY": "TY",
                 "Rotate": "Rot", "Brightness": "Bri", "Color": "Col", "Contrast": "Con", "Sharpness": "Sha",
                 "Posterize": "Pos", "Solarize": "Sol", "AutoContrast": "AC", "Equalize": "Eq", "Invert": "Inv"}
PLAIN_MEMBERS = {policies.IDENTITY, policies.AUTOCONTRAST, policies.EQUALIZE, policies.INVERT}


def _member(op: int, m: float, short: bool = False) -> str:
    """A drawn policy member and its magnitude, in the unit the params hold it (``MAGNITUDES``)."""
    name = policies.MEMBERS[op]
    name, gap = (SHORT_MEMBERS[name], "") if short else (name, " ")
    m += 0  # -0.0 -> 0.0
    if op in PLAIN_MEMBERS:
        return name
    if op == policies.POSTERIZE:
        return f"{name}{gap}{m:.0f}"
    if op in (policies.TRANSLATE_X, policies.TRANSLATE_Y):
        return f"{name}{gap}{m:+.0f}"
    if op == policies.ROTATE:
        return f"{name}{gap}{m:+.0f}°" if short else f"{name} {m:+.1f}°"
    if op == policies.SOLARIZE:
        return f"{name}{gap}{m:.2f}"
    return f"{name}{gap}{m:+.2f}"


@labels_for(RandAugment, TrivialAugmentWide)
def _slots(op, q, b, size):
    return [_member(k, m) for k, m in zip(q["op"].tolist(), q["magnitude"].tolist())]


@labels_for(AutoAugment)
def _auto_augment(op, q, b, size):
    return [f"sub-policy {int(q['policy'])}"] + _slots(op, q, b, size)


@labels_for(AugMix)
def _augmix(op, q, b, size):
    chains = []
    for w, ops, ms in zip(q["weights"].tolist(), q["op"].tolist(), q["magnitude"].tolist()):
        drawn = [_member(k, m, short=True) for k, m in zip(ops, ms) if k != policies.IDENTITY]  # past the depth
        # A chain of three members may not fit a line: it goes on, indented, on the next.
        chains += textwrap.wrap(f"{w:.2f}: " + (" ".join(drawn) or "Id"), LABEL_CHARS, subsequent_indent="    ",
                                break_on_hyphens=False)
    return [f"m {float(q['mix']):.2f}"] + chains


def _views(node) -> int:
    return views(node) if isinstance(node, Pipeline) else getattr(node, "views", 1)


def describe(nodes, params: list, r: int, size) -> list[str]:
    """Row ``r``'s parameters under ``nodes`` (params: the matching ``pipe.last_params``), one line per value.

    ``r`` counts the rows the nodes give: after a FiveCrop or TenCrop, every view of every image. A node before
    such an op drew once per image, so its own row is ``r`` divided by the views the nodes after it make."""
    lines = []
    after = [1] * len(nodes)  # views made by the nodes after each node
    for k in range(len(nodes) - 2, -1, -1):
        after[k] = after[k + 1] * _views(nodes[k + 1])
    for node, p, per in zip(nodes, params, after):
        b = r // per
        if isinstance(node, Pipeline):
            lines += describe(node.nodes, p, b, size)
        elif isinstance(node, OneOf):
            k = int(p["choice"][b])
            lines += describe([node.branches[k]], [p["branches"][k]], b, size)
        elif isinstance(node, RandomApply):
            keep = bool(p["keep"][b])
            lines += describe([node.node], [p["node"]], b, size) if keep else [f"{type(node.node).__name__} off"]
        else:
            lines += describe_op(node, {k: v[b] for k, v in p.items()}, b, size)
        size = node.output_size(size)  # Sizes where the samples differ: CutMix, the one label reading it, refuses
        size = size if isinstance(size, Sizes) else tuple(size)
    return lines


# ----------------------------------------------------------------------------------------------- running
class Draw(NamedTuple):
    images: Tensor  # (B V, C, H, W) float in [0, 1], un-normalized where the pipeline normalizes; image b's views
    targets: Tensor  # (B, NUM_CLASSES)
    texts: list[str]  # per row of images, its parameters (lines joined by newlines)
    params: list  # pipe.last_params
    views: int = 1  # V: rows per image, after a FiveCrop or TenCrop


def unnormalize(x: Tensor, nodes) -> Tensor:
    """Undo the pipeline's Normalize ops (mixing and Cutout's fill 0 are linear, so this shows them as trained)."""
    for node in reversed(list(nodes)):
        if isinstance(node, Normalize):
            x = x * node.std.to(x).view(1, -1, 1, 1) + node.mean.to(x).view(1, -1, 1, 1)
    return x.clamp(0, 1)


def run(nodes, images: Tensor, seed: int, draws: int) -> list[Draw]:
    """``draws`` successive calls of one seeded Pipeline on the uint8 batch, with each call's parameters."""
    pipe = Pipeline(*nodes, seed=seed, num_classes=NUM_CLASSES)
    labels = torch.arange(images.shape[0]) % NUM_CLASSES
    count = views(pipe)
    out = []
    for _ in range(draws):
        x, targets = pipe(images, labels)
        x = x.flatten(0, 1) if count > 1 else x  # (B, V, C, h, w) -> (B V, C, h, w): a row per view
        texts = ["\n".join(describe(nodes, pipe.last_params, r, tuple(images.shape[-2:])))
                 for r in range(x.shape[0])]
        out.append(Draw(unnormalize(x, nodes), targets, texts, pipe.last_params, count))
    return out


# ----------------------------------------------------------------------------------------------- drawing
COLUMN, GAP, LEFT, LINE, FONT = 1.4, 0.08, 0.3, 0.125, 7  # inches and points


def draw_grid(path: Path, title: str, rows: list, dpi: int = 100) -> None:
    """Save a grid: ``rows`` is a list of (label, tiles), a tile (picture, text) with picture an (H, W, 3) array
    in [0, 1] or a pair (before, after) of target vectors drawn as bars.

    Pictures are drawn pixel for pixel (small ones at an integer zoom, the first picture's, shared by all), so the
    PNG shows exactly what the pipeline produced, at the originals' scale where an op changes the size, and stays
    small. A row is as tall as its tallest picture; bars take the first picture's size.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    first = next(p.shape[:2] for _, tiles in rows for p, _ in tiles if not isinstance(p, tuple))
    zoom = max(1, 96 // max(first))

    def inches(picture) -> tuple[float, float]:  # (width, height) of a tile
        h, w = first if isinstance(picture, tuple) else picture.shape[:2]
        return w * zoom / dpi, h * zoom / dpi

    column = max(COLUMN, max(inches(p)[0] for _, tiles in rows for p, _ in tiles)) + GAP
    cols = max(len(tiles) for _, tiles in rows)
    title_lines = textwrap.wrap(title, width=int(cols * column * 15))
    tile_heights = [max(inches(p)[1] for p, _ in tiles) for _, tiles in rows]
    heights = [tile_h + GAP + LINE * max(t.count("\n") + 1 for _, t in tiles) + GAP
               for tile_h, (_, tiles) in zip(tile_heights, rows)]
    width, top = LEFT + cols * column, GAP + LINE * 1.1 * len(title_lines) + GAP
    height = top + sum(heights)
    fig = Figure(figsize=(width, height), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    fig.text(0.5, 1 - GAP / height, "\n".join(title_lines), ha="center", va="top", fontsize=FONT + 1)
    y = height - top  # top edge of the current row, inches from the bottom
    for (label, tiles), tile_h, row_height in zip(rows, tile_heights, heights):
        fig.text(LEFT / 2 / width, (y - tile_h / 2) / height, label, rotation=90, ha="center", va="center",
                 fontsize=FONT + 1)
        for c, (picture, text) in enumerate(tiles):
            centre = LEFT + c * column + column / 2
            w, h = inches(picture)
            left, bottom = (centre - w / 2) / width, (y - h) / height
            if isinstance(picture, tuple):  # leave the bottom fifth of the tile to the tick labels
                ax = fig.add_axes((left, bottom + 0.2 * h / height, w / width, 0.8 * h / height))
                _bars(ax, *picture, legend=c == 0)
            else:
                ax = fig.add_axes((left, bottom, w / width, h / height))
                ax.imshow(picture, vmin=0, vmax=1, interpolation="nearest")
                ax.set_axis_off()
            fig.text(centre / width, (y - tile_h - GAP / 2) / height, text, ha="center", va="top", fontsize=FONT,
                     linespacing=1.15)
        y -= row_height
    canvas.draw()
    # Saved by PIL as RGB with optimize: a third smaller than matplotlib's RGBA PNG, same pixels.
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(path, optimize=True)


def _bars(ax, before: Tensor, after: Tensor, legend: bool) -> None:
    k = torch.arange(before.shape[0]).numpy()
    ax.bar(k - 0.2, before.numpy(), 0.4, color="0.7", label="before")
    ax.bar(k + 0.2, after.numpy(), 0.4, color="tab:blue", label="after")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(k)
    ax.tick_params(labelsize=FONT - 1, length=2)
    if legend:
        ax.legend(fontsize=FONT - 1, frameon=False)


def _picture(x: Tensor) -> np.ndarray:
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x  # one gray channel shown as gray, not through a colour map
    return x.permute(1, 2, 0).float().numpy()  # (C, H, W) -> (H, W, C) for imshow


VIEWS_PER_ROW = 5  # FiveCrop's views, and TenCrop's unmirrored then mirrored ones, a row each


def grid_rows(entry: Preview, images: Tensor, names: list[str], seed: int, draws: int) -> tuple[str, list]:
    """The title and rows of one grid: the originals, then the draws (or the targets for LabelSmoothing, or the
    first image's views for FiveCrop and TenCrop)."""
    title = f"{entry.name}: " + " → ".join(repr(n) for n in entry.nodes) + f". {entry.note}"
    size = tuple(images.shape[-2:])
    originals = [(_picture(F.to_float(x)), f"#{i} {n} {size[0]}x{size[1]}")
                 for i, (x, n) in enumerate(zip(images, names))]
    results = run(entry.nodes, images, seed, 1 if entry.targets or entry.fixed else draws)
    if results[0].views > 1:
        first = results[0]
        tiles = [(_picture(x), t) for x, t in zip(first.images[:first.views], first.texts[:first.views])]
        return title, [("original", originals[:1])] + [
            (f"views {v + 1}-{min(v + VIEWS_PER_ROW, first.views)}", tiles[v:v + VIEWS_PER_ROW])
            for v in range(0, first.views, VIEWS_PER_ROW)]
    rows = [("original", originals)]
    if entry.targets:
        before = torch.nn.functional.one_hot(torch.arange(len(names)) % NUM_CLASSES, NUM_CLASSES).float()
        after = results[0].targets
        rows.append(("targets", [((b, a), f"class {i % NUM_CLASSES}: {a[i % NUM_CLASSES]:.3f}\nothers: "
                                  f"{a[(i + 1) % NUM_CLASSES]:.3f}") for i, (b, a) in enumerate(zip(before, after))]))
    else:
        label = (lambda d: "output") if entry.fixed else (lambda d: f"draw {d + 1}")
        rows += [(label(d), [(_picture(x), t) for x, t in zip(r.images, r.texts)]) for d, r in enumerate(results)]
    return title, rows


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m augpipe.preview",
                                     description="Write a PNG grid of augmented draws per op and recipe.")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNGs (created)")
    parser.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files (default: scikit-image's cat, coffee, astronaut and rocket photographs)")
    parser.add_argument("--seed", type=int, default=0, help="the Pipelines' seed")
    parser.add_argument("--draws", type=int, default=4, help="augmented rows per grid")
    parser.add_argument("--size", type=int, default=96, help="images are centre-cropped and resized to this side")
    args = parser.parse_args(argv)
    if args.draws < 1 or args.size < 8:
        parser.error(f"--draws must be >= 1 and --size >= 8, got {args.draws} and {args.size}")
    try:
        images, names = load_images(args.images, args.size)
    except ValueError as e:
        parser.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in catalogue(args.size):
        title, rows = grid_rows(entry, images, names, args.seed, args.draws)
        path = args.out / f"{entry.name}.png"
        draw_grid(path, title, rows)
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    main()
