"""Images of their own sizes through the geometry, against references that never call augpipe's kernels.

- Each sample of a packed batch of photographs (or of a list of images) is what the same pipeline gives that image
  alone with the same params (``params=`` replay); masks, boxes and keypoints follow in each sample's own pixels,
  checked against maps worked out by hand from the params.
- The new ops against torchvision's rules written out here: CenterCrop's offsets and padding split, RandomCrop's
  pad_if_needed, Resize(int)'s output size, FiveCrop and TenCrop as slices, RandomResize's draw, RandomResizedCrop's
  sampling loop and fallback from each image's own size.
- Antialiased downscales against PIL's bilinear resize and torch's antialiased interpolate; without antialiasing,
  and on upscales, against plain bilinear interpolate.
- Properties (hypothesis) over sizes and batches, bad input, and one compiled call on packed batches.
"""
import functools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import stats
from skimage import data as skdata
from torch import Tensor

import augpipe as A

PROPERTIES = settings(max_examples=25, deadline=None, derandomize=True, database=None)


# ----------------------------------------------------------------------------------------------- photographs
def photo(name: str, longer: int | None = None) -> Tensor:
    """A photograph bundled with scikit-image as (3, H, W) uint8, shrunk by PIL to a longer side of ``longer``."""
    image = Image.fromarray(getattr(skdata, name)())
    if longer is not None:
        scale = longer / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


@functools.cache
def small_photos() -> tuple[Tensor, ...]:
    """Five photographs cut to different sizes, 32 to 90 pixels a side: landscape, portrait, nearly square."""
    return (photo("astronaut", 60)[:, 3:50, 5:60],  # 47 x 55
            photo("chelsea", 90),  # 60 x 90
            photo("coffee", 70)[:, :40, :33],  # 40 x 33
            photo("rocket", 80),  # 53 x 80
            photo("chelsea", 90)[:, 5:, 30:62])  # 55 x 32


def sample_params(params, rows, batch: int):
    """The share of a params tree drawn for ``batch`` images that belongs to the images ``rows`` (an int or a
    list): each image's row, or its rows of views after a FiveCrop or TenCrop."""
    if isinstance(params, Tensor):
        per = params.shape[0] // batch
        rows = [rows] if isinstance(rows, int) else rows
        return torch.cat([params[b * per:(b + 1) * per] for b in rows])
    if isinstance(params, dict):
        return {k: sample_params(v, rows, batch) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return type(params)(sample_params(v, rows, batch) for v in params)
    return params


# ----------------------------------------------------------------------------------------------- torchvision's rules
def tv_resize_size(H: int, W: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``size``, the longer int(size * long / short)."""
    short, long = (W, H) if W <= H else (H, W)
    new_long = int(size * long / short)
    return (new_long, size) if W <= H else (size, new_long)


def tv_centre_offsets(H: int, W: int, size) -> tuple[int, int]:
    """torchvision's center_crop offsets in an image at least as large as the crop: Python's round (half to even)."""
    return int(round((H - size[0]) / 2.0)), int(round((W - size[1]) / 2.0))


def tv_centre_crop(image: Tensor, size, fill: float = 0.0) -> Tensor:
    """torchvision's center_crop: an image smaller than the crop is padded first, (c - H) // 2 before and
    (c - H + 1) // 2 after, then cut at the centre."""
    (ch, cw), (H, W) = size, image.shape[-2:]
    if ch > H or cw > W:
        top, bottom = ((ch - H) // 2, (ch - H + 1) // 2) if ch > H else (0, 0)
        left, right = ((cw - W) // 2, (cw - W + 1) // 2) if cw > W else (0, 0)
        image = TF.pad(image, (left, right, top, bottom), value=fill)
    t, l = tv_centre_offsets(*image.shape[-2:], size)
    return image[..., t:t + ch, l:l + cw]


def tv_five_crop(image: Tensor, size) -> list[Tensor]:
    """torchvision's five_crop: top-left, top-right, bottom-left, bottom-right, centre."""
    (h, w), (H, W) = size, image.shape[-2:]
    return [image[..., :h, :w], image[..., :h, W - w:], image[..., H - h:, :w], image[..., H - h:, W - w:],
            tv_centre_crop(image, size)]


def tv_ten_crop(image: Tensor, size, vertical_flip: bool = False) -> list[Tensor]:
    """torchvision's ten_crop: the five crops of the image, then of its mirror."""
    return tv_five_crop(image, size) + tv_five_crop(image.flip(-2 if vertical_flip else -1), size)


def tv_padded(image: Tensor, padding: int, size, mode: str, fill: float) -> Tensor:
    """torchvision's RandomCrop before its crop: pad by ``padding``, then (pad_if_needed) pad a side shorter than the
    crop by the difference on both ends, in the same mode."""
    kw = {"value": fill} if mode == "constant" else {}
    x = image[None]
    if padding:
        x = TF.pad(x, (padding,) * 4, mode=mode, **kw)
    extra_h, extra_w = max(0, size[0] - x.shape[-2]), max(0, size[1] - x.shape[-1])
    if extra_h or extra_w:
        x = TF.pad(x, (extra_w, extra_w, extra_h, extra_h), mode=mode, **kw)
    return x[0]


def tv_resized_crop_box(H: int, W: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w). Ten tries of an area ~ U(scale) H W and a log
    aspect ~ U(log ratio); the first box that fits is placed uniformly; else the fallback."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = H * W * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= W and 0 < h <= H:
            return rng.randint(0, H - h), rng.randint(0, W - w), h, w
    return tv_resized_crop_fallback(H, W, ratio)


def tv_resized_crop_fallback(H: int, W: int, ratio) -> tuple[int, int, int, int]:
    """torchvision's fallback when no try fits: the whole image cut to the nearest allowed aspect, centred."""
    in_ratio = W / H
    if in_ratio < min(ratio):
        w, h = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = H, int(round(H * max(ratio)))
    else:
        h, w = H, W
    return (H - h) // 2, (W - w) // 2, h, w


def pil_resized(image: Tensor, size) -> Tensor:
    """PIL's bilinear resize of a (3, H, W) uint8 image to (h, w), as float on the 0..255 scale."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float()


def bilinear(image: Tensor, size, antialias: bool) -> Tensor:
    """torch's bilinear interpolate of one uint8 image, in [0, 1]."""
    return TF.interpolate(image[None].float() / 255, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=antialias)[0]


# ----------------------------------------------------------------------------------------------- per-sample equivalence
EQUIVALENCE = {
    "resized crop, flip": lambda: [A.RandomResizedCrop(24), A.HorizontalFlip()],
    "resized crop without antialiasing, vertical flip": lambda: [
        A.RandomResizedCrop((20, 28), antialias=False), A.VerticalFlip()],
    "resized crop enlarging": lambda: [A.RandomResizedCrop((48, 40), scale=(0.05, 0.2))],
    "resize shorter side, centre crop": lambda: [A.Resize(20), A.CenterCrop(18)],
    "resize to (h, w)": lambda: [A.Resize((21, 17))],
    "random resize, random crop": lambda: [A.RandomResize(20, 30), A.RandomCrop(19)],
    "crop padded if needed, constant": lambda: [A.RandomCrop((70, 64), pad_if_needed=True, fill=0.25)],
    "crop padded if needed, reflect": lambda: [A.RandomCrop(50, pad_if_needed=True, padding_mode="reflect")],
    "padded crop padded further, replicate": lambda: [
        A.RandomCrop(64, padding=3, pad_if_needed=True, padding_mode="replicate")],
    "centre crop larger than the images": lambda: [A.CenterCrop((75, 45), fill=0.4)],
    "five crop": lambda: [A.FiveCrop(30)],
    "ten crop, then a flip per view": lambda: [A.TenCrop((28, 30)), A.HorizontalFlip()],
    "ten crop mirrored top-bottom": lambda: [A.TenCrop(30, vertical_flip=True)],
    "flip, resized crop, rotation: an affine read": lambda: [
        A.VerticalFlip(), A.RandomResizedCrop(24), A.RandomRotation(30, fill=0.2)],
    "resize, then photometric ops": lambda: [
        A.Resize((24, 24)), A.Brightness(0.3), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))],
}


@pytest.mark.parametrize("given_as", ["packed uint8", "list of float"])
@pytest.mark.parametrize("name", list(EQUIVALENCE))
def test_each_sample_of_a_mixed_batch_is_its_image_alone_with_its_params(name, given_as):
    photos = small_photos()
    images = list(photos) if given_as == "packed uint8" else [p.float() / 255 for p in photos]
    before = [image.clone() for image in images]
    batch = A.PackedImages.pack(images) if given_as == "packed uint8" else images
    pipe = A.Pipeline(*EQUIVALENCE[name](), seed=len(name))
    out = pipe(batch)
    params = pipe.last_params
    assert out.shape[0] == len(images)
    for b, image in enumerate(images):
        alone = pipe(image[None], params=sample_params(params, b, len(images)))[0]
        torch.testing.assert_close(out[b], alone, rtol=0, atol=1e-6)
    assert all(torch.equal(image, copy) for image, copy in zip(images, before))  # the caller's images unchanged
    assert not any(torch.equal(out[b], out[b - 1]) for b in range(1, len(images)))  # each its own photo


# ----------------------------------------------------------------------------------------------- targets follow
# Each case: the ops, and the map of sample b worked out by hand from its params and its own size: output pixel
# coordinates (x, y) read the source at (ax x + bx, ay y + by). Masks are read nearest at the output pixel centres
# through it; boxes and keypoints move through its inverse.
def _resized_crop_flip_map(params, b, H, W, out):
    top, left, h, w = params[0]["box"][b].tolist()
    ay, by = h / out[0], top
    if params[1]["flip"][b]:  # x -> out_w - x on the crop's output
        return -w / out[1], left + w, ay, by
    return w / out[1], left, ay, by


def _resize_centre_crop_map(params, b, H, W, out, shorter=20):
    h, w = tv_resize_size(H, W, shorter)
    assert params[0]["size"][b].tolist() == [h, w]
    top, left = tv_centre_offsets(h, w, out)
    return W / w, left * W / w, H / h, top * H / h


def _pad_if_needed_crop_map(params, b, H, W, out):
    extra_h, extra_w = max(0, out[0] - H), max(0, out[1] - W)
    return 1.0, params[0]["left"][b].item() - extra_w, 1.0, params[0]["top"][b].item() - extra_h


FOLLOW = {
    "resized crop, flip": (lambda: [A.RandomResizedCrop((24, 20)), A.HorizontalFlip()], _resized_crop_flip_map),
    "resize shorter side, centre crop": (lambda: [A.Resize(20), A.CenterCrop((18, 16))], _resize_centre_crop_map),
    "crop padded if needed": (lambda: [A.RandomCrop((70, 64), pad_if_needed=True)], _pad_if_needed_crop_map),
}


def _nearest_labels(axis_map, H, W, out, nudge):
    """The label each output pixel reads nearest, for labels r W + c + 1 at source pixel (r, c), 0 outside; every
    source coordinate moved by ``nudge`` (either side of a pixel edge is a right answer within float rounding)."""
    ax, bx, ay, by = axis_map
    rows = torch.floor(ay * (torch.arange(out[0], dtype=torch.float64) + 0.5) + by + nudge).long()
    cols = torch.floor(ax * (torch.arange(out[1], dtype=torch.float64) + 0.5) + bx + nudge).long()
    inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
    return torch.where(inside, rows[:, None] * W + cols[None, :] + 1, 0)


def _moved_points(points, axis_map, out):
    """Keypoints (K, 2) xy through the inverse map; NaN outside [0, out_w] x [0, out_h]."""
    ax, bx, ay, by = axis_map
    x, y = (points[:, 0] - bx) / ax, (points[:, 1] - by) / ay
    inside = (x >= 0) & (x <= out[1]) & (y >= 0) & (y <= out[0])
    moved = torch.stack((x, y), -1)
    return torch.where(inside[:, None], moved, float("nan"))


def _moved_boxes(boxes, axis_map, out):
    """Boxes (N, 4) xyxy through the inverse map: the box around the moved corners, clipped to the output; NaN
    where nothing is left."""
    ax, bx, ay, by = axis_map
    xs = torch.stack(((boxes[:, 0] - bx) / ax, (boxes[:, 2] - bx) / ax), -1)
    ys = torch.stack(((boxes[:, 1] - by) / ay, (boxes[:, 3] - by) / ay), -1)
    moved = torch.stack((xs.amin(-1).clamp(0, out[1]), ys.amin(-1).clamp(0, out[0]),
                         xs.amax(-1).clamp(0, out[1]), ys.amax(-1).clamp(0, out[0])), -1)
    empty = (moved[:, 2] <= moved[:, 0]) | (moved[:, 3] <= moved[:, 1]) | moved.isnan().any(-1)
    return torch.where(empty[:, None], float("nan"), moved)


def _targets(image: Tensor, b: int, g: torch.Generator) -> dict:
    """A dict sample: the image, a mask labelling each pixel by its place, and a few boxes and keypoints."""
    _, H, W = image.shape
    scale = torch.tensor([W, H], dtype=torch.float32)
    corners = torch.rand(2 + b % 3, 2, 2, generator=g) * scale
    boxes = torch.cat((corners.amin(1), corners.amax(1)), -1)
    keypoints = torch.rand(3 + b % 2, 2, generator=g) * scale
    mask = torch.arange(1, H * W + 1).view(H, W)
    return {"image": image, "mask": mask, "boxes": boxes, "keypoints": keypoints}


@pytest.mark.parametrize("name", list(FOLLOW))
def test_masks_boxes_and_keypoints_follow_each_sample_in_its_own_pixels(name):
    ops, by_hand = FOLLOW[name]
    g = torch.Generator().manual_seed(5)
    samples = [_targets(image, b, g) for b, image in enumerate(small_photos())]
    batch = A.collate(samples)
    assert isinstance(batch["images"], A.PackedImages) and isinstance(batch["masks"], A.PackedImages)
    pipe = A.Pipeline(*ops(), seed=len(name))
    out = pipe(**batch)
    params, size = pipe.last_params, tuple(out["images"].shape[-2:])
    assert out["masks"].shape == (len(samples), *size) and out["masks"].dtype == torch.int64
    for b, sample in enumerate(samples):
        _, H, W = sample["image"].shape
        axis_map = by_hand(params, b, H, W, size)
        low, high = (_nearest_labels(axis_map, H, W, size, nudge) for nudge in (-1e-4, 1e-4))
        got = out["masks"][b]
        assert ((got == low) | (got == high)).all(), f"sample {b}: {((got != low) & (got != high)).sum()} labels"
        for key, move in (("boxes", _moved_boxes), ("keypoints", _moved_points)):
            given = batch[key][b]
            expected = move(given.double(), axis_map, size).float()
            torch.testing.assert_close(out[key][b], expected, rtol=0, atol=1e-4, equal_nan=True)
    assert 0 < out["keypoints"].isnan().any(-1).sum() < sum(len(sample["keypoints"]) for sample in samples)


def test_targets_follow_the_views_of_a_ten_crop():
    """Each view's mask is the view's crop of the image's mask, mirrored as the view is."""
    g = torch.Generator().manual_seed(6)
    samples = [_targets(image, b, g) for b, image in enumerate(small_photos())]
    out = A.Pipeline(A.TenCrop((28, 30)))(**{k: v for k, v in A.collate(samples).items() if k in ("images", "masks")})
    assert out["masks"].shape == (len(samples), 10, 28, 30)
    for b, sample in enumerate(samples):
        expected = torch.stack(tv_ten_crop(sample["mask"][None], (28, 30)))[:, 0]
        assert torch.equal(out["masks"][b], expected)


# ----------------------------------------------------------------------------------------------- torchvision's rules
CENTRE_SIZES = [(h, w) for h in (3, 4, 5, 8, 9, 12) for w in (3, 4, 6, 7, 11)]


@pytest.mark.parametrize("size", [(5, 5), (8, 3), (4, 10), (12, 12), (1, 1), (7, 2)])
def test_centre_crop_offsets_and_padding_split_are_torchvisions(size):
    g = torch.Generator().manual_seed(size[0] * 13 + size[1])
    images = [torch.randint(0, 256, (2, h, w), dtype=torch.uint8, generator=g) for h, w in CENTRE_SIZES]
    op = A.CenterCrop(size, fill=0.2)
    expected = [tv_centre_crop(image.float() / 255, size, fill=0.2) for image in images]
    packed = A.Pipeline(op)(A.PackedImages.pack(images))
    for b, image in enumerate(images):
        torch.testing.assert_close(packed[b], expected[b], rtol=0, atol=1e-7)
        torch.testing.assert_close(A.Pipeline(op)(image), expected[b], rtol=0, atol=1e-7)  # one size alone


PAD_CROPS = [((70, 64), 0, "constant", 0.3), ((50, 50), 0, "reflect", 0.0), ((64, 64), 0, "replicate", 0.0),
             ((64, 70), 3, "constant", 0.8), ((64, 64), 2, "replicate", 0.0), ((40, 30), 2, "reflect", 0.0)]


@pytest.mark.parametrize("size, padding, mode, fill", PAD_CROPS)
def test_crop_padded_if_needed_is_torchvisions_pad_then_crop_at_the_recorded_offsets(size, padding, mode, fill):
    photos = small_photos()
    pipe = A.Pipeline(A.RandomCrop(size, padding=padding, padding_mode=mode, fill=fill, pad_if_needed=True), seed=9)
    out = pipe(A.PackedImages.pack(photos))
    tops, lefts = pipe.last_params[0]["top"].tolist(), pipe.last_params[0]["left"].tolist()
    for b, image in enumerate(photos):
        padded = tv_padded(image.float() / 255, padding, size, mode, fill)
        assert 0 <= tops[b] <= padded.shape[-2] - size[0] and 0 <= lefts[b] <= padded.shape[-1] - size[1]
        expected = padded[:, tops[b]:tops[b] + size[0], lefts[b]:lefts[b] + size[1]]
        torch.testing.assert_close(out[b], expected, rtol=0, atol=1e-7)


def test_reflect_padding_with_pad_if_needed_is_refused():
    """torchvision reflects the reflect-padded image again, which one remap of the original's indices cannot give:
    refused when an image needs that second padding, rather than read another way."""
    pipe = A.Pipeline(A.RandomCrop((14, 12), padding=2, padding_mode="reflect", pad_if_needed=True))
    with pytest.raises(ValueError, match=r"RandomCrop\(.*\): the 8x7 image, reflect-padded by \(2, 2, 2, 2\) and then "
                                         r"padded again to the crop, would be reflected twice"):
        pipe(torch.rand(3, 8, 7))


def test_crop_offsets_cover_every_position_of_the_padded_image():
    """pad_if_needed: each sample's offsets are uniform over its own padded image, ends included."""
    image = torch.zeros(1, 5, 9, dtype=torch.uint8)
    pipe = A.Pipeline(A.RandomCrop((8, 6), pad_if_needed=True), seed=2)
    pipe(A.PackedImages.pack([image, image.transpose(1, 2)] * 300))
    tops, lefts = pipe.last_params[0]["top"], pipe.last_params[0]["left"]
    # 5 x 9 padded to 11 x 9 (3 rows above and below): tops 0..3, lefts 0..3; 9 x 5 padded to 9 x 7: 0..1, 0..1
    assert set(tops[0::2].tolist()) == set(range(4)) and set(lefts[0::2].tolist()) == set(range(4))
    assert set(tops[1::2].tolist()) == set(range(2)) and set(lefts[1::2].tolist()) == set(range(2))


def test_resize_shorter_side_sizes_are_torchvisions_rule():
    for size in (1, 7, 32, 224):
        op = A.Resize(size)
        for H in range(1, 61):
            for W in range(1, 61):
                assert tuple(op.output_size((H, W))) == tv_resize_size(H, W, size), (H, W, size)
    rng = random.Random(0)
    for _ in range(2000):  # large sides, where int(size * long / short) depends on the float division
        H, W, size = rng.randint(1, 5000), rng.randint(1, 5000), rng.randint(1, 700)
        assert tuple(A.Resize(size).output_size((H, W))) == tv_resize_size(H, W, size), (H, W, size)


def test_resize_shorter_side_per_sample_of_a_packed_batch():
    rng = random.Random(1)
    sizes = [(rng.randint(5, 70), rng.randint(5, 70)) for _ in range(24)] + [(30, 30), (31, 30), (30, 31)]
    sizes += [(3001, 7), (7, 2999), (1999, 3), (4, 2001)]  # where int(size * long / short) rounds a long division
    images = [torch.zeros(1, h, w, dtype=torch.uint8) for h, w in sizes]
    pipe = A.Pipeline(A.Resize(13, antialias=False), A.CenterCrop(13))
    pipe(A.PackedImages.pack(images))
    assert [tuple(hw) for hw in pipe.last_params[0]["size"].long().tolist()] == [tv_resize_size(h, w, 13)
                                                                               for h, w in sizes]
    for (h, w), image in list(zip(sizes, images))[:6]:  # one image alone gives the size as its shape
        assert A.Pipeline(A.Resize(13))(image).shape[-2:] == tv_resize_size(h, w, 13)


VIEWS = {"five": (lambda size: A.FiveCrop(size), tv_five_crop),
         "ten": (lambda size: A.TenCrop(size), tv_ten_crop),
         "ten mirrored top-bottom": (lambda size: A.TenCrop(size, vertical_flip=True),
                                     functools.partial(tv_ten_crop, vertical_flip=True))}


@pytest.mark.parametrize("views", list(VIEWS))
def test_five_and_ten_crop_are_slices_of_each_image(views):
    photos, size = small_photos(), (28, 30)
    op, reference = VIEWS[views][0](size), functools.partial(VIEWS[views][1], size=size)
    out = A.Pipeline(op)(A.PackedImages.pack(photos))
    assert out.shape == (len(photos), op.views, 3, *size)
    for b, image in enumerate(photos):
        torch.testing.assert_close(out[b], torch.stack(reference(image)).float() / 255, rtol=0, atol=1e-7)
    batch = torch.stack([image[:, :40, :32] for image in photos])  # one size: the (B, C, H, W) path
    out = A.Pipeline(op)(batch)
    for b, image in enumerate(batch):
        torch.testing.assert_close(out[b], torch.stack(reference(image)).float() / 255, rtol=0, atol=1e-7)


def test_random_resize_draws_every_shorter_side_in_its_bounds_alike():
    x = torch.zeros(1400, 1, 6, 5, dtype=torch.uint8)
    pipe = A.Pipeline(A.RandomResize(3, 9), A.CenterCrop(3), seed=0)
    pipe(x)
    size = pipe.last_params[0]["size"].long()
    shorter = size[:, 1]  # the images are taller than wide
    assert torch.equal(size[:, 0], torch.tensor([tv_resize_size(6, 5, s)[0] for s in shorter.tolist()]))
    counts = torch.bincount(shorter, minlength=11)
    assert counts[:3].sum() == 0 and counts[10:].sum() == 0 and (counts[3:10] > 0).all()
    assert stats.chisquare(counts[3:10].numpy()).pvalue > 1e-3  # uniform over the 7 values, both ends included


def test_random_resize_of_a_packed_batch_keeps_each_images_aspect():
    rng = random.Random(3)
    sizes = [(rng.randint(4, 40), rng.randint(4, 40)) for _ in range(300)]
    pipe = A.Pipeline(A.RandomResize(4, 11, antialias=False), A.CenterCrop(4), seed=1)
    pipe(A.PackedImages.pack([torch.zeros(1, h, w, dtype=torch.uint8) for h, w in sizes]))
    drawn = pipe.last_params[0]["size"].long().tolist()
    shorter = [min(hw) for hw in drawn]
    assert set(shorter) == set(range(4, 12))
    assert [tuple(hw) for hw in drawn] == [tv_resize_size(h, w, s) for (h, w), s in zip(sizes, shorter)]


RESIZED_CROP_SIZES = [(20, 90), (90, 20), (48, 48), (30, 64)]


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.5, 1.0), (0.5, 2.0)),
                                          ((0.3, 0.6), (1.0, 1.0))])
def test_resized_crop_boxes_follow_torchvisions_sampling_per_image(scale, ratio):
    """A packed batch mixing four sizes: each size's boxes are distributed as torchvision's get_params draws them
    for that size (two-sample tests against 3000 reference draws), fallbacks included."""
    repeats = 300
    sizes = RESIZED_CROP_SIZES * repeats  # interleaved, so every batch row's neighbours differ in size
    # antialias=False: the boxes are drawn alike either way, and four taps a pixel read faster
    pipe = A.Pipeline(A.RandomResizedCrop(4, scale=scale, ratio=ratio, antialias=False), seed=4)
    pipe(A.PackedImages.pack([torch.zeros(1, h, w, dtype=torch.uint8) for h, w in sizes]))
    boxes = pipe.last_params[0]["box"].long()
    rng = random.Random(7)
    for k, (H, W) in enumerate(RESIZED_CROP_SIZES):
        got = boxes[k::len(RESIZED_CROP_SIZES)]
        top, left, h, w = got.unbind(1)
        assert ((h > 0) & (w > 0) & (top >= 0) & (left >= 0) & (top + h <= H) & (left + w <= W)).all()
        reference = torch.tensor([tv_resized_crop_box(H, W, scale, ratio, rng) for _ in range(3000)])
        for column in range(4):
            result = stats.ks_2samp(got[:, column].numpy(), reference[:, column].numpy())
            assert result.pvalue > 1e-3, (H, W, column, result)
        fallback = torch.tensor(tv_resized_crop_fallback(H, W, ratio))
        counts = [[n, len(boxes) - n] for boxes in (got, reference) for n in [(boxes == fallback).all(1).sum().item()]]
        assert stats.fisher_exact(counts).pvalue > 1e-3, (H, W, counts)  # as often the central fallback box


def test_resized_crop_fallback_is_each_images_own_centre_crop():
    """No try can fit (the whole area at aspect 2, or 1/2): every sample takes the fallback of its own size."""
    sizes = [(10, 40), (17, 17), (30, 10), (9, 23), (40, 10), (12, 13)]
    images = A.PackedImages.pack([torch.zeros(1, h, w, dtype=torch.uint8) for h, w in sizes])
    for ratio in ((2.0, 2.0), (0.5, 0.5)):
        pipe = A.Pipeline(A.RandomResizedCrop(3, scale=(1.0, 1.0), ratio=ratio, antialias=False), seed=0)
        pipe(images)
        expected = [tv_resized_crop_box(h, w, (1.0, 1.0), ratio, random.Random(0)) for h, w in sizes]
        assert [tuple(box) for box in pipe.last_params[0]["box"].long().tolist()] == expected


# ----------------------------------------------------------------------------------------------- antialiasing
@functools.cache
def full_photos() -> tuple[Tensor, ...]:
    return photo("astronaut"), photo("chelsea"), photo("coffee")  # 512 x 512, 300 x 451, 400 x 600


@pytest.mark.parametrize("factor", [2, 3, 5, 8])
def test_antialiased_downscale_matches_pil_bilinear(factor):
    """Within 1/255 on average of PIL's uint8 result (PIL rounds after each pass); 451 // 2 and 300 // 8 are not
    whole ratios."""
    for image in full_photos():
        size = (image.shape[1] // factor, image.shape[2] // factor)
        out = A.Pipeline(A.Resize(size))(image) * 255
        difference = (out - pil_resized(image, size)).abs()
        assert difference.mean() <= 1.0 and difference.max() <= 2.0, (tuple(image.shape), factor)
        torch.testing.assert_close(out / 255, bilinear(image, size, antialias=True), rtol=0, atol=2e-5)
        if factor >= 5:  # the comparison can fail: four taps a pixel are far from PIL's average
            plain = A.Pipeline(A.Resize(size, antialias=False))(image) * 255
            assert (plain - pil_resized(image, size)).abs().mean() > 2.0


@pytest.mark.parametrize("size", [(64, 80), (150, 170)])
def test_antialiased_downscale_of_a_packed_batch_matches_pil_per_sample(size):
    photos = full_photos()
    out = A.Pipeline(A.Resize(size))(A.PackedImages.pack(photos)) * 255
    for b, image in enumerate(photos):
        difference = (out[b] - pil_resized(image, size)).abs()
        assert difference.mean() <= 1.0 and difference.max() <= 2.0, (tuple(image.shape), size)
        torch.testing.assert_close(out[b] / 255, bilinear(image, size, antialias=True), rtol=0, atol=2e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_without_antialiasing_a_downscale_is_plain_bilinear(packed):
    photos, size = full_photos(), (97, 131)
    if packed:
        out = A.Pipeline(A.Resize(size, antialias=False))(A.PackedImages.pack(photos))
    else:
        out = torch.stack([A.Pipeline(A.Resize(size, antialias=False))(image) for image in photos])
    for b, image in enumerate(photos):
        # sampling matrices are float32: a source coordinate near 600 may move by 2e-5 pixel from torch's
        torch.testing.assert_close(out[b], bilinear(image, size, antialias=False), rtol=0, atol=2e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_antialiasing_leaves_an_upscale_plain_bilinear(packed):
    images = [image[:, :41, :57] for image in full_photos()]
    size = (100, 90)
    outs = {}
    for antialias in (True, False):
        pipe = A.Pipeline(A.Resize(size, antialias=antialias))
        outs[antialias] = pipe(A.PackedImages.pack(images)) if packed else torch.stack([pipe(x) for x in images])
    torch.testing.assert_close(outs[True], outs[False], rtol=0, atol=1e-6)
    for b, image in enumerate(images):
        torch.testing.assert_close(outs[True][b], bilinear(image, size, antialias=False), rtol=0, atol=1e-5)


def test_antialiasing_holds_when_a_centre_crop_pads_the_resized_image():
    image = full_photos()[0]
    out = A.Pipeline(A.Resize(32), A.CenterCrop(64))(image) * 255
    assert (out[:, 16:48, 16:48] - pil_resized(image, (32, 32))).abs().mean() <= 1.0


def test_antialiasing_holds_when_a_resize_is_followed_by_a_rotation():
    image = full_photos()[0]
    out = A.Pipeline(A.Resize((32, 32)), A.RandomRotation((0, 0)))(image) * 255
    assert (out - pil_resized(image, (32, 32))).abs().mean() <= 1.0


# ----------------------------------------------------------------------------------------------- properties
@st.composite
def batches(draw, min_side: int = 1):
    """(images as the pipeline takes them, the list of (C, H, W) images): a packed batch of sizes 1 to 12 a side,
    or a (B, C, H, W) batch; 1 or 3 channels, uint8 or float."""
    side = st.integers(min_side, 12)
    if draw(st.booleans()):
        sizes = draw(st.lists(st.tuples(side, side), min_size=1, max_size=4))
    else:
        sizes = [draw(st.tuples(side, side))] * draw(st.integers(1, 4))
    channels = draw(st.sampled_from([1, 3]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    if draw(st.booleans()):
        images = [torch.randint(0, 256, (channels, h, w), dtype=torch.uint8, generator=g) for h, w in sizes]
    else:
        images = [torch.rand(channels, h, w, generator=g) for h, w in sizes]
    packed = len(set(sizes)) > 1 or draw(st.booleans())  # a packed batch may hold one size too
    return (A.PackedImages.pack(images) if packed else torch.stack(images)), images


def _smallest(images) -> tuple[int, int]:
    return min(x.shape[1] for x in images), min(x.shape[2] for x in images)


# name -> ops built for the smallest (H, W) of the batch
PROPERTY_OPS = {
    "resize": lambda low: [A.Resize((5, 7))],
    "resize without antialiasing": lambda low: [A.Resize((9, 4), antialias=False)],
    "resize shorter side, centre crop": lambda low: [A.Resize(4), A.CenterCrop((4, 6))],
    "random resize, centre crop": lambda low: [A.RandomResize(2, 9), A.CenterCrop((5, 3), fill=0.7)],
    "centre crop": lambda low: [A.CenterCrop((6, 5), fill=0.3)],
    "five crop": lambda low: [A.FiveCrop(low)],
    "ten crop": lambda low: [A.TenCrop(low, vertical_flip=True)],
    "crop padded if needed": lambda low: [A.RandomCrop((7, 6), pad_if_needed=True, fill=1.0)],
    "crop padded if needed, reflect": lambda low: [
        A.RandomCrop((2 * low[0] - 1, 2 * low[1] - 1), pad_if_needed=True, padding_mode="reflect")],
}


@pytest.mark.parametrize("name", list(PROPERTY_OPS))
@PROPERTIES
@given(batch=batches())
def test_properties_over_sizes_and_batches(name, batch):
    """Output in [0, 1]; a replay gives the same output; any part of the batch, replayed with its params, gives
    its rows (no sample depends on another)."""
    x, images = batch
    pipe = A.Pipeline(*PROPERTY_OPS[name](_smallest(images)), seed=len(name))
    out = pipe(x)
    params = pipe.last_params
    assert out.shape[0] == len(images) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(pipe(x, params=params), out)
    rows = list(range(len(images)))[1::2] or [0]
    part = [images[b] for b in rows]
    part = A.PackedImages.pack(part) if len({tuple(p.shape) for p in part}) > 1 else torch.stack(part)
    torch.testing.assert_close(pipe(part, params=sample_params(params, rows, len(images))), out[rows],
                               rtol=0, atol=1e-6)


@PROPERTIES
@given(batch=batches())
def test_neutral_parameters_give_the_images_back(batch):
    x, images = batch
    H, W = max(image.shape[1] for image in images), max(image.shape[2] for image in images)
    low = _smallest(images)
    expected = [image.float() / 255 if image.dtype == torch.uint8 else image for image in images]
    if low == (H, W):  # one size
        for ops in ([A.Resize((H, W))], [A.Resize((H, W), antialias=False)], [A.Resize(min(H, W)),
                    A.CenterCrop((H, W))], [A.CenterCrop((H, W))], [A.RandomCrop((H, W), pad_if_needed=True)],
                    [A.RandomResize(min(H, W), min(H, W)), A.CenterCrop((H, W))]):
            torch.testing.assert_close(A.Pipeline(*ops)(x), torch.stack(expected), rtol=0, atol=1e-6, msg=str(ops))
    five, ten = A.Pipeline(A.FiveCrop(low))(x), A.Pipeline(A.TenCrop(low))(x)
    # a centre crop as large as the largest image puts each image at its own centre, torchvision's padding split
    canvas = A.Pipeline(A.CenterCrop((H, W), fill=0.5))(x)
    for b, image in enumerate(expected):
        torch.testing.assert_close(five[b], torch.stack(tv_five_crop(image, low)), rtol=0, atol=1e-6)
        torch.testing.assert_close(ten[b], torch.stack(tv_ten_crop(image, low)), rtol=0, atol=1e-6)
        torch.testing.assert_close(canvas[b], tv_centre_crop(image, (H, W), fill=0.5), rtol=0, atol=1e-6)
        h, w = image.shape[-2:]
        top, left = (H - h) // 2, (W - w) // 2
        torch.testing.assert_close(canvas[b][:, top:top + h, left:left + w], image, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------- bad input
FIXES = r"Resize\(\(h, w\)\), RandomResizedCrop, CenterCrop or RandomCrop\(pad_if_needed=True\)"


def _mixed(channels=3):
    return A.PackedImages.pack([torch.zeros(channels, 6, 8, dtype=torch.uint8),
                                torch.zeros(channels, 9, 5, dtype=torch.uint8)])


@pytest.mark.parametrize("call, error, match", [
    (lambda: A.Pipeline(A.Resize((4, 4)))([torch.zeros(3, 6, 8), torch.zeros(1, 6, 8)]), ValueError,
     r"different channel counts \[1, 3\]"),
    (lambda: A.Pipeline(A.HorizontalFlip())(_mixed()), ValueError, f"leaves images of different sizes.*{FIXES}"),
    (lambda: A.Pipeline(A.RandomResize(4, 8))(_mixed()), ValueError, f"leaves images of different sizes.*{FIXES}"),
    (lambda: A.Pipeline(A.Resize(4))([torch.zeros(3, 6, 8), torch.zeros(3, 9, 5)]), ValueError, FIXES),
    (lambda: A.Pipeline(A.Normalize((0.5,) * 3, (0.2,) * 3), A.Resize((4, 4)))(_mixed()), ValueError,
     f"Normalize.*gets images of different sizes.*put {FIXES} before it"),
    (lambda: A.Pipeline(A.RandomResize(4, 8), A.Brightness(0.2), A.CenterCrop(4))(_mixed()), ValueError,
     f"Brightness.*gets images of different sizes.*put {FIXES} before it"),
    (lambda: A.Pipeline(A.RandomRotation(10), A.Resize((4, 4)))(_mixed()), ValueError,
     "RandomRotation.*gets images of different sizes"),
    (lambda: A.Pipeline(A.RandomCrop(6))(_mixed()), ValueError,
     r"smallest image of the batch is 6x5 .* smaller than the 6x6 crop; pass pad_if_needed=True"),
    (lambda: A.Pipeline(A.RandomCrop(7))(torch.zeros(2, 3, 6, 8)), ValueError, "pass pad_if_needed=True"),
    (lambda: A.Pipeline(A.FiveCrop((6, 6)))(_mixed()), ValueError, r"larger than the 6x5 image \(the smallest"),
    (lambda: A.Pipeline(A.TenCrop(9))(torch.zeros(1, 3, 8, 12)), ValueError, "larger than the 8x12 image"),
    (lambda: A.RandomResizedCrop(8, antialias="yes"), TypeError, "RandomResizedCrop: antialias must be True or "),
    (lambda: A.Resize(8, antialias=1), TypeError, "Resize: antialias must be True or False, got 1"),
    (lambda: A.RandomResize(4, 8, antialias="yes"), TypeError, "RandomResize: antialias must be True or False"),
    (lambda: A.RandomCrop(8, pad_if_needed="yes"), TypeError, "RandomCrop: pad_if_needed must be True or False"),
    (lambda: A.TenCrop(8, vertical_flip=None), TypeError, "TenCrop: vertical_flip must be True or False"),
    (lambda: A.RandomResize(8, 4), ValueError, r"RandomResize: need ints 0 < min_size <= max_size, got 8, 4"),
    (lambda: A.RandomResize(2.5, 4), ValueError, "RandomResize: need ints"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------------------------- compiled
def test_a_compiled_pipeline_on_packed_batches_of_different_sizes_equals_eager(compiled_graphs):
    photos = small_photos()
    ops = lambda: [A.RandomResizedCrop(24), A.HorizontalFlip(), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))]
    compiled, eager = A.Pipeline(*ops(), seed=3, compile=True), A.Pipeline(*ops())
    before = compiled_graphs()
    for images in (photos[:3], [image[:, 2:, 1:-3] for image in photos[1:]]):
        batch = A.PackedImages.pack(images)
        out = compiled(batch)
        torch.testing.assert_close(out, eager(batch, params=compiled.last_params), rtol=0, atol=1e-5)
    assert compiled_graphs() > before  # the compiled code ran, not an eager fallback
