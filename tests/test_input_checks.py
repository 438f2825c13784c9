"""Input checks a new user meets first: channels-last images, grayscale batches passed as one image, float images
outside [0, 1], and collate's handling of HWC tensors and of mixed grayscale / colour samples.

Each refusal is checked for what its message names (the problem and the fix), each conversion against a reference
(``permute``, PIL's ``convert``), and legal inputs for passing unchanged and without a warning.
"""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import augpipe as A
from augpipe.validate import RANGE_SLACK, looks_channels_last


def gen(seed):
    return torch.Generator().manual_seed(seed)


def uint8(*shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen(seed))


def flip():
    return A.Pipeline(A.HorizontalFlip(p=1.0), seed=0)


def flipped(chw_batch):
    """The reference for ``flip()``: mirrored columns, uint8 scaled to [0, 1]."""
    return chw_batch.flip(-1).float() / 255


def quiet(call):
    """Run ``call`` with every warning an error: a legal input must pass without one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# ------------------------------------------------------------------------------------------- channels last
@pytest.mark.parametrize("shape, expected", [
    ((512, 512, 3), True), ((40, 30, 1), True), ((40, 30, 4), True), ((2, 32, 48, 3), True),
    ((3, 512, 512), False), ((1, 28, 28), False), ((4, 40, 30), False),
    ((200, 3, 3), False),   # a small multi-band patch: 3 rows, so not a picture in (H, W, C)
    ((6, 32, 5), False),    # more than 4 channels, 5 columns
    ((3, 32, 4), False),    # (C, H, W) and (H, W, C) both possible: the documented (C, H, W) wins
    ((40, 30, 2), False),   # 2 is not a picture's channel count
])
def test_the_channels_last_rule_on_documented_shapes(shape, expected):
    assert looks_channels_last(shape) is expected


@pytest.mark.parametrize("shape", [(512, 512, 3), (40, 30, 1), (40, 30, 4)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_one_hwc_image_is_refused_with_the_permute_that_fixes_it(shape, dtype):
    img = uint8(*shape)
    img = img if dtype == torch.uint8 else img.float() / 255
    with pytest.raises(ValueError) as caught:
        flip()(img)
    message = str(caught.value)
    assert "Pipeline" in message and "(H, W, C)" in message and f"{shape[0]} channels" in message
    assert "img.permute(2, 0, 1)" in message
    # The fix the message gives works, and gives the reference.
    expected = flipped(uint8(*shape).permute(2, 0, 1))
    torch.testing.assert_close(quiet(lambda: flip()(img.permute(2, 0, 1))), expected, rtol=0, atol=0)


def test_a_bhwc_batch_is_refused_with_the_permute_that_fixes_it():
    x = uint8(2, 32, 48, 3)
    with pytest.raises(ValueError) as caught:
        flip()(x)
    message = str(caught.value)
    assert "(B, H, W, C)" in message and "32 channels" in message and "images.permute(0, 3, 1, 2)" in message
    out = quiet(lambda: flip()(x.permute(0, 3, 1, 2)))
    torch.testing.assert_close(out, flipped(torch.stack([x[i].permute(2, 0, 1) for i in range(2)])), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(3, 32, 48), (1, 28, 28), (4, 8, 8), (2, 3, 32, 48), (2, 6, 32, 5),
                                   (1, 200, 3, 3), (2, 8, 4, 3), (2, 3, 32, 4)])
def test_legal_chw_images_pass_unchanged_and_without_a_warning(shape):
    x = uint8(*shape)
    out = quiet(lambda: flip()(x))
    torch.testing.assert_close(out, flipped(x), rtol=0, atol=0)


def test_a_grayscale_batch_given_as_one_image_warns_and_names_unsqueeze():
    x = uint8(64, 28, 28)
    with pytest.warns(UserWarning) as caught:
        out = flip()(x)
    (w,) = caught.list
    message = str(w.message)
    assert "64 channels" in message and "grayscale" in message and "x.unsqueeze(1)" in message
    assert w.filename == __file__  # points at the line that called the pipeline, not inside augpipe or torch
    torch.testing.assert_close(out, flipped(x), rtol=0, atol=0)  # still read as one 64-channel image
    # The fix: one channel axis, a batch of 64; each image flipped on its own.
    batch = quiet(lambda: flip()(x.unsqueeze(1)))
    torch.testing.assert_close(batch, torch.stack([flipped(x[i][None]) for i in range(64)]), rtol=0, atol=0)


def test_a_multi_channel_image_passed_as_a_batch_of_one_gives_no_warning():
    x = uint8(13, 16, 16)  # say, 13 spectral bands
    out = quiet(lambda: flip()(x.unsqueeze(0)))
    torch.testing.assert_close(out[0], flipped(x), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- float range
@pytest.mark.parametrize("scale, shift", [(255.0, 0.0), (1.0, -0.5), (4.0, -2.0)])
def test_float_images_outside_0_1_are_refused_naming_the_range_and_the_fix(scale, shift):
    x = torch.rand(2, 3, 8, 8, generator=gen(1)) * scale + shift
    before = x.clone()
    with pytest.raises(ValueError) as caught:
        flip()(x)
    message = str(caught.value)
    assert message.startswith("Pipeline: float images must be in [0, 1]")
    assert f"[{x.min().item():.4g}, {x.max().item():.4g}]" in message  # the min and max seen
    assert "divide by 255" in message and "uint8" in message
    assert ("Normalize" in message) == (shift < 0)  # negative values: normalized too early
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_uint8_level_divided_by_255_passes(dtype):
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    x = levels.to(dtype) / 255
    assert x.min() == 0 and x.max() == 1  # exact ends: the check needs no slack for these
    out = quiet(lambda: flip()(x))
    torch.testing.assert_close(out, x.flip(-1), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_rounding_step_outside_passes_and_a_level_outside_does_not(dtype):
    x = torch.rand(1, 3, 8, 8, generator=gen(2), dtype=dtype)
    for value in (1 + torch.finfo(torch.float32).eps, 1 + RANGE_SLACK / 2, -RANGE_SLACK / 2):
        y = x.clone()
        y[0, 0, 0, 0] = value
        quiet(lambda: flip()(y))
    for value in (1 + 1 / 255, -1 / 255):
        y = x.clone()
        y[0, 0, 0, 0] = value
        with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
            flip()(y)


def test_uint8_images_are_not_range_checked_and_nan_is_still_named():
    quiet(lambda: flip()(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)))
    x = torch.rand(1, 3, 4, 4, generator=gen(3))
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity"):
        flip()(x)


# ------------------------------------------------------------------------------------------- collate
def hwc(seed, h=32, w=48, c=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("c", [1, 3, 4])
def test_collate_permutes_hwc_tensors_to_chw(c):
    arrays = [hwc(i, c=c) for i in range(2)]
    tensors = [torch.from_numpy(a) for a in arrays]
    before = [t.clone() for t in tensors]
    images, labels = A.collate([(t, i) for i, t in enumerate(tensors)])
    assert images.shape == (2, c, 32, 48) and images.dtype == torch.uint8
    torch.testing.assert_close(images, torch.stack([t.permute(2, 0, 1) for t in before]), rtol=0, atol=0)
    torch.testing.assert_close(images, A.collate([(a, 0) for a in arrays])[0], rtol=0, atol=0)  # as numpy arrays
    assert all(torch.equal(t, b) for t, b in zip(tensors, before))
    # The collated batch is what a Pipeline reads: (B, C, H, W), not 32 channels.
    torch.testing.assert_close(quiet(lambda: flip()(images)), flipped(images), rtol=0, atol=0)


def test_collate_keeps_chw_tensors_and_reads_hw_tensors_as_one_channel():
    chw = uint8(3, 32, 4)  # (C, H, W) and (H, W, C) both possible: kept as documented, (C, H, W)
    assert torch.equal(A.collate([chw, chw])[0], chw)
    hw = uint8(6, 5)
    assert torch.equal(A.collate([hw])[0], hw[None])


def test_collate_still_refuses_other_tensor_ranks_naming_the_layouts():
    with pytest.raises(TypeError, match="uint8 \\(C, H, W\\), \\(H, W, C\\) or \\(H, W\\)"):
        A.collate([uint8(1, 3, 8, 8)])


@pytest.mark.parametrize("modes", [("L", "RGB"), ("RGB", "L"), ("L", "RGBA"), ("RGB", "RGBA"), ("L", "RGB", "RGBA")])
def test_collate_brings_mixed_grayscale_and_colour_to_the_most_channels_as_pil_does(modes):
    pictures = [Image.fromarray(hwc(i, c=4)).convert(mode) for i, mode in enumerate(modes)]
    target = "RGBA" if "RGBA" in modes else "RGB"
    images, _ = A.collate([(p, 0) for p in pictures])
    reference = torch.stack([torch.from_numpy(np.array(p.convert(target))).permute(2, 0, 1) for p in pictures])
    torch.testing.assert_close(images, reference, rtol=0, atol=0)


def test_collate_brings_a_grayscale_array_and_tensor_to_rgb_too():
    gray, colour = hwc(0, c=1)[..., 0], torch.from_numpy(hwc(1)).permute(2, 0, 1)
    images = A.collate([gray, colour])
    torch.testing.assert_close(images[0], torch.from_numpy(gray).expand(3, 32, 48), rtol=0, atol=0)
    torch.testing.assert_close(images[1], colour, rtol=0, atol=0)


def test_collate_names_a_channel_difference_it_does_not_convert():
    with pytest.raises(ValueError, match="different channel counts \\[2, 3\\]"):
        A.collate([hwc(0, c=2), hwc(1, c=3)])


def test_collate_of_grayscale_and_colour_of_different_sizes_brings_them_to_rgb_and_packs():
    images = A.collate([hwc(0, c=1), hwc(1, h=31)])
    assert isinstance(images, A.PackedImages) and images.channels == 3
    torch.testing.assert_close(images[0], torch.from_numpy(hwc(0, c=1)).permute(2, 0, 1).expand(3, 32, 48),
                               rtol=0, atol=0)
