"""Brute-force geometry written from the definitions, shared by the map reference tests and the order fuzzer.

Nothing here calls augpipe's kernels, matrices or executor: an op is read only through its constructor's
attributes (size, padding, padding_mode, fill) and the params it drew, and every pixel is computed by a plain
Python loop over output pixels.

Conventions (docs/references.md, "Geometry"): the image covers [0, W] x [0, H] and pixel (row i, column j) has
its centre at (j + 0.5, i + 0.5). Each op's map sends a point of its output to the point of its input it reads.

How a run of geometric ops reads its pixels follows augpipe/fuse.py's module docstring, the fused definition:
- Consecutive geometric ops form one segment and the pixels are read once, at the composed map. A crop with
  edge-extending padding (reflect, replicate) only starts a segment, and only an all-integer one: such a crop
  later in a run, or a bilinear op after one, starts a new segment (whose input is the previous segment's output).
- An all-integer segment is the same as pad-and-slice op by op (``F.pad``: reflect mirrors without repeating the
  edge pixel, replicate repeats it, constant writes the fill). So consecutive all-integer segments, which the
  executor may read as one (each crop's padding its own), give the same pixels read one after the other.
- A bilinear segment reads its input once: where the point falls between pixels, the four neighbours are blended.
  The first op with a border, when only flips come before it, has its border blended into its fill (taps outside
  the input read the fill, as padding then resampling would). Otherwise taps are clamped to the input's edge
  (edge pixels extended). Every other op with a border whose own input does not contain the point (a closed
  rectangle test on the point mapped into that op's input) writes its fill there: a hard edge. The latest such
  op, counting from the output, decides.
  This differs from resampling op by op: op by op, each resample clamps its taps at its own input's edge and
  blends every later op's border. The two agree except within a pixel of an intermediate image's edge, and where
  two bilinear ops meet (one read against two).
- Masks (integer label maps) follow the same maps and borders, read nearest (the pixel containing the point,
  edge pixels extended), with 0 wherever the images get a constant fill.
- Keypoints and boxes move op by op through each op's forward map (input -> output); a keypoint that leaves
  [0, W] x [0, H] becomes NaN, a box becomes the clipped hull of its four moved corners, NaN once it has no area
  or once a homography sends a corner to or past the line at infinity.

``MAPS`` is the table of map definitions, one entry per op class: a new geometric op joins both test files by
adding its entry here, plus its cases in test_map_reference.CASES and its factory in test_fuzz_orders.VOCABULARY.
A perspective warp's ``to_input`` is its 3 x 3 homography (solved here from the four corner pairs) followed by the
divide by the third coordinate, and its ``to_output`` the inverse homography; an elastic warp's ``to_input`` adds
its displacement field at the point, and its ``to_output`` is None until it has a tested inverse (moving keypoints
or boxes through it then raises). A point that a homography sends to or past the line at infinity is nowhere in
the picture: outside every image (fill), and NaN as a keypoint.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

import augpipe as A

Point = tuple[float, float]


@dataclass(frozen=True)
class Map:
    """One op's map for one sample."""

    out_size: tuple[int, int]  # (H, W) of the op's output
    to_input: Callable[[float, float], Point]  # output point -> the input point it reads
    to_output: Callable[[float, float], Point] | None  # input point -> output point (keypoints, boxes); None: none
    border: tuple[str, float] | None  # (padding_mode, fill) when the op reads outside its input, else None
    exact: bool  # the op sends pixel centres onto pixel centres (whole-pixel reads, no blending)
    keeps_bounds: bool  # the op sends the image rectangle onto itself (flips)


def _values(params: dict, b: int) -> dict:
    """Sample b's params as Python numbers."""
    return {k: v[b].tolist() for k, v in params.items()}


# ----------------------------------------------------------------------------------------------- the map table
def flip_map(op, p: dict, size) -> Map:
    """HorizontalFlip: x -> W - x where flipped; VerticalFlip: y -> H - y. Each is its own inverse."""
    H, W = size
    horizontal = isinstance(op, A.HorizontalFlip)

    def mirror(x, y):
        if not p["flip"]:
            return x, y
        return (W - x, y) if horizontal else (x, H - y)

    return Map(size, mirror, mirror, None, exact=True, keeps_bounds=True)


def crop_map(op, p: dict, size) -> Map:
    """RandomCrop: pad by (left, top, right, bottom), then the window at (top, left) of the padded image; an
    output point (x, y) is (x + left, y + top) in the padded image, (x + left - pad_left, y + top - pad_top) in
    the input."""
    pad_left, pad_top = op.padding[0], op.padding[1]
    dx, dy = p["left"] - pad_left, p["top"] - pad_top
    border = (op.padding_mode, op.fill) if any(op.padding) else None
    return Map(op.size, lambda x, y: (x + dx, y + dy), lambda x, y: (x - dx, y - dy), border, exact=True,
               keeps_bounds=False)


def resized_crop_map(op, p: dict, size) -> Map:
    """RandomResizedCrop: the box (top, left, h, w) scaled onto the (oh, ow) output: x -> left + x w / ow."""
    top, left, h, w = p["box"]
    oh, ow = op.size
    return Map(op.size, lambda x, y: (left + x * w / ow, top + y * h / oh),
               lambda x, y: ((x - left) * ow / w, (y - top) * oh / h), None, exact=False, keeps_bounds=False)


def affine_forward(angle: float, translate, scale: float, shear, size) -> tuple[list[list[float]], Point]:
    """torchvision's affine about the centre c: p -> c + t + s R(angle) Shy(shear y) Shx(shear x) (p - c), angles
    in degrees, R clockwise on screen (y points down): [[cos, -sin], [sin, cos]]; Shx(a) = [[1, -tan a], [0, 1]],
    Shy(a) = [[1, 0], [-tan a, 1]]. Returns the 2 x 2 linear part and the centre."""
    a, sx, sy = (math.radians(v) for v in (angle, *shear))
    rotate = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    shear_y = [[1.0, 0.0], [-math.tan(sy), 1.0]]
    shear_x = [[1.0, -math.tan(sx)], [0.0, 1.0]]

    def mul(m, n):
        return [[sum(m[i][k] * n[k][j] for k in range(2)) for j in range(2)] for i in range(2)]

    linear = [[scale * v for v in row] for row in mul(mul(rotate, shear_y), shear_x)]
    return linear, (size[1] / 2, size[0] / 2)


def _affine(angle: float, p: dict, fill: float, size) -> Map:
    linear, (cx, cy) = affine_forward(angle, p["translate"], p["scale"], p["shear"], size)
    (a, b), (c, d) = linear
    tx, ty = p["translate"]
    det = a * d - b * c

    def forward(x, y):
        u, v = x - cx, y - cy
        return cx + tx + a * u + b * v, cy + ty + c * u + d * v

    def back(x, y):  # the inverse: c + L^-1 (p - c - t)
        u, v = x - cx - tx, y - cy - ty
        return cx + (d * u - b * v) / det, cy + (-c * u + a * v) / det

    return Map(size, back, forward, ("constant", fill), exact=False, keeps_bounds=False)


def affine_map(op, p: dict, size) -> Map:
    """RandomAffine: torchvision's affine (clockwise for a positive angle); pixels from outside take fill."""
    return _affine(p["angle"], p, op.fill, size)


def rotation_map(op, p: dict, size) -> Map:
    """RandomRotation: counter-clockwise for a positive angle, as torchvision's rotate: the affine map with the
    angle negated."""
    return _affine(-p["angle"], p, op.fill, size)


# Where a homography sends a point to or past the line at infinity (third coordinate <= 0): the picture has no such
# point, so it lies outside every image, and far enough that no later map (a shift, a displacement) brings it back.
NOWHERE = (-1e9, -1e9)


def homography(pairs) -> np.ndarray:
    """The 3 x 3 homography (last entry 1) through four point pairs ((x, y) -> (u, v)): the 8 x 8 linear system
    u (g x + h y + 1) = a x + b y + c, v (g x + h y + 1) = d x + e y + f, solved in float64."""
    rows, rhs = [], []
    for (x, y), (u, v) in pairs:
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.append(np.linalg.solve(np.array(rows, float), np.array(rhs, float)), 1.0).reshape(3, 3)


def _projective(matrix: np.ndarray, nowhere: Point) -> Callable[[float, float], Point]:
    """The point map of a homography, with the perspective divide; ``nowhere`` where the divisor is not positive."""

    def move(x, y):
        u, v, w = matrix @ np.array([x, y, 1.0])
        return (float(u / w), float(v / w)) if w > 0 else nowhere

    return move


def perspective_map(op, p: dict, size) -> Map:
    """RandomPerspective: the corner pixels (0, 0), (W - 1, 0), (W - 1, H - 1), (0, H - 1), their indices taken as
    coordinates, each moved inward (towards the centre) by its drawn (x, y) whole pixels; the map is the homography
    through the four pairs moved corner -> original corner, and its inverse the forward map (a point whose divisor
    is not positive leaves the picture: NaN, so keypoints and boxes that reach it are dropped)."""
    H, W = size
    corners = [(0, 0), (W - 1, 0), (W - 1, H - 1), (0, H - 1)]
    inward = [(1, 1), (-1, 1), (-1, -1), (1, -1)]  # the direction towards the centre, per corner and axis
    moved = [(x + sx * dx, y + sy * dy) for (x, y), (sx, sy), (dx, dy) in zip(corners, inward, p["inward"])]
    to_input = homography(list(zip(moved, corners)))
    return Map(size, _projective(to_input, NOWHERE), _projective(np.linalg.inv(to_input), (math.nan, math.nan)),
               ("constant", op.fill), exact=False, keeps_bounds=False)


def elastic_map(op, p: dict, size) -> Map:
    """ElasticTransform: a point p of the output reads p + d(p), d the drawn displacement field (x, y pixels at
    each output pixel centre), read bilinearly between the centres with the field's edge values extended. No
    forward map: moving keypoints or boxes through it raises."""
    H, W = size
    field = p["displacement"]  # [H][W][2]

    def at(x, y):
        u, v = min(max(x - 0.5, 0), W - 1), min(max(y - 0.5, 0), H - 1)
        c0, r0 = math.floor(u), math.floor(v)
        c1, r1 = min(c0 + 1, W - 1), min(r0 + 1, H - 1)
        tu, tv = u - c0, v - r0
        return [(1 - tv) * ((1 - tu) * field[r0][c0][k] + tu * field[r0][c1][k])
                + tv * ((1 - tu) * field[r1][c0][k] + tu * field[r1][c1][k]) for k in range(2)]

    def displaced(x, y):
        dx, dy = at(x, y)
        return x + dx, y + dy

    return Map(size, displaced, None, ("constant", op.fill), exact=False, keeps_bounds=False)


# The table of map definitions. Looked up along the class's MRO, so RandomRotation finds its own entry before
# RandomAffine's. A new op adds a function (op, one sample's params, input (H, W)) -> Map here.
MAPS: dict[type, Callable[..., Map]] = {
    A.HorizontalFlip: flip_map,
    A.VerticalFlip: flip_map,
    A.RandomCrop: crop_map,
    A.RandomResizedCrop: resized_crop_map,
    A.RandomRotation: rotation_map,
    A.RandomAffine: affine_map,
    A.RandomPerspective: perspective_map,
    A.ElasticTransform: elastic_map,
}


def is_geometric(op) -> bool:
    return any(cls in MAPS for cls in type(op).__mro__)


def flat_steps(nodes, params) -> list:
    """(op, params) steps of a graph with RandomApply around single geometric ops: such a RandomApply only writes
    the identity into the params of the samples it skips (its docstring), so its op reads with its neighbours."""
    steps = []
    for node, p in zip(nodes, params):
        if isinstance(node, A.Pipeline):
            steps += flat_steps(node.nodes, p)
        elif isinstance(node, A.RandomApply) and is_geometric(node.node):
            steps.append((node.node, p["node"]))
        else:
            steps.append((node, p))
    return steps


def op_maps(op, params: dict, size) -> list[Map]:
    """Each sample's Map of ``op`` for inputs of ``size``."""
    build = next((MAPS[cls] for cls in type(op).__mro__ if cls in MAPS), None)
    if build is None:
        raise NotImplementedError(f"geometry_reference: no map definition for {op!r}; add one to MAPS")
    batch = len(next(iter(params.values())))
    return [build(op, _values(params, b), size) for b in range(batch)]


# ----------------------------------------------------------------------------------------------- segments
def _extends(m: Map) -> bool:
    return m.border is not None and m.border[0] != "constant"


def segments(maps: list[Map]) -> list[list[int]]:
    """Indices of consecutive geometric ops grouped as one read each (fuse.py's docstring, the rule above)."""
    out = []
    for k, m in enumerate(maps):
        if out and not _extends(m) and not (_extends(maps[out[-1][0]]) and not m.exact):
            out[-1].append(k)
        else:
            out.append([k])
    return out


def _pad_index(i: int, n: int, mode: str) -> int:
    """An index outside [0, n) moved inside as F.pad extends an image (one reflection: padding < n)."""
    if mode == "reflect":
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
    return min(max(i, 0), n - 1)


def _inside(point: Point, size) -> bool:
    x, y = point
    return 0 <= x <= size[1] and 0 <= y <= size[0]


def _points(maps: list[Map], point: Point) -> list[Point]:
    """points[k]: the output point mapped into the input of op k; points[-1] the output point itself."""
    points = [point]
    for m in reversed(maps):
        points.append(m.to_input(*points[-1]))
    return points[::-1]


def _exact_pixel(maps: list[Map], sizes: list, i: int, j: int, label: bool):
    """Trace output pixel (i, j) back through whole-pixel maps, padding at each op as F.pad would: returns
    ("fill", value) or ("pixel", row, col) of the segment's input."""
    x, y = j + 0.5, i + 0.5
    for k in range(len(maps) - 1, -1, -1):
        x, y = maps[k].to_input(x, y)
        row, col = math.floor(y), math.floor(x)
        H, W = sizes[k]
        if not (0 <= row < H and 0 <= col < W):
            mode, fill = maps[k].border
            if mode == "constant":
                return "fill", 0 if label else fill
            row, col = _pad_index(row, H, mode), _pad_index(col, W, mode)
            x, y = col + 0.5, row + 0.5
    return "pixel", row, col


def _first_blended(maps: list[Map]) -> int | None:
    """The op whose border is blended into the one read: the first with a border, if only flips precede it."""
    k = next((k for k, m in enumerate(maps) if m.border is not None), None)
    if k is None or not all(m.keeps_bounds for m in maps[:k]):
        return None
    return k


def _hard_edge(maps: list[Map], sizes: list, points: list[Point], first) -> float | None:
    """The fill of the latest op (other than the blended one) whose input does not contain its point, or None."""
    for k in range(len(maps) - 1, -1, -1):
        if maps[k].border is not None and k != first and not _inside(points[k], sizes[k]):
            return maps[k].border[1]
    return None


def _bilinear(image, point: Point, blend_fill: float | None) -> list[float]:
    """Every channel of ``image`` ([C][H][W] floats) at ``point``: taps at the pixel centres around it, weights
    1 - t and t per axis. blend_fill None: taps clamped to the edge (the caller decides what a point outside the
    image reads, ``_edge_tests``); else taps outside read ``blend_fill``."""
    H, W = len(image[0]), len(image[0][0])
    x, y = point
    u, v = x - 0.5, y - 0.5
    c0, r0 = math.floor(u), math.floor(v)
    tu, tv = u - c0, v - r0

    def tap(plane, r, c):
        if blend_fill is None:
            return plane[min(max(r, 0), H - 1)][min(max(c, 0), W - 1)]
        return plane[r][c] if 0 <= r < H and 0 <= c < W else blend_fill

    return [(1 - tv) * ((1 - tu) * tap(pl, r0, c0) + tu * tap(pl, r0, c0 + 1))
            + tv * ((1 - tu) * tap(pl, r0 + 1, c0) + tu * tap(pl, r0 + 1, c0 + 1)) for pl in image]


def _nearest(labels, point: Point) -> int:
    """The label of the pixel containing ``point`` (edge pixels extended to the closed rectangle), 0 outside."""
    H, W = len(labels), len(labels[0])
    if not _inside(point, (H, W)):
        return 0
    return labels[min(math.floor(point[1]), H - 1)][min(math.floor(point[0]), W - 1)]


def _edge_tests(maps: list[Map], sizes: list, points: list[Point], first, blend) -> list[tuple[Point, tuple, float]]:
    """The closed-rectangle tests that decide a bilinear pixel, in the order they decide it, as (point, size of the
    rectangle, the value written when the point is outside): every op with a border other than the blended one,
    from the output back (``_hard_edge``), then, when the read clamps its taps (no blended border), the read's own
    point, which reads 0 outside the image (no test's map gets there in exact arithmetic: an op that reads outside
    has a border, tested before it)."""
    tests = [(points[k], sizes[k], maps[k].border[1]) for k in range(len(maps) - 1, -1, -1)
             if maps[k].border is not None and k != first]
    if blend is None:
        tests.append((points[0], sizes[0], 0.0))
    return tests


def _side(point: Point, size, tie: float) -> int:
    """1: ``point`` lies inside the closed rectangle [0, W] x [0, H] by more than ``tie``; -1: outside by more than
    ``tie``; 0: within ``tie`` of its boundary, where float rounding decides the test (a tie)."""
    (x, y), (H, W) = point, size
    depth = min(x, W - x, y, H - y)  # >= 0 inside; its size is the distance to the nearest edge
    return 1 if depth > tie else -1 if depth < -tie else 0


def _bilinear_pixel(image, point: Point, blend, tests, inside: list[bool]) -> list[float]:
    """One output pixel of a bilinear segment once each edge test is decided (``inside``, one per test)."""
    for (_, _, fill), ok in zip(tests, inside):
        if not ok:
            return [fill] * len(image)
    return _bilinear(image, point, blend)


def _read_segment(maps: list[Map], image, labels, tie: float, ties=None):
    """One sample through one segment: (image [C][Ho][Wo], labels [Ho][Wo] of candidate sets or None, ties).

    A label is a set of values: with ``tie`` > 0 the output point is also moved by +-tie on each axis and every
    label read is accepted, so a point that lands on a pixel edge (where float rounding picks the side) is not
    held to one side.
    An image pixel whose value an edge test decides with its point within ``tie`` of that edge (a tie: float
    rounding picks the side) has its value under every way of deciding those tests in ``ties`` ([Ho][Wo]: None or
    a list of channel-value lists, the first the exact decision's); ``ties`` given are the input's, which a
    whole-pixel segment carries to the pixels that copy them (a bilinear one reads a tied pixel as its first)."""
    sizes = [(len(image[0]), len(image[0][0]))] + [m.out_size for m in maps]
    Ho, Wo = sizes[-1]
    out = [[[0.0] * Wo for _ in range(Ho)] for _ in image]
    out_ties = [[None] * Wo for _ in range(Ho)]
    out_labels = None if labels is None else [[None] * Wo for _ in range(Ho)]
    exact = all(m.exact for m in maps)
    first = _first_blended(maps)
    blend = maps[first].border[1] if first is not None else None
    plain = None if labels is None else [[_first(v) for v in row] for row in labels]
    for i in range(Ho):
        for j in range(Wo):
            if exact:
                hit = _exact_pixel(maps, sizes, i, j, label=False)
                for c in range(len(image)):
                    out[c][i][j] = hit[1] if hit[0] == "fill" else image[c][hit[1]][hit[2]]
                if hit[0] == "pixel" and ties is not None:
                    out_ties[i][j] = ties[hit[1]][hit[2]]
                if labels is not None:
                    hit = _exact_pixel(maps, sizes, i, j, label=True)
                    out_labels[i][j] = {hit[1] if hit[0] == "fill" else plain[hit[1]][hit[2]]}
                continue
            points = _points(maps, (j + 0.5, i + 0.5))
            tests = _edge_tests(maps, sizes, points, first, blend)
            values = _bilinear_pixel(image, points[0], blend, tests, [_inside(t[0], t[1]) for t in tests])
            for c in range(len(image)):
                out[c][i][j] = values[c]
            sides = [_side(point, size, tie) for point, size, _ in tests]
            tied = [k for k, side in enumerate(sides) if side == 0]
            if tied:
                out_ties[i][j] = [values]
                for decided in itertools.product([True, False], repeat=len(tied)):
                    inside = [side > 0 for side in sides]
                    for k, ok in zip(tied, decided):
                        inside[k] = ok
                    out_ties[i][j].append(_bilinear_pixel(image, points[0], blend, tests, inside))
            if labels is not None:
                found = set()
                for dx, dy in [(0, 0)] + ([(tie, tie), (tie, -tie), (-tie, tie), (-tie, -tie)] if tie else []):
                    moved = _points(maps, (j + 0.5 + dx, i + 0.5 + dy))
                    found.add(0 if _hard_edge(maps, sizes, moved, first) is not None
                              else _nearest(plain, moved[0]))
                out_labels[i][j] = found
    return out, out_labels, out_ties


def _first(value):
    """A label read from a previous segment's output is a set of candidates; the first segment reads ints."""
    return min(value) if isinstance(value, set) else value


class Reference(NamedTuple):
    """What ``reference_geometry`` computes for a batch."""

    images: list  # [B][C][Ho][Wo] floats
    labels: list | None  # [B][Ho][Wo] sets of labels, or None without masks
    ties: list  # [B][Ho][Wo]: None, or every value [C] the pixel may take where an edge test is a tie


def reference_geometry(steps, images, masks=None, tie: float = 1e-4, fused: bool = True) -> Reference:
    """Run geometric (op, params) steps over images (B, C, H, W) by the definitions above, one sample and one
    output pixel at a time. ``fused=False``: every op is a segment of its own, read on its own (op-by-op
    resampling).

    masks (B, 1, H, W) integer labels. Between segments a label with several candidates (a tie) goes on as its
    smallest; keep ties to the last segment in tests that read masks. Image ties (``Reference.ties``) go on
    through whole-pixel segments; a later bilinear segment reads a tied pixel as its first value."""
    B = images.shape[0]
    x = images.double().tolist()
    labels = None if masks is None else [m[0] for m in masks.tolist()]
    ties = [None] * B
    size = tuple(images.shape[-2:])
    maps = []  # maps[k][b]
    for op, p in steps:
        maps.append(op_maps(op, p, size))
        size = maps[-1][0].out_size
    for seg in segments([m[0] for m in maps]) if fused else [[k] for k in range(len(maps))]:
        results = [_read_segment([maps[k][b] for k in seg], x[b], None if labels is None else labels[b], tie,
                                 ties[b]) for b in range(B)]
        x = [r[0] for r in results]
        labels = None if labels is None else [r[1] for r in results]
        ties = [r[2] for r in results]
    if not maps:
        ties = [[[None] * size[1] for _ in range(size[0])] for _ in range(B)]
    return Reference(x, labels, ties)


# ----------------------------------------------------------------------------------------------- points
def _forward_maps(op, maps: list[Map]) -> None:
    if any(m.to_output is None for m in maps):
        raise NotImplementedError(f"geometry_reference: {op!r} has no forward map in MAPS to move points with")


def move_keypoints(steps, keypoints, size):
    """Keypoints (B, K, 2) moved op by op through the forward maps; NaN once outside an op's output."""
    out = keypoints.double().tolist()
    for op, p in steps:
        maps = op_maps(op, p, size)
        size = maps[0].out_size
        _forward_maps(op, maps)
        for b, m in enumerate(maps):
            moved = []
            for x, y in out[b]:
                if math.isnan(x):
                    moved.append([math.nan, math.nan])
                    continue
                point = m.to_output(x, y)
                moved.append(list(point) if _inside(point, size) else [math.nan, math.nan])
            out[b] = moved
    return out


def move_boxes(steps, boxes, size):
    """Boxes (B, N, 4) xyxy moved op by op: the hull of the four moved corners clipped to the op's output, NaN
    once it has no area."""
    out = boxes.double().tolist()
    for op, p in steps:
        maps = op_maps(op, p, size)
        H, W = size = maps[0].out_size
        _forward_maps(op, maps)
        for b, m in enumerate(maps):
            moved = []
            for x1, y1, x2, y2 in out[b]:
                if math.isnan(x1):
                    moved.append([math.nan] * 4)
                    continue
                corners = [m.to_output(x, y) for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
                xs, ys = [c[0] for c in corners], [c[1] for c in corners]
                if any(math.isnan(v) for v in xs + ys):  # a corner left the picture: the box has no hull
                    moved.append([math.nan] * 4)
                    continue
                lo_x, hi_x = min(max(min(xs), 0), W), min(max(max(xs), 0), W)
                lo_y, hi_y = min(max(min(ys), 0), H), min(max(max(ys), 0), H)
                moved.append([lo_x, lo_y, hi_x, hi_y] if hi_x > lo_x and hi_y > lo_y else [math.nan] * 4)
            out[b] = moved
    return out


# ----------------------------------------------------------------------------------------------- fused vs op by op
def _near_edge(point: Point, size, width: float) -> bool:
    """Is ``point`` within ``width`` pixels of the boundary of the rectangle [0, W] x [0, H]?"""
    (x, y), (H, W) = point, size

    def near(v, n):
        return -width < v < width or n - width < v < n + width

    return (near(x, W) and -width < y < H + width) or (near(y, H) and -width < x < W + width)


def _extend(v: float, n: int, mode: str) -> float:
    """A coordinate outside [0, n] moved inside as F.pad's reflect or replicate extends the pixel centres."""
    if 0 <= v <= n:
        return v
    if mode == "reflect":  # centre of index -i for index i < 0, of 2 (n - 1) - i for i >= n
        return 1 - v if v < 0 else 2 * n - 1 - v
    return min(max(v, 0.5), n - 0.5)


def intermediate_edge_band(steps, size, width: float = 1.0) -> list[list[list[bool]]]:
    """Per sample, the output pixels whose point lies within ``width`` pixels of the edge of an image between two
    of these geometric steps: where a fused read (true neighbours, a hard edge) and op-by-op resampling (the
    intermediate image's edge extended, its border blended) may differ. Points are followed through reflect and
    replicate padding, which copy pixels near an edge outwards. [B][Ho][Wo] bools."""
    maps, sizes = [], [size]
    for op, p in steps:
        maps.append(op_maps(op, p, sizes[-1]))
        sizes.append(maps[-1][0].out_size)

    def near(chain, point):
        for k in range(len(chain) - 1, 0, -1):
            point = chain[k].to_input(*point)
            if _extends(chain[k]):
                (h, w), mode = sizes[k], chain[k].border[0]
                point = _extend(point[0], w, mode), _extend(point[1], h, mode)
            if _near_edge(point, sizes[k], width):
                return True
        return False

    Ho, Wo = sizes[-1]
    return [[[near([m[b] for m in maps], (j + 0.5, i + 0.5)) for j in range(Wo)] for i in range(Ho)]
            for b in range(len(maps[0]) if maps else 0)]
