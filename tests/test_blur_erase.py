"""GaussianBlur and RandomErasing, per sample.

References: the 2-D kernel written in numpy from torchvision's 1-D formula, applied with
``torch.nn.functional.conv2d`` to the reflect-padded image (numpy's ``np.pad`` for images smaller than the kernel);
kornia's ``gaussian_blur2d`` with each sample's sigma; torchvision's RandomErasing sampling re-run as a Python loop
on the same uniforms; distributions of many draws against their definitions, with fixed seeds.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import augpipe as A
import augpipe.functional as F
from augpipe.ops import Shape

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def photos(size=(48, 64), dtype=torch.float32) -> torch.Tensor:
    """skimage's astronaut and chelsea, (2, 3, H, W) in [0, 1], resized with antialiasing."""
    from skimage import data
    batch = [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].double() / 255
             for im in (data.astronaut(), data.chelsea())]
    x = torch.cat([TF.interpolate(im, size=size, mode="bilinear", antialias=True, align_corners=False)
                   for im in batch])
    return x.clamp(0, 1).to(dtype)


# ----------------------------------------------------------------------------------------------- GaussianBlur
def numpy_kernel2d(sigma: float, kx: int, ky: int) -> np.ndarray:
    """torchvision's 1-D kernel, x = linspace(-(k - 1) / 2, (k - 1) / 2, k), exp(-x^2 / (2 sigma^2)), normalized;
    the 2-D kernel is the outer product (ky rows, kx columns)."""
    def k1(k):
        x = np.linspace(-(k - 1) / 2, (k - 1) / 2, k)
        w = np.exp(-x ** 2 / (2 * sigma ** 2))
        return w / w.sum()
    return np.outer(k1(ky), k1(kx))


def conv_reference(x: torch.Tensor, sigma: torch.Tensor, kx: int, ky: int) -> torch.Tensor:
    """Per sample: conv2d (float64) of the image padded by mirroring (np.pad "reflect", which folds again past a
    small image as F.pad cannot) with the numpy 2-D kernel, channel by channel. Sigma 0 (not applied): the input."""
    out = []
    for b in range(x.shape[0]):
        if sigma[b] == 0:
            out.append(x[b].double())
            continue
        padded = np.pad(x[b].double().numpy(), ((0, 0), (ky // 2, ky // 2), (kx // 2, kx // 2)), mode="reflect")
        k = torch.from_numpy(numpy_kernel2d(float(sigma[b]), kx, ky))
        c = x.shape[1]
        out.append(TF.conv2d(torch.from_numpy(padded)[None], k.expand(c, 1, ky, kx), groups=c)[0])
    return torch.stack(out).to(x.dtype)


@pytest.mark.parametrize("kernel_size", [3, (5, 9), (9, 5), 23])
def test_blur_per_sample_equals_conv2d_of_the_numpy_kernel_on_photos(kernel_size):
    x = photos().repeat(3, 1, 1, 1)  # 6 samples, each its own sigma
    pipe = A.Pipeline(A.GaussianBlur(kernel_size, sigma=(0.1, 5.0)), seed=1)
    out = pipe(x)
    sigma = pipe.last_params[0]["sigma"]
    assert len(set(sigma.tolist())) == 6
    kx, ky = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    torch.testing.assert_close(out, conv_reference(x, sigma, kx, ky), rtol=0, atol=2e-6)


def test_blur_equals_kornia_gaussian_blur2d_with_each_samples_sigma():
    import kornia
    x = photos((40, 56)).repeat(2, 1, 1, 1)
    pipe = A.Pipeline(A.GaussianBlur((7, 11), sigma=(0.5, 3.0)), seed=2)
    out = pipe(x)
    sigma = pipe.last_params[0]["sigma"]
    # kornia: kernel (height, width) and sigma (B, 2) as (y, x); torchvision's (kx, ky) is the other order.
    ref = kornia.filters.gaussian_blur2d(x, (11, 7), torch.stack((sigma, sigma), 1), border_type="reflect")
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)


def test_blur_sigma_is_uniform_per_sample_and_p_skips_with_sigma_0():
    op = A.GaussianBlur(5, sigma=(0.5, 2.5), p=0.7)
    sigma = op.sample(Shape(20000, 3, 8, 8), gen(), "cpu")["sigma"]
    skipped = sigma == 0
    assert abs(skipped.float().mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 20000)
    drawn = sigma[~skipped]
    assert drawn.min() >= 0.5 and drawn.max() <= 2.5
    # U[0.5, 2.5]: the mean 1.5 (sd of the mean 0.58 / sqrt(14000) ~ 0.005) and each fifth of the range ~ 20%
    assert abs(drawn.mean().item() - 1.5) < 0.025
    counts = torch.histc(drawn, bins=5, min=0.5, max=2.5) / drawn.numel()
    assert (counts - 0.2).abs().max() < 0.015


def test_blur_fixed_sigma_and_the_identity_kernel():
    assert A.GaussianBlur(3, sigma=1.5).sigma == (1.5, 1.5)
    k = F.gaussian_kernels(torch.tensor([0.0, 1.0]), 5)
    assert torch.equal(k[0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(k[1].numpy(), numpy_kernel2d(1.0, 5, 1)[0], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 4), h=st.integers(1, 13), w=st.integers(1, 13), kx=st.sampled_from([1, 3, 5, 9]),
       ky=st.sampled_from([1, 3, 7]), seed=st.integers(0, 1000))
def test_blur_any_size_and_batch_matches_the_reference_and_stays_in_the_samples_range(b, h, w, kx, ky, seed):
    """Images smaller than the kernel included: the mirror folds again (np.pad's reflect)."""
    x = torch.rand(b, 2, h, w, generator=gen(seed))
    pipe = A.Pipeline(A.GaussianBlur((kx, ky), sigma=(0.1, 4.0), p=0.8), seed=seed)
    out = pipe(x)
    sigma = pipe.last_params[0]["sigma"]
    torch.testing.assert_close(out, conv_reference(x, sigma, kx, ky), rtol=0, atol=2e-6)
    # a weighted mean: within each sample's own range (so [0, 1] stays [0, 1]), up to rounding
    lo, hi = x.amin((1, 2, 3)), x.amax((1, 2, 3))
    assert (out.amin((1, 2, 3)) >= lo - 1e-6).all() and (out.amax((1, 2, 3)) <= hi + 1e-6).all()
    for i in range(b):  # not applied: exactly the input
        if sigma[i] == 0:
            assert torch.equal(out[i], x[i])


@settings(max_examples=15, deadline=None)
@given(b=st.integers(2, 6), split=st.integers(1, 5), seed=st.integers(0, 1000))
def test_blur_replay_and_sub_batch_independence(b, split, seed):
    split = min(split, b - 1)
    x = torch.rand(b, 3, 10, 12, generator=gen(seed))
    pipe = A.Pipeline(A.GaussianBlur((3, 5), p=0.6), seed=seed)
    out = pipe(x)
    params = pipe.last_params
    assert torch.equal(pipe(x, params=params), out)
    head = [{"sigma": params[0]["sigma"][:split]}]
    assert torch.equal(pipe(x[:split], params=head), out[:split])  # a sample's result is its own params' only


def test_blur_p0_is_the_input_and_masks_boxes_keypoints_pass_unchanged():
    x = photos((24, 32))
    masks = torch.randint(0, 5, (2, 1, 24, 32), generator=gen())
    boxes = torch.tensor([[[1.0, 2.0, 10.0, 12.0]], [[0.0, 0.0, 5.0, 5.0]]])
    points = torch.tensor([[[3.0, 4.0]], [[7.5, 1.5]]])
    out = A.Pipeline(A.GaussianBlur(5), seed=0)(x, masks=masks, boxes=boxes, keypoints=points)
    assert torch.equal(out["masks"], masks) and torch.equal(out["boxes"], boxes)
    assert torch.equal(out["keypoints"], points)
    assert not torch.equal(out["images"], x)
    assert torch.equal(A.Pipeline(A.GaussianBlur(5, p=0.0))(x), x)


# ----------------------------------------------------------------------------------------------- RandomErasing
def torchvision_loop(u, H, W, scale, ratio, count):
    """torchvision's RandomErasing sampling, box by box in Python, on the uniforms the op drew, in the order it
    draws them: (count > 1) the number of boxes, then areas (n, count, 10), log aspects (n, count, 10), the corners
    (2, n, count) and the p draw (n,). timm's count: U{1..count} boxes, each of area U(scale) H W / count."""
    n = u["keep"].shape[0]
    boxes = torch.zeros(n, count, 4, dtype=torch.long)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for b in range(n):
        if not u["keep"][b] < u["p"]:
            continue
        drawn = 1 if count == 1 else 1 + math.floor(float(u["count"][b, 0]) * count)
        for j in range(drawn):
            for t in range(10):
                area = H * W * (scale[0] + (scale[1] - scale[0]) * float(u["area"][b, j, t])) / drawn
                aspect = math.exp(lo + (hi - lo) * float(u["aspect"][b, j, t]))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if h < H and w < W:
                    top = math.floor(float(u["place"][0, b, j]) * (H - h + 1))
                    left = math.floor(float(u["place"][1, b, j]) * (W - w + 1))
                    boxes[b, j] = torch.tensor([top, left, top + h, left + w])
                    break
    return boxes


@pytest.mark.parametrize("size,count,scale,ratio", [((32, 32), 1, (0.02, 0.33), (0.3, 3.3)),
                                                    ((12, 40), 1, (0.1, 0.9), (0.2, 5.0)),
                                                    ((30, 24), 3, (0.02, 0.5), (0.3, 3.3))])
def test_erasing_boxes_are_torchvisions_sampling_loop(size, count, scale, ratio):
    n, (H, W) = 400, size
    op = A.RandomErasing(p=0.6, scale=scale, ratio=ratio, count=count)
    boxes = op.sample(Shape(n, 3, H, W), gen(7), "cpu")["boxes"]
    g = gen(7)  # the same uniforms, in the op's order
    u = {"p": 0.6}
    if count > 1:
        u["count"] = torch.rand(n, 1, generator=g, dtype=torch.float64)
    u["area"] = torch.rand(n, count, 10, generator=g, dtype=torch.float64)
    u["aspect"] = torch.rand(n, count, 10, generator=g, dtype=torch.float64)
    u["place"] = torch.rand(2, n, count, generator=g, dtype=torch.float64)
    u["keep"] = torch.rand(n, generator=g)
    expected = torchvision_loop(u, H, W, scale, ratio, count)
    assert torch.equal(boxes, expected)
    if size == (12, 40):  # wide boxes on a flat image: some samples find no box in 10 attempts
        applied = u["keep"] < 0.6
        assert ((expected == 0).all(-1).all(-1) & applied).any()


def test_erasing_frequency_is_p_and_areas_and_aspects_follow_scale_and_ratio():
    n, H, W = 6000, 224, 224
    op = A.RandomErasing(p=0.25, scale=(0.02, 0.33), ratio=(0.5, 2.0))  # sqrt(0.33 * 2) < 1: every draw fits
    boxes = op.sample(Shape(n, 3, H, W), gen(3), "cpu")["boxes"][:, 0].double()
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    erased = h > 0
    assert abs(erased.double().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    h, w = h[erased], w[erased]
    fraction, log_aspect = h * w / (H * W), torch.log(h / w)
    # rounding each side moves the area by at most about (h + w) / 2 pixels: 0.5% of the image here
    assert fraction.min() >= 0.02 - 0.005 and fraction.max() <= 0.33 + 0.005
    assert log_aspect.min() >= math.log(0.5) - 0.1 and log_aspect.max() <= math.log(2.0) + 0.1
    # U(scale): mean 0.175, sd of the mean 0.095 / sqrt(1500) ~ 0.0025; log aspect U(-log 2, log 2): mean 0
    assert abs(fraction.mean().item() - 0.175) < 0.012
    assert abs(log_aspect.mean().item()) < 0.04
    counts = torch.histc(fraction.float(), bins=4, min=0.02, max=0.33) / fraction.numel()
    assert (counts - 0.25).abs().max() < 0.05


def test_erasing_count_is_uniform_from_1_and_shares_the_area():
    n, H, W, count = 6000, 64, 64, 3
    op = A.RandomErasing(p=1.0, scale=(0.1, 0.3), ratio=(0.5, 2.0), count=count)
    boxes = op.sample(Shape(n, 1, H, W), gen(5), "cpu")["boxes"]
    nonempty = (boxes[..., 2] > boxes[..., 0])
    drawn = nonempty.sum(1)
    # the used slots come first, and U{1..3}: each count a third
    assert torch.equal(nonempty, torch.arange(count) < drawn[:, None])
    freq = torch.bincount(drawn, minlength=4)[1:] / n
    assert (freq - 1 / 3).abs().max() < 4 * math.sqrt(2 / 9 / n)
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).double() / (H * W)
    for k in (1, 2, 3):  # each box U(0.1, 0.3) / k of the image: mean 0.2 / k
        per_box = area[drawn == k][:, :k]
        assert abs(per_box.mean().item() - 0.2 / k) < 0.01


@pytest.mark.parametrize("value", [0.0, -1.5, (0.1, -2.0, 3.0)])
def test_erased_pixels_are_value_and_the_rest_is_the_input_after_normalize(value):
    x = photos().repeat(4, 1, 1, 1)
    norm = A.Normalize(MEAN, STD)
    masks = torch.randint(0, 4, (8, 1, 48, 64), dtype=torch.uint8, generator=gen())
    pipe = A.Pipeline(norm, A.RandomErasing(p=0.7, value=value, count=2, mask_fill=255), seed=4)
    out = pipe(x, masks=masks)
    reference = A.Pipeline(norm)(x)
    fill = torch.tensor(value if isinstance(value, tuple) else (value,) * 3)
    boxes = pipe.last_params[1]["boxes"]
    expected, expected_masks = reference.clone(), masks.clone()
    for b in range(8):
        for y1, x1, y2, x2 in boxes[b].tolist():
            expected[b, :, y1:y2, x1:x2] = fill.view(3, 1, 1)
            expected_masks[b, :, y1:y2, x1:x2] = 255
    assert 0 < (boxes[..., 2] > boxes[..., 0]).any(1).sum() < 8
    torch.testing.assert_close(out["images"], expected, rtol=0, atol=0)
    assert torch.equal(out["masks"], expected_masks)
    # without mask_fill the masks pass through, as torchvision passes them
    plain = A.Pipeline(norm, A.RandomErasing(p=1.0), seed=4)(x, masks=masks)
    assert torch.equal(plain["masks"], masks)


def test_random_value_is_standard_normal_noise_per_pixel_and_replays():
    x = torch.full((64, 3, 40, 40), 0.5)
    pipe = A.Pipeline(A.RandomErasing(p=1.0, scale=(0.2, 0.33), value="random"), seed=6)
    out = pipe(x)
    params = pipe.last_params[0]
    inside = F.box_mask(params["boxes"], (40, 40)).expand_as(x)
    assert torch.equal(out[~inside], x[~inside])
    noise = out[inside].double()
    assert noise.numel() > 64 * 3 * 300
    assert abs(noise.mean().item()) < 0.01 and abs(noise.std().item() - 1) < 0.01
    from scipy import stats
    assert stats.kstest(noise.numpy()[::7], "norm").pvalue > 1e-3
    # neighbouring pixels, channels and samples are uncorrelated
    z = torch.where(inside, out, torch.nan)
    for a, b in ((z[..., 1:], z[..., :-1]), (z[:, :, 1:], z[:, :, :-1]), (z[:, 1:], z[:, :-1]), (z[1:], z[:-1])):
        both = ~(a.isnan() | b.isnan())
        assert abs((a[both] * b[both]).mean().item()) < 0.02
    assert torch.equal(pipe(x, params=[params]), out)  # replay: the same noise from the same keys
    assert not torch.equal(pipe(x), out)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 5), h=st.integers(1, 16), w=st.integers(1, 16), count=st.integers(1, 3),
       value=st.sampled_from([0.5, "random"]), split=st.integers(1, 4), seed=st.integers(0, 1000))
def test_erasing_any_size_replay_and_sub_batch_independence(b, h, w, count, value, split, seed):
    x = torch.rand(b, 2, h, w, generator=gen(seed))
    before = x.clone()
    pipe = A.Pipeline(A.RandomErasing(p=0.7, scale=(0.02, 0.6), value=value, count=count), seed=seed)
    out = pipe(x)
    assert torch.equal(x, before)  # the caller's tensor is not written
    params = pipe.last_params[0]
    boxes = params["boxes"]
    y1, x1, y2, x2 = boxes.unbind(-1)
    assert ((0 <= y1) & (y1 <= y2) & (y2 - y1 < max(h, 1)) & (y2 <= h)).all()
    assert ((0 <= x1) & (x1 <= x2) & (x2 - x1 < max(w, 1)) & (x2 <= w)).all()
    inside = F.box_mask(boxes, (h, w)).expand_as(x)
    assert torch.equal(out[~inside], x[~inside])
    if value == 0.5:
        assert (out[inside] == 0.5).all()
    assert torch.equal(pipe(x, params=[params]), out)
    split = min(split, b)
    head = [{k: v[:split] for k, v in params.items()}]
    assert torch.equal(pipe(x[:split], params=head), out[:split])
    assert torch.equal(A.Pipeline(A.RandomErasing(p=0.0, value=value, count=count), seed=seed)(x), x)


def test_no_op_writes_the_callers_tensors():
    x = photos((24, 32))
    masks = torch.randint(0, 3, (2, 1, 24, 32), generator=gen())
    kept, kept_masks = x.clone(), masks.clone()
    pipe = A.Pipeline(A.Brightness(0.1), A.GaussianBlur(5), A.RandomErasing(p=1.0, value="random", mask_fill=9),
                      A.RandomErasing(p=1.0, value=(0.0, 0.5, 1.0)), seed=0)
    out = pipe(x, masks=masks)
    assert torch.equal(x, kept) and torch.equal(masks, kept_masks)
    assert not torch.equal(out["images"], x) and not torch.equal(out["masks"], masks)
    out = A.Pipeline(A.RandomErasing(p=1.0), seed=0)(x)  # the op first: its input is the caller's tensor
    assert torch.equal(x, kept) and not torch.equal(out, x)


def test_compiled_equals_eager_for_blur_and_random_erasing():
    x = torch.randint(0, 256, (4, 3, 24, 28), dtype=torch.uint8, generator=gen())
    ops = [A.GaussianBlur((5, 3), p=0.8), A.Normalize(MEAN, STD),
           A.RandomErasing(p=0.8, value="random", count=2), A.RandomErasing(p=0.8, value=(0.0, 1.0, -1.0))]
    compiled = A.Pipeline(*ops, seed=0, compile=True)
    out = compiled(x)
    eager = A.Pipeline(*ops, seed=0)(x, params=compiled.last_params)
    torch.testing.assert_close(out, eager, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, error, message", [
    (lambda: A.GaussianBlur(4), ValueError, r"GaussianBlur: kernel_size must be odd and positive, got \(4, 4\)"),
    (lambda: A.GaussianBlur((3, 0)), ValueError, "GaussianBlur: kernel_size must be odd and positive"),
    (lambda: A.GaussianBlur(3.0), TypeError, "GaussianBlur: kernel_size must be an int or a pair"),
    (lambda: A.GaussianBlur(3, sigma=0), ValueError, "GaussianBlur: sigma must be > 0"),
    (lambda: A.GaussianBlur(3, sigma=(2.0, 1.0)), ValueError, r"GaussianBlur: sigma must be > 0 and of the form"),
    (lambda: A.GaussianBlur(3, sigma=(-1.0, 1.0)), ValueError, "GaussianBlur: sigma must be > 0"),
    (lambda: A.GaussianBlur(3, sigma=float("nan")), ValueError, "GaussianBlur: sigma must be finite"),
    (lambda: A.GaussianBlur(3, sigma="wide"), TypeError, "GaussianBlur: sigma must be a number or a pair"),
    (lambda: A.GaussianBlur(3, p=1.5), ValueError, r"GaussianBlur: p must be in \[0, 1\]"),
    (lambda: A.RandomErasing(p=-0.1), ValueError, r"RandomErasing: p must be in \[0, 1\]"),
    (lambda: A.RandomErasing(scale=(0.3, 0.1)), ValueError, "RandomErasing: scale must be of the form"),
    (lambda: A.RandomErasing(scale=(0.1, 1.5)), ValueError, r"RandomErasing: scale must be fractions .* \[0, 1\]"),
    (lambda: A.RandomErasing(ratio=(3.3, 0.3)), ValueError, "RandomErasing: ratio must be of the form"),
    (lambda: A.RandomErasing(ratio=(0.0, 1.0)), ValueError, r"RandomErasing: ratio must be > 0"),
    (lambda: A.RandomErasing(scale=0.2), TypeError, r"RandomErasing: scale must be a pair"),
    (lambda: A.RandomErasing(value="noise"), ValueError, "RandomErasing: value must be a number, one number per"),
    (lambda: A.RandomErasing(value=None), TypeError, "RandomErasing: value must be a number, a sequence"),
    (lambda: A.RandomErasing(value=()), TypeError, "RandomErasing: value must be a number, a sequence"),
    (lambda: A.RandomErasing(value=float("inf")), ValueError, "RandomErasing: value must be finite"),
    (lambda: A.RandomErasing(count=0), ValueError, "RandomErasing: count must be a positive int"),
    (lambda: A.RandomErasing(mask_fill=True), TypeError, "RandomErasing: mask_fill must be an int label"),
])
def test_bad_arguments_name_the_op(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_value_per_channel_must_match_the_images():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"RandomErasing\(.*\): value has 2 numbers; the images have 3 channels"):
        A.Pipeline(A.RandomErasing(value=(0.0, 1.0)))(x)
    with pytest.raises(ValueError, match=r"RandomErasing\(.*\): mask_fill 300 does not fit torch.uint8 masks"):
        A.Pipeline(A.RandomErasing(p=1.0, mask_fill=300))(x, masks=torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
