"""Plans follow from what the composed geometry is, not from how a recipe is written.

Flips commute with reflect and replicate padding, so every order of flips and a crop gets one read and one window
copy; whole-pixel maps compose with each op's own padding, so any order of any crops is one exact gather; and a
crop wrapped in RandomApply is the crop with its identity offset for the samples it skips. Pixels are checked
against a per-sample loop written from the definitions (torch.nn.functional.pad, slicing, flip).
"""
import itertools
import re

import pytest
import torch
import torch.nn.functional as TF

import augpipe as A
from augpipe import functional as F
from augpipe import fuse
from augpipe.ops import Shape

MODES = ("constant", "reflect", "replicate")


def images(b=16, h=11, w=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def loop_reference(x, ops, params):
    """Each op on each sample on its own: F.pad in the crop's mode (its fill for constant), then the window at the
    drawn offset; a flip reverses the sample where it was drawn."""
    for op, p in zip(ops, params):
        out = []
        for k, image in enumerate(x):
            if isinstance(op, A.RandomCrop):
                left, top, right, bottom = op.padding
                pad = (left, right, top, bottom)
                image = image[None]
                if op.padding_mode == "constant":
                    padded = TF.pad(image, pad, value=op.fill)
                else:
                    padded = TF.pad(image, pad, mode=op.padding_mode)
                t, l = int(p["top"][k]), int(p["left"][k])
                out.append(padded[0, :, t:t + op.size[0], l:l + op.size[1]])
            else:
                out.append(image.flip(-1 if op.axis == 0 else -2) if p["flip"][k] else image)
        x = torch.stack(out)
    return x


def geometry_lines(pipe, shape):
    """explain()'s description of the reads and the copy, with the op names taken out."""
    text = pipe.explain(shape)
    text = re.sub(r"geometry \[.*\] ->", "geometry ->", text)
    return [line for line in text.splitlines() if not line.startswith("draws:")]


def flips_and_crop(mode, padding=(3, 1, 2, 4)):
    return [A.HorizontalFlip(), A.VerticalFlip(), A.RandomCrop((10, 9), padding=padding, padding_mode=mode,
                                                               fill=0.25)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", [4, (3, 1, 2, 4)])
def test_every_order_of_flips_and_a_crop_gives_one_plan(mode, padding):
    shape = (16, 3, 11, 9)
    for subset in ((0, 2), (1, 2), (0, 1, 2)):
        plans = set()
        for order in itertools.permutations(subset):
            ops = [flips_and_crop(mode, padding)[i] for i in order]
            assert len(fuse._segments([(op, None) for op in ops])) == 1, ops
            pipe = A.Pipeline(*ops, A.Brightness(0.2), compile=True)  # compiles nothing until called
            plans.add((fuse.window_plan(ops), tuple(geometry_lines(pipe, shape))))
        assert len(plans) == 1, plans
        plan = plans.pop()[0]
        assert plan is not None  # read as row windows
        if mode != "constant":  # the copy is padded by the larger padding of each axis on both sides
            left, top, right, bottom = (padding,) * 4 if isinstance(padding, int) else padding
            assert plan.padding == (max(left, right), max(top, bottom)) * 2 and plan.mode == mode


@pytest.mark.parametrize("modes", list(itertools.product(MODES, repeat=2)))
def test_every_order_of_flips_and_two_crops_is_one_exact_read_with_the_loop_s_pixels(modes, monkeypatch):
    """Four ops in every order (and every shorter selection), each crop with its own padding mode: one read, the
    loop's pixels, eagerly and unfused alike, and through the window copy wherever one is planned (with the
    per-pixel gather switched off, so the pixels must come from the windows)."""
    x = images()
    n = 0
    for k in range(1, 5):
        for order in itertools.permutations(range(4), k):
            every = [A.HorizontalFlip(), A.VerticalFlip(),
                     A.RandomCrop((10, 9), padding=(3, 1, 2, 4), padding_mode=modes[0], fill=0.25),
                     A.RandomCrop(8, padding=2, padding_mode=modes[1], fill=0.5)]
            ops = [every[i] for i in order]
            pipe = A.Pipeline(*ops, seed=n)
            n += 1
            assert len(fuse._segments([(op, None) for op in ops])) == 1
            out = pipe(x)
            params = pipe.last_params
            reference = loop_reference(x.float() / 255, ops, params)
            torch.testing.assert_close(out, reference, rtol=0, atol=0)
            steps = list(zip(pipe.nodes, params))
            unfused = fuse.run(steps, {"images": x}, torch.float32, fuse=False)["images"]
            torch.testing.assert_close(unfused, reference, rtol=0, atol=0)
            plan = fuse.window_plan(ops)
            if plan is None:  # a crop extends an image that is itself cropped
                edges = [i for i, op in enumerate(ops) if fuse._extends(op)]
                assert edges and (len(edges) > 1 or not all(op.keeps_bounds for op in ops[:edges[0]]))
                continue
            window = fuse.Window(F.window_source(x, plan, torch.float32), plan)
            monkeypatch.setattr(F, "gather_separable", None)
            windowed = fuse.run(steps, {"images": x}, torch.float32, window=window)["images"]
            monkeypatch.undo()
            torch.testing.assert_close(windowed, reference, rtol=0, atol=0)


def test_masks_follow_every_order_of_edge_padded_crops_and_flips():
    """Label maps take the same composed gather, with 0 where a constant-padded crop reads outside."""
    x = images(8, 10, 12, seed=3)
    masks = torch.randint(0, 200, (8, 10, 12), generator=torch.Generator().manual_seed(4)).to(torch.uint8)
    for order in itertools.permutations(range(3)):
        every = [A.HorizontalFlip(), A.RandomCrop(9, padding=3, padding_mode="reflect"),
                 A.RandomCrop(8, padding=(2, 0, 1, 3), fill=0.5)]
        ops = [every[i] for i in order]
        pipe = A.Pipeline(*ops, seed=7)
        out = pipe(x, masks=masks)
        as_zero_fill = [op if not isinstance(op, A.RandomCrop) or op.padding_mode != "constant"
                        else A.RandomCrop(op.size, op.padding, fill=0.0) for op in ops]
        reference = loop_reference(masks[:, None].double(), as_zero_fill, pipe.last_params)
        assert torch.equal(out["masks"], reference[:, 0].to(torch.uint8))


@pytest.mark.parametrize("mode", MODES)
def test_a_crop_skipped_by_random_apply_is_the_identity_and_fuses(mode):
    """RandomApply(RandomCrop) rewrites the params (RandomCrop.skip: the offset of the image's own place), so the
    crop joins the flip's read, and each sample is the crop where kept and the image itself where not: as running
    the crop on every sample and selecting (RandomApply over a Pipeline, which has no skip) gives."""
    x = images(32, 11, 9, seed=1)
    crop = A.RandomCrop((11, 9), padding=(3, 1, 2, 4), padding_mode=mode, fill=0.25)
    applied = A.Pipeline(A.HorizontalFlip(), A.RandomApply(crop, p=0.5), seed=2)
    selected = A.Pipeline(A.HorizontalFlip(), A.RandomApply(A.Pipeline(crop), p=0.5), seed=2)
    probe = A.Pipeline(A.HorizontalFlip(), A.RandomApply(crop, p=0.5))
    steps = list(probe.steps(probe.sample(Shape(*x.shape), probe.generator("cpu"), "cpu")))
    assert len(fuse._segments(steps)) == 1
    bare = A.Pipeline(A.HorizontalFlip(), crop, compile=True)
    wrapped = A.Pipeline(A.HorizontalFlip(), A.RandomApply(crop, p=0.5), compile=True)
    assert geometry_lines(wrapped, x.shape)[1:] == geometry_lines(bare, x.shape)[1:]
    assert wrapped._runner.window_plan == bare._runner.window_plan is not None

    out = applied(x)
    flip, node = applied.last_params
    keep = node["keep"]
    assert 0 < int(keep.sum()) < len(keep)
    assert torch.equal(node["node"]["top"][~keep], torch.full_like(node["node"]["top"][~keep], 1))
    assert torch.equal(node["node"]["left"][~keep], torch.full_like(node["node"]["left"][~keep], 3))
    flipped = loop_reference(x.float() / 255, [A.HorizontalFlip()], [flip])
    cropped = loop_reference(flipped, [crop], [node["node"]])
    torch.testing.assert_close(out[keep], cropped[keep], rtol=0, atol=0)
    torch.testing.assert_close(out[~keep], flipped[~keep], rtol=0, atol=0)
    torch.testing.assert_close(out, selected(x), rtol=0, atol=0)


def test_random_crop_skip_keeps_drawn_offsets_and_writes_the_padding_elsewhere():
    crop = A.RandomCrop(8, padding=(3, 1, 2, 4))
    params = {"top": torch.tensor([0, 5, 2, 7]), "left": torch.tensor([4, 0, 1, 5])}
    keep = torch.tensor([True, False, True, False])
    skipped = crop.skip(params, keep)
    assert torch.equal(skipped["top"], torch.tensor([0, 1, 2, 1]))
    assert torch.equal(skipped["left"], torch.tensor([4, 3, 1, 3]))
    assert skipped["top"].dtype == params["top"].dtype
    assert torch.equal(params["top"], torch.tensor([0, 5, 2, 7]))  # the given params are not written to


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_pointwise_ops_before_flips_and_crops_read_after_them_with_the_same_pixels(mode):
    """Brightness and Normalize change each pixel by its own value, so they commute with moving whole pixels: placed
    first, they run on the gathered pixels (before the crop's fill), and the run keeps the window copy it would have
    as the first step. The pixels are the op-by-op ones, fill included (the fill is not brightened)."""
    x = torch.randint(0, 256, (6, 3, 12, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    first = [A.Brightness(0.5), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))]
    geometry = [A.HorizontalFlip(), A.RandomCrop((12, 14), padding=3, fill=0.25, padding_mode=mode)]
    pipe = A.Pipeline(*first, *geometry, A.Contrast(0.3), seed=1)
    out = pipe(x)
    steps = list(zip(pipe.nodes, pipe.last_params))
    unfused = fuse.run(steps, {"images": x, "targets": None}, torch.float32, fuse=False)["images"]
    torch.testing.assert_close(out, unfused, rtol=0, atol=1e-6)
    stages, then = fuse.hoist(fuse._segments(steps))
    assert [node for node, _ in then] == first and [op for op, _ in stages[0]] == geometry
    assert fuse.window_plan([*first, *geometry]) == fuse.window_plan(geometry) is not None
    text = A.Pipeline(*first, *geometry, compile=True).explain(tuple(x.shape))
    assert "row windows" in text and "then [Brightness(" in text
    # Contrast reads the whole image: it never moves, nor does anything after a bilinear read
    assert fuse.hoist(fuse._segments([(A.Contrast(0.2), {}), *steps[2:]]))[1] == []
    assert fuse.hoist(fuse._segments([steps[0], (A.RandomResizedCrop(8), {})]))[1] == []
