"""The graph: composition, per-sample randomness, seeding and replay, dtypes and shapes, errors, fusion."""
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import augpipe as A


def images(b=6, c=3, h=12, w=10, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else (x.to(dtype) / 255)


def unfused(pipe, x, targets=None, params=None):
    """The op-by-op reference, written with plain torch from the formulas (docs/references.md, "Photometric", and
    its Geometry, Cutout, Mixup, CutMix and Label smoothing sections), one op and one sample at a time: it shares
    no code with augpipe's kernels or executor, so a wrong factor, mean, box or offset in augpipe cannot pass it.
    Covers the ops the fused == op-by-op tests use; any other op is an error here."""
    params = pipe.last_params if params is None else params
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)
    return dict(zip(("images", "targets"), by_formula(list(zip(pipe.nodes, params)), x, targets)))


def by_formula(steps, x, t):
    for node, p in steps:
        x, t = formula_step(node, p, x, t)
    return x, t


def pick(choice, a, b):
    """Per sample, a where choice else b (for images (B, C, H, W) and targets (B, K) alike)."""
    return None if a is None else torch.where(choice.view(-1, *[1] * (a.dim() - 1)), a, b)


def blend(v, lam, perm):
    """lam v_i + (1 - lam) v_perm[i] per sample."""
    lam = lam.to(v.dtype).view(-1, *[1] * (v.dim() - 1))
    return lam * v + (1 - lam) * v[perm]


def formula_step(node, p, x, t):
    B, C, H, W = x.shape
    if isinstance(node, A.Pipeline):
        return by_formula(list(zip(node.nodes, p)), x, t)
    if isinstance(node, A.OneOf):  # every branch reads the same input; each sample keeps its chosen branch's
        out = [formula_step(branch, bp, x, t) for branch, bp in zip(node.branches, p["branches"])]
        xs, ts = out[0]
        for k in range(1, len(out)):
            xs, ts = pick(p["choice"] == k, out[k][0], xs), pick(p["choice"] == k, out[k][1], ts)
        return xs, ts
    if isinstance(node, A.RandomApply):
        x1, t1 = formula_step(node.node, p["node"], x, t)
        return pick(p["keep"], x1, x), pick(p["keep"], t1, t)
    if isinstance(node, (A.HorizontalFlip, A.VerticalFlip)):
        return pick(p["flip"], x.flip(-1 if isinstance(node, A.HorizontalFlip) else -2), x), t
    if isinstance(node, A.RandomCrop):  # pad (torch's F.pad: reflect without the edge, as OpenCV's REFLECT_101)
        l, top_pad, r, bottom_pad = node.padding
        mode = {"reflect": "reflect", "replicate": "replicate"}.get(node.padding_mode)
        padded = TF.pad(x, (l, r, top_pad, bottom_pad), mode or "constant", **({} if mode else {"value": node.fill}))
        h, w = node.size
        return torch.stack([padded[b, :, y:y + h, x0:x0 + w] for b, (y, x0) in
                            enumerate(zip(p["top"].tolist(), p["left"].tolist()))]), t
    if isinstance(node, A.RandomRotation):  # only the identity (a bilinear read at pixel centres copies them)
        assert (p["angle"] == 0).all() and (p["translate"] == 0).all() and (p["scale"] == 1).all()
        return x, t
    if isinstance(node, A.Brightness):  # clamp(f x, 0, 1)
        return (p["factor"].to(x.dtype).view(-1, 1, 1, 1) * x).clamp(0, 1), t
    if isinstance(node, A.Contrast):  # clamp(f x + (1 - f) m, 0, 1), m the mean of 0.299 R + 0.587 G + 0.114 B
        gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2] if C == 3 else x[:, 0]
        m = gray.mean((1, 2)).view(-1, 1, 1, 1)
        f = p["factor"].to(x.dtype).view(-1, 1, 1, 1)
        return (f * x + (1 - f) * m).clamp(0, 1), t
    if isinstance(node, A.Normalize):
        return (x - node.mean.to(x.dtype).view(1, -1, 1, 1)) / node.std.to(x.dtype).view(1, -1, 1, 1), t
    if isinstance(node, A.Cutout):  # boxes (y1, x1, y2, x2) set to fill
        out = x.clone()
        for b in range(B):
            for y1, x1, y2, x2 in p["boxes"][b].tolist():
                out[b, :, y1:y2, x1:x2] = node.fill
        return out, t
    if isinstance(node, A.Mixup):  # lam x_i + (1 - lam) x_j, the same for targets, j = perm[i]
        return blend(x, p["lam"], p["perm"]), None if t is None else blend(t, p["lam"], p["perm"])
    if isinstance(node, A.CutMix):  # the partner's pixels in the box; lam = 1 - box area / image area
        out = x.clone()
        lam = torch.empty(B, dtype=torch.float64)
        for b, ((y1, x1, y2, x2), j) in enumerate(zip(p["box"].tolist(), p["perm"].tolist())):
            out[b, :, y1:y2, x1:x2] = x[j, :, y1:y2, x1:x2]
            lam[b] = 1 - (y2 - y1) * (x2 - x1) / (H * W)
        return out, None if t is None else blend(t, lam, p["perm"])
    if isinstance(node, A.LabelSmoothing):  # (1 - eps) y + eps / K
        return x, None if t is None else (1 - node.eps) * t + node.eps / t.shape[1]
    raise NotImplementedError(f"no formula reference for {node!r}")


# ----------------------------------------------------------------------------------------------- identities
def test_empty_pipeline_converts_uint8_to_unit_float():
    x = images()
    out = A.Pipeline()(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.float() / 255)


@pytest.mark.parametrize("op", [A.HorizontalFlip(p=0.0), A.VerticalFlip(p=0.0), A.Brightness(0.5, p=0.0),
                                A.Contrast(0.5, p=0.0), A.Cutout(4, p=0.0), A.Mixup(p=0.0), A.CutMix(p=0.0),
                                A.RandomApply(A.FractionalPool(), p=0.0)])
def test_probability_zero_is_identity(op):
    x = images(dtype=torch.float32)
    labels = torch.arange(6) % 3
    out, targets = A.Pipeline(op, seed=1, num_classes=3)(x, labels)
    assert torch.equal(out, x)
    assert torch.equal(targets, TF.one_hot(labels, 3).float())


def test_flip_twice_is_identity():
    x = images(dtype=torch.float32)
    pipe = A.Pipeline(A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0), A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0))
    assert torch.equal(pipe(x), x)


def test_flip_is_per_sample():
    x = images(b=64, dtype=torch.float32)
    pipe = A.Pipeline(A.HorizontalFlip(p=0.5), seed=3)
    out = pipe(x)
    flip = pipe.last_params[0]["flip"]
    assert 0 < int(flip.sum()) < 64  # both outcomes in one batch: the draw is per sample
    torch.testing.assert_close(out, torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x))


# ----------------------------------------------------------------------------------------------- seeding and replay
def cifar_like(seed=0, compile=False):
    return A.Pipeline(A.RandomCrop(12, padding=2, padding_mode="reflect"), A.HorizontalFlip(), A.Brightness(0.3),
                      A.Contrast(0.3), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), A.Cutout(5),
                      A.OneOf(A.Mixup(), A.CutMix()), A.LabelSmoothing(0.1), seed=seed, num_classes=5,
                      compile=compile)


def test_same_seed_same_output_and_different_seed_differs():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    a, ta = cifar_like(seed=7)(x, y)
    b, tb = cifar_like(seed=7)(x, y)
    c, _ = cifar_like(seed=8)(x, y)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert not torch.equal(a, c)


def test_replay_reproduces_exactly_and_stream_advances():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    pipe = cifar_like(seed=2)
    a, ta = pipe(x, y)
    params = pipe.last_params
    b, _ = pipe(x, y)  # a new draw
    c, tc = pipe(x, y, params=params)
    assert not torch.equal(a, b)
    assert torch.equal(a, c) and torch.equal(ta, tc)


def test_state_dict_restores_the_stream():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    pipe = cifar_like(seed=4)
    pipe(x, y)
    saved = pipe.state_dict()
    expected, _ = pipe(x, y)
    other = cifar_like(seed=99)
    other.load_state_dict(saved)
    got, _ = other(x, y)
    assert torch.equal(got, expected)


def stream(pipe, x, y, calls=3):
    """The images of ``calls`` consecutive draws."""
    return [pipe(x, y)[0] for _ in range(calls)]


def test_manual_seed_restarts_the_stream_as_a_fresh_pipeline_with_that_seed():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    fresh = stream(cifar_like(seed=7), x, y)
    pipe = cifar_like(seed=1)
    before = stream(pipe, x, y, 2)  # mid-stream, on seed 1
    assert pipe.manual_seed(7) is pipe
    after = stream(pipe, x, y)
    assert all(torch.equal(a, b) for a, b in zip(after, fresh))
    assert not any(torch.equal(a, b) for a, b in zip(before, fresh))
    assert all(torch.equal(a, b) for a, b in zip(stream(pipe.manual_seed(7), x, y), fresh))  # again from the start
    other = stream(pipe.manual_seed(8), x, y)
    assert not any(torch.equal(a, b) for a, b in zip(other, fresh))


def test_manual_seed_overrides_a_loaded_state():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    source = cifar_like(seed=4)
    source(x, y)
    pipe = cifar_like(seed=99)
    pipe.load_state_dict(source.state_dict())  # generators waiting to be restored on first use
    pipe.manual_seed(7)
    assert all(torch.equal(a, b) for a, b in zip(stream(pipe, x, y), stream(cifar_like(seed=7), x, y)))


def test_no_global_rng_is_touched():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    cifar_like(seed=1)(images(h=12, w=12), torch.arange(6) % 5)
    assert torch.equal(before, torch.get_rng_state())


# ----------------------------------------------------------------------------------------------- fused == op by op
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_fused_integer_geometry_equals_op_by_op(mode):
    x = images(b=9, h=11, w=13)
    pipe = A.Pipeline(A.RandomCrop((10, 12), padding=(2, 3), fill=0.5, padding_mode=mode), A.HorizontalFlip(),
                      A.VerticalFlip(), A.RandomCrop(7, padding=1), A.HorizontalFlip(), seed=5)
    out = pipe(x)
    assert torch.equal(out, unfused(pipe, x)["images"])


def test_fused_resample_equals_composed_matrix_brute_force():
    """Crop + flip + resized crop are one bilinear read at the composed map: check against grid_sample by hand."""
    x = images(b=5, h=16, w=16, dtype=torch.float64)
    pipe = A.Pipeline(A.HorizontalFlip(p=0.5), A.RandomResizedCrop(9, scale=(0.3, 1.0), antialias=False),
                      A.VerticalFlip(), seed=8)
    out = pipe(x)
    p = pipe.last_params
    flip_x, box, flip_y = p[0]["flip"], p[1]["box"].double(), p[2]["flip"]
    ys, xs = torch.meshgrid(torch.arange(9.0, dtype=torch.float64) + 0.5, torch.arange(9.0, dtype=torch.float64) + 0.5,
                            indexing="ij")
    expected = torch.empty_like(out)
    for b in range(5):
        yy = torch.where(flip_y[b], 9 - ys, ys)  # vflip on the 9x9 output
        sy = box[b, 0] + yy * box[b, 2] / 9  # resized crop
        sx = box[b, 1] + xs * box[b, 3] / 9
        sx = torch.where(flip_x[b], 16 - sx, sx)  # hflip on the input
        grid = torch.stack((2 * sx / 16 - 1, 2 * sy / 16 - 1), -1)[None]
        expected[b] = TF.grid_sample(x[b:b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)  # the map itself is composed in float32


def test_fused_photometric_and_mix_equal_op_by_op():
    x, y = images(h=12, w=12), torch.arange(6) % 5
    pipe = cifar_like(seed=11)
    out, targets = pipe(x, y)
    ref = unfused(pipe, x, TF.one_hot(y, 5).float())
    torch.testing.assert_close(out, ref["images"])
    torch.testing.assert_close(targets, ref["targets"])


def test_a_later_padded_crop_is_not_folded_into_the_first():
    """Padding a cropped image pads with fill, not with the original's neighbouring pixels."""
    x = images(b=4, h=8, w=8, dtype=torch.float32) * 0.5 + 0.25
    pipe = A.Pipeline(A.RandomCrop(4), A.RandomCrop(4, padding=2, fill=1.0), seed=0)
    out = pipe(x)
    assert torch.equal(out, unfused(pipe, x)["images"])


# ----------------------------------------------------------------------------------------------- composition
def test_one_of_picks_one_branch_per_sample_from_the_same_input():
    x = images(b=40, dtype=torch.float32)
    pipe = A.Pipeline(A.OneOf(A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0), weights=(1, 3)), seed=0)
    out = pipe(x)
    choice = pipe.last_params[0]["choice"]
    assert set(choice.tolist()) == {0, 1}
    torch.testing.assert_close(out, torch.where(choice.view(-1, 1, 1, 1) == 0, x.flip(-1), x.flip(-2)))


def test_one_of_weights_are_followed():
    x = images(b=4000, c=1, h=2, w=2, dtype=torch.float32)
    pipe = A.Pipeline(A.OneOf(A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0), weights=(1, 3)), seed=0)
    pipe(x)
    frac = pipe.last_params[0]["choice"].float().mean().item()
    assert abs(frac - 0.75) < 0.03


@pytest.mark.parametrize("weights, expected", [((0.1, 0.0, 0.3, 0.6), (0.1, 0.0, 0.3, 0.6)),
                                               ((0.0, 2.0, 1.0, 0.0), (0.0, 2 / 3, 1 / 3, 0.0))])
def test_one_of_never_picks_a_zero_weight_branch_and_follows_the_rest(weights, expected):
    x = images(b=20000, c=1, h=2, w=2, dtype=torch.float32)
    branches = [A.Brightness((k / 4, k / 4)) for k in range(4)]  # only the per-sample choice is looked at
    pipe = A.Pipeline(A.OneOf(*branches, weights=weights), seed=1)
    pipe(x)
    counts = torch.bincount(pipe.last_params[0]["choice"], minlength=4).double() / x.shape[0]
    for k, p in enumerate(expected):
        if p == 0:
            assert counts[k] == 0
        else:
            assert abs(counts[k] - p) < 0.015


def test_random_apply_on_a_sub_graph_selects_per_sample():
    x = images(b=32, dtype=torch.float32)
    pipe = A.Pipeline(A.RandomApply(A.Pipeline(A.HorizontalFlip(p=1.0), A.FractionalPool()), p=0.5), seed=2)
    out = pipe(x)
    keep = pipe.last_params[0]["keep"]
    assert 0 < int(keep.sum()) < 32
    assert torch.equal(out[~keep], x[~keep])
    assert not torch.equal(out[keep], x[keep])


def test_random_apply_on_an_op_only_rewrites_its_params():
    x = images(b=32, dtype=torch.float32)
    pipe = A.Pipeline(A.RandomApply(A.HorizontalFlip(p=1.0), p=0.5), seed=2)
    out = pipe(x)
    flip = pipe.last_params[0]["node"]["flip"]
    assert torch.equal(flip, pipe.last_params[0]["keep"])
    torch.testing.assert_close(out, torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x))


def test_nested_pipelines_inline():
    x = images()
    inner = A.Pipeline(A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0))
    out = A.Pipeline(inner, A.HorizontalFlip(p=1.0))(x)
    torch.testing.assert_close(out, x.flip(-2).float() / 255)


# ----------------------------------------------------------------------------------------------- targets
def test_mix_targets_sum_to_one_and_follow_lambda():
    x, y = images(b=16, h=12, w=12), torch.arange(16) % 5
    pipe = A.Pipeline(A.OneOf(A.Mixup(), A.CutMix()), A.LabelSmoothing(0.1), seed=0, num_classes=5)
    _, targets = pipe(x, y)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    assert (targets >= 0.1 / 5 - 1e-6).all()


def test_soft_labels_pass_through_and_single_image():
    x = images(b=1)[0]
    soft = torch.tensor([0.2, 0.8])
    out, t = A.Pipeline(A.HorizontalFlip(p=1.0))(x, soft)
    assert out.shape == x.shape and torch.equal(t, soft)
    torch.testing.assert_close(out, x.flip(-1).float() / 255)


# ----------------------------------------------------------------------------------------------- shapes and dtypes
@settings(max_examples=25, deadline=None)
@given(b=st.sampled_from([0, 1, 3, 7]), c=st.sampled_from([1, 3]), h=st.integers(8, 14), w=st.integers(8, 14),
       dtype=st.sampled_from([torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64]),
       channels_last=st.booleans())
def test_shapes_and_dtypes(b, c, h, w, dtype, channels_last):
    x = images(b=b, c=c, h=h, w=w, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pipe = A.Pipeline(A.RandomCrop(6, padding=1), A.HorizontalFlip(), A.RandomResizedCrop((5, 7)),
                      A.Contrast(0.4), A.Cutout(3), A.CutMix(), A.FractionalPool(), seed=0, num_classes=4)
    original = x.clone()
    out, targets = pipe(x, torch.arange(b) % 4)
    assert out.shape == (b, c, 5, 7)
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype)
    assert targets.shape == (b, 4)
    assert torch.equal(x, original)  # the caller's tensor is untouched
    if b:  # the same draw on the other memory layout gives the same result
        other = x.contiguous() if channels_last else x.contiguous(memory_format=torch.channels_last)
        assert c == 1 or other.is_contiguous() != x.is_contiguous()  # (one channel has one layout)
        again, _ = pipe(other, torch.arange(b) % 4, params=pipe.last_params)
        torch.testing.assert_close(out, again)


def test_float16_computes_in_float32_and_returns_float16():
    x = images(dtype=torch.float32)
    pipe = A.Pipeline(A.Contrast(0.5), seed=0)
    ref = pipe(x)
    half = pipe(x.half(), params=pipe.last_params)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("call, error, match", [
    (lambda: A.Pipeline()("images"), TypeError, "Pipeline: images must be a torch.Tensor"),
    (lambda: A.Pipeline()([1, 2]), TypeError, r"Pipeline: a list of images must hold \(C, H, W\) tensors, image 0"),
    (lambda: A.Pipeline()(torch.zeros(2, 3, 4, 4, dtype=torch.int32)), TypeError, "uint8 .* got torch.int32"),
    (lambda: A.Pipeline()(torch.zeros(4, 4)), ValueError, r"got shape \(4, 4\)"),
    (lambda: A.Pipeline()(torch.full((1, 1, 2, 2), float("nan"))), ValueError, "NaN"),
    (lambda: A.Pipeline()(torch.zeros(2, 3, 4, 4, device="meta")), ValueError, "meta device"),
    (lambda: A.Pipeline(A.Normalize((0.5,), (0.2,)))(torch.zeros(2, 3, 4, 4)), ValueError,
     "Normalize.*1 mean/std values but the images have 3 channels"),
    (lambda: A.Pipeline(A.RandomCrop(40))(torch.zeros(2, 3, 32, 32)), ValueError,
     r"RandomCrop\(size=\(40, 40\), padding=0.*32x32 after padding"),
    (lambda: A.Pipeline(num_classes=3)(torch.zeros(2, 3, 4, 4), torch.zeros(3, dtype=torch.long)), ValueError,
     r"\(B,\) = \(2,\), got \(3,\)"),
    (lambda: A.Pipeline()(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long)), ValueError, "num_classes"),
    (lambda: A.Pipeline(num_classes=3)(torch.zeros(2, 3, 4, 4), torch.tensor([0, 3])), ValueError, r"\[0, 3\)"),
    (lambda: A.Pipeline(A.Contrast(0.2))(torch.zeros(2, 2, 4, 4)), ValueError, "Contrast.*1 or 3 channels"),
    (lambda: A.Pipeline(A.RandomApply(A.RandomCrop(2)))(torch.zeros(2, 1, 4, 4)), ValueError, "cannot be skipped"),
    (lambda: A.Pipeline(A.OneOf(A.RandomCrop(2), A.RandomCrop(3)))(torch.zeros(2, 1, 4, 4)), ValueError,
     "different image sizes"),
    (lambda: A.Pipeline("flip"), TypeError, "expected augpipe ops"),
    (lambda: A.Brightness(-1), ValueError, "Brightness"),
    (lambda: A.HorizontalFlip(p=2), ValueError, r"HorizontalFlip: p must be in \[0, 1\]"),
    (lambda: A.FractionalPool(alpha=3), ValueError, r"FractionalPool: alpha must be in \(1, 2\]"),
    (lambda: A.RandomCrop(4, padding_mode="wrap"), ValueError, "padding_mode"),
    (lambda: A.HorizontalFlip()(torch.zeros(1, 1, 2, 2)), TypeError, "put it in augpipe.Pipeline"),
    # at construction, not at the first call: sizes, non-finite numbers, seeds torch.Generator refuses
    (lambda: A.RandomResizedCrop((0, 5)), ValueError, r"RandomResizedCrop: size must be positive, got \(0, 5\)"),
    (lambda: A.RandomCrop(-3), ValueError, "RandomCrop: size must be positive"),
    (lambda: A.Mixup(float("inf")), ValueError, "Mixup: alpha must be finite, got inf"),
    (lambda: A.Brightness(float("nan")), ValueError, "Brightness: the strength must be finite"),
    (lambda: A.RandomRotation(float("inf")), ValueError, "RandomRotation: degrees must be finite"),
    (lambda: A.RandomAffine(0, scale=(1, float("inf"))), ValueError, "RandomAffine: scale must be finite"),
    (lambda: A.Normalize((0.5, float("nan")), (1, 1)), ValueError, "Normalize: mean and std must be finite"),
    (lambda: A.Cutout(4, fill=float("inf")), ValueError, "Cutout: fill must be finite"),
    (lambda: A.Pipeline(seed=2 ** 64), ValueError, r"Pipeline: seed must be an int in \[-2\*\*63, 2\*\*64\)"),
    (lambda: A.Pipeline(seed=1.5), TypeError, "Pipeline: seed must be an int, got float"),
])
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_any_nan_or_infinity_anywhere_in_the_batch_is_refused(dtype):
    gen = torch.Generator().manual_seed(3)
    pipe = A.Pipeline(A.Brightness(0.2), seed=0)
    clean = torch.rand(3, 2, 5, 7, generator=gen).to(dtype)
    clean.view(-1)[0], clean.view(-1)[-1] = 0, 1  # the ends of the valid range, in the first and last places
    pipe(clean)
    for bad in (float("nan"), float("inf"), -float("inf")):
        for pos in torch.randint(0, clean.numel(), (4,), generator=gen).tolist() + [0, clean.numel() - 1]:
            x = clean.clone()
            x.view(-1)[pos] = bad
            assert not bool(torch.isfinite(x).all())  # the brute-force reference
            with pytest.raises(ValueError, match="NaN or infinity"):
                pipe(x)


def test_replaying_params_of_another_batch_size_is_an_error():
    pipe = cifar_like()
    pipe(images(h=12, w=12), torch.arange(6) % 5)
    with pytest.raises(ValueError, match="batch of 6.*batch of 4"):
        pipe(images(b=4, h=12, w=12), torch.arange(4) % 5, params=pipe.last_params)


def test_empty_batch_returns_an_empty_batch():
    out, targets = cifar_like()(torch.zeros(0, 3, 12, 12, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 3, 12, 12) and out.dtype == torch.float32 and targets.shape == (0, 5)


def test_later_fill_is_kept_inside_a_bilinear_segment():
    """A padded crop after a crop, then a bilinear op: the crop's fill must survive the single resample."""
    x = images(b=4, h=8, w=8, dtype=torch.float32) * 0.5 + 0.25
    pipe = A.Pipeline(A.RandomCrop(4), A.RandomCrop(4, padding=2, fill=1.0), A.RandomRotation((0, 0)), seed=0)
    out = pipe(x)
    assert torch.equal(out, unfused(pipe, x)["images"])
    assert (out == 1.0).any()


# ----------------------------------------------------------------------------------------------- affine maps
def test_rotation_by_90_degrees_is_rot90_counter_clockwise():
    x = images(h=9, w=9, dtype=torch.float64)
    out = A.Pipeline(A.RandomRotation((90, 90)))(x)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)))


def test_affine_by_90_degrees_is_rot90_clockwise_as_torchvision_affine():
    """torchvision's affine turns a positive angle clockwise, its rotate counter-clockwise: so do these two."""
    x = images(h=9, w=9, dtype=torch.float64)
    out = A.Pipeline(A.RandomAffine((90, 90)))(x)
    torch.testing.assert_close(out, torch.rot90(x, -1, dims=(-2, -1)))
    torch.testing.assert_close(A.Pipeline(A.RandomAffine((-90, -90)))(x), A.Pipeline(A.RandomRotation((90, 90)))(x))


def test_affine_shear_x_moves_lower_rows_left():
    """torchvision's Shx(a) = [[1, -tan a], [0, 1]]: with shear x = 45 degrees the row d below the centre is
    shifted d pixels to the left (a 0/1 column image makes the shift exact)."""
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[..., 4] = 1.0  # the centre column
    out = A.Pipeline(A.RandomAffine(0, shear=(45, 45)))(x)
    centre = 4.5  # pixel centres are at i + 0.5; the map is about (W / 2, H / 2)
    for row in range(9):
        d = row + 0.5 - centre
        assert out[0, 0, row].argmax().item() == 4 - d, row


def test_affine_whole_pixel_translation_shifts_and_fills():
    x = images(b=8, h=7, w=9, dtype=torch.float32)
    pipe = A.Pipeline(A.RandomAffine(0, translate=(0.4, 0.4), fill=0.5), seed=3)
    out = pipe(x)
    shift = pipe.last_params[0]["translate"].long()
    for b in range(8):
        tx, ty = shift[b].tolist()
        expected = torch.full_like(x[b], 0.5)
        src = x[b, :, max(0, -ty):7 - max(0, ty), max(0, -tx):9 - max(0, tx)]
        expected[:, max(0, ty):max(0, ty) + src.shape[1], max(0, tx):max(0, tx) + src.shape[2]] = src
        torch.testing.assert_close(out[b], expected)


def test_affine_scale_and_shear_fix_the_centre():
    from augpipe.functional import affine_matrix
    n = 5
    m = affine_matrix(torch.linspace(-40, 40, n), torch.zeros(n, 2), torch.linspace(0.5, 2, n),
                      torch.linspace(-20, 20, 2 * n).view(n, 2), (10, 16))
    centre = torch.tensor([8.0, 5.0, 1.0])
    torch.testing.assert_close(m @ centre, centre.expand(n, 3))
    # zoom 2 (no rotation or shear) reads half as far from the centre
    z = affine_matrix(torch.zeros(1), torch.zeros(1, 2), torch.full((1,), 2.0), torch.zeros(1, 2), (10, 16))
    torch.testing.assert_close(z[0] @ torch.tensor([16.0, 10.0, 1.0]), torch.tensor([12.0, 7.5, 1.0]))


def test_random_affine_sampling_ranges():
    from augpipe.ops import Shape
    op = A.RandomAffine(degrees=(10, 30), translate=(0.1, 0.2), scale=(0.8, 1.2), shear=(-5, 5, 1, 2))
    p = op.sample(Shape(4000, 3, 20, 50), torch.Generator().manual_seed(0), "cpu")
    assert p["angle"].min() >= 10 and p["angle"].max() <= 30
    assert p["translate"][:, 0].abs().max() == 5 and p["translate"][:, 1].abs().max() == 4  # rounded, to a W, b H
    assert torch.equal(p["translate"], p["translate"].round())
    assert p["scale"].min() >= 0.8 and p["scale"].max() <= 1.2
    assert p["shear"][:, 0].abs().max() <= 5 and p["shear"][:, 1].min() >= 1 and p["shear"][:, 1].max() <= 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pointwise_chains_never_write_to_the_callers_tensor(dtype):
    """Ops may work in place only on tensors the executor made; a float input is the caller's own."""
    x = images(dtype=dtype)
    original = x.clone()
    pipe = A.Pipeline(A.LabelSmoothing(0.1), A.Brightness(0.5), A.Contrast(0.5), A.Normalize((0.5,) * 3, (0.2,) * 3),
                      A.Cutout(4), A.OneOf(A.Mixup(), A.Brightness(0.3)), A.RandomApply(A.Pipeline(A.Contrast(0.2)),
                                                                                       p=0.5), seed=0, num_classes=3)
    out, _ = pipe(x, torch.arange(6) % 3)
    assert torch.equal(x, original)
    ref = unfused(pipe, original.clone(), TF.one_hot(torch.arange(6) % 3, 3).to(dtype))
    torch.testing.assert_close(out, ref["images"])
