"""Masks, boxes and keypoints stay aligned with the pixels: each is checked against the image itself."""
import math

import pytest
import torch

import augpipe as A

B, H, W = 12, 20, 24


def exact_geometry(compile=False, mode="reflect"):
    return A.Pipeline(A.RandomCrop((18, 22), padding=3, padding_mode=mode), A.HorizontalFlip(),
                      A.VerticalFlip(), A.RandomCrop(16, padding=2), seed=3, compile=compile)


def label_image(seed=0):
    """uint8 images whose first channel is the mask (labels 1..200), so the two must move together."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.randint(1, 200, (B, H, W), generator=g, dtype=torch.uint8)
    images = torch.stack((masks, 255 - masks, masks // 2), dim=1)
    return images, masks


@pytest.mark.parametrize("compile", [False, True])
def test_masks_follow_flips_and_crops_exactly(compile, compiled_graphs):
    images, masks = label_image()
    pipe = exact_geometry(compile)
    before = compiled_graphs()
    out = pipe(images, masks=masks)
    assert (compiled_graphs() > before) == compile  # a compiled pipeline really compiled (never fell back to eager)
    assert out["masks"].dtype == torch.uint8 and out["masks"].shape == (B, 16, 16)
    assert torch.equal((out["images"][:, 0] * 255).round().to(torch.uint8), out["masks"])
    assert (out["masks"] == 0).any()  # the constant-padded border is background in both


def test_masks_follow_resampling_by_nearest_neighbour():
    """A column ramp image is reproduced exactly by bilinear sampling; nearest of the column index must agree."""
    cols = torch.arange(W, dtype=torch.float64).expand(B, 1, H, W) / 100
    col_index = torch.arange(W).expand(B, H, W).contiguous()
    pipe = A.Pipeline(A.RandomResizedCrop((15, 17), scale=(0.3, 1.0), antialias=False), A.HorizontalFlip(),
                      A.RandomRotation(20), seed=1)
    out = pipe(cols, masks=col_index)
    sampled_col = out["images"][:, 0] * 100 + 0.5  # the source x coordinate where the point is inside
    inside = out["masks"] > 0
    agree = (torch.floor(sampled_col + 1e-9).long().clamp(0, W - 1) == out["masks"]) | (
        (sampled_col - sampled_col.round()).abs() < 1e-6)  # ties at pixel edges may go either way
    assert agree[inside].float().mean() > 0.999


def test_keypoints_follow_a_bright_pixel():
    g = torch.Generator().manual_seed(0)
    rows, cols = torch.randint(0, H, (B,), generator=g), torch.randint(0, W, (B,), generator=g)
    images = torch.zeros(B, 1, H, W, dtype=torch.uint8)
    images[torch.arange(B), 0, rows, cols] = 255
    keypoints = torch.stack((cols + 0.5, rows + 0.5), dim=1).float()[:, None]  # (B, 1, 2) at the pixel centre
    pipe = exact_geometry(mode="constant")  # (reflect padding would mirror a second bright pixel in)
    out = pipe(images, keypoints=keypoints)
    assert 0 < (~torch.isnan(out["keypoints"][:, 0, 0])).sum() < B  # some stay, some leave
    for b in range(B):
        bright = (out["images"][b, 0] == 1).nonzero()
        kp = out["keypoints"][b, 0]
        if torch.isnan(kp).any():
            assert len(bright) == 0  # the point left the image with its pixel
        else:
            assert bright.tolist() == [[int(kp[1]), int(kp[0])]]


def test_keypoints_through_a_resized_crop_land_on_the_blurred_pixel():
    images = torch.zeros(B, 1, 32, 32)
    images[:, :, 10, 20] = 1.0
    keypoints = torch.tensor([[[20.5, 10.5]]]).expand(B, 1, 2).contiguous()
    pipe = A.Pipeline(A.RandomResizedCrop(16, scale=(0.6, 1.0)), A.HorizontalFlip(), seed=2)
    out = pipe(images, keypoints=keypoints)
    assert (~torch.isnan(out["keypoints"][:, 0, 0])).sum() >= B // 2  # most points stay in view
    for b in range(B):
        kp = out["keypoints"][b, 0]
        if torch.isnan(kp).any():
            continue  # the point left the image (its blur may still reach the edge)
        peak = torch.nonzero(out["images"][b, 0] == out["images"][b, 0].max())[0]
        assert abs(peak[1] + 0.5 - kp[0]) <= 1 and abs(peak[0] + 0.5 - kp[1]) <= 1


def test_boxes_follow_a_filled_rectangle_and_padding_rows_stay_nan():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randint(0, W - 6, (B,), generator=g)
    y1 = torch.randint(0, H - 6, (B,), generator=g)
    x2, y2 = x1 + torch.randint(2, 6, (B,), generator=g), y1 + torch.randint(2, 6, (B,), generator=g)
    images = torch.zeros(B, 1, H, W, dtype=torch.uint8)
    for b in range(B):
        images[b, 0, y1[b]:y2[b], x1[b]:x2[b]] = 255
    boxes = torch.full((B, 2, 4), math.nan)
    boxes[:, 0] = torch.stack((x1, y1, x2, y2), dim=1).float()
    out = exact_geometry(mode="constant")(images, boxes=boxes)
    assert torch.isnan(out["boxes"][:, 1]).all()
    assert (~torch.isnan(out["boxes"][:, 0, 0])).sum() >= B // 2
    for b in range(B):
        filled = (out["images"][b, 0] == 1).nonzero()
        box = out["boxes"][b, 0]
        if len(filled) == 0:
            assert torch.isnan(box).all()
        else:
            ys, xs = filled[:, 0], filled[:, 1]
            expected = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            assert torch.equal(box, expected)


def test_flip_maps_x_to_width_minus_x():
    kp = torch.tensor([[[3.0, 4.0]]])
    box = torch.tensor([[[1.0, 2.0, 5.0, 6.0]]])
    out = A.Pipeline(A.HorizontalFlip(p=1.0))(torch.zeros(1, 1, 10, 16), boxes=box, keypoints=kp)
    assert out["keypoints"].tolist() == [[[13.0, 4.0]]]
    assert out["boxes"].tolist() == [[[11.0, 2.0, 15.0, 6.0]]]


def test_a_crop_moves_points_by_its_offset_and_drops_those_it_cuts_off():
    """An 8x8 window at (top, left) = (1, 2) of a 10x16 image, given as params so that every case is met: a point
    moves to (x - left, y - top), points on the window's edges stay, points beyond them become NaN."""
    kp = torch.tensor([[[3.0, 4.0], [2.0, 1.0], [10.0, 9.0], [1.5, 4.0], [10.5, 4.0], [5.0, 0.5], [5.0, 9.5]]])
    left, top = 2, 1
    expected = [[x - left, y - top] if 0 <= x - left <= 8 and 0 <= y - top <= 8 else [math.nan, math.nan]
                for x, y in kp[0].tolist()]
    assert sum(math.isnan(e[0]) for e in expected) == 4  # four points leave, three stay (two on corners)
    pipe = A.Pipeline(A.RandomCrop(8))
    out = pipe(torch.zeros(1, 1, 10, 16), keypoints=kp, params=[{"top": torch.tensor([top]),
                                                                 "left": torch.tensor([left])}])
    torch.testing.assert_close(out["keypoints"], torch.tensor([expected]), rtol=0, atol=0, equal_nan=True)


def test_cutmix_pastes_the_partner_mask_in_the_same_box():
    images, masks = label_image(seed=4)
    pipe = A.Pipeline(A.CutMix(), A.Cutout(5, mask_fill=255), seed=0, num_classes=3)
    out = pipe(images, torch.arange(B) % 3, masks=masks)
    holes = out["masks"] == 255
    assert holes.any()
    assert torch.equal((out["images"][:, 0] * 255).round().to(torch.uint8)[~holes], out["masks"][~holes])
    assert (out["images"][:, 0][holes] == 0).all()
    assert out["targets"].shape == (B, 3)


def test_one_of_selects_targets_per_sample():
    images, masks = label_image(seed=5)
    pipe = A.Pipeline(A.OneOf(A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)), seed=0)
    out = pipe(images, masks=masks)
    assert torch.equal((out["images"][:, 0] * 255).round().to(torch.uint8), out["masks"])


def test_single_image_with_targets_keeps_its_shapes():
    images, masks = label_image()
    out = A.Pipeline(A.HorizontalFlip(p=1.0))(images[0], masks=masks[0], keypoints=torch.tensor([[1.0, 2.0]]))
    assert out["images"].shape == (3, H, W) and out["masks"].shape == (H, W)
    assert out["keypoints"].tolist() == [[W - 1.0, 2.0]]


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.int16, torch.int32])
def test_masks_keep_their_dtype_and_equal_the_int64_result(dtype):
    """A Python int fill must not promote a bool or narrow label map to int64 (the README says dtype kept);
    the reference is the same draw on int64 masks."""
    images, masks = label_image()
    masks = masks % 2 if dtype == torch.bool else masks // 2  # values that fit every dtype
    pipe = A.Pipeline(A.RandomCrop(18, padding=3), A.HorizontalFlip(), A.RandomRotation(15),
                      A.Cutout(6, mask_fill=1), A.CutMix(), seed=4)
    out = pipe(images, masks=masks.to(dtype))["masks"]
    reference = pipe(images, masks=masks.long(), params=pipe.last_params)["masks"]
    assert out.dtype == dtype and torch.equal(out.long(), reference)
    assert (reference == 0).any() and (reference == 1).any()


@pytest.mark.parametrize("dtype, mask_fill", [(torch.int8, 255), (torch.uint8, -1), (torch.bool, 2)])
def test_a_mask_fill_that_does_not_fit_the_masks_is_refused(dtype, mask_fill):
    with pytest.raises(ValueError, match=f"mask_fill {mask_fill} does not fit {dtype} masks"):
        A.Pipeline(A.Cutout(4, mask_fill=mask_fill))(torch.zeros(B, 3, H, W), masks=torch.zeros(B, H, W, dtype=dtype))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"masks": torch.zeros(B, H, W)}, TypeError, "masks must be integer"),
    ({"masks": torch.zeros(B, H, W + 1, dtype=torch.long)}, ValueError, r"masks must be \(12, 20, 24\)"),
    ({"boxes": torch.zeros(B, 3)}, ValueError, r"boxes must be \(B, N, 4\)"),
    ({"boxes": torch.zeros(B, 3, 4, dtype=torch.long)}, TypeError, "boxes must be floating"),
    ({"keypoints": torch.zeros(B + 1, 3, 2)}, ValueError, r"keypoints must be \(B, K, 2\) xy with B = 12"),
])
def test_bad_target_shapes_name_what_was_expected(kwargs, error, match):
    with pytest.raises(error, match=match):
        A.Pipeline(A.HorizontalFlip())(torch.zeros(B, 3, H, W), **kwargs)


@pytest.mark.parametrize("op, kwargs", [(A.Mixup(), {"masks": torch.zeros(B, H, W, dtype=torch.long)}),
                                        (A.CutMix(), {"boxes": torch.zeros(B, 1, 4)}),
                                        (A.FractionalPool(), {"keypoints": torch.zeros(B, 1, 2)})])
def test_ops_that_cannot_carry_a_target_say_so(op, kwargs):
    with pytest.raises(ValueError, match="cannot carry"):
        A.Pipeline(op)(torch.zeros(B, 3, H, W), **kwargs)


def test_compiled_moves_boxes_and_keypoints_like_eager(compiled_graphs):
    g = torch.Generator().manual_seed(7)
    images, masks = label_image(seed=7)
    boxes = torch.cat((torch.rand(B, 3, 2, generator=g) * 10, 10 + torch.rand(B, 3, 2, generator=g) * 10), -1)
    keypoints = torch.rand(B, 4, 2, generator=g) * torch.tensor([W, H])
    make = lambda compile: A.Pipeline(A.RandomResizedCrop(16, scale=(0.5, 1.0)), A.HorizontalFlip(),  # noqa: E731
                                      A.RandomRotation(15), seed=2, compile=compile)
    compiled = make(True)
    before = compiled_graphs()
    out = compiled(images, masks=masks, boxes=boxes, keypoints=keypoints)
    assert compiled_graphs() > before  # the compiled path ran, not an eager fallback
    ref = make(False)(images, masks=masks, boxes=boxes, keypoints=keypoints, params=compiled.last_params)
    for key in ("images", "masks", "boxes", "keypoints"):
        torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=0, equal_nan=True)
    assert (~torch.isnan(out["keypoints"])).any() and (~torch.isnan(out["boxes"])).any()
