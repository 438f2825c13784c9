"""The two back-ends: compiled output equals eager output; the work does not grow into per-sample Python loops.

Compiling takes tens of seconds on a 2-core CPU, so each graph is compiled once per module and shared.
"""
import gc
import itertools
import math
import threading
import weakref

import pytest
import torch
import torch._dynamo
from torch.utils._python_dispatch import TorchDispatchMode

import augpipe as A
from augpipe import backends, functional as F, fuse, memory, streams


def every_op_cifar(compile):
    return A.Pipeline(
        A.RandomCrop(30, padding=3, padding_mode="reflect"), A.HorizontalFlip(), A.VerticalFlip(p=0.3),
        A.Brightness(0.4), A.Contrast(0.4, p=0.8), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
        A.Cutout(8, count=2), A.OneOf(A.Mixup(), A.CutMix(p=0.7), weights=(1, 2)), A.LabelSmoothing(0.1),
        A.RandomApply(A.FractionalPool(), p=0.5), seed=0, num_classes=7, compile=compile)


def every_op_imagenet(compile):
    return A.Pipeline(
        A.RandomResizedCrop(24), A.HorizontalFlip(), A.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                                                  shear=5, fill=0.5),
        A.RandomRotation(10), A.Brightness(0.4), A.Contrast(0.4), A.Normalize((0.45, 0.45, 0.4), (0.22, 0.22, 0.22)),
        A.RandomApply(A.Pipeline(A.VerticalFlip(p=1.0), A.FractionalPool(pseudo_random=False)), p=0.5),
        A.Mixup(0.2, per_batch=True), A.Cutout(5, fill=0.0, p=0.5), seed=1, num_classes=7, compile=compile)


def imagenet_recipe(compile):
    """The benchmark's ImageNet recipe: on a CPU, compiled, the resized crop's taps come from a plain float copy."""
    return A.Pipeline(
        A.RandomResizedCrop(24), A.HorizontalFlip(), A.Brightness(0.4), A.Contrast(0.4),
        A.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), A.Mixup(0.2), seed=4, num_classes=7,
        compile=compile)


def padded_then_resized(compile):
    """One axis-aligned bilinear read whose border blends into the padded crop's fill (extend="fill")."""
    return A.Pipeline(A.HorizontalFlip(), A.RandomCrop(28, padding=3, fill=0.3), A.RandomResizedCrop(24),
                      A.Brightness(0.2), seed=6, num_classes=7, compile=compile)


def photometric_first(compile):
    """No geometric op first: on a CPU, compiled, the first op reads a plain float copy of uint8 images."""
    return A.Pipeline(
        A.OneOf(A.Brightness(0.4), A.Contrast(0.4)), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
        A.HorizontalFlip(), A.Cutout(6), A.CutMix(p=0.7), seed=5, num_classes=7, compile=compile)


def flips_and_constant_crops(compile):
    """Leading flips and constant-padded crops: on a CPU, compiled, the one read is of row windows (window_source)."""
    return A.Pipeline(
        A.HorizontalFlip(), A.RandomCrop(30, padding=(3, 1, 2, 4), fill=0.25), A.VerticalFlip(p=0.3),
        A.Brightness(0.2), A.Contrast(0.2), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), A.Cutout(8),
        A.CutMix(), seed=2, num_classes=7, compile=compile)


def reflect_padded_crop_first(compile):
    """An edge-extending crop behind a flip: on a CPU, compiled, the one read is of row windows of a reflect-padded
    copy (every_op_cifar has such a crop before its flips)."""
    return A.Pipeline(
        A.HorizontalFlip(), A.RandomCrop(30, padding=(3, 1, 2, 4), padding_mode="reflect"), A.VerticalFlip(p=0.3),
        A.RandomCrop(28, padding=2, fill=0.4), A.Brightness(0.2), A.Contrast(0.2), A.Cutout(8), A.CutMix(),
        seed=8, num_classes=7, compile=compile)


def batch(b, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 7, (b,), generator=g))


def assert_same(result, reference, image_atol=1e-5, target_atol=1e-6):
    """(images, targets) pairs equal within the issue's compiled == eager tolerances (float32)."""
    torch.testing.assert_close(result[0], reference[0], atol=image_atol, rtol=0)
    torch.testing.assert_close(result[1], reference[1], atol=target_atol, rtol=0)


@pytest.fixture(scope="module")
def compiled_cifar():
    return every_op_cifar(compile=True)


@pytest.mark.parametrize("make, size", [(every_op_cifar, 32), (every_op_imagenet, 40), (imagenet_recipe, 36),
                                        (padded_then_resized, 32), (flips_and_constant_crops, 32),
                                        (reflect_padded_crop_first, 32), (photometric_first, 32)])
def test_compiled_equals_eager_for_every_op(make, size):
    compiled, eager = make(True), make(False)
    x, y = batch(16, size)
    result = compiled(x, y)
    assert_same(result, eager(x, y, params=compiled.last_params))
    window = getattr(compiled._runner.kept, "window", None)
    # uint8 images are never read as uint8 in the compiled loop: windows for an exact first segment with constant
    # padding, a plain float copy for anything else
    assert window is not None


def test_a_compiled_cutmix_that_gathers_each_pixel_from_the_sample_it_shows_equals_eager(monkeypatch):
    """The GPU form of a compiled CutMix (``F.SAMPLE_GATHER_DEVICES``), run here on the CPU: the same pixels as the
    eager select, for images and for label maps, partial and empty boxes and a sample that is its own partner."""
    monkeypatch.setattr(F, "SAMPLE_GATHER_DEVICES", frozenset({"cpu"}))
    g = torch.Generator().manual_seed(4)
    x = torch.rand(6, 3, 9, 11, generator=g)
    labels = torch.randint(0, 5, (6, 1, 9, 11), generator=g)
    boxes = torch.tensor([[0, 0, 9, 11], [2, 3, 7, 5], [0, 0, 0, 0], [4, 9, 9, 11], [1, 1, 2, 2], [3, 0, 8, 6]])
    perm = torch.tensor([3, 1, 5, 0, 2, 4])  # sample 1 is its own partner
    compiled = torch.compile(F.cutmix, fullgraph=True)
    for images in (x, labels):
        out = compiled(images, boxes, perm)
        assert torch.equal(out, F.cutmix(images, boxes, perm))
        assert not torch.equal(out, images)


def test_a_compiled_pipeline_replays_given_params_as_eager_does():
    """forward(..., params=...) compiles the run without sampling; a bilinear first read uses the float copy there
    too."""
    compiled, eager = imagenet_recipe(True), imagenet_recipe(False)
    x, y = batch(8, 36)
    reference = eager(x, y)
    assert_same(compiled(x, y, params=eager.last_params), reference)
    assert compiled._runner.kept.window is not None and ("run", "cpu") in compiled._runner.fns


def window_of(pipe, images):
    """The window copy a compiled CPU call of ``pipe`` on ``images`` reads, or None."""
    return pipe._runner.window(pipe, images, torch.float32)


def test_a_window_copy_is_padded_for_exact_leading_ops_and_plain_for_other_first_reads_of_uint8():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    read_by_windows = A.Pipeline(A.VerticalFlip(), A.HorizontalFlip(), A.RandomCrop(12, padding=2), compile=True)
    window = window_of(read_by_windows, x)
    assert window.plan == F.WindowPlan(2, True) and window.source.shape == (2, x.numel() + 2 * 2)
    for floats in (x, x.float() / 255):  # float images are read as windows too
        edge_extending = A.Pipeline(A.RandomCrop(12, padding=(2, 1, 0, 3), padding_mode="reflect"),
                                    A.HorizontalFlip(), A.RandomCrop(10, padding=1), compile=True)
        window = window_of(edge_extending, floats)  # padded in the crop's mode, the later crop's reach
        assert window.plan == F.WindowPlan(1, True, (2, 3, 2, 3), "reflect")  # both sides: a flip may come first
        assert window.source.shape == (2, 2 * 3 * 22 * 20 + 2)
    resampled = A.Pipeline(A.HorizontalFlip(), A.RandomResizedCrop(12), compile=True)  # one bilinear read
    plain = window_of(resampled, x)
    assert plain.plan == F.WindowPlan() and torch.equal(plain.source, x.float().reshape(1, -1))  # not divided
    assert window_of(resampled, x.float() / 255) is None  # float images are read as they are
    photometric = A.Pipeline(A.Contrast(0.3), A.HorizontalFlip(), compile=True)  # the first op reads every pixel
    assert torch.equal(window_of(photometric, x).source, x.float().reshape(1, -1))
    assert window_of(photometric, x.float() / 255) is None
    # a pointwise op first runs on the gathered pixels (fuse.hoist): the flip keeps its mirrored window copy
    pointwise = A.Pipeline(A.Brightness(0.3), A.HorizontalFlip(), compile=True)
    assert window_of(pointwise, x).plan == window_of(A.Pipeline(A.HorizontalFlip(), compile=True), x).plan
    assert window_of(pointwise, x).plan.mirrored
    assert window_of(A.Pipeline(A.HorizontalFlip(), compile=False), x) is None


def test_an_op_changed_after_the_first_call_is_read_right_by_the_compiled_pipeline():
    """The window copy is planned from the ops when the pipeline is made; a crop changed later (its padding mode,
    its padding) recompiles, and the copy that no longer fits is not read as windows: the images are."""
    crop = A.RandomCrop(14, padding=2, padding_mode="reflect")
    compiled = A.Pipeline(crop, A.HorizontalFlip(), A.Brightness(0.3), seed=1, compile=True)
    eager = A.Pipeline(crop, A.HorizontalFlip(), A.Brightness(0.3))  # the same op objects
    x, _ = batch(8, 16)
    for mode, padding in (("reflect", 2), ("replicate", 2), ("constant", 3)):
        crop.padding_mode, crop.padding = mode, (padding,) * 4
        out = compiled(x)
        torch.testing.assert_close(out, eager(x, params=compiled.last_params), atol=1e-5, rtol=0)


def mix_then_cutmix(compile):
    """Two stops at one image size: the middle stage starts with Mixup, which reads other samples' pixels."""
    return A.Pipeline(A.Brightness(0.3), A.Mixup(), A.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), A.CutMix(),
                      seed=3, num_classes=7, compile=compile)


@pytest.mark.parametrize("make, stops", [(flips_and_constant_crops, [4, 7]), (mix_then_cutmix, [1, 3]),
                                         (imagenet_recipe, [3, 5])])
def test_a_staged_cpu_call_keeps_its_stored_images_between_calls_and_never_hands_them_out(monkeypatch, make, stops):
    """Compiled on a CPU, a call stops before each op that reads its whole input from an image of at least
    STAGE_MIN_BYTES (here: any), writes the image into a kept buffer and goes on in another compiled call. The
    stops share one buffer (the images keep their size), which a stage may overwrite in place only pixel by pixel.
    The last stage writes the output into fresh memory of its own (``memory.empty``, as for images of at least
    LARGE_BYTES)."""
    monkeypatch.setattr(backends, "STAGE_MIN_BYTES", 0)
    monkeypatch.setattr(memory, "LARGE_BYTES", 0)
    made = []
    monkeypatch.setattr(memory, "empty", lambda *a, _empty=memory.empty: made.append(_empty(*a)) or made[-1])
    compiled, eager = make(True), make(False)
    outputs, kept_at = [], []
    for seed in range(3):  # every call is staged, the first too
        x, y = batch(16, 32, seed)
        made.clear()
        result = compiled(x, y)
        assert [m.data_ptr() for m in made] == [result[0].data_ptr()]  # written there, not copied
        assert_same(result, eager(x, y, params=compiled.last_params))
        outputs.append((result[0], result[0].clone()))
        kept = compiled._runner.kept.stages  # this thread's
        assert [i for i, _ in kept] == stops  # the inputs of the ops that read their whole input
        assert kept[0][1] is kept[1][1]
        kept_at.append(kept[0][1].data_ptr())
        steps = list(eager.steps(compiled.last_params))  # the buffer holds what the last stop's op read
        entering = fuse.run(steps[:stops[-1]], {"images": x, "targets": None}, torch.float32)["images"]
        torch.testing.assert_close(kept[-1][1], entering, atol=1e-5, rtol=0)
    assert kept_at[0] == kept_at[1] == kept_at[2]  # the same memory, call after call
    windows = [w.source for w in [getattr(compiled._runner.kept, "window", None)] if w is not None]
    assert compiled.kept_bytes() == kept[0][1].nbytes + sum(w.nbytes for w in windows)
    for images, snapshot in outputs:  # no later call wrote into an earlier call's images
        assert torch.equal(images, snapshot)
        assert images.data_ptr() != kept_at[-1]


def test_an_unstaged_cpu_call_writes_large_images_into_fresh_memory_of_its_own(monkeypatch):
    """No stop (no op reads its whole input): the one compiled call writes the output into ``memory.empty``'s block,
    a new one per call."""
    monkeypatch.setattr(memory, "LARGE_BYTES", 0)
    made = []
    monkeypatch.setattr(memory, "empty", lambda *a, _empty=memory.empty: made.append(_empty(*a)) or made[-1])
    make = lambda compile: A.Pipeline(A.HorizontalFlip(), A.RandomResizedCrop(20), A.Brightness(0.3),  # noqa: E731
                                      seed=5, num_classes=7, compile=compile)
    compiled, eager = make(True), make(False)
    pointers = []
    for seed in range(2):
        x, y = batch(8, 24, seed)
        made.clear()
        result = compiled(x, y)
        assert [m.data_ptr() for m in made] == [result[0].data_ptr()]
        assert_same(result, eager(x, y, params=compiled.last_params))
        pointers.append(result)  # kept alive: the next call must not reuse its memory
    assert pointers[0][0].data_ptr() != pointers[1][0].data_ptr()


def test_each_cpu_pass_switched_off_gives_the_output_it_gives_on(monkeypatch):
    """``backends.PASSES``: the window copy, the stages and the huge-page output change how a
    compiled CPU call reads and stores images, not what it computes. One pipeline takes all four (thresholds at 0
    for small images); with each switched off in turn and the stream restarted, the call takes the others and
    gives the eager pipeline's output."""
    monkeypatch.setattr(backends, "STAGE_MIN_BYTES", 0)
    monkeypatch.setattr(memory, "LARGE_BYTES", 0)
    made = []
    monkeypatch.setattr(memory, "empty", lambda *a, _empty=memory.empty: made.append(_empty(*a)) or made[-1])
    make = lambda compile: A.Pipeline(A.RandomResizedCrop(12), A.HorizontalFlip(), A.Contrast(0.4),  # noqa: E731
                                      seed=9, compile=compile)
    compiled, eager = make(True), make(False)
    runner, calls = compiled._runner, []
    compile_one = runner.compiled
    monkeypatch.setattr(runner, "compiled", lambda graph, which, device: calls.append(which)
                        or compile_one(graph, which, device))
    x, _ = batch(4, 16)
    expected = eager(x)
    staged = ["sample_run", "stage1"]  # stops before Contrast
    for off, compiled_calls in ((None, staged), ("window", staged), ("stages", ["sample_run"]),
                                ("huge_pages", staged)):
        passes = {name: name != off for name in backends.PASSES}
        monkeypatch.setattr(backends, "PASSES", passes)
        calls.clear(), made.clear()
        out = compiled.manual_seed(9)(x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        assert calls == compiled_calls
        assert (window_of(compiled, x) is not None) == passes["window"]
        assert ([m.data_ptr() for m in made] == [out.data_ptr()]) == passes["huge_pages"]


def test_each_calling_thread_keeps_buffers_of_its_own_and_frees_them_when_it_ends(monkeypatch):
    """A pool that replaces its threads must not pile up kept buffers, and two threads must never share one."""
    monkeypatch.setattr(backends, "STAGE_MIN_BYTES", 0)
    compiled = flips_and_constant_crops(True)
    x, y = batch(8, 32)
    for _ in range(2):  # staged calls
        compiled(x, y)
    main_stages, seen = compiled._runner.kept.stages, {}

    def work():
        for _ in range(2):
            compiled(x, y)
        kept = compiled._runner.kept.stages
        seen["bytes"], seen["stages"] = compiled.kept_bytes(), [weakref.ref(b) for _, b in kept]
        seen["own"] = all(b is not mine for (_, b), (_, mine) in zip(kept, main_stages))
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen["own"] and seen["bytes"] == compiled.kept_bytes() > 0
    gc.collect()
    assert all(ref() is None for ref in seen["stages"])  # gone with the thread


def test_compiled_handles_a_last_partial_batch_without_recompiling_each_call(compiled_cifar):
    eager = every_op_cifar(compile=False)
    for b in (16, 11):  # the second shape makes the batch dimension dynamic: one more compile
        compiled_cifar(*batch(b, 32))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for b in (9, 13, 16, 5):
            x, y = batch(b, 32, seed=b)
            result = compiled_cifar(x, y)
            assert_same(result, eager(x, y, params=compiled_cifar.last_params))


def test_compiled_and_eager_pipelines_draw_the_same_params_from_the_same_generator_state(compiled_cifar):
    """Compiled sampling makes the eager draws ahead, in the eager order: the two stay in lockstep."""
    eager = every_op_cifar(compile=False)
    eager.set_extra_state(compiled_cifar.get_extra_state())
    for b in (16, 11, 16, 16):
        x, y = batch(b, 32, seed=b + 1)
        assert_same(compiled_cifar(x, y), eager(x, y))


@pytest.mark.parametrize("make, size", [(every_op_cifar, 32), (every_op_imagenet, 40)])
def test_planning_draws_nothing_and_each_request_gets_numbers_of_its_own(make, size):
    """The dry run that plans a pipeline's draws leaves the generator alone; the planned draws are few, and the
    requests split them exactly: no number is handed out twice or left unused."""
    from augpipe import draws
    from augpipe.ops import Shape
    pipe = make(False)
    shape = Shape(13, 3, size, size)
    generator = pipe.generator("cpu")
    before = generator.get_state()
    requests, made, where = pipe._draw_plans.plan(pipe, shape, torch.device("cpu"))
    assert torch.equal(generator.get_state(), before)
    assert len(requests) > 10 and len(made) <= 3
    for k, (kind, (n,), extra) in enumerate(made):
        spans = sorted((start, start + math.prod(r[1])) for r, (j, start) in zip(requests, where) if j == k)
        assert all(r[0] == kind and r[2] == extra for r, (j, _) in zip(requests, where) if j == k)
        assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    pipe._draw_plans.draws(pipe, shape, torch.device("cpu"), generator)  # a call makes exactly the planned draws
    by_hand = torch.Generator().manual_seed(0)
    by_hand.set_state(before)
    draws.draw(made, by_hand, "cpu")
    assert torch.equal(generator.get_state(), by_hand.get_state())


def test_replayed_draws_are_slices_of_one_draw_per_dtype_and_alpha():
    """Against torch called by hand: uniforms of a dtype come from one torch.rand, gammas of an alpha from one
    _standard_gamma, in order of first use, handed out in request order."""
    from augpipe import draws
    f32, f64 = torch.float32, torch.float64
    requests = [("uniform", (5,), f32), ("uniform", (2, 3), f32), ("uniform", (4,), f64), ("gamma", (2, 3), 0.5),
                ("uniform", (7,), f64), ("uniform", (3,), f32), ("gamma", (4,), 0.5), ("gamma", (2,), 2.0)]
    made, where = draws.plan(requests)
    assert made == [("uniform", (14,), f32), ("uniform", (11,), f64), ("gamma", (10,), 0.5), ("gamma", (2,), 2.0)]
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(14, generator=g), torch.rand(11, generator=g, dtype=f64)
    c = torch._standard_gamma(torch.full((10,), 0.5, dtype=f64), generator=g)
    d = torch._standard_gamma(torch.full((2,), 2.0, dtype=f64), generator=g)
    expected = [a[:5], a[5:11].view(2, 3), b[:4], c[:6].view(2, 3), b[4:], a[11:], c[6:], d]
    replay = draws.Replay(requests, draws.draw(made, torch.Generator().manual_seed(3), "cpu"), where)
    for r, e in zip(requests, expected):
        assert torch.equal(replay.take(r), e)
    with pytest.raises(RuntimeError, match="the plan says nothing more"):
        replay.take(requests[0])


def test_gamma_of_alpha_one_is_an_exponential_of_a_float64_uniform():
    """Gamma(1, 1) = Exp(1) = -log(1 - U): planned as a float64 uniform, so it joins that draw."""
    from augpipe import draws
    stats = pytest.importorskip("scipy.stats")
    planner = draws.Planner("cpu")
    draws.standard_gamma(1.0, (2, 3), planner, "cpu")
    assert planner.requests == [("uniform", (2, 3), torch.float64)]
    g = draws.standard_gamma(1.0, 20000, torch.Generator().manual_seed(5), "cpu")
    u = torch.rand(20000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(g, -torch.log(1 - u), rtol=1e-12, atol=0)
    assert stats.kstest(g.numpy(), stats.expon.cdf).pvalue > 1e-3


def test_permutations_from_uniform_keys_are_uniform():
    """Each of the 6 orders of 3 items, over 6000 draws: 1000 expected, sd about 29; 5 sd allowed."""
    from augpipe import draws
    g = torch.Generator().manual_seed(0)
    counts = {}
    for _ in range(6000):
        order = tuple(draws.permutation(3, g, "cpu").tolist())
        counts[order] = counts.get(order, 0) + 1
    assert sorted(counts) == sorted(itertools.permutations(range(3)))
    assert all(abs(c - 1000) < 5 * 29 for c in counts.values()), counts


def test_a_compiled_pipeline_pickles_and_resumes_its_stream(compiled_cifar):
    """Compiled callables do not pickle; the copy compiles afresh and carries on from the same generator state."""
    import pickle
    copy = pickle.loads(pickle.dumps(compiled_cifar))
    x, y = batch(16, 32, seed=5)
    assert_same(copy(x, y), compiled_cifar(x, y))


def test_each_compiled_pipeline_has_its_own_compile_cache():
    """Shared, torch's 8 cache entries ran the 9th configuration in a process eagerly, silently."""
    x = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    with torch._dynamo.config.patch(recompile_limit=2, fail_on_recompile_limit_hit=True):
        for op in (A.Brightness(0.2), A.Contrast(0.2), A.HorizontalFlip(), A.VerticalFlip()):
            A.Pipeline(op, seed=0, compile=True)(x)  # four graphs, each in its own cache


def test_each_compiled_pipeline_has_its_own_dynamic_shape_memory():
    """Dynamo remembers which sizes changed by the code's (file, line, name): under one name, a pipeline compiled
    after another had seen two batch sizes started with dynamic shapes (slower kernels), its own first shape
    notwithstanding. Each pipeline's compiled functions must have an identity of their own."""
    from torch._dynamo.pgo import CodeId

    first, second = A.Pipeline(seed=0, compile=True), A.Pipeline(seed=0, compile=True)
    ids = {CodeId.make(p._runner.compiled(p, which, torch.device("cpu"))._torchdynamo_orig_callable.__code__)
           for p in (first, second) for which in ("run", "sample_run")}
    assert len(ids) == 4


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("make, size", [(every_op_cifar, 32), (every_op_imagenet, 40)])
def test_no_per_sample_work_the_op_count_does_not_grow_with_the_batch(make, size, monkeypatch):
    """A Python loop over samples would dispatch more tensor ops for a bigger batch, a sync reads a scalar.

    Soft labels are passed, and their row-sum check is left out: the checks of labels read them, by design only on
    CPU tensors, where that makes nothing wait.
    """
    monkeypatch.setattr(A.validate, "check_soft_sums", lambda labels: None)
    counts = []
    for b in (2, 37):
        pipe = make(False)
        x, y = batch(b, size)
        soft = torch.nn.functional.one_hot(y, 7).float()
        with CountOps() as mode:
            pipe(x, soft)
        counts.append(mode.calls)
    assert counts[0] == counts[1]
    # lift_fresh is host data becoming a tensor (torch.tensor, as_tensor): on a GPU, a copy the host waits for.
    assert not any(name.startswith(("aten._local_scalar_dense", "aten.nonzero", "aten.item", "aten.lift_fresh"))
                   for name in counts[0])


def test_ops_changed_between_calls_are_planned_again():
    """Mixup's alpha on a schedule, or Cutout's count, change the draws sample asks for; the draw plan made on the
    first call must follow. Reference: a pipeline built with the new values, from the same generator state."""
    x, labels = torch.randint(0, 256, (8, 3, 12, 10), dtype=torch.uint8), torch.arange(8)
    cutout, mixup = A.Cutout(4), A.Mixup(alpha=0.2)
    pipe = A.Pipeline(cutout, mixup, seed=0, num_classes=10)
    pipe(x, labels)
    pipe(x, labels)
    state = pipe.state_dict()
    cutout.count, mixup.alpha = 2, 0.4
    out, targets = pipe(x, labels)
    reference = A.Pipeline(A.Cutout(4, count=2), A.Mixup(alpha=0.4), num_classes=10)
    reference.load_state_dict(state)
    expected, expected_targets = reference(x, labels)
    assert torch.equal(out, expected) and torch.equal(targets, expected_targets)
    assert pipe.last_params[0]["boxes"].shape[1] == 2


def test_a_pipeline_keeps_the_draw_plans_of_its_latest_shapes_only(monkeypatch):
    """Variable-size images must not grow the plan cache without end; a dropped plan is made again and draws the
    same as one that was kept."""
    inputs = [torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) for size in (8, 9, 10, 8)]
    outputs = []
    for kept in (2, 64):
        monkeypatch.setattr(streams, "PLANS_KEPT", kept)
        pipe = A.Pipeline(A.HorizontalFlip(), A.RandomCrop(6, padding=1), A.Brightness(0.2), seed=0)
        outputs.append([pipe(x) for x in inputs])
        sizes = [key[0].size for key in pipe._draw_plans.by_shape]
        assert sizes == ([(10, 10), (8, 8)] if kept == 2 else [(8, 8), (9, 9), (10, 10)])
    for a, b in zip(*outputs):
        assert torch.equal(a, b)
