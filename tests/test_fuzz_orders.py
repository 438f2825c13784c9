"""Random graphs of ops in random orders: the executor's paths must agree with each other.

- Graphs of whole-pixel ops only (flips, crops padded in any mode, and RandomApply, OneOf and nested Pipelines
  around them), in any order: the fused read equals the op-by-op path (``fuse.run(..., fuse=False)``) exactly.
- Graphs of whole-pixel ops and one bilinear op (a resized crop, a rotation, an affine map, a perspective, an
  elastic field, maybe random-applied): the fused read equals the op-by-op path within float rounding, except
  within a pixel of an intermediate image's edge, where augpipe/fuse.py documents that the one read sees true
  neighbours or a hard edge where op by op sees an extended edge or a blended border. The excluded pixels come
  from the map table of the loop reference (tests/geometry_reference.py); two bilinear ops in a row read
  differently everywhere (one interpolation against two), so these graphs have one.
- A few graphs of every op, wrappers included, compiled (``compile=True``) and run on the params an eager run drew:
  equal within 1e-5. Each compile takes seconds, so there are few; ``-k "not compiled"`` leaves them out.

Graphs come from ``random_graph``, which draws from ``VOCABULARY``: a new op joins the fuzzer by adding its
factory there (and, if geometric, its map to ``geometry_reference.MAPS``).
"""
import random

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import augpipe as A
from augpipe import fuse
from geometry_reference import flat_steps, intermediate_edge_band

B, C, SIZE = 4, 3, 16
MIN, MAX = 6, 16  # image sides along the way
FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------- op factories
# Each factory takes (rng, (h, w), keep) and returns (node, output (h, w)); keep=True asks for the input's size (a
# RandomApply or OneOf branch must keep it).
def flip(rng, size, keep):
    return rng.choice([A.HorizontalFlip, A.VerticalFlip])(p=rng.choice([0.5, 1.0])), size


def crop(rng, size, keep):
    h, w = size
    mode = rng.choice(A.RandomCrop.MODES)
    limit = 3 if mode != "reflect" else min(3, h - 1, w - 1)  # reflect padding stays below the image's side
    if rng.random() < 0.3:
        padding = rng.randint(0, limit)
        l = t = r = b = padding
    else:
        l, t, r, b = padding = tuple(rng.randint(0, limit) for _ in range(4))
    out = size if keep else (rng.randint(max(MIN, h - 4), min(h + t + b, MAX)),
                             rng.randint(max(MIN, w - 4), min(w + l + r, MAX)))
    return A.RandomCrop(out, padding=padding, fill=rng.choice([0.0, 0.3, 1.0]), padding_mode=mode), out


def resized(rng, size, keep):
    out = size if keep else (rng.randint(8, MAX), rng.randint(8, MAX))
    return A.RandomResizedCrop(out, scale=(rng.choice([0.1, 0.3, 0.6]), 1.0)), out


def rotation(rng, size, keep):
    return A.RandomRotation(rng.choice([10, 30, 90]), fill=rng.choice([0.0, 0.5, 1.0])), size


def affine(rng, size, keep):
    return A.RandomAffine(rng.choice([0, 20, 45]), translate=rng.choice([None, (0.2, 0.1)]),
                          scale=rng.choice([None, (0.7, 1.3)]), shear=rng.choice([None, 10, (-10, 10, -5, 5)]),
                          fill=rng.choice([0.0, 0.5, 1.0])), size


def perspective(rng, size, keep):
    # Up to 0.5 the moved corners stay a strictly convex quad at every size here (test_map_reference.perspective).
    return A.RandomPerspective(rng.choice([0.2, 0.5]), p=rng.choice([0.5, 1.0]), fill=rng.choice([0.0, 0.5, 1.0])), size


def elastic(rng, size, keep):
    return A.ElasticTransform(rng.choice([10.0, 30.0, 60.0]), sigma=rng.choice([1.0, 2.5, 4.0]),
                              p=rng.choice([0.5, 1.0]), fill=rng.choice([0.0, 0.5, 1.0])), size


def brightness(rng, size, keep):
    return A.Brightness(0.4, p=rng.choice([0.5, 1.0])), size


def contrast(rng, size, keep):
    return A.Contrast(0.4, p=rng.choice([0.5, 1.0])), size


def normalize(rng, size, keep):
    return A.Normalize((0.5, 0.45, 0.4), (0.25, 0.2, 0.3)), size


def cutout(rng, size, keep):
    return A.Cutout(rng.randint(2, 6), count=rng.randint(1, 2), fill=rng.choice([0.0, 0.5]),
                    p=rng.choice([0.5, 1.0])), size


def mixup(rng, size, keep):
    return A.Mixup(rng.choice([0.2, 1.0]), p=rng.choice([0.5, 1.0]), per_batch=rng.random() < 0.3), size


def cutmix(rng, size, keep):
    return A.CutMix(1.0, p=rng.choice([0.5, 1.0]), per_batch=rng.random() < 0.3), size


def random_apply(*inner):
    def make(rng, size, keep):
        node, _ = rng.choice(inner)(rng, size, True)
        return A.RandomApply(node, p=rng.choice([0.3, 0.7])), size
    make.__name__ = f"random_apply({', '.join(f.__name__ for f in inner)})"
    return make


def one_of(*inner):
    def make(rng, size, keep):
        branches = [rng.choice(inner)(rng, size, True)[0] for _ in range(rng.randint(2, 3))]
        return A.OneOf(*branches, weights=[rng.choice([1, 2]) for _ in branches]), size
    make.__name__ = f"one_of({', '.join(f.__name__ for f in inner)})"
    return make


def sub_pipeline(*inner):
    def make(rng, size, keep):
        nodes = []
        for _ in range(2):
            node, size = rng.choice(inner)(rng, size, keep)
            nodes.append(node)
        return A.Pipeline(*nodes), size
    make.__name__ = f"sub_pipeline({', '.join(f.__name__ for f in inner)})"
    return make


EXACT = [flip, crop]
BILINEAR = [resized, rotation, affine, perspective, elastic]
PHOTOMETRIC = [brightness, contrast, normalize, cutout, mixup, cutmix]
# Everything the compiled graphs draw from.
VOCABULARY = EXACT + BILINEAR + PHOTOMETRIC + [random_apply(*EXACT, *BILINEAR, *PHOTOMETRIC),
                                               one_of(*EXACT, *BILINEAR, *PHOTOMETRIC)]


def random_graph(rng, vocabulary, count, fixed=()):
    """``count`` nodes drawn from ``vocabulary`` in a random order, plus the factories in ``fixed`` at random
    places; sizes are followed so every node fits the images it gets. Returns (nodes, output size)."""
    factories = [rng.choice(vocabulary) for _ in range(count)]
    for factory in fixed:
        factories.insert(rng.randint(0, len(factories)), factory)
    nodes, size = [], (SIZE, SIZE)
    for factory in factories:
        node, size = factory(rng, size, False)
        nodes.append(node)
    return nodes, size


def images(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (B, C, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.float() / 255


def op_by_op(pipe, params, x):
    return fuse.run(list(zip(pipe.nodes, params)), {"images": x, "targets": None}, torch.float32, fuse=False)["images"]


# ----------------------------------------------------------------------------------------------- fused == op by op
@FUZZ
@given(rng=st.randoms(use_true_random=False), count=st.integers(1, 7), dtype=st.sampled_from([torch.uint8,
                                                                                             torch.float32]))
def test_whole_pixel_graphs_in_any_order_read_fused_as_op_by_op(rng, count, dtype):
    sub = sub_pipeline(*EXACT)
    nodes, size = random_graph(rng, EXACT + [sub, random_apply(*EXACT, sub), one_of(*EXACT, sub)], count)
    note(f"graph: {nodes}")
    x = images(dtype, rng.randint(0, 1000))
    pipe = A.Pipeline(*nodes, seed=rng.randint(0, 1000))
    out = pipe(x)
    assert out.shape == (B, C, *size)
    assert torch.equal(out, op_by_op(pipe, pipe.last_params, x))


@FUZZ
@given(rng=st.randoms(use_true_random=False), count=st.integers(0, 5),
       bilinear=st.sampled_from(BILINEAR + [random_apply(rotation, affine, perspective, elastic)]))
def test_graphs_with_one_bilinear_op_read_fused_as_op_by_op_away_from_intermediate_edges(rng, count, bilinear):
    nodes, size = random_graph(rng, EXACT + [random_apply(flip)], count, fixed=[bilinear])
    note(f"graph: {nodes}")
    x = images(torch.float32, rng.randint(0, 1000))
    pipe = A.Pipeline(*nodes, seed=rng.randint(0, 1000))
    out = pipe(x)
    params = pipe.last_params
    reference = op_by_op(pipe, params, x)
    band = torch.tensor(intermediate_edge_band(flat_steps(pipe.nodes, params), (SIZE, SIZE)), dtype=torch.bool)
    compared = ~band[:, None].expand_as(out)
    assert compared.any()  # the comparison is not vacuous
    torch.testing.assert_close(out[compared], reference[compared], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- compiled == eager
# A fixed list of graphs, with the input dtype each runs on: each compile costs seconds on a small CPU. Between them
# they hold every factory of the vocabulary (test_the_graphs_for_the_compiler_hold_every_op_and_wrapper checks it
# without compiling) and start with a resized crop, a whole-pixel crop (uint8: read as row windows of a float copy,
# compiled on a CPU), an affine map and a mix (uint8: read from a plain float copy). One run of geometric ops holds
# a perspective and an elastic field (one dense read of a homography, a field, a resized crop and a flip).
COMPILED = [(7, torch.float32), (29, torch.uint8), (597, torch.float32), (541, torch.uint8)]


def compiled_graph(seed):
    rng = random.Random(seed)
    return random_graph(rng, VOCABULARY, count=4, fixed=[rng.choice(VOCABULARY) for _ in range(2)])[0]


def nested(node):
    """A node and the nodes inside it (RandomApply's node, OneOf's branches)."""
    yield node
    for inner in [node.node] if isinstance(node, A.RandomApply) else getattr(node, "branches", []):
        yield from nested(inner)


def test_the_graphs_for_the_compiler_hold_every_op_and_wrapper():
    held = [n for seed, _ in COMPILED for node in compiled_graph(seed) for n in nested(node)]
    expected = {A.HorizontalFlip, A.VerticalFlip, A.RandomCrop, A.RandomResizedCrop, A.RandomRotation,
                A.RandomAffine, A.RandomPerspective, A.ElasticTransform, A.Brightness, A.Contrast, A.Normalize,
                A.Cutout, A.Mixup, A.CutMix, A.RandomApply, A.OneOf}
    assert expected <= {type(n) for n in held}, f"missing: {expected - {type(n) for n in held}}"
    assert {n.padding_mode for n in held if isinstance(n, A.RandomCrop)} == set(A.RandomCrop.MODES)
    assert any({A.RandomPerspective, A.ElasticTransform} <= set(run) for seed, _ in COMPILED
               for run in geometric_runs(compiled_graph(seed)))


def geometric_runs(nodes):
    """The types of each run of consecutive geometric nodes (wrappers end a run)."""
    runs = [[]]
    for node in nodes:
        if isinstance(node, A.GeometricOp):
            runs[-1].append(type(node))
        elif runs[-1]:
            runs.append([])
    return runs


@pytest.mark.parametrize("seed, dtype", COMPILED)
def test_compiled_random_graph_equals_eager_on_the_same_params(seed, dtype, compiled_graphs):
    nodes = compiled_graph(seed)
    x, labels = images(dtype, seed), torch.arange(B) % 5
    eager = A.Pipeline(*nodes, seed=seed, num_classes=5)
    out, targets = eager(x, labels)
    compiled = A.Pipeline(*nodes, seed=seed, num_classes=5, compile=True)
    before = compiled_graphs()
    result, result_targets = compiled(x, labels, params=eager.last_params)
    assert compiled_graphs() > before  # compiled code ran, not the eager function
    torch.testing.assert_close(result, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(result_targets, targets, atol=1e-6, rtol=0)
