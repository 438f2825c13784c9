"""pipe.explain(): the plan it describes is the one a call runs (reads counted in eager calls, buffers measured)."""
import re

import pytest
import torch

import augpipe as A
from augpipe import explain as X
from augpipe import functional as F

READS = {"gather_separable": "one gather through per-sample row and column tables",
         "resample_separable": "one separable bilinear read",
         "warp_affine": "one bilinear read of four taps per pixel",
         "read_axis": "one antialiased read"}


def counted_reads(pipe, x, monkeypatch) -> list[str]:
    """The geometry reads an eager call makes, in order, by patching the kernels fuse calls."""
    seen = []
    for name in READS:
        def spy(*args, _name=name, _real=getattr(F, name), **kwargs):
            if args[0].dtype.is_floating_point:  # masks go through the same kernels; only images count
                seen.append(_name)
            return _real(*args, **kwargs)
        monkeypatch.setattr(F, name, spy)
    pipe(x)
    return seen


@pytest.mark.parametrize("nodes, reads", [
    ((A.RandomCrop(16, padding=2), A.HorizontalFlip(), A.Brightness(0.2)), ["gather_separable"]),
    ((A.HorizontalFlip(), A.RandomCrop(16, padding=2, padding_mode="reflect"), A.VerticalFlip()),
     ["gather_separable"]),
    ((A.HorizontalFlip(), A.RandomCrop(16, padding=2, padding_mode="replicate"), A.RandomResizedCrop(12)),
     ["gather_separable", "read_axis"]),
    ((A.HorizontalFlip(), A.RandomCrop(16, padding=2, padding_mode="replicate"),
      A.RandomResizedCrop(12, antialias=False)), ["gather_separable", "resample_separable"]),
    ((A.RandomResizedCrop(12), A.HorizontalFlip(), A.Contrast(0.3)), ["read_axis"]),
    ((A.RandomResizedCrop(12, antialias=False), A.HorizontalFlip(), A.Contrast(0.3)), ["resample_separable"]),
    ((A.RandomResizedCrop(20), A.HorizontalFlip()), ["resample_separable"]),  # never shrinks: nothing to average
    ((A.HorizontalFlip(), A.RandomRotation(20), A.Brightness(0.1), A.VerticalFlip()),
     ["warp_affine", "gather_separable"]),
    ((A.Brightness(0.2), A.Normalize((0.5,) * 3, (0.2,) * 3)), []),
])
def test_explain_names_the_reads_an_eager_call_makes(nodes, reads, monkeypatch):
    pipe = A.Pipeline(*nodes, seed=0)
    text = pipe.explain((4, 3, 16, 16), torch.float32)
    lines = text.splitlines()
    described = [lines[i + 1] for i, line in enumerate(lines) if re.match(r"\d+\. geometry", line)]
    assert len(described) == len(reads)
    for line, read in zip(described, reads):
        assert READS[read] in line
    assert counted_reads(pipe, torch.rand(4, 3, 16, 16), monkeypatch) == reads


def test_explain_lists_every_step_with_its_output_size_and_dtypes():
    pipe = A.Pipeline(A.RandomResizedCrop(10, antialias=False), A.Brightness(0.2), A.OneOf(A.Mixup(), A.CutMix()),
                      A.LabelSmoothing(), num_classes=3)
    lines = pipe.explain((6, 3, 20, 24)).splitlines()
    assert lines[0] == "Pipeline, eager, on cpu: uint8 (6, 3, 20, 24) -> float32 (6, 3, 10, 10), computed in float32"
    assert lines[2].startswith("1. geometry [RandomResizedCrop(") and "-> 10x10" in lines[2]
    assert lines[3].startswith("   axis-aligned, one separable bilinear read")
    assert lines[4].startswith("2. Brightness(") and lines[5].startswith("3. OneOf(Mixup(") and "CutMix(" in lines[5]
    assert lines[6].startswith("4. LabelSmoothing(")
    assert "per-sample choice" in lines[5]
    assert lines[-1] == "kept between calls: nothing"
    # a single (C, H, W) image is a batch of one
    assert "uint8 (1, 3, 20, 24) -> float32 (1, 3, 10, 10)" in pipe.explain((3, 20, 24))


def test_explain_counts_the_draws_the_plan_makes():
    pipe = A.Pipeline(A.HorizontalFlip(), A.Brightness(0.2), A.Mixup(0.4), seed=0)
    requests, made, _ = pipe._draw_plans.plan(pipe, A.ops.Shape(5, 3, 8, 8), torch.device("cpu"))
    assert f"draws: {len(requests)} requests from sample(), made as {len(made)} draw(s)" in pipe.explain((5, 3, 8, 8))
    assert len(made) == 3  # float32 uniforms (flip, factor), float64 ones (the partner order), gammas of alpha 0.4


@pytest.mark.parametrize("nodes, dtype", [
    ((A.RandomCrop(12, padding=3), A.HorizontalFlip()), torch.uint8),
    ((A.RandomCrop(12, padding=(2, 1, 0, 3), padding_mode="reflect"), A.VerticalFlip(), A.RandomCrop(10, padding=1)),
     torch.float32),
    ((A.RandomResizedCrop(12), A.HorizontalFlip()), torch.uint8),
    ((A.Brightness(0.3),), torch.uint8),
])
def test_the_window_copy_explain_announces_is_the_one_a_compiled_cpu_call_makes(nodes, dtype):
    pipe = A.Pipeline(*nodes, compile=True)  # the runner makes the copy without compiling anything
    x = torch.randint(0, 256, (3, 3, 14, 14), dtype=torch.uint8)
    x = x if dtype == torch.uint8 else x.float() / 255
    window = pipe._runner.window(pipe, x, torch.float32)
    assert X._window_bytes(window.plan, A.ops.Shape(*x.shape), torch.float32) == window.source.nbytes
    assert f"window copy: {window.source.nbytes / 2**20:.1f} MiB" in pipe.explain(tuple(x.shape), dtype)
    assert ("row windows" in pipe.explain(tuple(x.shape), dtype)) == (window.plan != F.WindowPlan())


def test_explain_names_where_a_large_compiled_cpu_call_stops_and_what_it_keeps():
    """ImageNet recipe at 64 x 3 x 256 x 256: the contrast mean and the Mixup partner read 224 x 224 float images of
    36.75 MiB, over the 32 MiB at which fresh memory is a page fault per 4 KiB; one buffer of that shape serves both."""
    pipe = A.Pipeline(A.RandomResizedCrop(224), A.HorizontalFlip(), A.Brightness(0.4), A.Contrast(0.4),
                      A.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), A.Mixup(0.2), compile=True)
    text = pipe.explain((64, 3, 256, 256))
    image = 64 * 3 * 224 * 224 * 4
    assert "compiled calls: 3, stopping before Contrast(" in text and "before Mixup(" in text
    window = 64 * 3 * 256 * 256 * 4  # the plain float copy the resized crop's taps are read from
    assert f"kept between calls: {(image + window) / 2**20:.1f} MiB per calling thread" in text
    assert f"output: {image / 2**20:.1f} MiB of fresh memory a call" in text
    small = pipe.explain((8, 3, 256, 256))
    assert "compiled calls: 1" in small and "output:" not in small
    assert "compiled calls: 1 (sampling and every step" in pipe.explain((64, 3, 256, 256), device="meta")


def test_explain_checks_the_shape_as_a_call_would():
    with pytest.raises(ValueError, match="RandomCrop"):
        A.Pipeline(A.RandomCrop(40)).explain((2, 3, 32, 32))


def test_explain_says_a_user_op_or_lambda_runs_its_own_apply():
    pipe = A.Pipeline(A.HorizontalFlip(), A.Lambda(lambda x: x.flip(-1)), A.Brightness(0.1))
    lines = pipe.explain((2, 3, 8, 8)).splitlines()
    assert lines[4].startswith("2. Lambda(") and lines[4].endswith(": its own apply(), on the whole batch")
    assert lines[5].endswith(": per pixel")
