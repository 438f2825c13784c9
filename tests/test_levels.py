"""The 8-bit level ops (augpipe.levels, the kernels at the end of augpipe.functional) against PIL's ImageOps and
ImageEnhance on photographs, per sample, against loops written from torchvision's definitions where PIL has no
counterpart (any channel count), and as properties: neutral parameters, range, replay, batch independence."""
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageEnhance, ImageOps
from skimage import data, transform

import augpipe as A
from augpipe import functional as F
from augpipe.ops import Shape

SIZE = (40, 56)  # small photographs: every pixel of each is compared


def _small(image: np.ndarray, size=SIZE) -> torch.Tensor:
    """A photograph resized to ``size`` as uint8 (C, H, W)."""
    resized = transform.resize(image, size, anti_aliasing=True, preserve_range=True)
    array = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1).contiguous()


@functools.cache
def colour_photos() -> torch.Tensor:
    """astronaut, chelsea and coffee: uint8 (3, 3, H, W)."""
    return torch.stack([_small(image()) for image in (data.astronaut, data.chelsea, data.coffee)])


@functools.cache
def gray_photos() -> torch.Tensor:
    """The camera man whole and two crops of it (other histograms): uint8 (3, 1, H, W)."""
    camera = data.camera()
    return torch.stack([_small(camera), _small(camera[:200, 100:380]), _small(camera[300:, 250:])])


def to_pil(image: torch.Tensor) -> Image.Image:
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def from_pil(image: Image.Image) -> torch.Tensor:
    array = np.array(image)  # a writable copy
    return torch.from_numpy(array if array.ndim == 3 else array[..., None]).permute(2, 0, 1)


def levels_of(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255).long()


def differing(ours: torch.Tensor, reference: torch.Tensor) -> int:
    """How many values of float ``ours`` are not the uint8 ``reference``'s level; fails if one is off by more than
    one level."""
    gap = (levels_of(ours) - reference.long()).abs()
    assert gap.max() <= 1, f"{int((gap > 1).sum())} values more than a level off (up to {int(gap.max())})"
    return int((gap > 0).sum())


# Per op: the per-sample magnitudes a batch of three gets, the kernel's parameter from them, and PIL's result for
# one uint8 image and one magnitude (a flag false: the image as it is).
def _pil_flag(fn):
    return lambda image, on: fn(image) if on else image


PIL_CASES = {
    "sharpness": ([0.1, 1.0, 1.9], lambda m: torch.tensor(m),
                  lambda image, f: ImageEnhance.Sharpness(image).enhance(f)),
    "sharpness_blur": ([0.0, 0.5, 3.0], lambda m: torch.tensor(m),
                       lambda image, f: ImageEnhance.Sharpness(image).enhance(f)),
    "posterize": ([1, 4, 7], lambda m: torch.tensor(m), ImageOps.posterize),
    "posterize_8": ([8, 2, 5], lambda m: torch.tensor(m), ImageOps.posterize),
    "solarize": ([64, 128, 200], lambda m: torch.tensor(m) / 255, ImageOps.solarize),
    "solarize_ends": ([0, 255, 256], lambda m: torch.tensor(m) / 255, ImageOps.solarize),
    "equalize": ([True, False, True], lambda m: torch.tensor(m), _pil_flag(ImageOps.equalize)),
    "autocontrast": ([True, True, False], lambda m: torch.tensor(m), _pil_flag(ImageOps.autocontrast)),
    "invert": ([False, True, True], lambda m: torch.tensor(m), _pil_flag(ImageOps.invert)),
}
KERNELS = {"sharpness": F.sharpness, "posterize": F.posterize, "solarize": F.solarize, "equalize": F.equalize,
           "autocontrast": F.autocontrast, "invert": F.invert}


def _kernel(case: str):
    return KERNELS[case.split("_")[0]]


@pytest.mark.parametrize("photos", [colour_photos, gray_photos], ids=["rgb", "gray"])
@pytest.mark.parametrize("case", list(PIL_CASES))
def test_each_sample_is_what_pil_gives_its_uint8_image(case, photos):
    """Each sample with its own magnitude, against PIL on that sample's uint8 image. On these photographs with
    Pillow 13 one value differs, in all these cases together: AutoContrast on chelsea's green channel, levels 15 to
    186, where PIL's floating-point scale sends 186 to 254 and the exact stretch gives 255. The bound is one level,
    on at most one value in 1000."""
    images = photos()
    magnitudes, param, pil = PIL_CASES[case]
    out = _kernel(case)(images.float() / 255, param(magnitudes))
    for b, m in enumerate(magnitudes):
        expected = from_pil(pil(to_pil(images[b]), m))
        assert differing(out[b], expected) <= out[b].numel() // 1000


@pytest.mark.parametrize("case", list(PIL_CASES))
def test_float_images_give_the_uint8_result_within_a_level(case):
    """Float images between levels: the result is PIL's on round(255 x), within one level."""
    images = colour_photos()
    g = torch.Generator().manual_seed(1)
    offset = (torch.rand(images.shape, generator=g) - 0.5) * 0.98  # less than half a level either way
    x = ((images.float() + offset) / 255).clamp(0, 1)
    assert torch.equal(levels_of(x), images.long())
    magnitudes, param, pil = PIL_CASES[case]
    out = _kernel(case)(x, param(magnitudes))
    total = 0
    for b, m in enumerate(magnitudes):
        total += differing(out[b], from_pil(pil(to_pil(images[b]), m)))
    # a pixel the op leaves at its level keeps its own value, which rounds back to that level, so the same values
    # differ as for the uint8 images (on these photographs: the one AutoContrast value above)
    assert total <= out.numel() // 1000


def test_uint8_through_a_pipeline_is_pils_result():
    """The ops' own params (replayed, one magnitude per sample) on uint8 images: x / 255 first, then the kernels."""
    images = colour_photos()
    ops = [A.Sharpness(1.5), A.Posterize(3), A.Solarize(0.5), A.Equalize(), A.AutoContrast(), A.Invert()]
    params = [{"factor": torch.tensor([0.3, 1.0, 1.7])}, {"bits": torch.tensor([3, 8, 6])},
              {"threshold": torch.tensor([0.5, 0.25, float("inf")])}, {"equalize": torch.tensor([True, True, False])},
              {"autocontrast": torch.tensor([False, True, True])}, {"invert": torch.tensor([True, False, True])}]
    pil = [lambda im, f: ImageEnhance.Sharpness(im).enhance(f), ImageOps.posterize,
           lambda im, t: ImageOps.solarize(im, 128 if t == 0.5 else 64 if t == 0.25 else 256),
           _pil_flag(ImageOps.equalize), _pil_flag(ImageOps.autocontrast), _pil_flag(ImageOps.invert)]
    out = A.Pipeline(*ops)(images, params=params)
    assert out.dtype == torch.float32
    for b in range(3):
        expected = to_pil(images[b])
        for p, reference in zip(params, pil):
            expected = reference(expected, next(iter(p.values()))[b].item())
        assert differing(out[b], from_pil(expected)) <= out[b].numel() // 1000


# ------------------------------------------------------------------------------------------ loops, any channels
# torchvision's definitions, written out pixel by pixel on the levels (one channel at a time, as PIL's bands), for
# channel counts PIL's ImageOps refuses (2, 4).
def loop_sharpness(q: np.ndarray, f: float) -> np.ndarray:
    """torchvision adjust_sharpness: the 3 x 3 smoothing [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 rounded to a level,
    out = q + (1 - f) (smooth - q) clamped and truncated; the border kept."""
    out = q.copy()
    for i in range(1, q.shape[0] - 1):
        for j in range(1, q.shape[1] - 1):
            total = sum(int(q[i + di, j + dj]) for di in (-1, 0, 1) for dj in (-1, 0, 1)) + 4 * int(q[i, j])
            smooth = round(total / 13)
            value = float(np.float32(q[i, j]) + np.float32(1 - f) * np.float32(smooth - int(q[i, j])))
            out[i, j] = int(min(max(value, 0), 255))
    return out


def loop_posterize(q: np.ndarray, bits: int) -> np.ndarray:
    mask = 255 - (2 ** (8 - bits) - 1)
    return np.vectorize(lambda v: int(v) & mask)(q)


def loop_solarize(q: np.ndarray, t: float) -> np.ndarray:
    return np.vectorize(lambda v: 255 - int(v) if int(v) >= 255 * t - 1e-3 and t <= 1 else int(v))(q)


def loop_equalize(q: np.ndarray, on: bool) -> np.ndarray:
    """torchvision equalize (PIL's LUT): step from the pixels below the highest level, levels mapped by the counts
    below them; a step of 0 leaves the channel."""
    counts = [0] * 256
    for v in q.flat:
        counts[int(v)] += 1
    step = (q.size - counts[int(q.max())]) // 255
    if not on or step == 0:
        return q.copy()
    lut, below = [], 0
    for level in range(256):
        lut.append(min(255, (step // 2 + below) // step))
        below += counts[level]
    return np.vectorize(lambda v: lut[int(v)])(q)


def loop_autocontrast(q: np.ndarray, on: bool) -> np.ndarray:
    """255 (q - lo) / (hi - lo) rounded down, in whole numbers. (PIL and torchvision compute it in floating point,
    which can land a level low where the quotient is whole: torchvision's float32 division does on 1 to 2 in 100
    pixels of these photographs, so the loop takes the exact quotient both mean.)"""
    lo, hi = int(q.min()), int(q.max())
    if not on or hi == lo:
        return q.copy()
    return np.vectorize(lambda v: 255 * (int(v) - lo) // (hi - lo))(q)


def loop_invert(q: np.ndarray, on: bool) -> np.ndarray:
    return 255 - q if on else q.copy()


LOOPS = {"sharpness": (loop_sharpness, [0.0, 0.4, 1.0, 2.5]), "posterize": (loop_posterize, [1, 3, 6, 8]),
         "solarize": (loop_solarize, [0.0, 0.3, 0.75, 1.5]), "equalize": (loop_equalize, [True, False, True, True]),
         "autocontrast": (loop_autocontrast, [True, True, False, True]),
         "invert": (loop_invert, [True, False, True, False])}


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("name", list(LOOPS))
def test_every_channel_follows_the_definition_as_a_band(name, channels):
    """Crops of the photographs as 1 to 4 channel images (a fourth channel is coffee's red), against the loops."""
    rgb = colour_photos()[:, :, 4:34, 10:46]  # 1080 pixels: Equalize's step is 4 or so, not 0
    stacked = torch.cat([rgb, rgb[[2, 0, 1], :1]], 1)  # (3, 4, 30, 36): four bands of real pixels
    images = torch.cat([stacked, stacked.flip(-1)])[:4, :channels]  # 4 samples
    loop, magnitudes = LOOPS[name]
    out = KERNELS[name](images.float() / 255, torch.tensor(magnitudes))
    for b, m in enumerate(magnitudes):
        for c in range(channels):
            expected = torch.from_numpy(np.asarray(loop(images[b, c].numpy(), m), dtype=np.int64))
            assert differing(out[b, c], expected) <= 2, (b, c)


def test_equalize_lut_stops_at_255_and_a_channel_of_one_level_is_left():
    """PIL's LUT can exceed 255 for the highest level (PIL clips it); a single level or a near-constant channel
    has step 0 and is left as it is; 511 pixels under the top one make step 2, where 256 bins would make 1."""
    top_heavy = torch.tensor([k % 256 for k in range(455)] + [255] * 5, dtype=torch.uint8).view(1, 1, 20, 23)
    constant = torch.full((1, 1, 20, 23), 77, dtype=torch.uint8)
    near = constant.clone()
    near[..., 0, :8] = 3  # 8 pixels below 77: step (460 - 452) // 255 = 0
    images = torch.cat([top_heavy, constant, near])
    out = F.equalize(images.float() / 255, torch.ones(3, dtype=torch.bool))
    for b in range(3):
        expected = from_pil(ImageOps.equalize(to_pil(images[b])))
        assert differing(out[b], expected) == 0
    assert torch.equal(out[1:], images[1:].float() / 255)
    steps = torch.tensor([k * 37 % 200 for k in range(511)] + [230], dtype=torch.uint8).view(1, 1, 16, 32)
    out = F.equalize(steps.float() / 255, torch.ones(1, dtype=torch.bool))
    assert differing(out[0], from_pil(ImageOps.equalize(to_pil(steps[0])))) == 0


def test_autocontrast_of_a_narrow_range_stretches_to_both_ends():
    x = torch.tensor([[100, 101, 102], [103, 104, 105]], dtype=torch.float32).view(1, 1, 2, 3) / 255
    out = levels_of(F.autocontrast(x, torch.tensor([True])))
    assert out.flatten().tolist() == [255 * k // 5 for k in range(6)]


# ------------------------------------------------------------------------------------------ properties
def _images(batch, channels, h, w, seed, dtype=torch.float32):
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


NEUTRAL = {"sharpness": 1.0, "posterize": 8, "solarize": float("inf"), "equalize": False, "autocontrast": False,
           "invert": False}
shapes = dict(batch=st.integers(1, 4), channels=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 12),
              seed=st.integers(0, 10_000))


@settings(max_examples=25, deadline=None)
@given(**shapes, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_neutral_parameters_return_exactly_the_input(batch, channels, h, w, seed, dtype):
    x = _images(batch, channels, h, w, seed, dtype)
    before = x.clone()
    for name, kernel in KERNELS.items():
        value = torch.full((batch,), NEUTRAL[name]) if name != "posterize" else torch.full((batch,), 8)
        out = kernel(x, value.bool() if isinstance(NEUTRAL[name], bool) else value)
        assert torch.equal(out, x) and out.dtype == dtype, name
    assert torch.equal(x, before)  # nothing written into the input
    for threshold in (1.0 + 2 ** -20, 1.5):  # any threshold above 1 solarizes nothing, level 255 included
        assert torch.equal(F.solarize(torch.ones(1, 1, 2, 2), torch.tensor([threshold])), torch.ones(1, 1, 2, 2))


def _random_magnitudes(batch: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"sharpness": torch.rand(batch, generator=g) * 3, "posterize": torch.randint(1, 9, (batch,), generator=g),
            "solarize": torch.rand(batch, generator=g) * 1.2, "equalize": torch.rand(batch, generator=g) < 0.5,
            "autocontrast": torch.rand(batch, generator=g) < 0.5, "invert": torch.rand(batch, generator=g) < 0.5}


@settings(max_examples=25, deadline=None)
@given(**shapes)
def test_outputs_stay_in_range_and_each_sample_is_independent_of_its_batch(batch, channels, h, w, seed):
    x = _images(batch, channels, h, w, seed)
    x[..., 0, 0] = 0.0  # the ends of the range present
    x[..., -1, -1] = 1.0
    magnitudes = _random_magnitudes(batch, seed)
    for name, kernel in KERNELS.items():
        out = kernel(x, magnitudes[name])
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name
        for i in range(batch):
            alone = kernel(x[i:i + 1], magnitudes[name][i:i + 1])
            assert torch.equal(out[i:i + 1], alone), (name, i)


def all_ops(p=0.5):
    return [A.Sharpness((0.1, 1.9), p=p), A.Posterize(4, p=p), A.Solarize(0.5, p=p), A.Equalize(p=p),
            A.AutoContrast(p=p), A.Invert(p=p)]


@settings(max_examples=15, deadline=None)
@given(**shapes, uint8=st.booleans())
def test_a_pipeline_replays_its_params_and_p_0_is_the_identity(batch, channels, h, w, seed, uint8):
    x = _images(batch, channels, h, w, seed)
    if uint8:
        x = torch.round(x * 255).to(torch.uint8)
    pipe = A.Pipeline(*all_ops(), seed=seed)
    out = pipe(x)
    assert torch.equal(pipe(x, params=pipe.last_params), out)
    assert out.min() >= 0 and out.max() <= 1
    as_float = x.float() / 255 if uint8 else x
    assert torch.equal(A.Pipeline(*all_ops(p=0.0), seed=seed)(x), as_float)


def test_each_op_draws_its_magnitudes_and_p_per_sample():
    shape, g = Shape(20_000, 3, 4, 4), torch.Generator().manual_seed(0)
    factor = A.Sharpness((0.5, 1.5), p=1.0).sample(shape, g, "cpu")["factor"]
    assert factor.min() >= 0.5 and factor.max() <= 1.5 and abs(factor.mean() - 1) < 0.01
    assert torch.equal(A.Sharpness(0.3, p=1.0).sample(shape, g, "cpu")["factor"], torch.full((20_000,), 0.3))
    for op, key, neutral in [(A.Sharpness(0.3, p=0.3), "factor", 1.0), (A.Posterize(5, p=0.3), "bits", 8),
                             (A.Solarize(0.6, p=0.3), "threshold", float("inf")), (A.Equalize(p=0.3), "equalize", 0),
                             (A.AutoContrast(p=0.3), "autocontrast", 0), (A.Invert(p=0.3), "invert", 0)]:
        value = op.sample(shape, g, "cpu")[key]
        assert value.shape == (20_000,)
        share = (value != neutral).float().mean()
        assert abs(share - 0.3) < 0.015, (op, share)  # about 4.5 standard deviations
        assert torch.equal(op.skip({key: value}, torch.zeros(20_000, dtype=torch.bool))[key],
                           torch.full_like(value, neutral))


def test_pointwise_ops_before_a_padded_crop_leave_its_fill_alone():
    """Posterize, Solarize and Invert are pointwise, so the executor may run them after a crop's gather; the
    padding must still be the crop's fill, not an inverted one."""
    x = _images(3, 3, 10, 12, seed=3)
    levels_first = A.Pipeline(A.Posterize(3, p=1.0), A.Solarize(0.7, p=1.0), A.Invert(p=1.0),
                              A.RandomCrop((10, 12), padding=3, fill=0.25), seed=0)
    out = levels_first(x)
    levels = F.invert(F.solarize(F.posterize(x, torch.full((3,), 3)), torch.full((3,), 0.7)),
                      torch.ones(3, dtype=torch.bool))
    crop_only = A.Pipeline(A.RandomCrop((10, 12), padding=3, fill=0.25))
    torch.testing.assert_close(out, crop_only(levels, params=levels_first.last_params[3:]))


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make, error", [
    (lambda: A.Posterize(0), ValueError), (lambda: A.Posterize(9), ValueError),
    (lambda: A.Posterize(-1), ValueError), (lambda: A.Posterize(4.0), TypeError),
    (lambda: A.Posterize(True), TypeError), (lambda: A.Posterize("4"), TypeError),
    (lambda: A.Solarize(-0.1), ValueError), (lambda: A.Solarize(128), ValueError),
    (lambda: A.Solarize(float("nan")), ValueError), (lambda: A.Solarize("0.5"), TypeError),
    (lambda: A.Sharpness(-0.5), ValueError), (lambda: A.Sharpness((1.5, 0.5)), ValueError),
    (lambda: A.Sharpness(float("inf")), ValueError), (lambda: A.Sharpness("2"), TypeError),
    (lambda: A.Sharpness((0.5, 1, 2)), TypeError), (lambda: A.Equalize(p=1.5), ValueError),
    (lambda: A.Invert(p=-0.1), ValueError), (lambda: A.AutoContrast(p=2), ValueError),
])
def test_bad_arguments_are_refused_by_name(make, error):
    with pytest.raises(error, match=r"Posterize|Solarize|Sharpness|Equalize|Invert|AutoContrast"):
        make()


def test_bad_kernel_input_is_refused():
    x = torch.rand(2, 3, 5, 5)
    for bits in ([0, 4], [4, 9], [2.5, 4]):
        with pytest.raises(ValueError, match="posterize: bits must be whole numbers in 1..8"):
            F.posterize(x, torch.tensor(bits))
    with pytest.raises(TypeError, match=r"solarize: threshold must be a \(B,\) tensor"):
        F.solarize(x, 0.5)
    with pytest.raises(ValueError, match=r"sharpness: factor must be \(2,\)"):
        F.sharpness(x, torch.ones(3))
    with pytest.raises(TypeError, match="equalize: expected float images"):
        F.equalize((x * 255).to(torch.uint8), torch.ones(2, dtype=torch.bool))
    with pytest.raises(TypeError, match="invert: expected float images"):
        F.invert(x[0], torch.ones(2, dtype=torch.bool))


# ------------------------------------------------------------------------------------------ compiled
def test_compiled_pipeline_equals_eager(compiled_graphs):
    images = torch.cat([colour_photos(), colour_photos().flip(-1)])
    before = compiled_graphs()
    compiled = A.Pipeline(*all_ops(), seed=7, compile=True)
    eager = A.Pipeline(*all_ops(), seed=7)
    out = compiled(images)
    assert compiled_graphs() > before
    expected = eager(images)
    assert differing(out, levels_of(expected)) <= out.numel() // 1000
    torch.testing.assert_close(out, expected, atol=1 / 255 + 1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_kernels_match_the_cpu_without_a_host_sync():
    """Per-sample magnitudes on the device: the histogram, LUT and smoothing never make the host wait."""
    x = torch.cat([colour_photos(), colour_photos().flip(-1)]).float() / 255
    magnitudes = _random_magnitudes(6, seed=4)
    on_device = {name: m.cuda() for name, m in magnitudes.items()}
    xd = x.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = {name: kernel(xd, on_device[name]) for name, kernel in KERNELS.items()}
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for name, kernel in KERNELS.items():
        expected = kernel(x, magnitudes[name])
        assert differing(outs[name].cpu(), levels_of(expected)) <= x.numel() // 1000, name
