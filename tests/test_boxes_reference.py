"""Boxes under rotation, affine maps and resized crops, against a reference that shares no code with augpipe.

Each op's forward map (input pixel -> output pixel) is written here from the op's params and the documented
parameterization (docs/references.md, "Geometry"): torchvision's affine convention for RandomAffine (a positive
angle turns clockwise on screen, p' = c + t + s R(a) Shy(sy) Shx(sx) (p - c) about the centre c,
Shx(a) = [[1, -tan a], [0, 1]], Shy(a) = [[1, 0], [-tan a, 1]]), the same map with the angle negated for
RandomRotation (counter-clockwise), and the box's scaling for RandomResizedCrop. All four corners of every box are
moved, the axis-aligned hull is taken and clipped to the op's output, and a box left with no area is a NaN row;
one op after another, as each op clips to its own output.
The pixels themselves are a second check: a filled rectangle must land inside its moved box and fill it.
"""
import math

import pytest
import torch

import augpipe as A

H, W = 20, 24
B, N = 16, 5


def gen(seed):
    return torch.Generator().manual_seed(seed)


def affine_forward(angle, translate, scale, shear, size):
    """(B, 2, 3) float64 forward maps in torchvision's affine convention, about the image centre (W / 2, H / 2)."""
    maps = []
    for a, (tx, ty), s, (sx, sy) in zip(angle.tolist(), translate.tolist(), scale.tolist(), shear.tolist()):
        a, sx, sy = math.radians(a), math.radians(sx), math.radians(sy)
        rotate = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        shear_y = torch.tensor([[1.0, 0.0], [-math.tan(sy), 1.0]], dtype=torch.float64)
        shear_x = torch.tensor([[1.0, -math.tan(sx)], [0.0, 1.0]], dtype=torch.float64)
        linear = s * rotate @ shear_y @ shear_x
        centre = torch.tensor([size[1] / 2, size[0] / 2], dtype=torch.float64)
        shift = centre + torch.tensor([tx, ty], dtype=torch.float64) - linear @ centre
        maps.append(torch.cat((linear, shift[:, None]), dim=1))
    return torch.stack(maps)


def forward_map(op, p, size):
    """The op's forward maps (B, 2, 3) and its output size."""
    if isinstance(op, A.RandomRotation):
        return affine_forward(-p["angle"], p["translate"], p["scale"], p["shear"], size), size
    if isinstance(op, A.RandomAffine):
        return affine_forward(p["angle"], p["translate"], p["scale"], p["shear"], size), size
    maps = torch.zeros(len(next(iter(p.values()))), 2, 3, dtype=torch.float64)
    if isinstance(op, A.RandomResizedCrop):  # the box (top, left, h, w) is scaled onto the output
        (ho, wo), (top, left, h, w) = op.size, p["box"].double().unbind(1)
        maps[:, 0, 0], maps[:, 0, 2] = wo / w, -left * wo / w
        maps[:, 1, 1], maps[:, 1, 2] = ho / h, -top * ho / h
        return maps, op.size
    if isinstance(op, (A.HorizontalFlip, A.VerticalFlip)):  # x -> W - x (y -> H - y) where flipped
        axis, extent = (0, size[1]) if isinstance(op, A.HorizontalFlip) else (1, size[0])
        maps[:, 0, 0] = maps[:, 1, 1] = 1.0
        maps[:, axis, axis] = torch.where(p["flip"], -1.0, 1.0)
        maps[:, axis, 2] = torch.where(p["flip"], float(extent), 0.0)
        return maps, size
    if isinstance(op, A.RandomCrop):  # shift by the padding, then by the window's offset
        maps[:, 0, 0] = maps[:, 1, 1] = 1.0
        maps[:, 0, 2] = op.padding[0] - p["left"].double()
        maps[:, 1, 2] = op.padding[1] - p["top"].double()
        return maps, op.size
    raise NotImplementedError(f"no reference map for {op!r}")


def move_boxes(boxes, maps, size):
    """Every corner moved, the hull clipped to [0, W] x [0, H]; no area left -> NaN row. One box at a time."""
    out = torch.full(boxes.shape, math.nan, dtype=torch.float64)
    for b in range(boxes.shape[0]):
        for n in range(boxes.shape[1]):
            x1, y1, x2, y2 = boxes[b, n].tolist()
            if math.isnan(x1):
                continue
            corners = torch.tensor([[x1, y1, 1.0], [x2, y1, 1.0], [x1, y2, 1.0], [x2, y2, 1.0]], dtype=torch.float64)
            moved = corners @ maps[b].T  # (4, 2)
            lo_x, hi_x = min(max(moved[:, 0].min().item(), 0), size[1]), min(max(moved[:, 0].max().item(), 0), size[1])
            lo_y, hi_y = min(max(moved[:, 1].min().item(), 0), size[0]), min(max(moved[:, 1].max().item(), 0), size[0])
            if hi_x > lo_x and hi_y > lo_y:
                out[b, n] = torch.tensor([lo_x, lo_y, hi_x, hi_y])
    return out


def reference_boxes(pipe, boxes, size):
    for op, p in zip(pipe.nodes, pipe.last_params):
        maps, size = forward_map(op, p, size)
        boxes = move_boxes(boxes, maps, size)
    return boxes


def random_boxes(seed):
    """B x N boxes anywhere in the image (some near the edges, so that maps push them out), the last row NaN."""
    g = gen(seed)
    xy = torch.rand(B, N, 2, generator=g) * torch.tensor([W, H])
    wh = 1 + torch.rand(B, N, 2, generator=g) * torch.tensor([W / 2, H / 2])
    boxes = torch.cat((xy, (xy + wh).minimum(torch.tensor([W, H]))), dim=-1)
    boxes[:, -1] = math.nan
    return boxes


PIPELINES = {
    "rotation": lambda: A.Pipeline(A.RandomRotation(60), seed=1),
    "affine": lambda: A.Pipeline(A.RandomAffine(40, translate=(0.2, 0.1), scale=(0.7, 1.3), shear=(-20, 20, -10, 10)),
                                 seed=2),
    "resized crop": lambda: A.Pipeline(A.RandomResizedCrop((16, 20), scale=(0.2, 0.8)), seed=3),
    "resized crop, flip, rotation": lambda: A.Pipeline(A.RandomResizedCrop(18, scale=(0.3, 1.0)), A.HorizontalFlip(),
                                                       A.RandomRotation(25), seed=4),
    "padded crop, affine, flip": lambda: A.Pipeline(A.RandomCrop((18, 22), padding=3), A.RandomAffine(30, shear=15),
                                                    A.VerticalFlip(), seed=5),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_boxes_are_the_clipped_hull_of_their_four_moved_corners(name):
    pipe = PIPELINES[name]()
    boxes = random_boxes(seed=len(name))
    result = pipe(torch.zeros(B, 1, H, W), boxes=boxes)
    out, (h, w) = result["boxes"], result["images"].shape[-2:]
    expected = reference_boxes(pipe, boxes, (H, W))
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-3, equal_nan=True)
    # the cases occur: boxes kept, and among them boxes cut by the image's edge; the NaN padding row stays NaN
    kept = ~torch.isnan(expected[:, :-1, 0])
    on_edge = (expected[..., :2] == 0).any(-1) | (expected[..., 2] == w) | (expected[..., 3] == h)
    assert kept.float().mean() > 0.5 and on_edge[:, :-1][kept].any()
    assert torch.isnan(out[:, -1]).all()


def test_a_square_turned_45_degrees_gets_the_box_around_its_diamond():
    """By hand: the 4 x 4 square at the centre of a 10 x 10 image, turned 45 degrees, has its corners 2 sqrt 2 from
    the centre along the axes (the opposite corners alone would give a box with no width)."""
    r = 2 * math.sqrt(2)
    box = torch.tensor([[[3.0, 3.0, 7.0, 7.0]]])
    for op in (A.RandomRotation((45, 45)), A.RandomAffine((45, 45)), A.RandomAffine((-45, -45))):
        out = A.Pipeline(op)(torch.zeros(1, 1, 10, 10), boxes=box)["boxes"]
        torch.testing.assert_close(out, torch.tensor([[[5 - r, 5 - r, 5 + r, 5 + r]]]), rtol=0, atol=1e-5)


def test_a_quarter_turn_moves_a_box_as_rot90():
    """RandomRotation turns counter-clockwise, RandomAffine clockwise (torchvision's rotate and affine): a box in the
    right half of a square image ends in the top half, or in the bottom half."""
    box = torch.tensor([[[6.0, 1.0, 9.0, 4.0]]])  # x 6..9, y 1..4 in a 10 x 10 image
    ccw = A.Pipeline(A.RandomRotation((90, 90)))(torch.zeros(1, 1, 10, 10), boxes=box)["boxes"]
    cw = A.Pipeline(A.RandomAffine((90, 90)))(torch.zeros(1, 1, 10, 10), boxes=box)["boxes"]
    torch.testing.assert_close(ccw, torch.tensor([[[1.0, 1.0, 4.0, 4.0]]]), rtol=0, atol=1e-5)  # (x, y) -> (y, 10 - x)
    torch.testing.assert_close(cw, torch.tensor([[[6.0, 6.0, 9.0, 9.0]]]), rtol=0, atol=1e-5)  # (x, y) -> (10 - y, x)


@pytest.mark.parametrize("name", ["rotation", "affine", "resized crop, flip, rotation"])
def test_a_filled_rectangle_lands_inside_its_moved_box_and_fills_it(name):
    """The pixels, which augpipe moves by its sampling maps, agree with the boxes. A bilinear read of a 0/1
    rectangle exceeds 0.5 exactly where the point read lies inside the rectangle, so the centres of those pixels lie
    inside the moved rectangle, hence inside its box; where the image's edge cut nothing off, they also reach the
    box's sides to within a pixel and a half (a corner turned to a point holds no pixel centre near its tip)."""
    g = gen(11)
    x1, y1 = torch.randint(4, W // 2, (B,), generator=g), torch.randint(4, H // 2, (B,), generator=g)
    x2, y2 = x1 + torch.randint(4, 8, (B,), generator=g), y1 + torch.randint(3, 7, (B,), generator=g)
    images = torch.zeros(B, 1, H, W)
    for b in range(B):
        images[b, 0, y1[b]:y2[b], x1[b]:x2[b]] = 1.0
    boxes = torch.stack((x1, y1, x2, y2), dim=1).float()[:, None]
    out = PIPELINES[name]()(images, boxes=boxes)
    size = out["images"].shape[-2:]
    checked = tight = 0
    for b in range(B):
        box = out["boxes"][b, 0]
        filled = (out["images"][b, 0] > 0.5).nonzero()
        if torch.isnan(box).any():
            assert len(filled) == 0, b  # the rectangle left the image with its box
            continue
        centres = filled.flip(1).double() + 0.5  # (x, y) of the pixel centres
        lo, hi = centres.amin(0), centres.amax(0)
        assert (lo >= box[:2] - 1e-4).all() and (hi <= box[2:] + 1e-4).all(), (b, lo, hi, box)
        checked += 1
        if (box[:2] > 0).all() and box[2] < size[1] and box[3] < size[0]:  # the edge cut nothing off
            assert (lo <= box[:2] + 1.5).all() and (hi >= box[2:] - 1.5).all(), (b, lo, hi, box)
            tight += 1
    assert checked >= B // 2 and tight >= B // 4
