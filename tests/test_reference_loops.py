"""augpipe against brute-force loops written from docs/references.md and the papers, not from augpipe's code.

Every reference here is a plain Python loop (or exact Fraction arithmetic) over samples, rows and pixels; augpipe's
batched result must equal it. Parameters come from fixed seeds, so every failure reproduces.
"""
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import augpipe
from augpipe import functional as AF
from augpipe.ops import Shape

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clip(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


# ================================================================================ fractional max pooling (Graham)
def graham_pseudorandom_ref(n_in: int, n_out: int, u: float) -> list[int]:
    """a_i = ceil(alpha (i + u)) - ceil(alpha u), i = 0..n_out, in exact rational arithmetic (u taken as given)."""
    alpha, u = Fraction(n_in, n_out), Fraction(u)
    return [math.ceil(alpha * (i + u)) - math.ceil(alpha * u) for i in range(n_out + 1)]


def pool_ref(x: torch.Tensor, rows: list[list[int]], cols: list[list[int]], overlapping: bool) -> torch.Tensor:
    """Max over rows [a_{i-1}, a_i - 1] (disjoint) or [a_{i-1}, a_i] clipped to N - 1 (overlapping), same for cols."""
    B, C, H, W = x.shape
    ho, wo = len(rows[0]) - 1, len(cols[0]) - 1
    out = torch.empty(B, C, ho, wo, dtype=x.dtype)
    for b in range(B):
        for i in range(1, ho + 1):
            r0 = rows[b][i - 1]
            r1 = min(rows[b][i], H - 1) if overlapping else rows[b][i] - 1
            for j in range(1, wo + 1):
                c0 = cols[b][j - 1]
                c1 = min(cols[b][j], W - 1) if overlapping else cols[b][j] - 1
                for c in range(C):
                    best = -math.inf
                    for r in range(r0, r1 + 1):
                        for s in range(c0, c1 + 1):
                            best = max(best, float(x[b, c, r, s]))
                    out[b, c, i - 1, j - 1] = best
    return out


def check_graham_sequence(a: list[int], n_in: int, n_out: int) -> None:
    assert len(a) == n_out + 1
    assert a[0] == 0 and a[-1] == n_in
    assert all(a[i] - a[i - 1] in (1, 2) for i in range(1, n_out + 1))


def _well_conditioned(n_in: int, n_out: int, u: float) -> bool:
    """alpha (i + u) is not within 1e-9 of an integer for any i: float64 must then round exactly like Fractions."""
    alpha, fu = Fraction(n_in, n_out), Fraction(u)
    for i in range(n_out + 1):
        v = alpha * (i + fu)
        if abs(v - round(v)) < Fraction(1, 10 ** 9):
            return False
    return True


@st.composite
def sizes(draw):
    n_out = draw(st.integers(2, 64))
    n_in = draw(st.integers(n_out + 1, 2 * n_out))
    return n_in, n_out


unit_floats = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True, allow_subnormal=False)


@FAST
@given(sizes(), st.lists(unit_floats, min_size=1, max_size=4))
def test_pseudorandom_sequence_matches_graham_formula(size, us):
    n_in, n_out = size
    assume(all(_well_conditioned(n_in, n_out, u) for u in us))
    a = AF.graham_pseudorandom_sequence(n_in, n_out, torch.tensor(us, dtype=torch.float64))
    assert a.shape == (len(us), n_out + 1)
    for b, u in enumerate(us):
        ref = graham_pseudorandom_ref(n_in, n_out, u)
        check_graham_sequence(ref, n_in, n_out)  # the paper's claim about its own formula
        assert a[b].tolist() == ref


# u in (0, 1) one ulp next to n_out / n_in, where alpha u is 1: float64 rounds (n_out + u) differently from u.
EDGE_U = [
    pytest.param(4, 2, math.nextafter(0.5, 1.0), id="4->2 u=0.5+ulp ends at 3"),
    pytest.param(32, 23, math.nextafter(23 / 32, 1.0), id="32->23 u=23/32+ulp ends at 31"),
    pytest.param(11, 9, math.nextafter(9 / 11, 0.0), id="11->9 u=9/11-ulp ends at 12"),
]
# u one float step from n_out / n_in (alpha u == 1): a float ceil of alpha (i + u) once broke a_{n_out} == n_in


@pytest.mark.parametrize("n_in,n_out,u", EDGE_U)
def test_pseudorandom_sequence_at_rounding_edge(n_in, n_out, u):
    a = AF.graham_pseudorandom_sequence(n_in, n_out, torch.tensor([u], dtype=torch.float64))[0].tolist()
    check_graham_sequence(graham_pseudorandom_ref(n_in, n_out, u), n_in, n_out)
    check_graham_sequence(a, n_in, n_out)


@pytest.mark.parametrize("n_in,n_out,u", EDGE_U)
def test_fractional_max_pool2d_at_rounding_edge(n_in, n_out, u):
    x = torch.rand(1, 1, n_in, n_in, generator=gen(5))
    samples = torch.tensor([[u, 0.3]], dtype=torch.float64)
    out = AF.fractional_max_pool2d(x, n_out, samples)  # 11->9 once indexed row 11
    ref = pool_ref(x, [graham_pseudorandom_ref(n_in, n_out, u)], [graham_pseudorandom_ref(n_in, n_out, 0.3)], True)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@FAST
@given(sizes(), st.integers(1, 5), st.integers(0, 2 ** 31 - 1))
def test_random_sequence_is_a_permutation_of_ones_and_twos(size, batch, seed):
    n_in, n_out = size
    a = AF.graham_random_sequence(n_in, n_out, batch, gen(seed))
    assert a.shape == (batch, n_out + 1)
    for row in a.tolist():
        check_graham_sequence(row, n_in, n_out)
        steps = [row[i] - row[i - 1] for i in range(1, n_out + 1)]
        assert steps.count(2) == n_in - n_out and steps.count(1) == 2 * n_out - n_in


def test_random_sequence_draws_every_arrangement_uniformly():
    # 6 -> 4: increments are two 2s and two 1s, C(4, 2) = 6 arrangements, each with probability 1/6 per sample.
    n = 6000
    a = AF.graham_random_sequence(6, 4, n, gen(11))
    counts: dict[tuple, int] = {}
    for row in a.diff(dim=1).tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert len(counts) == 6
    chi2 = sum((c - n / 6) ** 2 / (n / 6) for c in counts.values())
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


POOL_SIZES = [((32, 32), (23, 23)), ((25, 25), (18, 18)), ((7, 7), (4, 4)), ((12, 9), (7, 5)), ((6, 10), (3, 9))]


@pytest.mark.parametrize("overlapping", [True, False], ids=["overlapping", "disjoint"])
@pytest.mark.parametrize("size_in,size_out", POOL_SIZES, ids=[f"{a}->{b}" for a, b in POOL_SIZES])
def test_fractional_max_pool2d_pseudorandom_matches_loop(size_in, size_out, overlapping):
    B, C = 3, 2
    x = torch.randn(B, C, *size_in, generator=gen(1))
    samples = torch.rand(B, 2, generator=gen(2), dtype=torch.float64)  # one u per sample: rows, cols
    out = AF.fractional_max_pool2d(x, size_out, samples, overlapping=overlapping)
    rows = [graham_pseudorandom_ref(size_in[0], size_out[0], float(samples[b, 0])) for b in range(B)]
    cols = [graham_pseudorandom_ref(size_in[1], size_out[1], float(samples[b, 1])) for b in range(B)]
    torch.testing.assert_close(out, pool_ref(x, rows, cols, overlapping), rtol=0, atol=0)
    # the same through the explicit-bounds kernel
    rb = AF.graham_pseudorandom_sequence(size_in[0], size_out[0], samples[:, 0])
    cb = AF.graham_pseudorandom_sequence(size_in[1], size_out[1], samples[:, 1])
    assert rb.tolist() == rows and cb.tolist() == cols
    torch.testing.assert_close(AF.fractional_max_pool2d_from_bounds(x, rb, cb, overlapping), out, rtol=0, atol=0)


def test_fractional_max_pool2d_uses_each_samples_own_u():
    x = torch.randn(2, 1, 32, 32, generator=gen(3))
    samples = torch.tensor([[0.1, 0.9], [0.6, 0.35]], dtype=torch.float64)
    out = AF.fractional_max_pool2d(x, 23, samples)
    swapped = AF.fractional_max_pool2d(x, 23, samples.flip(0))
    assert not torch.equal(out, swapped)
    for b in range(2):
        ref = pool_ref(x[b:b + 1], [graham_pseudorandom_ref(32, 23, float(samples[b, 0]))],
                       [graham_pseudorandom_ref(32, 23, float(samples[b, 1]))], True)
        torch.testing.assert_close(out[b:b + 1], ref, rtol=0, atol=0)


@pytest.mark.parametrize("overlapping", [True, False], ids=["overlapping", "disjoint"])
def test_fractional_max_pool2d_from_random_bounds_matches_loop(overlapping):
    x = torch.randn(4, 3, 25, 20, generator=gen(4))
    rb = AF.graham_random_sequence(25, 18, 4, gen(5))
    cb = AF.graham_random_sequence(20, 11, 4, gen(6))
    out = AF.fractional_max_pool2d_from_bounds(x, rb, cb, overlapping)
    torch.testing.assert_close(out, pool_ref(x, rb.tolist(), cb.tolist(), overlapping), rtol=0, atol=0)


@pytest.mark.parametrize("overlapping", [True, False], ids=["overlapping", "disjoint"])
def test_fractional_max_pool2d_random_sequences_per_sample(overlapping):
    # Channel 0 increases along rows and columns, so each max sits at its region's last row and column: the output
    # spells out every sample's boundaries, which must be Graham random sequences, and channel 1 (random values)
    # must be pooled over those same regions.
    B, H, W, ho, wo = 8, 32, 25, 23, 18
    ramp = torch.arange(H * W, dtype=torch.float64).view(1, 1, H, W).expand(B, 1, H, W)
    x = torch.cat((ramp, torch.randn(B, 1, H, W, generator=gen(30), dtype=torch.float64)), dim=1)
    out = AF.fractional_max_pool2d(x, (ho, wo), overlapping=overlapping, pseudo_random=False, generator=gen(31))
    shift = 0 if overlapping else 1  # the region ends at a_i (overlapping, a_i < N for i < N_out) or a_i - 1
    rows = [[0] + [int(v) // W + shift for v in out[b, 0, :-1, 0]] + [H] for b in range(B)]
    cols = [[0] + [int(v) % W + shift for v in out[b, 0, 0, :-1]] + [W] for b in range(B)]
    for r, c in zip(rows, cols):
        check_graham_sequence(r, H, ho)
        check_graham_sequence(c, W, wo)
    assert len({tuple(r) for r in rows}) == B and len({tuple(c) for c in cols}) == B  # one sequence per sample
    torch.testing.assert_close(out, pool_ref(x, rows, cols, overlapping), rtol=0, atol=0)


@pytest.mark.parametrize("pseudo_random", [True, False])
def test_fractional_pool_op_pools_then_resizes_back(pseudo_random):
    x = torch.rand(6, 2, 32, 20, generator=gen(7))  # an image in [0, 1], as Pipeline asks
    pipe = augpipe.Pipeline(augpipe.FractionalPool(2 ** 0.5, overlapping=True, pseudo_random=pseudo_random), seed=3)
    out = pipe(x)
    params = pipe.last_params[0]
    rows, cols = params["row_bounds"].tolist(), params["col_bounds"].tolist()
    ho, wo = round(32 / 2 ** 0.5), round(20 / 2 ** 0.5)  # 23, 14
    for r in rows:
        check_graham_sequence(r, 32, ho)
    for c in cols:
        check_graham_sequence(c, 20, wo)
    assert len({tuple(r) for r in rows}) > 1 and len({tuple(c) for c in cols}) > 1  # per-sample u or sequence
    pooled = pool_ref(x, rows, cols, True)
    ref = torch.empty_like(x)
    for i in range(32):  # nearest with pixel centres aligned: source floor((i + 0.5) * in / out)
        for j in range(20):
            ref[:, :, i, j] = pooled[:, :, min(int((i + 0.5) * ho / 32), ho - 1), min(int((j + 0.5) * wo / 20), wo - 1)]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


# ================================================================================ Cutout (DeVries & Taylor 2017)
def cutout_box_ref(cy: int, cx: int, side: int, H: int, W: int) -> tuple[int, int, int, int]:
    """Square of side L with corner (c - L // 2), clipped to the image (docs/references.md, "Cutout": may hang over)."""
    y1, x1 = cy - side // 2, cx - side // 2
    return clip(y1, 0, H), clip(x1, 0, W), clip(y1 + side, 0, H), clip(x1 + side, 0, W)


def cutout_official(cy: int, cx: int, side: int, H: int, W: int) -> tuple[int, int, int, int]:
    """uoguelph-mlrg/Cutout: y1 = clip(y - L // 2), y2 = clip(y + L // 2) (side L for even L)."""
    return (clip(cy - side // 2, 0, H), clip(cx - side // 2, 0, W), clip(cy + side // 2, 0, H),
            clip(cx + side // 2, 0, W))


@pytest.mark.parametrize("side,H,W", [(16, 32, 32), (8, 32, 32), (5, 12, 9), (1, 4, 4), (40, 32, 32)])
def test_cutout_boxes_from_every_centre(side, H, W):
    centres = torch.tensor([[cy, cx] for cy in range(H) for cx in range(W)]).view(-1, 1, 2)
    boxes = AF.cutout_boxes(centres, side, (H, W))[:, 0].tolist()
    for (cy, cx), box in zip(centres[:, 0].tolist(), boxes):
        assert tuple(box) == cutout_box_ref(cy, cx, side, H, W)
        if side % 2 == 0:
            assert tuple(box) == cutout_official(cy, cx, side, H, W)


@pytest.mark.parametrize("side,count,H,W", [(16, 1, 32, 32), (5, 3, 12, 9), (8, 2, 10, 14)])
def test_cutout_pipeline_output_matches_loop(side, count, H, W):
    B, C, fill = 12, 3, 0.25
    x = torch.rand(B, C, H, W, generator=gen(8))
    pipe = augpipe.Pipeline(augpipe.Cutout(side, count=count, fill=fill, p=0.7), seed=4)
    out = pipe(x)
    boxes = pipe.last_params[0]["boxes"]
    assert boxes.shape == (B, count, 4)
    possible = {cutout_box_ref(cy, cx, side, H, W) for cy in range(H) for cx in range(W)}
    ref = x.clone()
    applied = 0
    for b in range(B):
        rows = [tuple(r) for r in boxes[b].tolist()]
        if all(r == (0, 0, 0, 0) for r in rows):  # not applied (p): the neutral empty box
            continue
        applied += 1
        for y1, x1, y2, x2 in rows:
            assert (y1, x1, y2, x2) in possible
            for i in range(y1, y2):
                for j in range(x1, x2):
                    ref[b, :, i, j] = fill
    assert 0 < applied < B
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_cutout_16_masks_19_1_percent_of_32x32():
    # Exact expectation over every centre, from the reference loop: E[side]^2 / 1024 = 14^2 / 1024.
    exact = sum((y2 - y1) * (x2 - x1) for cy in range(32) for cx in range(32)
                for y1, x1, y2, x2 in [cutout_box_ref(cy, cx, 16, 32, 32)]) / 32 ** 4
    assert exact == 196 / 1024 and round(100 * exact, 1) == 19.1
    n = 4000
    pipe = augpipe.Pipeline(augpipe.Cutout(16), seed=0)
    out = pipe(torch.ones(n, 1, 32, 32))
    masked = (out == 0).float().mean().item()
    assert abs(masked - exact) < 0.005  # standard error of the mean is about 0.001


# ================================================================================ CutMix (Yun et al. 2019)
def cutmix_official_boxes(H: int, W: int) -> set[tuple[int, int, int, int]]:
    """Every box rand_bbox can give: cut = int(side * sqrt(1 - lam)) for some lam in [0, 1], centres uniform ints,
    (c - cut // 2, c + cut // 2) clipped to [0, side]. The (cut_h, cut_w) pairs are enumerated exactly by
    r = sqrt(1 - lam) at every breakpoint k / H or k / W."""
    rs = sorted({Fraction(k, H) for k in range(H + 1)} | {Fraction(k, W) for k in range(W + 1)})
    boxes = set()
    for ch, cw in {(math.floor(H * r), math.floor(W * r)) for r in rs}:
        for cy in range(H):
            for cx in range(W):
                boxes.add((clip(cy - ch // 2, 0, H), clip(cx - cw // 2, 0, W),
                           clip(cy + ch // 2, 0, H), clip(cx + cw // 2, 0, W)))
    return boxes


@pytest.mark.parametrize("H,W", [(16, 16), (12, 20)])
def test_cutmix_pipeline_matches_official_loop(H, W):
    B, C, K = 10, 3, 5
    x = torch.rand(B, C, H, W, generator=gen(9))
    y = torch.randint(0, K, (B,), generator=gen(10))
    pipe = augpipe.Pipeline(augpipe.CutMix(1.0, p=0.8), seed=5, num_classes=K)
    out, targets = pipe(x, y)
    box, perm = pipe.last_params[0]["box"].tolist(), pipe.last_params[0]["perm"].tolist()
    assert sorted(perm) == list(range(B))
    possible = cutmix_official_boxes(H, W)
    ref_x, ref_t = x.clone(), torch.zeros(B, K)
    for b in range(B):
        y1, x1, y2, x2 = box[b]
        assert (y1, x1, y2, x2) in possible or (y1, x1, y2, x2) == (0, 0, 0, 0)
        for i in range(y1, y2):
            for j in range(x1, x2):
                ref_x[b, :, i, j] = x[perm[b], :, i, j]
        lam = 1 - (y2 - y1) * (x2 - x1) / (H * W)  # corrected: the exact fraction of own pixels kept
        ref_t[b, int(y[b])] += lam
        ref_t[b, int(y[perm[b]])] += 1 - lam
    assert any(b[0] != b[2] and b[1] != b[3] for b in box)
    torch.testing.assert_close(out, ref_x, rtol=0, atol=0)
    torch.testing.assert_close(targets, ref_t, rtol=0, atol=1e-6)


def test_cutmix_corrected_lambda_averages_0_70_on_32x32():
    # Expectation of the official code's corrected lambda, lam ~ U(0, 1): for a cut c the box side along an axis
    # is min(32, x + c // 2) - max(0, x - c // 2) averaged over the 32 centres, and the two axes are independent.
    def mean_side(c):
        return sum(clip(x + c // 2, 0, 32) - clip(x - c // 2, 0, 32) for x in range(32)) / 32
    m = 20000
    exact = 1 - sum(mean_side(int(32 * math.sqrt(1 - (k + 0.5) / m))) ** 2 for k in range(m)) / m / 1024
    assert abs(exact - 0.70) < 0.005  # docs/references.md, "CutMix": lam averages about 0.70 (0.7007)
    params = augpipe.CutMix(1.0).sample(Shape(100_000, 1, 32, 32), gen(12), torch.device("cpu"))
    lam = AF.cutmix_lambda(params["box"], (32, 32))
    assert abs(lam.mean().item() - exact) < 0.005  # standard error about 0.001


# ================================================================================ Mixup (Zhang et al. 2018)
@pytest.mark.parametrize("per_batch", [False, True])
def test_mixup_pipeline_matches_loop(per_batch):
    B, K = 9, 4
    x = torch.rand(B, 3, 5, 6, generator=gen(13), dtype=torch.float64)
    y = torch.randint(0, K, (B,), generator=gen(14))
    pipe = augpipe.Pipeline(augpipe.Mixup(0.4, p=0.7, per_batch=per_batch), seed=6, num_classes=K)
    out, targets = pipe(x, y)
    lam, perm = pipe.last_params[0]["lam"].tolist(), pipe.last_params[0]["perm"].tolist()
    assert sorted(perm) == list(range(B)) and perm != list(range(B))
    assert all(0 <= v <= 1 for v in lam)
    skipped = [v == 1.0 for v in lam]
    assert 0 < sum(skipped) < B
    if per_batch:
        assert len({v for v in lam if v != 1.0}) == 1
    else:
        assert len({v for v in lam if v != 1.0}) == B - sum(skipped)
    ref_x = torch.empty_like(x)
    ref_t = torch.zeros(B, K, dtype=torch.float64)
    for b in range(B):
        ref_x[b] = lam[b] * x[b] + (1 - lam[b]) * x[perm[b]]
        ref_t[b, int(y[b])] += lam[b]
        ref_t[b, int(y[perm[b]])] += 1 - lam[b]
    torch.testing.assert_close(out, ref_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(targets.double(), ref_t, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.2, 2.0])
def test_mixup_lambda_is_beta_per_sample(alpha):
    stats = pytest.importorskip("scipy.stats")
    n = 20000
    lam = augpipe.Mixup(alpha).sample(Shape(n, 1, 1, 1), gen(15), torch.device("cpu"))["lam"].double()
    assert len(set(lam.tolist())) > n * 0.99  # one draw per sample
    assert stats.kstest(lam.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * (2 * alpha + 1))) < 0.01  # Var Beta(a, a) = 1 / (4 (2a + 1))


def test_mixup_per_batch_draws_one_lambda_per_call():
    op = augpipe.Mixup(1.0, per_batch=True)
    g = gen(16)
    draws = [op.sample(Shape(7, 1, 1, 1), g, torch.device("cpu"))["lam"] for _ in range(50)]
    assert all(len(set(d.tolist())) == 1 for d in draws)
    assert len({d[0].item() for d in draws}) == 50


# ================================================================================ label smoothing (Szegedy 2016)
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_equals_cross_entropy_label_smoothing(eps):
    B, K = 16, 7
    y = torch.randint(0, K, (B,), generator=gen(17))
    logits = torch.randn(B, K, generator=gen(18))
    _, q = augpipe.Pipeline(augpipe.LabelSmoothing(eps), num_classes=K, seed=0)(torch.rand(B, 1, 2, 2), y)
    ref = torch.full((B, K), eps / K)
    for b in range(B):
        ref[b, int(y[b])] += 1 - eps
    torch.testing.assert_close(q, ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(TF.cross_entropy(logits, q), TF.cross_entropy(logits, y, label_smoothing=eps),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mix", [augpipe.Mixup(1.0), augpipe.CutMix(1.0)], ids=["mixup", "cutmix"])
def test_smoothing_then_mixing_equals_mixing_then_smoothing(mix):
    B, K, eps = 8, 5, 0.1
    x = torch.rand(B, 3, 8, 8, generator=gen(19))
    y = torch.randint(0, K, (B,), generator=gen(20))
    first = augpipe.Pipeline(augpipe.LabelSmoothing(eps), mix, num_classes=K, seed=7)
    out1, t1 = first(x, y)
    mix_params = first.last_params[1]
    second = augpipe.Pipeline(mix, augpipe.LabelSmoothing(eps), num_classes=K)
    out2, t2 = second(x, y, params=[mix_params, {}])
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    torch.testing.assert_close(t1, t2, rtol=0, atol=1e-6)
    # timm's convention from the loop: smooth each one-hot, then mix with the (corrected) lambda
    perm = mix_params["perm"].tolist()
    if "lam" in mix_params:
        lam = mix_params["lam"].tolist()
    else:
        lam = [1 - (b[2] - b[0]) * (b[3] - b[1]) / 64 for b in mix_params["box"].tolist()]
    ref = torch.zeros(B, K)
    for b in range(B):
        for k in range(K):
            qi = (1 - eps) * (k == int(y[b])) + eps / K
            qj = (1 - eps) * (k == int(y[perm[b]])) + eps / K
            ref[b, k] = lam[b] * qi + (1 - lam[b]) * qj
    torch.testing.assert_close(t1, ref, rtol=0, atol=1e-6)


# ================================================================================ RandomCrop
def pad_crop_ref(x, top, left, size, padding, mode, fill):
    """torchvision RandomCrop: F.pad by (left, top, right, bottom), then slice the window, one sample at a time."""
    l, t, r, b = padding
    out = []
    for k in range(x.shape[0]):
        xi = x[k:k + 1]
        extra = {"value": fill} if mode == "constant" else {}
        padded = TF.pad(xi, (l, r, t, b), mode=mode, **extra)  # F.pad takes (left, right, top, bottom)
        out.append(padded[:, :, top[k]:top[k] + size[0], left[k]:left[k] + size[1]])
    return torch.cat(out)


CROPS = [((32, 32), 4, (32, 32)), ((9, 13), (2, 3), (10, 12)), ((10, 8), (1, 2, 3, 0), (9, 9)), ((6, 7), 0, (4, 5))]


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("image,padding,size", CROPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_random_crop_matches_pad_and_slice(mode, image, padding, size, dtype):
    B = 8
    x = torch.randint(0, 256, (B, 3, *image), generator=gen(21), dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    op = augpipe.RandomCrop(size, padding=padding, fill=0.5, padding_mode=mode)
    pipe = augpipe.Pipeline(op, seed=8)
    out = pipe(x)
    top, left = pipe.last_params[0]["top"].tolist(), pipe.last_params[0]["left"].tolist()
    l, t, r, b = op.padding
    assert all(0 <= v <= image[0] + t + b - size[0] for v in top)
    assert all(0 <= v <= image[1] + l + r - size[1] for v in left)
    ref = pad_crop_ref(x.float() / 255 if dtype == torch.uint8 else x, top, left, size, op.padding, mode, 0.5)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_random_crop_draws_every_offset_uniformly():
    n = 1800
    op = augpipe.RandomCrop(4, padding=1)  # 6x6 padded, 3 x 3 offsets
    params = op.sample(Shape(n, 1, 4, 4), gen(22), torch.device("cpu"))
    counts = [[0] * 3 for _ in range(3)]
    for t, l in zip(params["top"].tolist(), params["left"].tolist()):
        counts[t][l] += 1
    chi2 = sum((c - n / 9) ** 2 / (n / 9) for row in counts for c in row)
    assert min(min(row) for row in counts) > 0 and chi2 < 26.1  # 8 degrees of freedom, p = 0.001


def test_padded_crop_then_flips_match_loop():
    x = torch.rand(8, 3, 12, 10, generator=gen(23))
    pipe = augpipe.Pipeline(augpipe.RandomCrop((12, 10), padding=3, padding_mode="reflect"),
                            augpipe.HorizontalFlip(0.5), augpipe.VerticalFlip(0.5), seed=9)
    out = pipe(x)
    crop_p, h_p, v_p = pipe.last_params
    ref = pad_crop_ref(x, crop_p["top"].tolist(), crop_p["left"].tolist(), (12, 10), (3, 3, 3, 3), "reflect", 0)
    flips = 0
    for b in range(8):
        if h_p["flip"][b]:
            ref[b] = ref[b].flip(-1)
            flips += 1
        if v_p["flip"][b]:
            ref[b] = ref[b].flip(-2)
    assert 0 < flips < 8
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_two_padded_crops_in_a_row_match_loop():
    x = torch.rand(6, 2, 10, 10, generator=gen(24))
    pipe = augpipe.Pipeline(augpipe.RandomCrop(11, padding=2, fill=0.7),
                            augpipe.RandomCrop(9, padding=1, padding_mode="replicate"), seed=10)
    out = pipe(x)
    p1, p2 = pipe.last_params
    ref = pad_crop_ref(x, p1["top"].tolist(), p1["left"].tolist(), (11, 11), (2, 2, 2, 2), "constant", 0.7)
    ref = pad_crop_ref(ref, p2["top"].tolist(), p2["left"].tolist(), (9, 9), (1, 1, 1, 1), "replicate", 0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("first", ["flip", "reflect", "replicate"])
def test_window_reads_of_flips_and_padded_crops_match_loop(dtype, first, monkeypatch):
    """The compiled CPU read (contiguous windows of a padded, mirrored copy, planned by ``fuse.window_plan``) gives
    the loop's images; run here eagerly, so a window that left the copy would raise instead of reading memory.
    An edge-extending first crop reads a copy padded in its mode (by the larger padding of each axis, on both
    sides); the later crop's constant padding is the reach.
    The per-pixel gather is switched off, so the images must come from the windows."""
    x = torch.randint(0, 256, (64, 3, 11, 9), generator=gen(25), dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    mode = "constant" if first == "flip" else first
    crop = augpipe.RandomCrop((10, 9), padding=(3, 1, 2, 4), fill=0.25, padding_mode=mode)
    ops = ([augpipe.HorizontalFlip(), crop] if first == "flip" else [crop, augpipe.HorizontalFlip()]) + [
        augpipe.VerticalFlip(), augpipe.RandomCrop(8, padding=2)]
    pipe = augpipe.Pipeline(*ops, seed=12)
    params = pipe.sample(Shape(*x.shape), pipe.generator("cpu"), "cpu")
    plan = augpipe.fuse.window_plan(ops)
    assert plan == (AF.WindowPlan(5, True) if first == "flip" else AF.WindowPlan(2, True, (3, 4, 3, 4), mode))
    window = augpipe.fuse.Window(AF.window_source(x, plan, torch.float32), plan)
    monkeypatch.setattr(AF, "gather_separable", None)
    out = augpipe.fuse.run(list(zip(pipe.nodes, params)), {"images": x}, torch.float32, window=window)["images"]
    monkeypatch.undo()
    ref = x.float() / 255 if dtype == torch.uint8 else x.clone()
    for op, p in zip(ops, params):
        if isinstance(op, augpipe.RandomCrop):
            ref = pad_crop_ref(ref, p["top"].tolist(), p["left"].tolist(), op.size, op.padding, op.padding_mode,
                               op.fill)
        else:
            ref = torch.stack([r.flip(-1 if op.axis == 0 else -2) if f else r for r, f in zip(ref, p["flip"])])
    lefts, tops = params[ops.index(crop)]["left"], params[ops.index(crop)]["top"]
    assert lefts.min() == 0 and lefts.max() == 5 and tops.max() == 6  # the first crop's extremes are all read
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_a_window_source_is_the_padded_images_flattened_between_zeros():
    """Row 0: the images padded by F.pad in the plan's mode, then ``reach`` zeros at each end; row 1 the same with
    each image's values reversed (the image's mirror where the image is)."""
    x = torch.randint(0, 256, (2, 3, 5, 6), generator=gen(26), dtype=torch.uint8)
    for plan in (AF.WindowPlan(), AF.WindowPlan(3, True), AF.WindowPlan(1, True, (2, 0, 1, 3), "reflect"),
                 AF.WindowPlan(0, False, (4, 1, 0, 2), "replicate")):
        source = AF.window_source(x, plan, torch.float32)
        l, t, r, b = plan.padding
        padded = TF.pad(x.float(), (l, r, t, b), mode=plan.mode) if plan.mode else x.float()
        flat = padded.reshape(-1)
        mirror = torch.cat([image.reshape(-1).flip(0) for image in padded])
        zeros = torch.zeros(plan.reach)
        rows = [torch.cat((zeros, flat, zeros))] + ([torch.cat((zeros, mirror, zeros))] if plan.mirrored else [])
        assert torch.equal(source, torch.stack(rows))
        previous = AF.window_source(255 - x, plan, torch.float32)  # a copy of other images is reused
        assert AF.window_source(x, plan, torch.float32, out=previous) is previous and torch.equal(previous, source)


# ================================================================================ RandomResizedCrop
def resized_crop_ref(x, boxes, size):
    """torchvision resized_crop: slice the box, then F.interpolate(bilinear, align_corners=False, no antialias)."""
    out = []
    for k, (t, l, h, w) in enumerate(boxes):
        crop = x[k:k + 1, :, t:t + h, l:l + w]
        out.append(TF.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=False))
    return torch.cat(out)


def test_axis_aligned_inside_mask_equals_the_per_pixel_test():
    """The separable row x column test gives the per-pixel one's answer for flips, scales and shifts."""
    g = gen(31)
    B, out_size, in_size = 16, (9, 13), (7, 11)
    sign = torch.where(torch.rand(B, 2, generator=g) < 0.5, -1.0, 1.0)
    scale = sign * (0.5 + torch.rand(B, 2, generator=g))
    shift = torch.randint(-6, 18, (B, 2), generator=g).float() / 2  # half pixels: points land on the edges too
    zero = torch.zeros(B)
    m = AF.affine_rows(scale[:, 0], zero, shift[:, 0], zero, scale[:, 1], shift[:, 1])
    per_pixel = AF.inside_mask(m, in_size, out_size)
    assert per_pixel.any() and not per_pixel.all()
    assert torch.equal(AF.inside_mask(m, in_size, out_size, axis_aligned=True), per_pixel)


DOWN_BOXES = [(0, 0, 20, 24), (2, 3, 16, 18), (5, 1, 9, 13), (11, 7, 9, 17), (3, 12, 17, 11)]  # all >= 9 x 11


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_resized_crop_downscale_matches_crop_and_interpolate(dtype, tol):
    x = torch.rand(len(DOWN_BOXES), 3, 20, 24, generator=gen(25), dtype=dtype)
    out = AF.resized_crop(x, torch.tensor(DOWN_BOXES, dtype=dtype), (9, 11))
    torch.testing.assert_close(out, resized_crop_ref(x, DOWN_BOXES, (9, 11)), rtol=0, atol=tol)


@pytest.mark.parametrize("flip_first", [False, True])
def test_random_resized_crop_pipeline_matches_crop_and_interpolate(flip_first):
    B, size = 12, (8, 10)
    x = torch.rand(B, 3, 24, 26, generator=gen(26))
    # every box is at least 14 px a side: downscaling, compared with plain bilinear interpolate
    rrc = augpipe.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=False)
    pipe = augpipe.Pipeline(*([augpipe.HorizontalFlip(0.5)] if flip_first else []), rrc, seed=11)
    out = pipe(x)
    boxes = [tuple(int(v) for v in row) for row in pipe.last_params[-1]["box"].tolist()]
    assert pipe.last_params[-1]["box"].tolist() == [list(map(float, b)) for b in boxes]  # whole pixels
    for t, l, h, w in boxes:
        assert h >= size[0] and w >= size[1] and 0 <= t <= 24 - h and 0 <= l <= 26 - w
    src = x.clone()
    if flip_first:
        flip = pipe.last_params[0]["flip"].tolist()
        assert 0 < sum(flip) < B
        for b in range(B):
            if flip[b]:
                src[b] = src[b].flip(-1)
    # float32 tolerance: the op's sampling matrix is float32 (w / out_w rounded), whatever the image dtype
    torch.testing.assert_close(out, resized_crop_ref(src, boxes, size), rtol=0, atol=2e-6)


def test_padded_crop_then_resized_crop_match_loop():
    """The fused read blends the original's border into the padding fill, as pad + crop + resize does."""
    x = torch.ones(1, 1, 4, 4)
    pipe = augpipe.Pipeline(augpipe.RandomCrop(4, padding=1), augpipe.RandomResizedCrop(2))
    params = [{"top": torch.tensor([0]), "left": torch.tensor([0])}, {"box": torch.tensor([[0.0, 0.0, 4.0, 4.0]])}]
    ref = resized_crop_ref(pad_crop_ref(x, [0], [0], (4, 4), (1, 1, 1, 1), "constant", 0.0), [(0, 0, 4, 4)], (2, 2))
    torch.testing.assert_close(ref, torch.tensor([[[[0.25, 0.5], [0.5, 1.0]]]]))
    torch.testing.assert_close(pipe(x, params=params), ref, rtol=0, atol=1e-6)


def test_resized_crop_upscale_reads_true_neighbours_at_the_box_edge():
    """A chosen difference from torchvision (kornia behaves like augpipe): an upscaled box is sampled in the whole
    image, so only output pixels within half a source pixel of the box edge differ from crop + interpolate, and
    there they interpolate with the real pixels just outside the box instead of repeating the box's edge."""
    x = torch.arange(64.0).view(1, 1, 8, 8) / 64
    out = AF.resized_crop(x, torch.tensor([[2.0, 2.0, 4.0, 4.0]]), (8, 8))
    ref = resized_crop_ref(x, [(2, 2, 4, 4)], (8, 8))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    assert (out[..., 0, :] - ref[..., 0, :]).abs().max() > 0.01  # the edge rows read row 1 of the image too
    # the whole output is bilinear sampling of the full image at the box's pixel-centre map
    ys = 2 + (torch.arange(8.0) + 0.5) / 2 - 0.5  # source row index of each output row
    torch.testing.assert_close(out[0, 0, :, 0] * 64, (ys * 8 + (2 + 0.25 - 0.5)).clamp(min=0), rtol=0, atol=1e-5)


# ================================================================================ brightness and contrast
def brightness_ref(x, factor):
    """torchvision adjust_brightness: clamp(f x, 0, 1), pixel by pixel."""
    out = torch.empty_like(x)
    B, C, H, W = x.shape
    for b in range(B):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[b, c, i, j] = min(max(factor[b] * float(x[b, c, i, j]), 0.0), 1.0)
    return out


def contrast_ref(x, factor):
    """torchvision adjust_contrast: m = mean of 0.299 R + 0.587 G + 0.114 B (plain mean for one channel),
    clamp(f x + (1 - f) m, 0, 1)."""
    out = torch.empty_like(x)
    B, C, H, W = x.shape
    for b in range(B):
        total = 0.0
        for i in range(H):
            for j in range(W):
                if C == 3:
                    total += 0.299 * float(x[b, 0, i, j]) + 0.587 * float(x[b, 1, i, j]) + 0.114 * float(x[b, 2, i, j])
                else:
                    total += float(x[b, 0, i, j])
        m = total / (H * W)
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[b, c, i, j] = min(max(factor[b] * float(x[b, c, i, j]) + (1 - factor[b]) * m, 0.0), 1.0)
    return out


def test_brightness_functional_and_pipeline_match_loop():
    x = torch.rand(5, 3, 4, 6, generator=gen(27), dtype=torch.float64)
    factor = [0.0, 0.5, 1.0, 1.7, 3.0]
    torch.testing.assert_close(AF.brightness(x, torch.tensor(factor, dtype=torch.float64)), brightness_ref(x, factor),
                               rtol=0, atol=1e-15)
    pipe = augpipe.Pipeline(augpipe.Brightness(0.6, p=0.5), seed=12)
    x = torch.rand(12, 3, 4, 6, generator=gen(29), dtype=torch.float64)
    out = pipe(x)
    f = pipe.last_params[0]["factor"].tolist()
    assert all(0.4 <= v <= 1.6 for v in f) and 1.0 in f and len(set(f)) > 2
    torch.testing.assert_close(out, brightness_ref(x, f), rtol=0, atol=1e-7)


@pytest.mark.parametrize("channels", [1, 3])
def test_contrast_functional_and_pipeline_match_loop(channels):
    x = torch.rand(5, channels, 5, 7, generator=gen(28), dtype=torch.float64)
    factor = [0.0, 0.3, 1.0, 1.8, 4.0]
    torch.testing.assert_close(AF.contrast(x, torch.tensor(factor, dtype=torch.float64)), contrast_ref(x, factor),
                               rtol=0, atol=1e-12)
    pipe = augpipe.Pipeline(augpipe.Contrast(0.7), seed=13)
    out = pipe(x)
    f = pipe.last_params[0]["factor"].tolist()
    assert all(0.3 <= v <= 1.7 for v in f) and len(set(f)) == 5
    torch.testing.assert_close(out, contrast_ref(x, f), rtol=0, atol=1e-7)
