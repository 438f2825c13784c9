"""Each op's sampled parameters and their effect, as properties over many draws."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import augpipe as A
from augpipe.ops import Shape


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(3, 12), w=st.integers(3, 12), pad=st.integers(0, 2), seed=st.integers(0, 1000),
       mode=st.sampled_from(["constant", "reflect", "replicate"]))
def test_every_crop_is_a_window_of_the_padded_image(h, w, pad, seed, mode):
    ch, cw = max(1, h - 1), max(1, w - 2)
    x = torch.rand(5, 2, h, w, generator=gen(seed))
    pipe = A.Pipeline(A.RandomCrop((ch, cw), padding=pad, padding_mode=mode, fill=0.3), seed=seed)
    out = pipe(x)
    value = {"value": 0.3} if mode == "constant" else {}
    padded = torch.nn.functional.pad(x, (pad,) * 4, mode=mode, **value)
    p = pipe.last_params[0]
    for b in range(5):
        t, l = int(p["top"][b]), int(p["left"][b])
        assert torch.equal(out[b], padded[b, :, t:t + ch, l:l + cw])


def test_every_crop_offset_occurs_uniformly():
    op = A.RandomCrop(32, padding=4)
    p = op.sample(Shape(20000, 3, 32, 32), gen(), "cpu")
    counts = torch.bincount(p["top"] * 9 + p["left"], minlength=81)
    assert counts.numel() == 81 and counts.min() > 0  # every one of the 9 x 9 offsets
    assert counts.float().std() / counts.float().mean() < 0.1  # and evenly (expected ~0.05)


@pytest.mark.parametrize("cls, strength, lo, hi", [(A.Brightness, 0.2, 0.8, 1.2), (A.Contrast, 1.5, 0.0, 2.5),
                                                   (A.Brightness, (0.5, 0.7), 0.5, 0.7)])
def test_factors_stay_in_the_colorjitter_range(cls, strength, lo, hi):
    f = cls(strength).sample(Shape(5000, 3, 4, 4), gen(), "cpu")["factor"]
    assert f.min() >= lo and f.max() <= hi
    assert f.min() < lo + 0.01 and f.max() > hi - 0.01  # the whole range is used


def test_brightness_and_contrast_follow_torchvision_formulas():
    x = torch.rand(4, 3, 5, 6, generator=gen())
    pipe = A.Pipeline(A.Brightness(0.5), A.Contrast(0.5), seed=0)
    out = pipe(x)
    fb, fc = pipe.last_params[0]["factor"], pipe.last_params[1]["factor"]
    for b in range(4):
        y = (fb[b] * x[b]).clamp(0, 1)
        gray = 0.299 * y[0] + 0.587 * y[1] + 0.114 * y[2]
        expected = (fc[b] * y + (1 - fc[b]) * gray.mean()).clamp(0, 1)
        torch.testing.assert_close(out[b], expected)


def test_normalize_uint8_divides_by_255_first():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8, generator=gen())
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    out = A.Pipeline(A.Normalize(mean, std))(x)
    expected = (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(out, expected)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(4, 20), w=st.integers(4, 20), side=st.integers(1, 9), count=st.integers(1, 3),
       seed=st.integers(0, 1000))
def test_cutout_holes_are_clipped_squares(h, w, side, count, seed):
    x = torch.ones(3, 1, h, w)
    pipe = A.Pipeline(A.Cutout(side, count=count, fill=0.0), seed=seed)
    out = pipe(x)
    boxes = pipe.last_params[0]["boxes"]
    for b in range(3):
        expected = torch.ones(h, w)
        for y1, x1, y2, x2 in boxes[b].tolist():
            assert 0 <= y1 <= y2 <= h and 0 <= x1 <= x2 <= w
            assert y2 - y1 <= side and x2 - x1 <= side
            # a side is shorter than `side` only where the square was clipped at the border
            assert y2 - y1 == side or y1 == 0 or y2 == h
            assert x2 - x1 == side or x1 == 0 or x2 == w
            expected[y1:y2, x1:x2] = 0
        assert torch.equal(out[b, 0], expected)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(2, 20), w=st.integers(2, 20), seed=st.integers(0, 1000))
def test_cutmix_lambda_is_the_fraction_of_own_pixels(h, w, seed):
    b = 6
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, h, w) / b  # each sample one value
    labels = torch.arange(b)
    out, targets = A.Pipeline(A.CutMix(), seed=seed, num_classes=b)(x, labels)
    own = (out == x).float().mean((1, 2, 3))  # fraction of pixels that still carry the sample's own value
    kept = targets[torch.arange(b), labels]  # (a sample paired with itself keeps both: 1 and 1)
    torch.testing.assert_close(kept, own)
    torch.testing.assert_close(targets.sum(1), torch.ones(b))


@pytest.mark.parametrize("H,W", [(16, 16), (12, 20)])
def test_cutmix_per_batch_draws_one_box_and_pastes_per_sample_partners(H, W):
    B, K, p, alpha = 12, 5, 0.75, 0.7
    op = A.CutMix(alpha, p=p, per_batch=True)
    # The draws by hand, in the order sample() asks for them from a plain generator: lam ~ Beta(alpha, alpha) as
    # G1 / (G1 + G2) of two Gamma(alpha) draws, the centre (cy, cx), the partners' uniform keys, then p's uniforms.
    g = gen(21)
    g1, g2 = torch._standard_gamma(torch.full((2, 1), alpha, dtype=torch.float64), generator=g)
    r = math.sqrt(1 - float(g1 / (g1 + g2)))
    cy = math.floor(float(torch.rand(1, generator=g, dtype=torch.float64)) * H)
    cx = math.floor(float(torch.rand(1, generator=g, dtype=torch.float64)) * W)
    perm = torch.rand(B, generator=g, dtype=torch.float64).argsort(stable=True)
    keep = torch.rand(B, generator=g) < p
    ch, cw = int(H * r), int(W * r)
    box = (max(cy - ch // 2, 0), max(cx - cw // 2, 0), min(cy + ch // 2, H), min(cx + cw // 2, W))
    params = op.sample(Shape(B, 3, H, W), gen(21), "cpu")
    assert torch.equal(params["perm"], perm)
    assert params["box"].tolist() == [list(box) if k else [0, 0, 0, 0] for k in keep.tolist()]
    assert 0 < int(keep.sum()) < B and box[0] < box[2] and box[1] < box[3]

    # Applied through a pipeline, against a loop over samples and pixels.
    x = torch.rand(B, 3, H, W, generator=gen(22))
    y = torch.randint(0, K, (B,), generator=gen(23))
    pipe = A.Pipeline(op, seed=4, num_classes=K)
    out, targets = pipe(x, y)
    boxes, perm = pipe.last_params[0]["box"].tolist(), pipe.last_params[0]["perm"].tolist()
    applied = [b for b in boxes if b != [0, 0, 0, 0]]
    assert applied and all(b == applied[0] for b in applied)  # one box for the batch
    ref_x, ref_t = x.clone(), torch.zeros(B, K)
    for b in range(B):
        y1, x1, y2, x2 = boxes[b]
        for i in range(y1, y2):
            for j in range(x1, x2):
                ref_x[b, :, i, j] = x[perm[b], :, i, j]
        lam = 1 - (y2 - y1) * (x2 - x1) / (H * W)
        ref_t[b, int(y[b])] += lam
        ref_t[b, int(y[perm[b]])] += 1 - lam
    torch.testing.assert_close(out, ref_x, rtol=0, atol=0)
    torch.testing.assert_close(targets, ref_t, rtol=0, atol=1e-6)


def test_timm_switch_prob_and_prob_map_onto_one_of_and_random_apply():
    # timm's Mixup(prob=q, switch_prob=s, mode="elem"): mixed with probability q, by CutMix with probability s.
    B, q, s = 20000, 0.8, 0.3
    pipe = A.Pipeline(A.RandomApply(A.OneOf(A.Mixup(0.8), A.CutMix(1.0), weights=(1 - s, s)), p=q), seed=0)
    pipe(torch.zeros(B, 1, 2, 2))
    keep, choice = pipe.last_params[0]["keep"], pipe.last_params[0]["node"]["choice"]
    assert abs(keep.float().mean().item() - q) < 4 * math.sqrt(q * (1 - q) / B)
    assert abs(choice.float().mean().item() - s) < 4 * math.sqrt(s * (1 - s) / B)


def test_mixup_lambda_is_beta_per_sample_and_per_batch_option():
    lam = A.Mixup(alpha=0.4).sample(Shape(20000, 1, 2, 2), gen(), "cpu")["lam"]
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * 1.8)) < 0.005
    one = A.Mixup(alpha=0.4, per_batch=True).sample(Shape(50, 1, 2, 2), gen(), "cpu")
    assert torch.equal(one["lam"], one["lam"][:1].expand(50))
    assert torch.equal(one["perm"].sort().values, torch.arange(50))


def test_random_resized_crop_boxes_follow_scale_and_ratio():
    op = A.RandomResizedCrop(8, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    box = op.sample(Shape(5000, 3, 50, 50), gen(), "cpu")["box"]
    top, left, h, w = box.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 50).all() and (left + w <= 50).all()
    area = h * w / (50 * 50)
    # rounding of sides to whole pixels widens the bounds a little
    assert area.min() > 0.2 * 0.9 and area.max() < 0.6 * 1.1
    ratio = w / h
    assert ratio.min() > 0.5 * 0.85 and ratio.max() < 2.0 * 1.15
    assert abs(torch.log(ratio).mean().item()) < 0.05  # log-uniform ratio is symmetric about 1


def test_random_resized_crop_falls_back_to_the_central_crop():
    # no area of 90-100% of a 4x40 strip has a ratio in [1, 1]: every sample takes the fallback
    op = A.RandomResizedCrop(4, scale=(0.9, 1.0), ratio=(1.0, 1.0))
    box = op.sample(Shape(50, 1, 4, 40), gen(), "cpu")["box"]
    assert torch.equal(box, torch.tensor([[0.0, 18.0, 4.0, 4.0]]).expand(50, 4))


def test_fractional_pool_resamples_back_and_takes_maxima():
    x = torch.rand(3, 2, 16, 12, generator=gen())
    pipe = A.Pipeline(A.FractionalPool(alpha=math.sqrt(2)), seed=0)
    out = pipe(x)
    assert out.shape == x.shape
    rows = pipe.last_params[0]["row_bounds"]
    assert rows.shape == (3, 12)  # 16 / sqrt 2 = 11.3 -> 11 regions
    # every output value is one of the inputs of the same sample and channel, and pooling only raises the minimum
    for b in range(3):
        for c in range(2):
            assert torch.isin(out[b, c], x[b, c]).all()
            assert out[b, c].min() >= x[b, c].min()


def test_composed_maps_are_the_float64_product_rounded_once_eagerly_and_compiled():
    """fuse.warp composes sampling matrices with F.compose. Rounded once from float64, the eager and the compiled
    product are the same float32 matrix even where a compiler fuses a * b + c into one rounding."""
    from augpipe import functional as F
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 3, 3, generator=g) * 40, torch.randn(64, 3, 3, generator=g) * 40
    expected = (a.double() @ b.double()).float()
    assert torch.equal(F.compose(a, b), expected)
    assert torch.equal(torch.compile(F.compose, fullgraph=True)(a, b), expected)


def test_take_grid_reads_each_samples_rows_and_columns_eagerly_and_compiled():
    """out[b, :, i, j] = x[b, :, rows[b, i], cols[b, j]]: eager row copies and the compiled per-pixel index give the
    pixels a per-sample loop picks."""
    from augpipe import functional as F
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (5, 3, 9, 11), generator=g, dtype=torch.uint8)
    rows, cols = torch.randint(0, 9, (5, 7), generator=g), torch.randint(0, 11, (5, 4), generator=g)
    expected = torch.stack([x[b][:, rows[b]][:, :, cols[b]] for b in range(5)])
    assert torch.equal(F.take_grid(x, rows, cols), expected)
    assert torch.equal(torch.compile(F.take_grid, fullgraph=True)(x, rows, cols), expected)


@pytest.mark.parametrize("in_size, extend, dtype", [((1, 7), "edge", torch.uint8), ((2, 9), "fill", torch.float32),
                                                    ((6, 5), "edge", torch.float32), ((6, 5), "fill", torch.uint8)])
def test_compiled_resample_separable_reads_the_eager_taps_at_every_edge(in_size, extend, dtype):
    """Compiled, the two taps of an axis are one index and a fixed step (``F._tap_pair``): a pair that falls on one
    pixel at an edge, or on a one-pixel axis, must give the eager two-pass result. Maps flip, scale and shift points
    past both edges."""
    from augpipe import functional as F
    g = torch.Generator().manual_seed(3)
    B, out_size = 24, (4, 6)
    x = torch.randint(0, 256, (B, 2, *in_size), generator=g, dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    sign = torch.where(torch.rand(B, 2, generator=g) < 0.5, -1.0, 1.0)
    scale = sign * (0.3 + 2 * torch.rand(B, 2, generator=g))
    shift = (torch.rand(B, 2, generator=g) - 0.3) * torch.tensor([in_size[1], in_size[0]]) * 2
    zero = torch.zeros(B)
    m = F.affine_rows(scale[:, 0], zero, shift[:, 0], zero, scale[:, 1], shift[:, 1])
    run = lambda x, m: F.resample_separable(x, m, out_size, fill=0.3, extend=extend)
    expected = run(x, m)
    assert ((expected - 0.3).abs() < 1e-6).any() and ((expected - 0.3).abs() > 1e-3).any()  # outside, and inside
    torch.testing.assert_close(torch.compile(run, fullgraph=True, dynamic=False)(x, m), expected, rtol=0, atol=1e-6)


NORMALIZE = ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


@pytest.mark.parametrize("nodes", [
    (A.HorizontalFlip(),), (A.RandomCrop(8, padding=2),), (A.RandomCrop(8, padding=2, padding_mode="reflect"),),
    (A.RandomResizedCrop(7),), (A.RandomRotation(20),),
    (A.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5),), (A.Brightness(0.3),),
    (A.Contrast(0.3),), (A.Normalize(*NORMALIZE),), (A.Cutout(4),), (A.Mixup(),), (A.CutMix(),),
    (A.FractionalPool(),),
    (A.RandomCrop(10, padding=2), A.HorizontalFlip(), A.Brightness(0.2), A.Contrast(0.2), A.Normalize(*NORMALIZE),
     A.Cutout(4), A.OneOf(A.Mixup(), A.CutMix())),
], ids=lambda nodes: "+".join(type(n).__name__ for n in nodes))
def test_gradients_flow_to_images_that_require_them(nodes):
    """With its params fixed, every op is (piecewise) linear in the pixels: autograd must agree with finite
    differences (float64 images away from Brightness's clamp). Eager kernels that write into out= buffers have no
    gradient, so they must not be taken for such images."""
    x = torch.rand(4, 3, 10, 12, dtype=torch.float64, generator=gen(7)) * 0.8 + 0.1
    pipe = A.Pipeline(*nodes, seed=1)
    pipe(x)
    params = pipe.last_params
    assert torch.autograd.gradcheck(lambda images: pipe(images, params=params), (x.clone().requires_grad_(),),
                                    eps=1e-6, atol=1e-5, fast_mode=True)
