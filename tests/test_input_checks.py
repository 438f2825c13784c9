"""Input checks a new user meets first: channels-last images, grayscale batches passed as one image, float images
outside [0, 1].

Each refusal is checked for what its message names (the problem and the fix) and for its fix giving the
reference, and legal inputs for passing unchanged and without a warning.
"""
import warnings

import pytest
import torch

import augpipe as A
from augpipe.graph import RANGE_SLACK, looks_channels_last


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
