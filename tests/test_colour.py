"""Colour ops against independent references, per sample, on real photographs (docs/references.md, "Colour").

References: PIL (ImageEnhance.Color, convert("L")), which works in 8 bits, so the bounds below are its rounding;
kornia.enhance and kornia.color in float; colorsys in float64, one pixel at a time; numpy for AlexNet's lighting
formula; and brute-force loops over samples for ColorJitter's order. PIL's HSV conversion stores hue in 8 bits,
which moves a saturated pixel by several levels after a rotation, so hue is checked against colorsys and kornia.
"""
import colorsys
import functools
import itertools
import math

import kornia
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance
from scipy import stats

import augpipe as A
from augpipe import functional as F
from augpipe.colour import IMAGENET_EIGVAL, IMAGENET_EIGVEC
from augpipe.ops import Shape

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
H, W = 40, 56


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def pil_photos() -> tuple:
    from skimage import data
    return tuple(Image.fromarray(f()).resize((W, H), Image.BILINEAR)
                 for f in (data.astronaut, data.chelsea, data.coffee))


def photos() -> torch.Tensor:
    """Astronaut, cat and coffee, 40 x 56, as a (3, 3, H, W) float batch in [0, 1] (multiples of 1/255)."""
    return torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pil_photos()]) / 255


def levels(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) in 8-bit levels, as float64, to compare with PIL's arrays."""
    return image.permute(1, 2, 0).double().numpy() * 255


# ------------------------------------------------------------------------------------------------ saturation
def test_saturation_matches_pil_color_enhance_within_its_rounding():
    """PIL blends with the luma rounded to a level, then truncates the result to a level: ours (unrounded) may lie
    0.5 |1 - f| levels off from the first and up to 1 level above the second."""
    x, factors = photos(), torch.tensor([0.0, 0.6, 1.9])
    out = F.saturation(x, factors)
    for b, im in enumerate(pil_photos()):
        f = float(factors[b])
        pil = np.asarray(ImageEnhance.Color(im).enhance(f)).astype(np.float64)
        diff = levels(out[b]) - pil
        assert diff.min() >= -(0.5 * abs(1 - f) + 1e-3)
        assert diff.max() <= 1 + 0.5 * abs(1 - f) + 1e-3
        assert np.abs(diff).mean() < 0.75  # truncation: about half a level on average


def test_saturation_matches_kornia_per_sample():
    x, factors = photos(), torch.tensor([0.3, 1.0, 2.5])
    want = kornia.enhance.adjust_saturation_with_gray_subtraction(x, factors)
    torch.testing.assert_close(F.saturation(x, factors), want, rtol=0, atol=1e-6)


def test_saturation_op_draws_the_colorjitter_range_per_sample():
    pipe = A.Pipeline(A.Saturation(0.4), seed=3)
    x = photos().repeat(4, 1, 1, 1)
    out = pipe(x)
    f = pipe.last_params[0]["factor"]
    assert f.min() >= 0.6 and f.max() <= 1.4 and len(set(f.tolist())) == 12
    for b in range(12):
        torch.testing.assert_close(out[b:b + 1], kornia.enhance.adjust_saturation_with_gray_subtraction(
            x[b:b + 1], f[b:b + 1]), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ grayscale
def test_grayscale_matches_pil_convert_l_within_half_a_level():
    gray = F.grayscale(photos())
    for b, im in enumerate(pil_photos()):
        pil = np.asarray(im.convert("L")).astype(np.float64)
        assert np.abs(gray[b, 0].double().numpy() * 255 - pil).max() <= 0.5 + 1e-3  # PIL rounds to a level


def test_grayscale_matches_kornia_and_repeats_into_three_channels():
    x = photos()
    one = A.Pipeline(A.Grayscale())(x)
    three = A.Pipeline(A.Grayscale(num_output_channels=3))(x)
    assert one.shape == (3, 1, H, W) and three.shape == (3, 3, H, W)
    torch.testing.assert_close(one, kornia.color.rgb_to_grayscale(x), rtol=0, atol=1e-6)
    assert torch.equal(three, one.expand(-1, 3, -1, -1))
    assert three.is_contiguous()  # a later step may write into it


def test_random_grayscale_grays_a_fraction_p_and_leaves_the_rest_exactly():
    x = photos().repeat(200, 1, 1, 1)  # 600 samples
    pipe = A.Pipeline(A.RandomGrayscale(p=0.3), seed=1)
    out = pipe(x)
    gray = pipe.last_params[0]["gray"]
    n = int(gray.sum())
    assert abs(n - 180) < 4 * math.sqrt(600 * 0.3 * 0.7)  # binomial(600, 0.3): 4 standard deviations
    assert torch.equal(out[gray], F.grayscale(x[gray], 3))
    assert torch.equal(out[~gray], x[~gray])


# ------------------------------------------------------------------------------------------------ hue
def hue_by_colorsys(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each pixel through colorsys in float64: to HSV, hue + shift modulo one turn, back to RGB."""
    out = torch.empty(x.shape, dtype=torch.float64)
    for b in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].double().tolist())
                out[b, :, i, j] = torch.tensor(colorsys.hsv_to_rgb((h + float(shifts[b])) % 1.0, s, v))
    return out


def test_hue_matches_a_colorsys_loop_per_pixel():
    x, shifts = photos(), torch.tensor([-0.5, -0.13, 0.27])
    torch.testing.assert_close(F.hue(x, shifts).double(), hue_by_colorsys(x, shifts), rtol=0, atol=2e-6)


def test_hue_matches_kornia_which_takes_radians():
    x, shifts = photos(), torch.tensor([0.5, 0.05, -0.31])
    want = kornia.enhance.adjust_hue(x, 2 * math.pi * shifts)
    torch.testing.assert_close(F.hue(x, shifts), want, rtol=0, atol=2e-6)


def test_hue_keeps_gray_pixels_value_and_chroma():
    x = photos()
    out = F.hue(x, torch.tensor([0.2, -0.4, 0.45]))
    torch.testing.assert_close(out.amax(1), x.amax(1), rtol=0, atol=1e-6)  # HSV value
    torch.testing.assert_close(out.amax(1) - out.amin(1), x.amax(1) - x.amin(1), rtol=0, atol=2e-6)  # chroma
    gray = torch.rand(2, 1, 5, 5, generator=gen()).expand(-1, 3, -1, -1)
    assert torch.equal(F.hue(gray, torch.tensor([0.3, -0.5])), gray)


def test_hue_op_draws_shifts_in_range_and_p_leaves_samples_alone():
    shape = Shape(4000, 3, 2, 2)
    shift = A.Hue(0.2).sample(shape, gen(), "cpu")["shift"]
    assert shift.min() >= -0.2 and shift.max() <= 0.2 and shift.min() < -0.19 and shift.max() > 0.19
    shift = A.Hue((0.1, 0.3), p=0.5).sample(shape, gen(), "cpu")["shift"]
    kept = shift != 0
    assert shift[kept].min() >= 0.1 and shift[kept].max() <= 0.3
    assert abs(int(kept.sum()) - 2000) < 4 * math.sqrt(4000 * 0.25)


# ------------------------------------------------------------------------------------------------ ColorJitter
KERNELS = (F.brightness, F.contrast, F.saturation, F.hue)


def jitter_by_loop(x: torch.Tensor, params: dict) -> torch.Tensor:
    """Each sample alone, its four kernels called in its recorded order with its own factors."""
    out = []
    for b in range(x.shape[0]):
        y = x[b:b + 1]
        for j in params["order"][b].tolist():
            y = KERNELS[j](y, params[A.colour.JITTER_OPS[j]][b:b + 1])
        out.append(y)
    return torch.cat(out)


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4, 0.1), (0.8, 0.0, 0.5, 0.0), (0.0, 0.0, 0.0, 0.5),
                                       ((0.2, 1.8), (0.5, 0.5), 0.0, (-0.3, -0.1))])
def test_color_jitter_equals_the_four_kernels_in_the_recorded_order(strengths):
    x = photos().repeat(6, 1, 1, 1)
    pipe = A.Pipeline(A.ColorJitter(*strengths), seed=7)
    out = pipe(x)
    params = pipe.last_params[0]
    torch.testing.assert_close(out, jitter_by_loop(x, params), rtol=0, atol=1e-6)
    for name, strength, neutral in zip(A.colour.JITTER_OPS, strengths, (1.0, 1.0, 1.0, 0.0)):
        if strength == 0:  # absent: neutral for every sample
            assert bool((params[name] == neutral).all())
        elif strength == (0.5, 0.5):
            assert bool((params[name] == 0.5).all())
        else:
            assert len(set(params[name].tolist())) == 18  # drawn per sample


def test_color_jitter_orders_are_uniform_over_the_24_permutations():
    order = A.ColorJitter(0.4, 0.4, 0.4, 0.1).sample(Shape(24000, 3, 2, 2), gen(11), "cpu")["order"]
    assert torch.equal(order.sort(1).values, torch.arange(4).expand(24000, 4))  # every row a permutation
    index = {p: k for k, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(row)] for row in order.tolist()], minlength=24)
    assert stats.chisquare(counts).pvalue > 1e-3  # with this seed; a fixed order or a bias fails by far


def test_color_jitter_replays_and_applies_the_colorjitter_ranges():
    pipe = A.Pipeline(A.ColorJitter(brightness=0.5, contrast=(0.2, 0.3), saturation=1.5, hue=0.25), seed=2)
    x = photos().repeat(100, 1, 1, 1)
    out = pipe(x)
    p = pipe.last_params[0]
    assert p["brightness"].min() >= 0.5 and p["brightness"].max() <= 1.5
    assert p["contrast"].min() >= 0.2 and p["contrast"].max() <= 0.3
    assert p["saturation"].min() >= 0.0 and p["saturation"].max() <= 2.5
    assert p["hue"].abs().max() <= 0.25
    assert torch.equal(pipe(x, params=pipe.last_params), out)


def test_random_apply_on_color_jitter_skips_by_its_params():
    x = photos().repeat(10, 1, 1, 1)
    pipe = A.Pipeline(A.RandomApply(A.ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.5), seed=4)
    out = pipe(x)
    keep, params = pipe.last_params[0]["keep"], pipe.last_params[0]["node"]
    assert 0 < int(keep.sum()) < 30
    for name, neutral in zip(A.colour.JITTER_OPS, (1.0, 1.0, 1.0, 0.0)):  # skip wrote the neutral values
        assert bool((params[name][~keep] == neutral).all()) and bool((params[name][keep] != neutral).all())
    assert torch.equal(out[~keep], x[~keep])  # a skipped sample comes out exactly as it went in
    assert (out[keep] != x[keep]).flatten(1).any(1).all()


def test_color_jitter_compiled_equals_eager():
    """One compile for the colour ops: ColorJitter (all four kernels), then lighting and grayscale."""
    x = (photos().repeat(3, 1, 1, 1) * 255).round().to(torch.uint8)
    ops = lambda: (A.HorizontalFlip(), A.ColorJitter(0.4, 0.4, 0.4, 0.1), A.PCALighting(),  # noqa: E731
                   A.RandomGrayscale(0.3))
    eager, compiled = A.Pipeline(*ops(), seed=5), A.Pipeline(*ops(), seed=5, compile=True)
    for _ in range(2):
        want, got = eager(x), compiled(x)
        torch.testing.assert_close(compiled.last_params, eager.last_params, rtol=0, atol=0)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ PCA lighting
def test_imagenet_components_are_columns_led_by_brightness():
    """fb.resnet.torch's convention: column j is component j. The first, with the largest eigenvalue, is (almost)
    the gray axis; read as rows it would not be."""
    vec, val = np.array(IMAGENET_EIGVEC), np.array(IMAGENET_EIGVAL)
    np.testing.assert_allclose(vec.T @ vec, np.eye(3), atol=1e-3)  # orthonormal, to the 4 digits published
    assert (np.diff(val) < 0).all()
    gray = np.ones(3) / math.sqrt(3)
    assert abs(vec[:, 0] @ gray) > 0.999 and abs(vec[0] @ gray) < 0.5


def test_pca_lighting_equals_the_formula_in_numpy_per_sample():
    x = photos().repeat(4, 1, 1, 1)
    pipe = A.Pipeline(A.PCALighting(std=0.3), seed=8)
    out = pipe(x)
    alpha = pipe.last_params[0]["alpha"].double().numpy()
    vec, val = np.array(IMAGENET_EIGVEC), np.array(IMAGENET_EIGVAL)
    for b in range(12):
        shift = sum(alpha[b, j] * val[j] * vec[:, j] for j in range(3))  # sum_j alpha_j lambda_j p_j
        want = np.clip(x[b].double().numpy() + shift[:, None, None], 0, 1)
        np.testing.assert_allclose(out[b].double().numpy(), want, rtol=0, atol=1e-6)


def test_pca_lighting_alpha_is_normal_with_std_and_takes_other_components():
    alpha = A.PCALighting(std=0.1).sample(Shape(20000, 3, 2, 2), gen(6), "cpu")["alpha"]
    assert alpha.shape == (20000, 3)
    assert abs(float(alpha.mean())) < 0.003 and abs(float(alpha.std()) - 0.1) < 0.003
    assert stats.kstest(alpha[:, 0].double().numpy() / 0.1, "norm").pvalue > 1e-3
    x = torch.full((2, 3, 3, 3), 0.5)
    own = A.Pipeline(A.PCALighting(std=1.0, eigval=(0.1, 0.0, 0.0), eigvec=np.eye(3).tolist()), seed=0)
    out = own(x)
    a = own.last_params[0]["alpha"]
    torch.testing.assert_close(out[:, 0, 0, 0], (0.5 + 0.1 * a[:, 0]).clamp(0, 1), rtol=0, atol=1e-7)
    assert torch.equal(out[:, 1:], x[:, 1:])


# ------------------------------------------------------------------------------------------------ properties
NEUTRAL = {
    "saturation": lambda x: F.saturation(x, torch.ones(x.shape[0])),
    "hue": lambda x: F.hue(x, torch.zeros(x.shape[0])),
    "pca": lambda x: F.pca_lighting(x, torch.zeros(x.shape[0], 3), torch.tensor(IMAGENET_EIGVAL),
                                    torch.tensor(IMAGENET_EIGVEC)),
    "jitter": lambda x: F.color_jitter(x, torch.arange(4).roll(1).expand(x.shape[0], 4), torch.ones(x.shape[0]),
                                       torch.ones(x.shape[0]), torch.ones(x.shape[0]), torch.zeros(x.shape[0])),
}
OPS = {
    "saturation": lambda: A.Saturation(0.9, p=0.7),
    "hue": lambda: A.Hue(0.5, p=0.7),
    "jitter": lambda: A.ColorJitter(0.5, 0.5, 0.5, 0.3),
    "jitter_no_contrast": lambda: A.ColorJitter(brightness=0.5, hue=0.2),
    "gray1": lambda: A.Grayscale(),
    "gray3": lambda: A.Grayscale(3),
    "random_gray": lambda: A.RandomGrayscale(0.5),
    "pca": lambda: A.PCALighting(0.5, p=0.7),
}
SKIPPABLE = ("saturation", "hue", "jitter", "jitter_no_contrast", "random_gray", "pca")


def images(batch, h, w, seed, dtype=torch.float32):
    x = torch.rand(batch, 3, h, w, generator=gen(seed), dtype=dtype)
    x[:, :, 0, 0] = 0.5  # a gray pixel and a saturated one in every image
    x[:, :, -1, -1] = torch.tensor([1.0, 0.0, 0.25], dtype=dtype)
    return x


@FAST
@given(name=st.sampled_from(sorted(NEUTRAL)), batch=st.integers(1, 5), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16), double=st.booleans())
def test_neutral_magnitudes_give_the_input_bit_for_bit(name, batch, h, w, seed, double):
    x = images(batch, h, w, seed, torch.float64 if double else torch.float32)
    before = x.clone()
    out = NEUTRAL[name](x)
    assert out.dtype == x.dtype and torch.equal(out, x)
    assert torch.equal(x, before)


@FAST
@given(name=st.sampled_from(SKIPPABLE), batch=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_skipped_ops_leave_every_sample_exactly(name, batch, seed):
    x = images(batch, 4, 5, seed)
    assert torch.equal(A.Pipeline(A.RandomApply(OPS[name](), p=0.0), seed=seed)(x), x)


@FAST
@given(name=st.sampled_from(sorted(OPS)), batch=st.integers(1, 5), h=st.integers(1, 9), w=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16), double=st.booleans())
def test_outputs_in_range_replayable_per_sample_and_the_input_untouched(name, batch, h, w, seed, double):
    x = images(batch, h, w, seed, torch.float64 if double else torch.float32)
    before = x.clone()
    pipe = A.Pipeline(OPS[name](), seed=seed)
    out = pipe(x)
    assert torch.equal(x, before)
    assert out.dtype == x.dtype and out.shape[0] == batch and out.shape[-2:] == (h, w)
    assert out.min() >= 0 and out.max() <= 1
    params = pipe.last_params
    assert torch.equal(pipe(x, params=params), out)
    for b in range(batch):  # each sample alone, with its own params, as it came out of the batch
        alone = [{k: v[b:b + 1] for k, v in params[0].items()}]
        torch.testing.assert_close(pipe(x[b:b + 1], params=alone), out[b:b + 1], rtol=0, atol=1e-6)


@FAST
@given(seed=st.integers(0, 2 ** 16), uint8=st.booleans())
def test_pointwise_colour_ops_before_a_crop_equal_the_op_by_op_path(seed, uint8):
    """Pointwise ops may be moved behind whole-pixel reads (``fuse.hoist``): the result must not change."""
    from augpipe import fuse
    x = images(4, 9, 11, seed)
    if uint8:
        x = (x * 255).round().to(torch.uint8)
    pipe = A.Pipeline(A.Saturation(0.5), A.Hue(0.3), A.RandomGrayscale(0.5), A.PCALighting(), A.HorizontalFlip(),
                      A.RandomCrop(7, padding=2), seed=seed)
    out = pipe(x)
    alone = fuse.run(list(zip(pipe.nodes, pipe.last_params)), {"images": x, "targets": None}, torch.float32,
                     fuse=False)["images"]
    torch.testing.assert_close(out, alone, rtol=0, atol=1e-6)


def test_grayscale_to_one_channel_feeds_channel_blind_ops():
    out = A.Pipeline(A.Grayscale(), A.HorizontalFlip(), A.Brightness(0.3), seed=0)(photos())
    assert out.shape == (3, 1, H, W)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make", [lambda: A.Hue(0.6), lambda: A.Hue(-0.1), lambda: A.Hue((-0.7, 0.1)),
                                  lambda: A.Hue((0.3, 0.1)), lambda: A.Hue(float("nan")),
                                  lambda: A.ColorJitter(hue=0.51), lambda: A.ColorJitter(saturation=-1),
                                  lambda: A.Saturation(-0.5), lambda: A.Grayscale(2), lambda: A.RandomGrayscale(1.5),
                                  lambda: A.PCALighting(-0.1), lambda: A.PCALighting(eigval=(1.0, 2.0)),
                                  lambda: A.PCALighting(eigvec=[[1.0, 0.0, 0.0]])])
def test_bad_values_are_value_errors(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("make", [lambda: A.Hue("0.1"), lambda: A.Saturation(None), lambda: A.Grayscale(3.0),
                                  lambda: A.ColorJitter(brightness="a"), lambda: A.PCALighting("0.1"),
                                  lambda: A.PCALighting(eigval="abc"), lambda: A.Hue((0.1, "x"))])
def test_bad_types_are_type_errors(make):
    with pytest.raises(TypeError):
        make()


def test_hue_error_names_the_range():
    with pytest.raises(ValueError, match=r"Hue.*\[-0.5, 0.5\]"):
        A.Hue((-0.6, 0.2))


@pytest.mark.parametrize("op", [A.Saturation(0.2), A.Hue(0.1), A.ColorJitter(0.1, 0.1, 0.1, 0.1), A.Grayscale(),
                                A.RandomGrayscale(), A.PCALighting()], ids=lambda op: type(op).__name__)
@pytest.mark.parametrize("channels", [1, 4])
def test_colour_ops_refuse_images_without_three_channels(op, channels):
    x = torch.rand(2, channels, 5, 5)
    with pytest.raises(ValueError, match=rf"{type(op).__name__}.*3 channels, got {channels}"):
        A.Pipeline(op)(x)


def test_brightness_only_jitter_takes_any_channels_and_contrast_one():
    gray = torch.rand(2, 1, 5, 5)
    assert A.Pipeline(A.ColorJitter(brightness=0.3, contrast=0.3))(gray).shape == gray.shape
    assert A.Pipeline(A.ColorJitter(brightness=0.3))(torch.rand(2, 4, 5, 5)).shape == (2, 4, 5, 5)
    with pytest.raises(ValueError, match="contrast needs 1 or 3 channels"):
        A.Pipeline(A.ColorJitter(brightness=0.3, contrast=0.3))(torch.rand(2, 4, 5, 5))


def test_gradients_flow_to_images_that_require_them():
    """With the params fixed, each op is a piecewise smooth function of the pixels: autograd agrees with finite
    differences (float64 images, away from the clamps and the hue sectors' edges)."""
    x = torch.rand(3, 3, 6, 7, dtype=torch.float64, generator=gen(7)) * 0.6 + 0.2
    pipe = A.Pipeline(A.Saturation(0.3), A.Hue(0.2), A.PCALighting(), A.ColorJitter(0.2, 0.2, 0.2, 0.1),
                      A.RandomGrayscale(0.5), seed=1)
    pipe(x)
    params = pipe.last_params
    assert torch.autograd.gradcheck(lambda images: pipe(images, params=params), (x.clone().requires_grad_(),))


def test_kernels_name_themselves_on_images_without_three_channels():
    """Grayscale(1) makes 1-channel images, which a colour op after it cannot take."""
    for kernel in (lambda x: F.saturation(x, torch.ones(2)), lambda x: F.hue(x, torch.zeros(2)), F.grayscale,
                   lambda x: F.pca_lighting(x, torch.zeros(2, 3), torch.ones(3), torch.eye(3))):
        with pytest.raises(ValueError, match=r"expected RGB images \(B, 3, H, W\), got shape \(2, 1, 4, 4\)"):
            kernel(torch.rand(2, 1, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_colour_ops_make_no_host_sync_and_give_the_cpu_images():
    pipe = A.Pipeline(A.HorizontalFlip(), A.ColorJitter(0.4, 0.4, 0.4, 0.1), A.RandomApply(A.Hue(0.2), p=0.5),
                      A.Saturation(0.3, p=0.5), A.RandomGrayscale(0.3), A.PCALighting(p=0.5), seed=0)
    x = (photos().repeat(4, 1, 1, 1) * 255).round().to(torch.uint8).cuda()
    pipe(x)  # the first call creates the generator and moves the constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = pipe(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu_params = [{k: v.cpu() if isinstance(v, torch.Tensor) else {n: t.cpu() for n, t in v.items()}
                   for k, v in p.items()} for p in pipe.last_params]
    reference = pipe(x.cpu(), params=cpu_params)  # the same pipeline, its constants moved back to the CPU
    torch.testing.assert_close(out.cpu(), reference, rtol=0, atol=1e-5)
