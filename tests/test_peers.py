"""augpipe against kornia, albumentations/OpenCV and torch where their semantics are the same.

Parameters are explicit on both sides (no randomness to match). Where a peer means something else (kornia's
additive brightness, torch's fixed-window fractional pooling) a test shows the difference instead.
"""
import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import augpipe
from augpipe import functional as AF

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import
kornia = pytest.importorskip("kornia")
A = pytest.importorskip("albumentations")
cv2 = pytest.importorskip("cv2")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hwc(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> contiguous (H, W, C) array, as albumentations and OpenCV take images."""
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def uint8_levels(shape, seed):
    """uint8 images and the same values as float k / 255, so uint8 peers compare exactly."""
    x8 = torch.randint(0, 256, shape, generator=gen(seed), dtype=torch.uint8)
    return x8, x8.float() / 255


# ================================================================================ flips
def test_hflip_vflip_match_kornia_per_sample():
    x = torch.rand(6, 3, 5, 7, generator=gen(1))
    flip = torch.tensor([True, False, True, True, False, False])
    h, v = AF.hflip(x, flip), AF.vflip(x, flip)
    kh, kv = kornia.geometry.transform.hflip(x), kornia.geometry.transform.vflip(x)
    for b in range(6):
        torch.testing.assert_close(h[b], kh[b] if flip[b] else x[b], rtol=0, atol=0)
        torch.testing.assert_close(v[b], kv[b] if flip[b] else x[b], rtol=0, atol=0)
    assert not torch.equal(h, x) and not torch.equal(v, x)


def test_flip_pipeline_matches_albumentations():
    x8, x = uint8_levels((8, 3, 6, 9), 2)
    pipe = augpipe.Pipeline(augpipe.HorizontalFlip(0.5), augpipe.VerticalFlip(0.5), seed=3)
    out = pipe(x8)
    hp, vp = pipe.last_params[0]["flip"].tolist(), pipe.last_params[1]["flip"].tolist()
    assert 0 < sum(hp) < 8 and 0 < sum(vp) < 8
    for b in range(8):
        img = hwc(x8[b])
        if hp[b]:
            img = A.HorizontalFlip(p=1.0)(image=img)["image"]
        if vp[b]:
            img = A.VerticalFlip(p=1.0)(image=img)["image"]
        torch.testing.assert_close(out[b], chw(img).float() / 255, rtol=0, atol=0)


# ================================================================================ photometric
@pytest.mark.parametrize("channels", [1, 3])
def test_contrast_matches_kornia_mean_subtraction(channels):
    x = torch.rand(5, channels, 6, 8, generator=gen(4))
    factor = torch.tensor([0.0, 0.4, 1.0, 1.5, 3.0])
    ours = AF.contrast(x, factor)
    theirs = kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor)
    # What kornia computes, checked first: with factor 0 the output is the per-image mean it blends with, which is
    # the grayscale 0.299 R + 0.587 G + 0.114 B mean for RGB and the plain mean for one channel (as torchvision).
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1) if channels == 3 else x[:, 0]
    torch.testing.assert_close(theirs[0], gray[0].mean().expand_as(theirs[0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.allclose(ours, x.clamp(0, 1))


def test_contrast_pipeline_matches_kornia_with_the_drawn_factors():
    x = torch.rand(9, 3, 8, 8, generator=gen(5))
    pipe = augpipe.Pipeline(augpipe.Contrast(0.8), seed=6)
    out = pipe(x)
    factor = pipe.last_params[0]["factor"]
    torch.testing.assert_close(out, kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor), rtol=0, atol=1e-6)


def test_brightness_matches_torchvision_formula_and_kornia_multiplicative():
    x = torch.rand(5, 3, 6, 8, generator=gen(7))
    factor = torch.tensor([0.0, 0.5, 1.0, 1.3, 2.5])
    ours = AF.brightness(x, factor)
    torch.testing.assert_close(ours, (factor.view(-1, 1, 1, 1) * x).clamp(0, 1), rtol=0, atol=0)  # adjust_brightness
    torch.testing.assert_close(ours, kornia.enhance.adjust_brightness_accumulative(x, factor), rtol=0, atol=0)
    # kornia.enhance.adjust_brightness adds its factor: a different convention, so it is not a reference here
    assert not torch.allclose(ours, kornia.enhance.adjust_brightness(x, factor), atol=1e-3)


MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def test_normalize_uint8_pipeline_matches_albumentations():
    x8, _ = uint8_levels((4, 3, 7, 5), 8)
    out = augpipe.Pipeline(augpipe.Normalize(MEAN, STD))(x8)
    norm = A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0, p=1.0)
    ref = torch.stack([chw(norm(image=hwc(x8[b]))["image"]) for b in range(4)])
    assert ref.dtype == torch.float32 and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=2e-6)
    assert out.abs().max() > 1.5  # really normalized, not the [0, 1] input


def test_normalize_float_matches_kornia():
    x = torch.rand(4, 3, 7, 5, generator=gen(9))
    ours = AF.normalize(x, torch.tensor(MEAN), torch.tensor(STD))
    theirs = kornia.enhance.Normalize(torch.tensor(MEAN), torch.tensor(STD))(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(augpipe.Pipeline(augpipe.Normalize(MEAN, STD))(x), theirs, rtol=1e-6, atol=1e-6)


# ================================================================================ padded crop
BORDERS = [("constant", cv2.BORDER_CONSTANT), ("reflect", cv2.BORDER_REFLECT_101),
           ("replicate", cv2.BORDER_REPLICATE)]


@pytest.mark.parametrize("mode,border", BORDERS, ids=[m for m, _ in BORDERS])
@pytest.mark.parametrize("padding", [(4, 4, 4, 4), (1, 3, 2, 0)], ids=["pad4", "pad1320"])
def test_padded_crop_matches_albumentations_pad_and_crop(mode, border, padding):
    x8, x = uint8_levels((6, 3, 9, 11), 10)
    l, t, r, b = padding
    size = (8, 12)
    top = torch.randint(0, 9 + t + b - size[0] + 1, (6,), generator=gen(11))
    left = torch.randint(0, 11 + l + r - size[1] + 1, (6,), generator=gen(12))
    fill = 102  # 102 / 255 = 0.4
    ours = AF.crop(x, top, left, size, padding, mode, fill / 255)
    for k in range(6):
        y0, x0 = int(top[k]), int(left[k])
        aug = A.Compose([A.Pad(padding=(l, t, r, b), fill=fill, border_mode=border, p=1.0),
                         A.Crop(x_min=x0, y_min=y0, x_max=x0 + size[1], y_max=y0 + size[0], p=1.0)])
        ref = chw(aug(image=hwc(x8[k]))["image"]).float() / 255
        torch.testing.assert_close(ours[k], ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode,border", BORDERS[1:], ids=[m for m, _ in BORDERS[1:]])
def test_random_crop_pipeline_uint8_matches_cv2_copy_make_border(mode, border):
    x8, _ = uint8_levels((5, 3, 10, 10), 13)
    pipe = augpipe.Pipeline(augpipe.RandomCrop(10, padding=4, padding_mode=mode), seed=14)
    out = pipe(x8)
    top, left = pipe.last_params[0]["top"].tolist(), pipe.last_params[0]["left"].tolist()
    for k in range(5):
        padded = cv2.copyMakeBorder(hwc(x8[k]), 4, 4, 4, 4, border)
        ref = chw(padded[top[k]:top[k] + 10, left[k]:left[k] + 10]).float() / 255
        torch.testing.assert_close(out[k], ref, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode,border", BORDERS[1:], ids=[m for m, _ in BORDERS[1:]])
def test_crop_padding_wider_than_image_matches_cv2(mode, border):
    # F.pad refuses reflect padding >= the size; OpenCV keeps mirroring (...1 0 1 2 3 2 1 0 1...), as crop does.
    x8, x = uint8_levels((1, 1, 4, 5), 15)
    ours = AF.crop(x, torch.tensor([0]), torch.tensor([0]), (4 + 12, 5 + 14), (7, 6, 7, 6), mode)
    ref = cv2.copyMakeBorder(x8[0, 0].numpy(), 6, 6, 7, 7, border)
    torch.testing.assert_close(ours[0, 0], torch.from_numpy(ref).float() / 255, rtol=0, atol=1e-7)


# ================================================================================ resized crop
BOXES = [(0, 0, 20, 24), (2, 3, 16, 18), (5, 1, 9, 13), (0, 0, 18, 22), (11, 7, 9, 17)]  # all >= 9 x 11


def _cv2_resized(img: np.ndarray, box, size) -> np.ndarray:
    t, l, h, w = box
    return cv2.resize(np.ascontiguousarray(img[t:t + h, l:l + w]), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def test_resized_crop_float_matches_cv2_inter_linear_downscale():
    x = torch.rand(len(BOXES), 3, 20, 24, generator=gen(16))
    out = AF.resized_crop(x, torch.tensor(BOXES, dtype=torch.float32), (9, 11))
    for k, box in enumerate(BOXES):
        ref = chw(_cv2_resized(hwc(x[k]), box, (9, 11)))
        torch.testing.assert_close(out[k], ref, rtol=0, atol=2e-6)


def test_resized_crop_uint8_matches_cv2_inter_linear_within_rounding():
    x8, _ = uint8_levels((len(BOXES), 3, 20, 24), 17)
    pipe = augpipe.Pipeline(augpipe.RandomResizedCrop((9, 11), antialias=False))  # INTER_LINEAR: no antialiasing
    out = pipe(x8, params=[{"box": torch.tensor(BOXES, dtype=torch.float32)}]) * 255
    for k, box in enumerate(BOXES):
        ref = chw(_cv2_resized(hwc(x8[k]), box, (9, 11))).float()
        # OpenCV rounds to uint8 (0.5) with 11-bit fixed-point weights; augpipe stays float
        torch.testing.assert_close(out[k], ref, rtol=0, atol=1.0)
    assert (out - out.round()).abs().max() > 0.1  # interpolated, so the comparison above is not trivially exact


# ================================================================================ rotation and affine
@pytest.mark.parametrize("ours, theirs", [
    (dict(degrees=(20, 20), scale=(1.2, 1.2), shear=(10, 10, -5, -5)),
     dict(degrees=(20.0, 20.0), scale=(1.2, 1.2), shear=(10.0, 10.0, -5.0, -5.0))),
    (dict(degrees=(-35, -35), shear=(0, 0, 15, 15)), dict(degrees=(-35.0, -35.0), shear=(0.0, 0.0, 15.0, 15.0))),
])
def test_random_affine_matches_kornia_angle_and_shear_signs(ours, theirs):
    """kornia's RandomAffine follows torchvision's affine (a positive angle turns clockwise); fixed ranges make
    both deterministic, and both read bilinear with zeros outside, so the whole image agrees."""
    x = torch.rand(4, 3, 16, 20, generator=gen(18))
    out = augpipe.Pipeline(augpipe.RandomAffine(**ours))(x)
    torch.testing.assert_close(out, kornia.augmentation.RandomAffine(p=1.0, **theirs)(x), rtol=0, atol=1e-5)


def test_random_rotation_matches_kornia_counter_clockwise():
    x = torch.rand(4, 3, 16, 20, generator=gen(19))
    out = augpipe.Pipeline(augpipe.RandomRotation((30, 30)))(x)
    torch.testing.assert_close(out, kornia.augmentation.RandomRotation((30.0, 30.0), p=1.0)(x), rtol=0, atol=1e-5)


# ================================================================================ fractional max pooling
def torch_fixed_window_starts(n_in: int, n_out: int, k: int, u: float) -> list[int]:
    """ATen's FractionalMaxPool2d intervals: alpha' = (n_in - k) / (n_out - 1), start_i = floor((i + u) alpha')
    - floor(u alpha') for i < n_out - 1, the last at n_in - k; every window is k wide."""
    a = (n_in - k) / (n_out - 1)
    return [int((i + u) * a) - int(u * a) for i in range(n_out - 1)] + [n_in - k]


def graham_sequence(n_in: int, n_out: int, u: float) -> list[int]:
    """Graham's a_i = ceil(alpha (i + u)) - ceil(alpha u), i = 0..n_out."""
    alpha = n_in / n_out
    return [math.ceil(alpha * (i + u)) - math.ceil(alpha * u) for i in range(n_out + 1)]


def graham_ends(n_in: int, n_out: int, u: float) -> list[int]:
    """Last index of Graham's overlapping regions [a_{i-1}, a_i] clipped to n_in - 1."""
    a = graham_sequence(n_in, n_out, u)
    return [min(a[i], n_in - 1) for i in range(1, n_out + 1)]


def test_torch_fractional_max_pool2d_uses_fixed_windows_and_differs_from_graham():
    n_in, n_out, u = 32, 23, 0.37
    # Values increase along rows and columns, so each max sits at its window's last row and column and the output
    # spells out where every window ends.
    x = torch.arange(n_in * n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    theirs = TF.fractional_max_pool2d(x, kernel_size=2, output_size=n_out,
                                      _random_samples=torch.full((1, 1, 2), u, dtype=torch.float64))
    ours = AF.fractional_max_pool2d(x, n_out, torch.tensor([[u, u]], dtype=torch.float64))
    t_rows, t_cols = (theirs[0, 0] // n_in).long(), (theirs[0, 0] % n_in).long()
    o_rows, o_cols = (ours[0, 0] // n_in).long(), (ours[0, 0] % n_in).long()
    torch_ends = [s + 1 for s in torch_fixed_window_starts(n_in, n_out, 2, u)]
    assert t_rows[:, 0].tolist() == torch_ends and t_cols[0].tolist() == torch_ends
    assert o_rows[:, 0].tolist() == graham_ends(n_in, n_out, u) and o_cols[0].tolist() == graham_ends(n_in, n_out, u)
    # the concrete difference: windows end in different places, so the pooled values differ
    differing_ends = sum(a != b for a, b in zip(torch_ends, graham_ends(n_in, n_out, u)))
    assert differing_ends >= 5
    assert (ours != theirs).sum() >= n_out * differing_ends
    # and Graham's overlapping regions [a_{i-1}, a_i] are 2 or 3 wide (before the last one's clipping), torch's
    # are always k = 2 wide
    a = graham_sequence(n_in, n_out, u)
    assert {a[i] - a[i - 1] + 1 for i in range(1, n_out)} == {2, 3}


def exact_graham_sequence(n_in: int, n_out: int, u: float) -> list[int]:
    """Graham's a_i = ceil(alpha (i + u)) - ceil(alpha u) in exact rational arithmetic (u taken as the float given)."""
    alpha, u = Fraction(n_in, n_out), Fraction(u)
    return [math.ceil(alpha * (i + u)) - math.ceil(alpha * u) for i in range(n_out + 1)]


def check_sequence(a: list[int], n_in: int, n_out: int) -> None:
    """The paper's properties of every sequence (docs/references.md, "Fractional max pooling"): a_0 = 0,
    a_N = N_in, and each increment 1 or 2."""
    assert len(a) == n_out + 1 and a[0] == 0 and a[-1] == n_in, a
    assert all(a[i] - a[i - 1] in (1, 2) for i in range(1, n_out + 1)), a


def overlapping_pool_loop(x: torch.Tensor, rows: list[list[int]], cols: list[list[int]]) -> torch.Tensor:
    """Output (i, j) of sample b is the max of x over rows a_{i-1}..a_i and columns c_{j-1}..c_j, each end clipped
    to the last index: Graham's overlapping regions, one pixel at a time."""
    B, C, H, W = x.shape
    out = torch.empty(B, C, len(rows[0]) - 1, len(cols[0]) - 1, dtype=x.dtype)
    for b in range(B):
        for i in range(1, len(rows[b])):
            for j in range(1, len(cols[b])):
                region = x[b, :, rows[b][i - 1]:min(rows[b][i], H - 1) + 1, cols[b][j - 1]:min(cols[b][j], W - 1) + 1]
                out[b, :, i - 1, j - 1] = torch.tensor([max(region[c].flatten().tolist()) for c in range(C)])
    return out


def test_fractional_max_pool2d_is_grahams_on_random_images_and_torchs_is_not():
    x = torch.randn(4, 2, 25, 25, generator=gen(18))
    u = torch.rand(4, 2, generator=gen(19), dtype=torch.float64)
    ours = AF.fractional_max_pool2d(x, 18, u)
    rows = [exact_graham_sequence(25, 18, float(u[b, 0])) for b in range(4)]
    cols = [exact_graham_sequence(25, 18, float(u[b, 1])) for b in range(4)]
    for a in rows + cols:
        check_sequence(a, 25, 18)
    assert len({tuple(a) for a in rows + cols}) > 1  # each sample and axis has its own u, so its own regions
    torch.testing.assert_close(ours, overlapping_pool_loop(x, rows, cols), rtol=0, atol=0)
    theirs = TF.fractional_max_pool2d(x, kernel_size=2, output_size=18,
                                      _random_samples=u.float()[:, None, :].expand(4, 2, 2).contiguous())
    assert ours.shape == theirs.shape == (4, 2, 18, 18)
    assert (ours != theirs).float().mean() > 0.05


def test_random_sequences_are_ones_and_twos_in_random_order_and_pool_like_the_loop():
    """Graham's random mode: increments are a random arrangement of N_in - N_out twos and 2 N_out - N_in ones."""
    x = torch.randn(5, 2, 25, 19, generator=gen(20))
    rows, cols = AF.graham_bounds((25, 19), (18, 13), 5, pseudo_random=False, generator=gen(21))
    out = AF.fractional_max_pool2d(x, (18, 13), pseudo_random=False, generator=gen(21))  # the same draw
    for bounds, n_in, n_out in ((rows, 25, 18), (cols, 19, 13)):
        for a in bounds.tolist():
            check_sequence(a, n_in, n_out)
            steps = [a[i] - a[i - 1] for i in range(1, n_out + 1)]
            assert steps.count(2) == n_in - n_out and steps.count(1) == 2 * n_out - n_in, a
        assert len({tuple(a) for a in bounds.tolist()}) > 1  # drawn per sample
    torch.testing.assert_close(out, overlapping_pool_loop(x, rows.tolist(), cols.tolist()), rtol=0, atol=0)
