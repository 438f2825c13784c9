"""Every kind of geometric read, alone and composed in several orders, against a per-pixel loop from the definitions.

The executor picks one read per run of geometric ops (augpipe/fuse.py): a whole-pixel gather when every op is exact
(flips, crops, crops padded with constant, reflect or replicate borders), a separable bilinear read when the map is
axis-aligned (resized crops), a four-tap bilinear read of the composed matrix otherwise (rotations, affine maps),
with the perspective divide when a homography is in the run (RandomPerspective), and, when a displacement field is
(ElasticTransform), a four-tap read at points taken back through every map of the run in turn. The reference
(tests/geometry_reference.py) maps each output pixel centre through every op's map written from its definition
and reads the source bilinearly with the documented border rules; it never calls augpipe's kernels. It follows the
fused definition (one read of the composed map), which differs from resampling op by op within a pixel of an
intermediate image's edge and where two bilinear ops meet; ``test_fused_and_op_by_op_reads_differ_as_documented``
shows that difference on both paths.

A perspective's corners are whole pixels, so its map sends some pixel centres exactly onto an image's edge, where
the closed-rectangle test that picks fill or pixels is decided by float rounding: such a pixel may take the value
of either decision (``assert_matches_loop``).

Parameters are drawn by the pipeline, then replayed with ``params=`` after the flips are set to differ per sample.
Images are 3 x 3 x 9 x 11; each case loops over about 300 output pixels.
"""
import math

import pytest
import torch

import augpipe as A
from augpipe import fuse
from geometry_reference import flat_steps, move_boxes, move_keypoints, op_maps, reference_geometry

B, C, H, W = 3, 3, 9, 11
BILINEAR_ATOL = 1e-5  # sampling matrices are float32, so points move by about 1e-6 pixel from the loop's


def down():  # boxes at least about 5 x 5: read smaller, bilinear as the loop (no antialiasing)
    return A.RandomResizedCrop((5, 6), scale=(0.4, 1.0), antialias=False)


def up():  # boxes about 2 to 7 pixels a side: read larger, so taps fall beyond the box
    # (antialias=False: an antialiased resize reads on its own before a rotation, where these cases test one read)
    return A.RandomResizedCrop((10, 12), scale=(0.1, 0.4), antialias=False)


def rotation():
    return A.RandomRotation(40, fill=0.25)


def affine():
    return A.RandomAffine(30, translate=(0.2, 0.1), scale=(0.8, 1.2), shear=(-10, 10, -5, 5), fill=0.6)


def perspective():
    """Corners move up to 2 pixels each way on a 9 x 11 image. Up to 0.5 the moved corners of any image of 5 x 5 or
    more stay a strictly convex quad; past it three of them can fall on a line (0.6 at 10 x 10), and no homography
    sends three points on a line to three corners of a rectangle: the map is then undefined."""
    return A.RandomPerspective(0.5, p=1.0, fill=0.35)


def elastic():  # displacements of about 1 to 4 pixels, so points reach past the edges
    return A.ElasticTransform(alpha=30.0, sigma=1.5, fill=0.55)


# name -> the ops, in order. The first word of each group says which read the executor picks for it.
CASES = {
    # exact: whole pixels, one gather (or an exact run per segment)
    "flip, padded crop, vertical flip": lambda: [
        A.HorizontalFlip(), A.RandomCrop((8, 10), padding=(2, 1, 3, 2), fill=0.3), A.VerticalFlip()],
    "padded crop first, then flips": lambda: [
        A.RandomCrop((10, 9), padding=(1, 3, 2, 2), fill=0.8), A.HorizontalFlip(), A.VerticalFlip()],
    "two constant-padded crops with a flip between": lambda: [
        A.VerticalFlip(), A.RandomCrop(8, padding=2, fill=0.3), A.HorizontalFlip(),
        A.RandomCrop(7, padding=3, fill=0.7)],
    "reflect crop, flip, constant crop": lambda: [
        A.RandomCrop((9, 10), padding=(3, 2, 1, 4), padding_mode="reflect"), A.HorizontalFlip(),
        A.RandomCrop(7, padding=2, fill=0.7)],
    "flip, reflect crop": lambda: [
        A.HorizontalFlip(), A.RandomCrop((10, 9), padding=(3, 1, 2, 4), padding_mode="reflect")],
    "flip, replicate crop, vertical flip": lambda: [
        A.HorizontalFlip(), A.RandomCrop((10, 12), padding=(2, 3, 4, 1), padding_mode="replicate"), A.VerticalFlip()],
    "constant crop, then reflect crop": lambda: [
        A.RandomCrop(8, padding=2, fill=0.6), A.RandomCrop((8, 9), padding=3, padding_mode="reflect")],
    "replicate crop, then reflect crop": lambda: [
        A.RandomCrop((8, 10), padding=1, padding_mode="replicate"),
        A.VerticalFlip(), A.RandomCrop((7, 9), padding=(4, 1, 2, 5), padding_mode="reflect")],
    # axis-aligned bilinear: a row pass and a column pass
    "resized crop, smaller": lambda: [down()],
    "flip, resized crop larger, vertical flip": lambda: [A.HorizontalFlip(), up(), A.VerticalFlip()],
    "padded crop, resized crop: border blended into the fill": lambda: [A.RandomCrop(9, padding=2, fill=0.8), up()],
    "flip, padded crop, resized crop, vertical flip": lambda: [
        A.HorizontalFlip(), A.RandomCrop((8, 10), padding=(3, 1, 0, 2), fill=0.9), up(), A.VerticalFlip()],
    "crop, resized crop larger: true neighbours past the crop": lambda: [A.RandomCrop((6, 7)), up()],
    "resized crop, flip, padded crop: a hard edge": lambda: [down(), A.HorizontalFlip(), A.RandomCrop(6, padding=2,
                                                                                                       fill=0.4)],
    "reflect crop, then resized crop": lambda: [A.RandomCrop((9, 10), padding=3, padding_mode="reflect"), up()],
    "resized crop, then replicate crop": lambda: [
        up(), A.RandomCrop((9, 11), padding=(4, 2, 3, 1), padding_mode="replicate")],
    # general bilinear: four taps per pixel
    "rotation": lambda: [rotation()],
    "affine": lambda: [affine()],
    "flip, rotation: border blended into the fill": lambda: [A.HorizontalFlip(), rotation()],
    "rotation, flip": lambda: [rotation(), A.VerticalFlip()],
    "resized crop, rotation: a hard edge": lambda: [down(), rotation()],
    "rotation, resized crop: one read": lambda: [rotation(), up()],
    "flip, padded crop, affine, padded crop": lambda: [
        A.HorizontalFlip(), A.RandomCrop(9, padding=2, fill=0.9), affine(), A.RandomCrop(8, padding=1, fill=0.1)],
    "affine, rotation": lambda: [affine(), rotation()],
    "reflect crop, flip, rotation": lambda: [
        A.RandomCrop((9, 10), padding=(2, 3, 1, 2), padding_mode="reflect"), A.HorizontalFlip(), rotation()],
    "rotation, replicate crop": lambda: [rotation(), A.RandomCrop((8, 10), padding=2, padding_mode="replicate")],
    "flip, random-applied affine, vertical flip": lambda: [
        A.HorizontalFlip(), A.RandomApply(affine(), p=0.6), A.VerticalFlip()],
    # projective: four taps after the perspective divide
    "perspective": lambda: [perspective()],
    "flip, perspective: border blended into the fill": lambda: [A.HorizontalFlip(), perspective()],
    "perspective, vertical flip": lambda: [perspective(), A.VerticalFlip()],
    "padded crop, perspective: a hard edge": lambda: [A.RandomCrop((10, 9), padding=2, fill=0.8), perspective()],
    "flip, perspective, padded crop, vertical flip": lambda: [
        A.HorizontalFlip(), perspective(), A.RandomCrop((8, 10), padding=(1, 2, 3, 1), fill=0.1), A.VerticalFlip()],
    "reflect crop, flip, perspective": lambda: [
        A.RandomCrop((9, 10), padding=(2, 1, 3, 2), padding_mode="reflect"), A.HorizontalFlip(), perspective()],
    "perspective, replicate crop": lambda: [
        perspective(), A.RandomCrop((10, 9), padding=(1, 3, 2, 1), padding_mode="replicate")],
    "resized crop, perspective: one read": lambda: [down(), perspective()],
    "perspective, resized crop larger: one read": lambda: [perspective(), up()],
    "rotation, perspective: one read": lambda: [rotation(), perspective()],
    "perspective, flip, rotation: one read": lambda: [perspective(), A.HorizontalFlip(), rotation()],
    "flip, random-applied perspective, crop": lambda: [
        A.HorizontalFlip(), A.RandomApply(perspective(), p=0.6), A.RandomCrop((7, 9))],
    # dense: each point taken back map by map, the field read between its centres, then four taps
    "elastic": lambda: [elastic()],
    "flip, elastic, vertical flip: border blended into the fill": lambda: [
        A.HorizontalFlip(), elastic(), A.VerticalFlip()],
    "padded crop, elastic: a hard edge": lambda: [A.RandomCrop(10, padding=(2, 1, 1, 3), fill=0.2), elastic()],
    "elastic, flip, padded crop": lambda: [elastic(), A.HorizontalFlip(), A.RandomCrop((7, 12), padding=2, fill=0.9)],
    "reflect crop, elastic": lambda: [A.RandomCrop((10, 9), padding=3, padding_mode="reflect"), elastic()],
    "elastic, reflect crop": lambda: [elastic(), A.RandomCrop((9, 12), padding=(2, 1, 3, 2), padding_mode="reflect")],
    "resized crop, elastic: one read": lambda: [down(), elastic()],
    "elastic, resized crop larger: one read": lambda: [elastic(), up()],
    "elastic, rotation: one read": lambda: [elastic(), rotation()],
    "rotation, flip, elastic: one read": lambda: [rotation(), A.VerticalFlip(), elastic()],
    "elastic, perspective: one read": lambda: [elastic(), perspective()],
    "perspective, elastic: one read": lambda: [perspective(), elastic()],
    "flip, random-applied elastic, replicate crop": lambda: [
        A.HorizontalFlip(), A.RandomApply(elastic(), p=0.6),
        A.RandomCrop((8, 10), padding=(1, 2, 2, 1), padding_mode="replicate")],
}


def images(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (B, C, H, W), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else (x.double() / 255 + torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
                                           / 255).clamp(0, 1)


def as_read(x):
    """The values the executor starts from: uint8 as float32 / 255 (the loop then runs in float64)."""
    return (x.float() / 255).double() if x.dtype == torch.uint8 else x


def draw(pipe, x):
    """Draw params, make the flips differ per sample (True, False, True), and return them for replay."""
    pipe(x)
    params = pipe.last_params
    for node, p in zip(pipe.nodes, params):
        if isinstance(node, (A.HorizontalFlip, A.VerticalFlip)):
            p["flip"] = torch.tensor([True, False, True])[:x.shape[0]]
    return params


def reference(pipe, params, x, masks=None, fused=True):
    """The loop's images (a float64 tensor), labels and ties (``geometry_reference.Reference``)."""
    ref = reference_geometry(flat_steps(pipe.nodes, params), as_read(x), masks, fused=fused)
    return torch.tensor(ref.images, dtype=torch.float64), ref.labels, ref.ties


def assert_matches_loop(out, expected, ties):
    """``out`` equals the loop's images within BILINEAR_ATOL, except that a pixel decided by an edge test whose
    point lies on the edge (within float rounding: a perspective's integer corners send pixel centres exactly onto
    edges) may take any of its values under either decision. Such ties are few."""
    out = out.double()
    assert out.shape == expected.shape
    tied = torch.tensor([[[t is not None for t in row] for row in sample] for sample in ties], dtype=torch.bool)
    assert int(tied.sum()) <= tied.numel() // 10
    free = ~tied[:, None].expand_as(out)
    torch.testing.assert_close(out[free], expected[free], atol=BILINEAR_ATOL, rtol=0)
    for b, i, j in tied.nonzero().tolist():
        got = out[b, :, i, j]
        assert any(float((got - torch.tensor(v)).abs().max()) <= BILINEAR_ATOL for v in ties[b][i][j]), \
            f"pixel {b, i, j}: {got.tolist()} is none of the values its tied edge tests allow, {ties[b][i][j]}"


def is_exact(steps) -> bool:
    """Does every op of the reference's table copy whole pixels?"""
    size = (H, W)
    for op, p in steps:
        maps = op_maps(op, p, size)
        if not all(m.exact for m in maps):
            return False
        size = maps[0].out_size
    return True


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
@pytest.mark.parametrize("name", list(CASES))
def test_fused_read_matches_the_loop(name, dtype):
    x = images(dtype)
    pipe = A.Pipeline(*CASES[name](), seed=len(name))
    params = draw(pipe, x)
    out = pipe(x, params=params)
    expected, _, ties = reference(pipe, params, x)
    assert out.shape == expected.shape
    if is_exact(flat_steps(pipe.nodes, params)):  # whole pixels (and fills) are copied, never computed
        assert torch.equal(out, expected.to(out.dtype))
    else:
        assert_matches_loop(out, expected, ties)


def unfused(pipe, params, x):
    """augpipe's op-by-op path: every geometric op read on its own (``fuse.run(..., fuse=False)``)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return fuse.run(list(zip(pipe.nodes, params)), {"images": x, "targets": None}, dtype, fuse=False)


@pytest.mark.parametrize("name", list(CASES))
def test_op_by_op_read_matches_the_loop_read_op_by_op(name):
    x = images(torch.float64, seed=1)
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 1)
    params = draw(pipe, x)
    expected, _, ties = reference(pipe, params, x, fused=False)
    assert_matches_loop(unfused(pipe, params, x)["images"], expected, ties)


@pytest.mark.parametrize("name", ["crop, resized crop larger: true neighbours past the crop",
                                  "resized crop, rotation: a hard edge", "rotation, resized crop: one read",
                                  "resized crop, perspective: one read", "elastic, perspective: one read",
                                  "rotation, flip, elastic: one read"])
def test_fused_and_op_by_op_reads_differ_as_documented(name):
    """The reference follows the fused definition on purpose: these compositions read differently op by op (an
    intermediate edge extended, a border blended twice, two interpolations), and each path matches its loop."""
    x = images(torch.float64, seed=2)
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 2)
    params = draw(pipe, x)
    fused, _, fused_ties = reference(pipe, params, x)
    op_by_op, _, op_by_op_ties = reference(pipe, params, x, fused=False)
    assert (fused - op_by_op).abs().max() > 1e-2
    assert_matches_loop(pipe(x, params=params), fused, fused_ties)
    assert_matches_loop(unfused(pipe, params, x)["images"], op_by_op, op_by_op_ties)


# ----------------------------------------------------------------------------------------------- masks
MASK_CASES = ["flip, padded crop, vertical flip", "reflect crop, flip, constant crop",
              "constant crop, then reflect crop", "flip, padded crop, resized crop, vertical flip",
              "resized crop, flip, padded crop: a hard edge", "flip, padded crop, affine, padded crop",
              "rotation, resized crop: one read", "reflect crop, flip, rotation", "perspective",
              "padded crop, perspective: a hard edge", "flip, perspective, padded crop, vertical flip",
              "reflect crop, flip, perspective", "rotation, perspective: one read",
              "flip, elastic, vertical flip: border blended into the fill", "padded crop, elastic: a hard edge",
              "elastic, flip, padded crop", "reflect crop, elastic", "resized crop, elastic: one read",
              "elastic, perspective: one read", "perspective, elastic: one read"]


@pytest.mark.parametrize("name", MASK_CASES)
def test_masks_follow_the_same_maps_read_nearest(name):
    """Labels 1 to 9 in, and 0 where the images get a constant fill; a point that lands on a pixel edge (within
    float rounding) may take either side's label."""
    x = images(torch.float64, seed=3)
    masks = torch.randint(1, 10, (B, 1, H, W), generator=torch.Generator().manual_seed(3))
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 3)
    params = draw(pipe, x)
    out = pipe(x, masks=masks, params=params)["masks"]
    _, labels, _ = reference(pipe, params, x, masks)
    assert out.shape == (B, 1, len(labels[0]), len(labels[0][0])) and out.dtype == masks.dtype
    got = out[:, 0].tolist()
    cells = [(value, allowed) for row, allowed_row in zip(sum(got, []), sum(labels, []))
             for value, allowed in zip(row, allowed_row)]
    wrong = [(value, allowed) for value, allowed in cells if value not in allowed]
    assert not wrong, f"{len(wrong)} mask pixels differ from the loop, e.g. {wrong[:5]}"
    assert sum(len(allowed) > 1 for _, allowed in cells) <= len(cells) // 10  # ties are rare, not the rule
    assert torch.equal(masks, torch.randint(1, 10, (B, 1, H, W), generator=torch.Generator().manual_seed(3)))


# ----------------------------------------------------------------------------------------------- points
POINT_CASES = ["flip, padded crop, resized crop, vertical flip", "resized crop, rotation: a hard edge",
               "reflect crop, flip, rotation", "flip, padded crop, affine, padded crop",
               "flip, random-applied affine, vertical flip", "padded crop, perspective: a hard edge",
               "flip, perspective, padded crop, vertical flip", "resized crop, perspective: one read",
               "perspective, resized crop larger: one read", "rotation, perspective: one read",
               "flip, random-applied perspective, crop"]


def points(seed):
    """Keypoints (B, 8, 2) anywhere in the image, and boxes (B, 5, 4) around some of them; last rows NaN."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(B, 8, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H])
    xy[:, -1] = math.nan
    wh = 0.5 + torch.rand(B, 5, 2, generator=g, dtype=torch.float64) * torch.tensor([W / 2, H / 2])
    boxes = torch.cat((xy[:, :5], (xy[:, :5] + wh).minimum(torch.tensor([W, H]))), dim=-1)
    return xy, boxes


@pytest.mark.parametrize("name", POINT_CASES)
def test_keypoints_and_boxes_follow_the_forward_maps(name):
    x = images(torch.float64, seed=4)
    keypoints, boxes = points(seed=len(name))
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 4)
    params = draw(pipe, x)
    out = pipe(x, keypoints=keypoints, boxes=boxes, params=params)
    steps = flat_steps(pipe.nodes, params)
    expected_points = torch.tensor(move_keypoints(steps, keypoints, (H, W)), dtype=torch.float64)
    expected_boxes = torch.tensor(move_boxes(steps, boxes, (H, W)), dtype=torch.float64)
    assert expected_points[:, :-1].isfinite().any() and expected_points[:, :-1].isnan().any()  # some leave
    torch.testing.assert_close(out["keypoints"], expected_points, atol=1e-4, rtol=0, equal_nan=True)
    torch.testing.assert_close(out["boxes"], expected_boxes, atol=1e-4, rtol=0, equal_nan=True)


@pytest.mark.parametrize("name", list(CASES))
def test_each_forward_map_inverts_its_sampling_map(name):
    """The table's two directions agree, so keypoints move to where the pixels they sit on are read from."""
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 5)
    params = draw(pipe, images(torch.float64))
    size = (H, W)
    for op, p in flat_steps(pipe.nodes, params):
        for m in op_maps(op, p, size):
            if m.to_output is None:  # a dense map: no forward map, points are refused (test below)
                continue
            for point in [(0.5, 0.5), (3.25, 7.5), (10.0, 1.75), (-2.0, 12.0)]:
                back = m.to_input(*m.to_output(*point))
                assert math.isclose(back[0], point[0], abs_tol=1e-9) and math.isclose(back[1], point[1], abs_tol=1e-9)
        size = m.out_size


@pytest.mark.parametrize("name", ["elastic", "padded crop, elastic: a hard edge", "elastic, perspective: one read"])
def test_a_dense_map_refuses_keypoints_and_boxes_as_the_table_does(name):
    """The field has no tested inverse: augpipe refuses points through it before reading anything, and the table
    has no forward map to move them with."""
    x = images(torch.float64, seed=6)
    keypoints, boxes = points(seed=6)
    pipe = A.Pipeline(*CASES[name](), seed=len(name) + 6)
    params = draw(pipe, x)
    with pytest.raises(ValueError, match="ElasticTransform.*cannot carry keypoints"):
        pipe(x, keypoints=keypoints, params=params)
    with pytest.raises(ValueError, match="ElasticTransform.*cannot carry boxes"):
        pipe(x, boxes=boxes, params=params)
    steps = flat_steps(pipe.nodes, params)
    with pytest.raises(NotImplementedError, match="ElasticTransform.*no forward map"):
        move_keypoints(steps, keypoints, (H, W))
    with pytest.raises(NotImplementedError, match="ElasticTransform.*no forward map"):
        move_boxes(steps, boxes, (H, W))
