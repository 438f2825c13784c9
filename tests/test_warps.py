"""RandomPerspective and ElasticTransform, and the projective and dense reads they bring to the executor.

References: kornia's ``warp_perspective`` with the same homography; ``torch.nn.functional.grid_sample`` with the same
displacement field; the homography solved from the four corner pairs as a linear system (numpy), as torchvision
solves it; per-pixel loops written from the definitions; the op-by-op (unfused) executor for compositions.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import augpipe as A
import augpipe.functional as F
from augpipe import fuse


def images(batch=3, size=(20, 26), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=g, dtype=dtype)


def solved_homography(start, end):
    """The sampling homography (out -> in) through the four pairs end[k] -> start[k], from the 8 x 8 linear system
    x_in (g x + h y + 1) = a x + b y + c, y_in (g x + h y + 1) = d x + e y + f (numpy, float64)."""
    rows, rhs = [], []
    for (xo, yo), (xi, yi) in zip(end, start):
        rows.append([xo, yo, 1, 0, 0, 0, -xi * xo, -xi * yo])
        rows.append([0, 0, 0, xo, yo, 1, -yi * xo, -yi * yo])
        rhs += [xi, yi]
    a, b, c, d, e, f, g, h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.array([[a, b, c], [d, e, f], [g, h, 1.0]])


def end_corners(op, params, size):
    inward = params["inward"].double()
    start = op.corners(size).double().expand_as(inward)
    return start, start + inward * torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)


# ----------------------------------------------------------------------------------------------- perspective
def test_perspective_corners_follow_torchvisions_sampling_and_the_matrix_solves_the_corner_pairs():
    op = A.RandomPerspective(distortion_scale=0.6, p=1.0)
    pipe = A.Pipeline(op, seed=3)
    size = (21, 30)
    pipe(images(64, size))
    params = pipe.last_params[0]
    start, end = end_corners(op, params, size)
    dx, dy = int(0.6 * (30 // 2)), int(0.6 * (21 // 2))
    inward = params["inward"]
    assert inward[..., 0].min() == 0 and inward[..., 0].max() == dx  # U{0..int(d W // 2)}, every value reached
    assert inward[..., 1].min() == 0 and inward[..., 1].max() == dy
    matrices = op.map(params, size).double()
    for b in range(8):
        expected = solved_homography(start[b].numpy(), end[b].numpy())
        got = (matrices[b] / matrices[b, 2, 2]).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def kornia_matrix(sampling):
    """kornia's warp_perspective takes the forward map in pixel-index coordinates (centres at integers); ours maps
    output to input in coordinates whose pixel centres are at + 0.5."""
    to_index = torch.tensor([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], dtype=sampling.dtype)
    from_index = torch.tensor([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=sampling.dtype)
    return torch.linalg.inv(to_index @ sampling @ from_index)


def test_perspective_equals_kornia_warp_perspective_with_the_same_matrix():
    kornia = pytest.importorskip("kornia")
    x = images(4, (19, 23))
    op = A.RandomPerspective(distortion_scale=0.7, p=1.0)
    pipe = A.Pipeline(op, seed=1)
    out = pipe(x)
    m = op.map(pipe.last_params[0], (19, 23)).double()
    ref = kornia.geometry.transform.warp_perspective(x, kornia_matrix(m), (19, 23), mode="bilinear",
                                                     padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_perspective_equals_a_per_pixel_loop_from_the_definition():
    x = images(2, (7, 9))
    op = A.RandomPerspective(distortion_scale=0.8, p=1.0, fill=0.25)
    pipe = A.Pipeline(op, seed=5)
    out = pipe(x)
    start, end = end_corners(op, pipe.last_params[0], (7, 9))
    padded = TF.pad(x, (1, 1, 1, 1), value=0.25)  # the image surrounded by fill pixels
    for b in range(2):
        h = solved_homography(start[b].numpy(), end[b].numpy())
        for i in range(7):
            for j in range(9):
                px, py, pw = h @ np.array([j + 0.5, i + 0.5, 1.0])
                u, v = px / pw - 0.5 + 1, py / pw - 0.5 + 1  # index space of the padded image
                c0, r0 = int(np.floor(u)), int(np.floor(v))
                wc, wr = u - c0, v - r0

                def at(r, c):
                    r, c = min(max(r, 0), 8), min(max(c, 0), 10)
                    return padded[b, :, r, c]

                ref = ((1 - wr) * ((1 - wc) * at(r0, c0) + wc * at(r0, c0 + 1))
                       + wr * ((1 - wc) * at(r0 + 1, c0) + wc * at(r0 + 1, c0 + 1)))
                torch.testing.assert_close(out[b, :, i, j], ref, rtol=0, atol=1e-5)


def test_perspective_moves_keypoints_and_boxes_through_the_homography():
    x = images(3, (24, 32))
    op = A.RandomPerspective(distortion_scale=0.5, p=1.0)
    pipe = A.Pipeline(op, seed=2)
    points = torch.tensor([[[10.0, 12.0], [16.0, 8.0], [30.0, 20.0]]]).repeat(3, 1, 1)
    boxes = torch.tensor([[[8.0, 6.0, 20.0, 18.0]]]).repeat(3, 1, 1)
    out = pipe(x, keypoints=points, boxes=boxes)
    start, end = end_corners(op, pipe.last_params[0], (24, 32))
    for b in range(3):
        forward = np.linalg.inv(solved_homography(start[b].numpy(), end[b].numpy()))
        for k in range(3):
            px, py, pw = forward @ np.array([*points[b, k].tolist(), 1.0])
            moved = torch.tensor([px / pw, py / pw], dtype=torch.float32)
            if 0 <= moved[0] <= 32 and 0 <= moved[1] <= 24:
                torch.testing.assert_close(out["keypoints"][b, k], moved, rtol=0, atol=1e-3)
            else:
                assert out["keypoints"][b, k].isnan().all()
        x1, y1, x2, y2 = boxes[b, 0].tolist()
        corners = [forward @ np.array([cx, cy, 1.0]) for cx, cy in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
        xs, ys = [c[0] / c[2] for c in corners], [c[1] / c[2] for c in corners]
        expected = torch.tensor([max(min(xs), 0), max(min(ys), 0), min(max(xs), 32), min(max(ys), 24)])
        torch.testing.assert_close(out["boxes"][b, 0], expected.float(), rtol=0, atol=1e-3)


def test_perspective_moves_masks_with_the_nearest_source_pixel():
    op = A.RandomPerspective(distortion_scale=0.6, p=1.0)
    pipe = A.Pipeline(op, seed=4)
    masks = torch.arange(2 * 15 * 17).view(2, 15, 17) % 7
    out = pipe(images(2, (15, 17)), masks=masks)
    start, end = end_corners(op, pipe.last_params[0], (15, 17))
    for b in range(2):
        h = solved_homography(start[b].numpy(), end[b].numpy())
        for i in range(15):
            for j in range(17):
                px, py, pw = h @ np.array([j + 0.5, i + 0.5, 1.0])
                sx, sy = px / pw, py / pw
                if min(abs(sx - round(sx)), abs(sy - round(sy))) < 1e-4:
                    continue  # on a pixel edge: float32 rounding may take either side
                inside = 0 <= sx <= 17 and 0 <= sy <= 15
                expected = masks[b, min(int(sy), 14), min(int(sx), 16)] if inside else 0
                assert out["masks"][b, i, j] == expected


# ----------------------------------------------------------------------------------------------- elastic
def test_elastic_displacement_is_smoothed_uniform_noise_scaled_as_torchvision():
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(2, 2, 30, 22, generator=g, dtype=torch.float64) * 2 - 1
    alpha, sigma = 40.0, 2.5
    field = F.elastic_displacement(noise, alpha, sigma)
    k = int(8 * sigma + 1) + (1 - int(8 * sigma + 1) % 2)  # odd
    assert k == 21
    t = torch.arange(k, dtype=torch.float64) - k // 2
    w = torch.exp(-t ** 2 / (2 * sigma ** 2))
    w = (w[:, None] * w[None, :]) / w.sum() ** 2
    blurred = TF.conv2d(TF.pad(noise.reshape(4, 1, 30, 22), (k // 2,) * 4, mode="reflect"), w[None, None])
    blurred = blurred.view(2, 2, 30, 22)
    # torchvision's field in grid units: dx alpha / W, dy alpha / H; a grid unit is W / 2 (x) and H / 2 (y) pixels
    grid_units = torch.stack((blurred[:, 0] * alpha / 22, blurred[:, 1] * alpha / 30), -1)
    pixels = grid_units * torch.tensor([22 / 2, 30 / 2], dtype=torch.float64)
    torch.testing.assert_close(field, pixels, rtol=0, atol=1e-12)


def test_elastic_equals_grid_sample_with_the_same_field():
    x = images(3, (18, 25))
    op = A.ElasticTransform(alpha=30.0, sigma=3.0)
    pipe = A.Pipeline(op, seed=0)
    out = pipe(x)
    field = pipe.last_params[0]["displacement"].double()
    ys, xs = torch.meshgrid(torch.arange(18, dtype=torch.float64) + 0.5, torch.arange(25, dtype=torch.float64) + 0.5,
                            indexing="ij")
    sx, sy = xs + field[..., 0], ys + field[..., 1]
    grid = torch.stack((sx / 25 * 2 - 1, sy / 18 * 2 - 1), -1)  # align_corners=False: the image spans [-1, 1]
    ref = TF.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-9)


def test_elastic_refuses_boxes_and_keypoints_and_moves_masks():
    pipe = A.Pipeline(A.ElasticTransform(), seed=0)
    x = images(2, (16, 16))
    with pytest.raises(ValueError, match="ElasticTransform.*cannot carry boxes"):
        pipe(x, boxes=torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match="cannot carry keypoints"):
        pipe(x, keypoints=torch.zeros(2, 1, 2))
    masks = (torch.arange(256).view(1, 16, 16) % 5).expand(2, 16, 16)
    out = pipe(x, masks=masks)
    field = pipe.last_params[0]["displacement"]
    ys, xs = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    sx, sy = xs + field[..., 0], ys + field[..., 1]
    inside = (sx >= 0) & (sx <= 16) & (sy >= 0) & (sy <= 16)
    ref = masks[torch.arange(2)[:, None, None], sy.floor().long().clamp(0, 15), sx.floor().long().clamp(0, 15)]
    assert torch.equal(out["masks"], torch.where(inside, ref, 0))


# ----------------------------------------------------------------------------------------------- compositions
COMPOSED = [
    [A.HorizontalFlip(), A.RandomPerspective(p=0.7), A.RandomCrop(18, padding=2)],
    [A.ElasticTransform(alpha=20.0, sigma=2.0, p=0.8), A.VerticalFlip(), A.RandomCrop(16)],
    [A.HorizontalFlip(p=1.0), A.ElasticTransform(alpha=20.0, sigma=2.0), A.VerticalFlip(), A.RandomCrop(19, 1)],
]


@pytest.mark.parametrize("ops", COMPOSED,
                         ids=["flip-perspective-crop", "elastic-vflip-crop", "flip-elastic-vflip-crop"])
def test_one_read_of_a_composed_run_equals_op_by_op_reads_when_one_map_interpolates(ops):
    """Whole-pixel maps before or after the one bilinear map move pixel centres onto pixel centres, so reading the
    composition once equals reading op by op (where each op then has its own segment)."""
    x = images(4, (20, 20))
    pipe = A.Pipeline(*ops, seed=7)
    fused = pipe(x)
    steps = list(zip(pipe.nodes, pipe.last_params))
    unfused = fuse.run(steps, {"images": x, "targets": None}, torch.float64, fuse=False)["images"]
    torch.testing.assert_close(fused, unfused, rtol=0, atol=1e-5)  # float32 matrices, composed or not


def test_a_dense_run_reads_the_composed_map_once_as_grid_sample_would():
    """Elastic then perspective: each output pixel goes back through the homography, then through the field read
    bilinearly at that point (edges extended), and the image is read once there; the perspective, a later op that
    reads outside its input, leaves its fill where its own source point falls outside."""
    x = images(4, (20, 21))
    elastic, perspective = A.ElasticTransform(alpha=20.0, sigma=2.0), A.RandomPerspective(p=1.0, fill=0.5)
    pipe = A.Pipeline(elastic, perspective, seed=7)
    out = pipe(x)
    field, persp = pipe.last_params
    m = perspective.map(persp, (20, 21)).double()
    ys, xs = torch.meshgrid(torch.arange(20.0) + 0.5, torch.arange(21.0) + 0.5, indexing="ij")
    q = torch.einsum("bij,hwj->bhwi", m, torch.stack((xs, ys, torch.ones_like(xs)), -1).double())
    q = q[..., :2] / q[..., 2:]

    def grid(points):  # pixel coordinates -> grid_sample's [-1, 1] with align_corners=False
        return torch.stack((points[..., 0] / 21 * 2 - 1, points[..., 1] / 20 * 2 - 1), -1)

    d = TF.grid_sample(field["displacement"].double().permute(0, 3, 1, 2), grid(q), padding_mode="border",
                       align_corners=False).permute(0, 2, 3, 1)
    ref = TF.grid_sample(x, grid(q + d), padding_mode="zeros", align_corners=False)
    inside = ((q[..., 0] >= 0) & (q[..., 0] <= 21) & (q[..., 1] >= 0) & (q[..., 1] <= 20))[:, None]
    torch.testing.assert_close(out, torch.where(inside, ref, 0.5), rtol=0, atol=1e-6)


def test_a_run_with_a_dense_map_reads_the_pixels_once():
    """Each of the run's maps is taken back point by point, and the pixels are gathered by one bilinear read."""
    calls = []
    real = F.warp_points

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    pipe = A.Pipeline(A.HorizontalFlip(), A.ElasticTransform(), A.RandomPerspective(p=1.0), A.RandomRotation(10))
    try:
        F.warp_points = counting
        pipe(images(2, (16, 16)))
    finally:
        F.warp_points = real
    assert len(calls) == 1
    assert "dense" in pipe.explain((2, 3, 16, 16)).splitlines()[3]


# ----------------------------------------------------------------------------------------------- properties
@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 4), h=st.integers(2, 13), w=st.integers(2, 13), seed=st.integers(0, 2**16))
def test_neutral_parameters_are_the_identity_at_any_size(batch, h, w, seed):
    x = images(batch, (h, w), seed=seed)
    for op in (A.RandomPerspective(distortion_scale=0.0, p=1.0), A.RandomPerspective(p=0.0),
               A.ElasticTransform(alpha=0.0), A.ElasticTransform(p=0.0)):
        torch.testing.assert_close(A.Pipeline(op, seed=seed)(x), x, rtol=0, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 4), h=st.integers(2, 17), w=st.integers(2, 17), seed=st.integers(0, 2**16),
       fill=st.floats(0, 1))
def test_outputs_stay_in_range_and_replay_at_any_size(batch, h, w, seed, fill):
    x = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    pipe = A.Pipeline(A.RandomPerspective(0.9, p=0.8, fill=fill), A.ElasticTransform(15.0, 2.0, p=0.7, fill=fill),
                      seed=seed)
    out = pipe(x)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert torch.equal(pipe(x, params=pipe.last_params), out)
    assert torch.equal(A.Pipeline(*pipe.nodes, seed=seed)(x), out)  # the same seed draws the same maps


def sliced(params, index):
    """A pipeline's params (lists and dicts of per-sample tensors) for the samples at ``index``, in that order."""
    if isinstance(params, dict):
        return {k: sliced(v, index) for k, v in params.items()}
    if isinstance(params, list):
        return [sliced(v, index) for v in params]
    return params[index]


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(2, 5), h=st.integers(2, 15), w=st.integers(2, 15), seed=st.integers(0, 2**16),
       data=st.data())
def test_each_sample_reads_only_its_own_image_map_and_labels(batch, h, w, seed, data):
    """Any sub-batch, in any order, replayed with its samples' params gives the same rows: no read (the field,
    the taps, the labels) crosses samples. Masks keep their dtype and only take labels they had, or 0 where the
    fill enters; the caller's tensors are left as they were."""
    x = images(batch, (h, w), seed=seed)
    masks = torch.randint(1, 6, (batch, 1, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.int16)
    given_x, given_masks = x.clone(), masks.clone()
    pipe = A.Pipeline(A.RandomPerspective(0.5, p=0.7, fill=0.3), A.ElasticTransform(30.0, 1.5, p=0.7, fill=0.6),
                      seed=seed)
    out = pipe(x, masks=masks)
    assert torch.equal(x, given_x) and torch.equal(masks, given_masks)
    assert out["masks"].dtype == torch.int16 and set(out["masks"].unique().tolist()) <= {0, 1, 2, 3, 4, 5}
    index = torch.tensor(data.draw(st.permutations(range(batch)))[:data.draw(st.integers(1, batch))])
    part = pipe(x[index], masks=masks[index], params=sliced(pipe.last_params, index))
    assert torch.equal(part["images"], out["images"][index])
    assert torch.equal(part["masks"], out["masks"][index])


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), h=st.integers(2, 15), w=st.integers(2, 15), seed=st.integers(0, 2**16),
       value=st.integers(0, 255), dtype=st.sampled_from([torch.uint8, torch.float32]))
def test_a_flat_image_with_its_own_fill_stays_flat(batch, h, w, seed, value, dtype):
    """The two bilinear weights of each axis sum to one and a tap outside reads the fill, so a flat image whose
    fill is its own level comes out flat, across the border of every map: alone, composed by matrix product
    (perspective and rotation) and point by point (perspective and elastic)."""
    x = torch.full((batch, 3, h, w), value, dtype=torch.uint8)
    level = value / 255
    if dtype == torch.float32:
        x = x.float() / 255
    for ops in ([A.RandomPerspective(0.5, p=1.0, fill=level)], [A.ElasticTransform(40.0, 1.5, fill=level)],
                [A.HorizontalFlip(), A.RandomPerspective(0.5, p=1.0, fill=level), A.RandomRotation(30, fill=level)],
                [A.RandomPerspective(0.5, p=1.0, fill=level), A.VerticalFlip(),
                 A.ElasticTransform(40.0, 1.5, fill=level)]):
        out = A.Pipeline(*ops, seed=seed)(x)
        torch.testing.assert_close(out, torch.full_like(out, level), rtol=0, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(2, 12), w=st.integers(2, 12), data=st.data(), fill=st.floats(0, 1))
def test_a_flat_whole_pixel_field_shifts_images_and_masks_with_the_fill_entering(h, w, data, fill):
    """A field of (tx, ty) whole pixels everywhere reads pixel (i + ty, j + tx): every tap has weight 0 or 1, so the
    images are a shift of the input, with the fill (and label 0) where it reads past the edge."""
    tx, ty = data.draw(st.integers(-w - 1, w + 1)), data.draw(st.integers(-h - 1, h + 1))
    x = images(2, (h, w))
    masks = torch.arange(2 * h * w).view(2, 1, h, w) % 7 + 1
    field = torch.tensor([tx, ty], dtype=torch.float32).expand(2, h, w, 2)
    out = A.Pipeline(A.ElasticTransform(fill=fill))(x, masks=masks, params=[{"displacement": field}])
    m = max(h, w) + 2  # pad past any shift, then cut the shifted window
    shifted = TF.pad(x, (m, m, m, m), value=fill)[..., m + ty:m + ty + h, m + tx:m + tx + w]
    shifted_masks = TF.pad(masks, (m, m, m, m), value=0)[..., m + ty:m + ty + h, m + tx:m + tx + w]
    torch.testing.assert_close(out["images"], shifted, rtol=0, atol=1e-12)
    assert torch.equal(out["masks"], shifted_masks)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(5, 20), w=st.integers(5, 20), seed=st.integers(0, 2**16), data=st.data())
def test_a_perspective_keeps_points_inside_its_corners_and_the_homography_takes_them_back(h, w, seed, data):
    """The forward map sends the rectangle of the corner pixels' coordinates, [0, W - 1] x [0, H - 1], onto the
    quad of the moved corners, which lies inside it: a keypoint there stays in the image (never dropped), a box
    there stays inside that rectangle, and the sampling homography (solved here from the corner pairs) takes each
    moved keypoint back to where it was. (Points past the corners' coordinates, within a pixel of the right or
    bottom edge, may leave: the corners are pixel indices taken as coordinates, as torchvision takes them.)"""
    op = A.RandomPerspective(data.draw(st.sampled_from([0.2, 0.5])), p=1.0)
    g = torch.Generator().manual_seed(seed)
    span = torch.tensor([w - 1, h - 1])
    points = torch.rand(2, 6, 2, generator=g, dtype=torch.float64) * span
    corner = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * span / 2
    boxes = torch.cat((corner, corner + span / 2), -1)
    pipe = A.Pipeline(op, seed=seed)
    out = pipe(images(2, (h, w), seed=seed), keypoints=points, boxes=boxes)
    moved = out["keypoints"]
    assert not moved.isnan().any() and not out["boxes"].isnan().any()
    assert (out["boxes"] >= 0).all() and (out["boxes"] <= torch.cat((span, span)) + 1e-4).all()
    start, end = end_corners(op, pipe.last_params[0], (h, w))
    for b in range(2):
        back = solved_homography(start[b].numpy(), end[b].numpy())
        homogeneous = back @ np.concatenate((moved[b].numpy(), np.ones((6, 1))), 1).T
        np.testing.assert_allclose((homogeneous[:2] / homogeneous[2]).T, points[b].numpy(), rtol=0, atol=1e-4)


def test_bad_arguments_are_refused_with_the_op_named():
    with pytest.raises(ValueError, match="RandomPerspective: distortion_scale must be in"):
        A.RandomPerspective(1.5)
    with pytest.raises(ValueError, match="ElasticTransform: alpha and sigma must be >= 0"):
        A.ElasticTransform(alpha=-1.0)
    with pytest.raises(ValueError, match="ElasticTransform: alpha, sigma and fill must be finite"):
        A.ElasticTransform(sigma=float("nan"))
    with pytest.raises(ValueError, match="RandomPerspective.*at least 2x2"):
        A.Pipeline(A.RandomPerspective())(images(1, (1, 5)))


def test_compiled_equals_eager_for_projective_and_dense_runs_traced_whole():
    """One graph: a break would run part of the call eagerly, and compile a piece of it again per pipeline."""
    x = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ops = [A.HorizontalFlip(), A.RandomPerspective(p=0.7), A.RandomCrop(20, padding=2), A.Brightness(0.2),
           A.ElasticTransform(alpha=20.0, sigma=2.0, p=0.6), A.Normalize([0.5] * 3, [0.25] * 3)]
    compiled = A.Pipeline(*ops, seed=0, compile=True)
    torch._dynamo.utils.counters.clear()
    out = compiled(x)
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    eager = A.Pipeline(*ops, seed=0)(x, params=compiled.last_params)
    torch.testing.assert_close(out, eager, rtol=0, atol=1e-4)


def test_corners_on_one_line_have_no_homography_and_keep_the_identity():
    start = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [9.0, 9.0], [0.0, 9.0]]]).repeat(2, 1, 1)
    end = start.clone()
    end[0] = torch.tensor([[4.0, 4.0], [5.0, 5.0], [9.0, 9.0], [0.0, 9.0]])  # three corners on the diagonal
    m = F.perspective_matrix(start, end)
    assert torch.equal(m[0], torch.eye(3)) and torch.isfinite(m).all()
    torch.testing.assert_close(m[1], torch.eye(3), rtol=0, atol=1e-6)
