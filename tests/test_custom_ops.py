"""Ops written by a user (augpipe.Op, augpipe.GeometricOp) and Lambda, each against a reference computed by hand."""
import math
import textwrap

import kornia
import pytest
import scipy.stats
import torch
import torch.nn.functional as TF

import augpipe as A
from augpipe import draws, fuse


class Gamma(A.Op):
    """out = x ** g, log g ~ U(-log(1 + s), log(1 + s)) per sample, with probability p."""

    def __init__(self, strength=0.5, p=1.0):
        super().__init__()
        self.log_range, self.p = math.log1p(strength), p

    def sample(self, shape, generator, device):
        u = draws.uniform(shape.batch, generator, device)
        keep = draws.bernoulli(self.p, shape.batch, generator, device)
        return self.skip({"gamma": torch.exp(self.log_range * (2 * u - 1))}, keep)

    def skip(self, params, keep):
        return {"gamma": torch.where(keep, params["gamma"], 1.0)}

    def apply(self, state, params):
        x = state["images"]
        return {**state, "images": x ** params["gamma"].to(x.dtype).view(-1, 1, 1, 1)}


class Noise(A.Op):
    """x + sigma * N(0, 1) per pixel, sigma ~ U[0, max_sigma] per sample; no skip, so RandomApply selects."""

    def __init__(self, max_sigma=0.2):
        super().__init__()
        self.max_sigma = max_sigma

    def sample(self, shape, generator, device):
        sigma = self.max_sigma * draws.uniform(shape.batch, generator, device)
        return {"sigma": sigma, "noise": draws.normal(tuple(shape), generator, device)}

    def apply(self, state, params):
        x = state["images"]
        noise = params["sigma"].to(x.dtype).view(-1, 1, 1, 1) * params["noise"].to(x.dtype)
        return {**state, "images": (x + noise).clamp(0, 1)}


class Zoom(A.GeometricOp):
    """Zoom about the centre by s ~ U(lo, hi); outside the image reads 0."""

    axis_aligned = True

    def __init__(self, lo=0.6, hi=1.5):
        super().__init__()
        self.lo, self.hi = lo, hi

    def sample(self, shape, generator, device):
        return {"scale": self.lo + (self.hi - self.lo) * draws.uniform(shape.batch, generator, device)}

    def skip(self, params, keep):
        return {"scale": torch.where(keep, params["scale"], 1.0)}

    def border(self):
        return "constant", 0.0

    def map(self, params, size):
        inv = 1 / params["scale"]
        zero, one = torch.zeros_like(inv), torch.ones_like(inv)
        h, w = size
        rows = (inv, zero, w / 2 * (1 - inv), zero, inv, h / 2 * (1 - inv), zero, zero, one)
        return torch.stack(rows, -1).view(-1, 3, 3)


class SkewedZoom(Zoom):
    """The same maps, declared as general affine ones: read by the four-tap bilinear path."""

    axis_aligned = False


def images(b=6, c=3, h=10, w=12, seed=0, dtype=torch.float32):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gamma_by_hand(x, gamma):
    return x ** gamma.view(-1, 1, 1, 1)


# ------------------------------------------------------------------------------------------------ user ops
def test_a_user_op_draws_from_the_pipelines_seeded_generator():
    # One Gamma in a pipeline asks for two float32 uniforms of B, which a plan draws as one: U[0, 1) of 2B from the
    # generator seeded by the pipeline's seed. The op's formula is applied to them here by hand.
    B, s, p, seed = 64, 0.5, 0.6, 11
    x = images(B)
    out = A.Pipeline(Gamma(s, p=p), seed=seed)(x)
    u = torch.rand(2 * B, generator=torch.Generator().manual_seed(seed))
    gamma = torch.where(u[B:] < p, torch.exp(math.log1p(s) * (2 * u[:B] - 1)), 1.0)
    torch.testing.assert_close(out, gamma_by_hand(x, gamma), rtol=0, atol=0)
    assert 0 < int((gamma == 1).sum()) < B


def test_a_user_op_is_replayed_on_another_batch_and_seeded():
    pipe = A.Pipeline(A.HorizontalFlip(), Gamma(0.8, p=0.7), seed=3)
    pipe(images(seed=1))
    params = pipe.last_params
    other = images(seed=2)
    replayed = pipe(other, params=params)
    flip, gamma = params[0]["flip"], params[1]["gamma"]
    flipped = torch.where(flip.view(-1, 1, 1, 1), other.flip(-1), other)
    torch.testing.assert_close(replayed, gamma_by_hand(flipped, gamma), rtol=0, atol=1e-6)
    again = A.Pipeline(A.HorizontalFlip(), Gamma(0.8, p=0.7), seed=3)(images(seed=1))
    torch.testing.assert_close(again, A.Pipeline(A.HorizontalFlip(), Gamma(0.8, p=0.7), seed=3)(images(seed=1)))
    assert not torch.equal(again, A.Pipeline(A.HorizontalFlip(), Gamma(0.8, p=0.7), seed=4)(images(seed=1)))
    first = pipe.manual_seed(9)(images(seed=1))
    torch.testing.assert_close(pipe.manual_seed(9)(images(seed=1)), first, rtol=0, atol=0)


def test_p_through_skip_leaves_the_other_samples_alone():
    B, p = 4000, 0.3
    x = images(B, 1, 2, 2)
    pipe = A.Pipeline(Gamma(0.5, p=p), seed=0)
    out = pipe(x)
    gamma = pipe.last_params[0]["gamma"]
    applied = gamma != 1
    assert abs(applied.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / B)
    torch.testing.assert_close(out[~applied], x[~applied], rtol=0, atol=0)
    torch.testing.assert_close(out, gamma_by_hand(x, gamma), rtol=0, atol=0)


def test_random_apply_rewrites_the_params_of_an_op_with_skip():
    x = images(400, 1, 3, 3)
    pipe = A.Pipeline(A.RandomApply(Gamma(0.5), p=0.5), seed=1)
    out = pipe(x)
    params = pipe.last_params[0]
    gamma, keep = params["node"]["gamma"], params["keep"]
    assert torch.equal(gamma == 1, ~keep) and 100 < int(keep.sum()) < 300
    torch.testing.assert_close(out, gamma_by_hand(x, gamma), rtol=0, atol=0)


def test_random_apply_and_one_of_run_an_op_without_skip_and_select_per_sample():
    x = images(300, 2, 4, 5)
    pipe = A.Pipeline(A.RandomApply(Noise(), p=0.5), seed=2)
    out = pipe(x)
    keep, noise = pipe.last_params[0]["keep"], pipe.last_params[0]["node"]
    noisy = (x + noise["sigma"].view(-1, 1, 1, 1) * noise["noise"]).clamp(0, 1)
    torch.testing.assert_close(out, torch.where(keep.view(-1, 1, 1, 1), noisy, x), rtol=0, atol=1e-6)
    assert 0 < int(keep.sum()) < 300

    pipe = A.Pipeline(A.OneOf(Gamma(0.5), Noise(), weights=(1, 3)), seed=4)
    out = pipe(x)
    choice, (g, n) = pipe.last_params[0]["choice"], pipe.last_params[0]["branches"]
    for i in range(x.shape[0]):
        if choice[i] == 0:
            expected = x[i] ** g["gamma"][i]
        else:
            expected = (x[i] + n["sigma"][i] * n["noise"][i]).clamp(0, 1)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)
    assert 150 < int((choice == 1).sum()) < 300


def test_normal_draws_are_standard_normal_and_bernoulli_draws_follow_p():
    z = draws.normal((100_000,), torch.Generator().manual_seed(0), "cpu", torch.float64)
    assert scipy.stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert z.abs().max() > 4  # float64 uniforms reach the tails
    pipe = A.Pipeline(Noise(), seed=0)  # planned: the same values as a plain generator's, in the plan's order
    x = torch.zeros(50, 1, 20, 20)
    pipe(x)
    noise = pipe.last_params[0]["noise"].flatten()
    assert scipy.stats.kstest(noise.numpy(), "norm").pvalue > 1e-3
    hits = draws.bernoulli(0.2, 100_000, torch.Generator().manual_seed(1), "cpu")
    assert hits.dtype == torch.bool and abs(hits.float().mean().item() - 0.2) < 0.005


def test_an_op_that_calls_torch_random_functions_is_told_to_use_draws():
    class Direct(A.Op):
        def sample(self, shape, generator, device):
            return {"u": torch.rand(shape.batch, generator=generator, device=device)}

        def apply(self, state, params):
            return state

    op = Direct()
    assert op.sample(A.Shape(3, 1, 2, 2), torch.Generator(), "cpu")["u"].shape == (3,)  # a plain generator works
    with pytest.raises(TypeError, match=r"Direct\(\): sample\(\) handed its generator .*augpipe\.draws"):
        A.Pipeline(A.HorizontalFlip(), A.OneOf(op, Gamma()), seed=0)(images())


def test_a_subclass_that_redefines_apply_is_called_as_written_and_never_handed_a_batch_to_overwrite():
    class HalfBrightness(A.Brightness):
        def apply(self, state, params):
            return {**state, "images": state["images"] * (params["factor"].view(-1, 1, 1, 1) / 2)}

    assert fuse._own_apply(A.Brightness()) and not fuse._own_apply(HalfBrightness()) and not fuse._own_apply(Gamma())
    x = images()
    pipe = A.Pipeline(A.HorizontalFlip(p=0.0), HalfBrightness(0.4), seed=0)
    out = pipe(x)
    torch.testing.assert_close(out, x * pipe.last_params[1]["factor"].view(-1, 1, 1, 1) / 2)


class Window(A.Op):
    """Returns a view of its input: an op of the user's may, so the ops after it must not write into it."""

    def sample(self, shape, generator, device):
        return {}

    def apply(self, state, params):
        return {**state, "images": state["images"][:, :, :, :]}


@pytest.mark.parametrize("first", [Window(), A.Lambda(lambda x: x[..., :])], ids=["op", "lambda"])
def test_ops_after_a_user_op_never_write_into_the_callers_tensor(first):
    x = images()
    kept = x.clone()
    pipe = A.Pipeline(first, A.Brightness(0.5), A.Contrast(0.5), A.Normalize((0.5,) * 3, (0.2,) * 3), seed=0)
    out = pipe(x)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
    b, c = (pipe.last_params[k]["factor"].view(-1, 1, 1, 1) for k in (1, 2))
    y = (kept * b).clamp(0, 1)
    mean = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]).mean((1, 2)).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, ((c * y + (1 - c) * mean).clamp(0, 1) - 0.5) / 0.2)


# ------------------------------------------------------------------------------------------------ geometric
def zoom_by_grid_sample(x, scale):
    """torch's bilinear grid_sample, zeros outside: output pixel centre p reads c + (p - c) / s."""
    B, C, H, W = x.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    s = scale.double().view(-1, 1, 1)
    sx, sy = W / 2 + (xs - W / 2) / s, H / 2 + (ys - H / 2) / s  # (B, H, W) input pixel coordinates
    grid = torch.stack((2 * sx / W - 1, 2 * sy / H - 1), -1).to(x.dtype)
    return TF.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@pytest.mark.parametrize("op", [Zoom(), SkewedZoom()], ids=["axis_aligned", "affine"])
def test_a_user_geometric_op_resamples_as_grid_sample_and_moves_points(op):
    x = images(8, 3, 12, 16, seed=5)
    keypoints = torch.tensor([[[8.0, 6.0], [2.0, 3.0], [15.0, 11.0]]]).expand(8, 3, 2).clone()
    pipe = A.Pipeline(op, seed=6)
    out = pipe(x, keypoints=keypoints)
    scale = pipe.last_params[0]["scale"]
    assert scale.min() < 1 < scale.max()  # zoomed out (reads outside, fill 0) and in
    torch.testing.assert_close(out["images"], zoom_by_grid_sample(x, scale), rtol=0, atol=2e-6)
    c = torch.tensor([8.0, 6.0])
    moved = c + scale.view(-1, 1, 1) * (keypoints - c)  # the forward map: p -> c + s (p - c)
    inside = ((moved >= 0) & (moved <= torch.tensor([16.0, 12.0]))).all(-1, keepdim=True)
    expected = torch.where(inside, moved, float("nan"))
    torch.testing.assert_close(out["keypoints"], expected, equal_nan=True, rtol=0, atol=1e-5)


def test_a_user_geometric_op_fuses_with_flips_and_skips_under_random_apply():
    x = images(200, 1, 9, 9, seed=7)
    pipe = A.Pipeline(A.HorizontalFlip(), A.RandomApply(Zoom(), p=0.5), seed=8)
    out = pipe(x)
    flip, (keep, scale) = pipe.last_params[0]["flip"], (pipe.last_params[1]["keep"], pipe.last_params[1]["node"])
    scale = scale["scale"]
    assert torch.equal(scale == 1, ~keep)
    flipped = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    torch.testing.assert_close(out, zoom_by_grid_sample(flipped, scale), rtol=0, atol=2e-6)


def test_the_documented_examples_run():
    for cls in (A.Op, A.GeometricOp, A.Lambda):
        code = textwrap.dedent(cls.__doc__.split("::\n", 1)[1])
        namespace = {"augpipe": A}
        exec(code, namespace)
        pipe = namespace["pipe"]
        out = pipe(images(4, 3, 32, 32))
        assert out.shape == (4, 3, 32, 32) and bool(torch.isfinite(out).all())


# ------------------------------------------------------------------------------------------------ Lambda
def swap_and_shade(x):
    """A deterministic function: channels reversed, each column darker to the right."""
    return x.flip(1) * torch.linspace(1, 0.5, x.shape[-1], dtype=x.dtype)


def test_lambda_applies_fn_between_the_steps_as_by_hand():
    x = images(dtype=torch.float64)
    pipe = A.Pipeline(A.HorizontalFlip(), A.Lambda(swap_and_shade), A.Brightness(0.5), seed=0)
    out = pipe(x)
    flip, factor = pipe.last_params[0]["flip"], pipe.last_params[2]["factor"]
    flipped = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    expected = (swap_and_shade(flipped) * factor.view(-1, 1, 1, 1)).clamp(0, 1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert pipe.last_params[1] == {}


def test_lambda_with_an_output_size_and_under_random_apply():
    x = (images(100, 3, 8, 8) * 255).to(torch.uint8)
    pool = A.Lambda(lambda t: TF.avg_pool2d(t, 2), output_size=4)
    out = A.Pipeline(pool, seed=0)(x)
    torch.testing.assert_close(out, TF.avg_pool2d(x.float() / 255, 2), rtol=0, atol=0)
    pipe = A.Pipeline(A.RandomApply(A.Lambda(swap_and_shade), p=0.5), seed=1)
    out = pipe(x)
    keep = pipe.last_params[0]["keep"].view(-1, 1, 1, 1)
    torch.testing.assert_close(out, torch.where(keep, swap_and_shade(x.float() / 255), x.float() / 255))
    assert 0 < int(keep.sum()) < 100


def test_lambda_with_kornia_matches_kornia_called_on_the_crop():
    x = images(5, 3, 20, 20, seed=3)
    blur = A.Lambda(lambda t: kornia.filters.gaussian_blur2d(t, (5, 5), (1.5, 1.5)))
    pipe = A.Pipeline(A.RandomCrop(16), blur, seed=2)
    out = pipe(x)
    top, left = pipe.last_params[0]["top"], pipe.last_params[0]["left"]
    crops = torch.stack([x[i, :, int(top[i]):int(top[i]) + 16, int(left[i]):int(left[i]) + 16] for i in range(5)])
    torch.testing.assert_close(out, kornia.filters.gaussian_blur2d(crops, (5, 5), (1.5, 1.5)), rtol=0, atol=0)


def test_lambda_refuses_targets_it_cannot_move_and_bad_results():
    x = images()
    pipe = A.Pipeline(A.Lambda(swap_and_shade), seed=0)
    with pytest.raises(ValueError, match="Lambda.*cannot carry masks"):
        pipe(x, masks=torch.zeros(6, 10, 12, dtype=torch.long))
    with pytest.raises(ValueError, match=r"fn must return torch.float32 images of shape \(6, 3, 5, 6\)"):
        A.Pipeline(A.Lambda(lambda t: t, output_size=(5, 6)))(x)
    with pytest.raises(ValueError, match="got torch.float64"):
        A.Pipeline(A.Lambda(lambda t: t.double()))(x)
    with pytest.raises(TypeError, match="fn must return a tensor, got tuple"):
        A.Pipeline(A.Lambda(lambda t: (t,)))(x)
    with pytest.raises(TypeError, match="Lambda: fn must be callable"):
        A.Lambda(3)
    labels = torch.arange(6)
    out, targets = A.Pipeline(A.Lambda(swap_and_shade), num_classes=6)(x, labels)
    torch.testing.assert_close(targets, torch.eye(6))


def breaks_the_graph(x):
    """A function torch.compile cannot trace in one graph."""
    torch._dynamo.graph_break()
    return 1 - x


@pytest.mark.graph_breaks  # breaks_the_graph, on purpose: the rest still compiles
def test_user_ops_and_lambdas_compiled_equal_eager():
    nodes = lambda: (Zoom(0.8, 1.2), A.HorizontalFlip(), Gamma(0.5, p=0.7), A.RandomApply(Noise(0.1), p=0.5),
                     A.Lambda(lambda t: kornia.filters.gaussian_blur2d(t, (3, 3), (1.0, 1.0))),
                     A.OneOf(A.Lambda(breaks_the_graph), Gamma(0.3)), A.Brightness(0.3), A.CutMix(per_batch=True))
    x = (images(6, 3, 16, 16, seed=9) * 255).to(torch.uint8)
    labels = torch.arange(6) % 3
    eager = A.Pipeline(*nodes(), seed=5, num_classes=3)
    compiled = A.Pipeline(*nodes(), seed=5, num_classes=3, compile=True)
    for _ in range(2):  # the second call runs the compiled graph as it stands
        want, got = eager(x, labels), compiled(x, labels)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-6)
        torch.testing.assert_close(compiled.last_params, eager.last_params, rtol=1e-6, atol=1e-7)
    choice = eager.last_params[5]["choice"]
    assert 0 < int(choice.sum()) < 6  # both branches ran, the graph-breaking one among them
