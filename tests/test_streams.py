"""Random streams: the same pipeline and seed draw the same numbers, and a pipeline plans its draws again only when
one of its own ops changed."""
import math

import pytest
import torch

import augpipe as A


def cifar(seed):
    """The CIFAR recipe: padded crop, flip, colour, Normalize, Cutout, Mixup."""
    return A.Pipeline(A.RandomCrop(32, padding=4), A.HorizontalFlip(), A.Brightness(0.3, p=0.8), A.Contrast(0.3),
                      A.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), A.Cutout(8, count=2, p=0.5),
                      A.Mixup(alpha=0.4), seed=seed, num_classes=10)


def imagenet(seed):
    """An ImageNet-like recipe: resized crop, flip, rotation, CutMix."""
    return A.Pipeline(A.RandomResizedCrop(24), A.HorizontalFlip(), A.RandomRotation(15), A.CutMix(p=0.7),
                      seed=seed, num_classes=10)


def nested(seed):
    """Choices inside choices: OneOf and RandomApply around ops and a sub-pipeline."""
    return A.Pipeline(
        A.OneOf(A.Pipeline(A.RandomCrop(28, padding=2, padding_mode="reflect"), A.VerticalFlip()),
                A.Pipeline(A.RandomAffine(10, translate=(0.1, 0.2), scale=(0.9, 1.1), shear=5), A.RandomCrop(28)),
                A.Pipeline(A.RandomApply(A.RandomCrop(30, padding=3), p=0.6), A.RandomResizedCrop(28)),
                weights=(2, 1, 1)),
        A.RandomApply(A.OneOf(A.Brightness(0.4), A.Contrast(0.2, p=0.5)), p=0.7),
        A.RandomApply(A.Pipeline(A.HorizontalFlip(p=1.0), A.Cutout(5, count=3)), p=0.4),
        A.OneOf(A.Mixup(alpha=1.0, per_batch=True), A.CutMix(alpha=2.0), weights=(1, 3)),
        seed=seed, num_classes=10)


# Each recipe with the images (B, C, H, W) it is called on; the params depend on the shape only.
PIPELINES = {"cifar": (cifar, (16, 3, 32, 32)), "imagenet": (imagenet, (12, 3, 40, 36)),
             "nested": (nested, (10, 3, 30, 30))}


def summary(params, path="params") -> dict:
    """Per params tensor (named by its path in the tree): its shape, the exact sum of its values (math.fsum, in
    float64, independent of the order of summation) and its first three values, as Python floats."""
    if isinstance(params, torch.Tensor):
        values = params.double().flatten().tolist()
        return {path: (tuple(params.shape), math.fsum(values), values[:3])}
    items = params.items() if isinstance(params, dict) else enumerate(params)
    out = {}
    for key, value in items:
        out.update(summary(value, f"{path}[{key!r}]"))
    return out


def two_calls(name: str, seed: int) -> list[dict]:
    """The summaries of ``last_params`` after a first and a second call on images of the recipe's shape."""
    build, shape = PIPELINES[name]
    pipe = build(seed)
    images, labels = torch.zeros(shape, dtype=torch.uint8), torch.arange(shape[0]) % 10
    seen = []
    for _ in range(2):
        pipe(images, labels)
        seen.append(summary(pipe.last_params))
    return seen


# The params these recipes draw: recorded from the pipelines' own draws (the seeds given, on a CPU, two calls each),
# so that any change to how a pipeline seeds, plans or makes its draws shows here. Each entry is summary(): shape,
# exact sum and first three values of every params tensor.
GOLDEN = {
    ("cifar", 0): [
        {
            "params[0]['top']": ((16,), 69.0, [8.0, 6.0, 4.0]),
            "params[0]['left']": ((16,), 65.0, [3.0, 1.0, 5.0]),
            "params[1]['flip']": ((16,), 8.0, [1.0, 0.0, 1.0]),
            "params[2]['factor']":
                ((16,), 15.767268657684326, [1.099057674407959, 1.22506844997406, 0.9034252166748047]),
            "params[3]['factor']":
                ((16,), 15.555259883403778, [0.7163592576980591, 1.0648143291473389, 0.8316452503204346]),
            "params[5]['boxes']": ((16, 2, 4), 656.0, [0.0, 0.0, 0.0]),
            "params[6]['lam']":
                ((16,), 6.092615766447839, [0.9999511647601695, 0.12680272608451199, 0.0916673061368394]),
            "params[6]['perm']": ((16,), 120.0, [4.0, 0.0, 1.0]),
        },
        {
            "params[0]['top']": ((16,), 67.0, [8.0, 8.0, 5.0]),
            "params[0]['left']": ((16,), 67.0, [0.0, 1.0, 3.0]),
            "params[1]['flip']": ((16,), 8.0, [1.0, 1.0, 0.0]),
            "params[2]['factor']": ((16,), 15.225566625595093, [1.1860616207122803, 0.8087358474731445, 1.0]),
            "params[3]['factor']":
                ((16,), 16.473804652690887, [1.2983155250549316, 0.8262213468551636, 1.053438663482666]),
            "params[5]['boxes']": ((16, 2, 4), 610.0, [21.0, 26.0, 29.0]),
            "params[6]['lam']":
                ((16,), 11.397185045172977, [0.9472572365452575, 0.006097442417160625, 0.999999384097653]),
            "params[6]['perm']": ((16,), 120.0, [13.0, 3.0, 6.0]),
        },
    ],
    ("imagenet", 7): [
        {
            "params[0]['box']": ((12, 4), 769.0, [12.0, 4.0, 28.0]),
            "params[1]['flip']": ((12,), 9.0, [1.0, 1.0, 1.0]),
            "params[2]['angle']":
                ((12,), -5.156700134277344, [-4.287919044494629, 13.17057991027832, -14.413588523864746]),
            "params[2]['translate']": ((12, 2), 0.0, [0.0, 0.0, 0.0]),
            "params[2]['scale']": ((12,), 12.0, [1.0, 1.0, 1.0]),
            "params[2]['shear']": ((12, 2), 0.0, [0.0, 0.0, 0.0]),
            "params[3]['box']": ((12, 4), 508.0, [14.0, 12.0, 22.0]),
            "params[3]['perm']": ((12,), 66.0, [3.0, 9.0, 11.0]),
        },
        {
            "params[0]['box']": ((12, 4), 770.0, [6.0, 1.0, 32.0]),
            "params[1]['flip']": ((12,), 5.0, [1.0, 0.0, 1.0]),
            "params[2]['angle']":
                ((12,), -51.960100173950195, [9.76156234741211, -6.046720504760742, -9.126107215881348]),
            "params[2]['translate']": ((12, 2), 0.0, [0.0, 0.0, 0.0]),
            "params[2]['scale']": ((12,), 12.0, [1.0, 1.0, 1.0]),
            "params[2]['shear']": ((12, 2), 0.0, [0.0, 0.0, 0.0]),
            "params[3]['box']": ((12, 4), 369.0, [0.0, 0.0, 0.0]),
            "params[3]['perm']": ((12,), 66.0, [9.0, 7.0, 2.0]),
        },
    ],
    ("nested", 12345): [
        {
            "params[0]['choice']": ((10,), 13.0, [2.0, 2.0, 1.0]),
            "params[0]['branches'][0][0]['top']": ((10,), 29.0, [2.0, 5.0, 1.0]),
            "params[0]['branches'][0][0]['left']": ((10,), 30.0, [5.0, 2.0, 4.0]),
            "params[0]['branches'][0][1]['flip']": ((10,), 5.0, [1.0, 1.0, 1.0]),
            "params[0]['branches'][1][0]['angle']":
                ((10,), -8.535267353057861, [2.2591676712036133, -4.68647575378418, 4.2122802734375]),
            "params[0]['branches'][1][0]['translate']": ((10, 2), -9.0, [3.0, 2.0, 1.0]),
            "params[0]['branches'][1][0]['scale']":
                ((10,), 9.920862793922424, [1.0677887201309204, 0.9217613935470581, 1.0425081253051758]),
            "params[0]['branches'][1][0]['shear']":
                ((10, 2), 1.707418441772461, [-0.4145069122314453, 0.0, 0.17568302154541016]),
            "params[0]['branches'][1][1]['top']": ((10,), 10.0, [2.0, 0.0, 2.0]),
            "params[0]['branches'][1][1]['left']": ((10,), 12.0, [2.0, 1.0, 0.0]),
            "params[0]['branches'][2][0]['keep']": ((10,), 6.0, [1.0, 0.0, 1.0]),
            # A RandomApply'd crop writes its own place (top = left = the padding, 3) in the rows it skips, its
            # neutral parameter; the rows it keeps hold the drawn offsets.
            "params[0]['branches'][2][0]['node']['top']": ((10,), 40.0, [2.0, 3.0, 3.0]),
            "params[0]['branches'][2][0]['node']['left']": ((10,), 24.0, [0.0, 3.0, 0.0]),
            "params[0]['branches'][2][1]['box']": ((10, 4), 498.0, [1.0, 0.0, 28.0]),
            "params[1]['keep']": ((10,), 7.0, [1.0, 1.0, 1.0]),
            "params[1]['node']['choice']": ((10,), 2.0, [0.0, 0.0, 1.0]),
            "params[1]['node']['branches'][0]['factor']":
                ((10,), 9.977064192295074, [1.0040035247802734, 0.8134546279907227, 1.1514761447906494]),
            "params[1]['node']['branches'][1]['factor']":
                ((10,), 10.090632319450378, [0.9294241666793823, 0.9716694951057434, 1.0]),
            "params[2]['keep']": ((10,), 5.0, [0.0, 1.0, 0.0]),
            "params[2]['node'][0]['flip']": ((10,), 10.0, [1.0, 1.0, 1.0]),
            "params[2]['node'][1]['boxes']": ((10, 3, 4), 1704.0, [25.0, 15.0, 28.0]),
            "params[3]['choice']": ((10,), 6.0, [0.0, 1.0, 0.0]),
            "params[3]['branches'][0]['lam']":
                ((10,), 1.273667173740948, [0.1273667173740948, 0.1273667173740948, 0.1273667173740948]),
            "params[3]['branches'][0]['perm']": ((10,), 45.0, [2.0, 3.0, 9.0]),
            "params[3]['branches'][1]['box']": ((10, 4), 671.0, [0.0, 0.0, 23.0]),
            "params[3]['branches'][1]['perm']": ((10,), 45.0, [3.0, 7.0, 2.0]),
        },
        {
            "params[0]['choice']": ((10,), 5.0, [1.0, 0.0, 0.0]),
            "params[0]['branches'][0][0]['top']": ((10,), 35.0, [1.0, 5.0, 6.0]),
            "params[0]['branches'][0][0]['left']": ((10,), 27.0, [5.0, 2.0, 4.0]),
            "params[0]['branches'][0][1]['flip']": ((10,), 7.0, [0.0, 0.0, 1.0]),
            "params[0]['branches'][1][0]['angle']":
                ((10,), -6.256638050079346, [1.0463600158691406, 3.3043298721313477, -0.46247386932373047]),
            "params[0]['branches'][1][0]['translate']": ((10, 2), -5.0, [2.0, 4.0, -2.0]),
            "params[0]['branches'][1][0]['scale']":
                ((10,), 9.819918394088745, [1.0400865077972412, 1.064465045928955, 1.0189564228057861]),
            "params[0]['branches'][1][0]['shear']":
                ((10, 2), -8.611928224563599, [2.6693382263183594, 0.0, -4.2478108406066895]),
            "params[0]['branches'][1][1]['top']": ((10,), 14.0, [2.0, 1.0, 2.0]),
            "params[0]['branches'][1][1]['left']": ((10,), 11.0, [1.0, 2.0, 1.0]),
            "params[0]['branches'][2][0]['keep']": ((10,), 9.0, [1.0, 1.0, 1.0]),
            "params[0]['branches'][2][0]['node']['top']": ((10,), 28.0, [4.0, 4.0, 6.0]),
            "params[0]['branches'][2][0]['node']['left']": ((10,), 35.0, [6.0, 3.0, 5.0]),
            "params[0]['branches'][2][1]['box']": ((10, 4), 475.0, [0.0, 2.0, 19.0]),
            "params[1]['keep']": ((10,), 7.0, [1.0, 0.0, 1.0]),
            "params[1]['node']['choice']": ((10,), 3.0, [1.0, 0.0, 0.0]),
            "params[1]['node']['branches'][0]['factor']":
                ((10,), 10.281459033489227, [0.9573599696159363, 1.1203112602233887, 0.6334569454193115]),
            "params[1]['node']['branches'][1]['factor']":
                ((10,), 10.13327169418335, [0.8547106385231018, 1.0, 1.047956943511963]),
            "params[2]['keep']": ((10,), 4.0, [0.0, 1.0, 0.0]),
            "params[2]['node'][0]['flip']": ((10,), 10.0, [1.0, 1.0, 1.0]),
            "params[2]['node'][1]['boxes']": ((10, 3, 4), 1788.0, [9.0, 1.0, 14.0]),
            "params[3]['choice']": ((10,), 5.0, [0.0, 0.0, 1.0]),
            "params[3]['branches'][0]['lam']":
                ((10,), 3.2829176663301607, [0.32829176663301607, 0.32829176663301607, 0.32829176663301607]),
            "params[3]['branches'][0]['perm']": ((10,), 45.0, [2.0, 5.0, 7.0]),
            "params[3]['branches'][1]['box']": ((10, 4), 542.0, [4.0, 0.0, 18.0]),
            "params[3]['branches'][1]['perm']": ((10,), 45.0, [1.0, 2.0, 3.0]),
        },
    ],
}


@pytest.mark.parametrize("name, seed", list(GOLDEN))
def test_a_recipe_draws_the_recorded_numbers_for_its_seed(name, seed):
    """Parameters, seeds and replay stay as they are: a pipeline draws what the same pipeline drew before.
    Integers and flags are compared exactly; floats to 1e-12 relative, as a float64 log or exp may differ in its
    last bit between CPUs' vector code, where a changed draw moves a value by far more."""
    for got, recorded in zip(two_calls(name, seed), GOLDEN[name, seed], strict=True):
        assert list(got) == list(recorded)
        for path, (shape, total, leading) in recorded.items():
            assert got[path][0] == shape, path
            assert got[path][1] == pytest.approx(total, rel=1e-12, abs=0), path
            assert got[path][2] == pytest.approx(leading, rel=1e-12, abs=0), path


# ----------------------------------------------------------------------------------------------- re-planning
@pytest.fixture
def dry_runs(monkeypatch):
    """Counts, per pipeline, the dry runs of sample() that plan its draws."""
    from augpipe import streams
    seen, dry_run = [], streams._dry_run

    def counted(pipe, *args):
        seen.append(pipe)
        return dry_run(pipe, *args)

    monkeypatch.setattr(streams, "_dry_run", counted)
    return lambda pipe: sum(p is pipe for p in seen)


def images_and_labels(batch=8):
    x = torch.randint(0, 256, (batch, 3, 12, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(batch))
    return x, torch.arange(batch) % 10


def test_other_ops_and_other_pipelines_do_not_make_a_pipeline_plan_again(dry_runs):
    """Planning is per pipeline: building an op, changing an op of another pipeline or putting another pipeline in
    eval mode leaves this one's plan alone; a call changes nothing, so a second call plans nothing either."""
    x, labels = images_and_labels()
    cutout, mixup = A.Cutout(3), A.Mixup(alpha=0.3)
    pipe = A.Pipeline(A.RandomCrop(10, padding=2), A.Cutout(4), A.Mixup(alpha=0.2), seed=0, num_classes=10)
    other = A.Pipeline(cutout, A.RandomApply(mixup, p=0.5), seed=1, num_classes=10)
    for _ in range(2):
        pipe(x, labels)
        other(x, labels)
    assert (dry_runs(pipe), dry_runs(other)) == (1, 1)
    unrelated = A.Pipeline(A.Cutout(5, count=3), A.Mixup(alpha=0.7))
    unrelated.nodes[0].count = 4
    other.eval()
    cutout.count, mixup.alpha = 2, 0.9
    pipe(x, labels)
    assert dry_runs(pipe) == 1
    other(x, labels)
    assert dry_runs(other) == 2


def test_eval_mode_plans_again_once(dry_runs):
    """Switching a pipeline's mode assigns ``training`` on each op: a change, planned again once; switching to the
    mode it is in assigns the same value, which changes nothing."""
    x, labels = images_and_labels()
    pipe = A.Pipeline(A.RandomCrop(10, padding=2), A.Mixup(alpha=0.2), seed=0, num_classes=10)
    counts = []
    for switch in (None, "eval", "eval", None, "train", "train"):
        if switch:
            getattr(pipe, switch)()
        pipe(x, labels)
        counts.append(dry_runs(pipe))
    assert counts == [1, 2, 2, 2, 3, 3]


def nested_graph(cutout, mixup, cutmix, seed=None):
    """Ops inside a sub-pipeline, a RandomApply and a OneOf."""
    return A.Pipeline(A.HorizontalFlip(), A.Pipeline(A.Brightness(0.2), A.RandomApply(cutout, p=0.6)),
                      A.OneOf(A.Pipeline(mixup), cutmix, weights=(1, 2)), seed=seed, num_classes=10)


@pytest.mark.parametrize("where", ["top level", "nested"])
def test_an_op_changed_between_calls_is_planned_again_and_draws_as_if_built_so(where, dry_runs):
    """Mixup's alpha on a schedule, or Cutout's count, change the draws sample asks for (alpha 1 is an exponential
    draw, any other alpha a gamma draw): the pipeline plans again, and draws what a pipeline built with the new
    values draws from the same generator state."""
    x, labels = images_and_labels()

    def build(cutout, mixup, cutmix, seed=None):
        if where == "nested":
            return nested_graph(cutout, mixup, cutmix, seed)
        return A.Pipeline(A.HorizontalFlip(), cutout, mixup, cutmix, seed=seed, num_classes=10)

    cutout, mixup, cutmix = A.Cutout(4), A.Mixup(alpha=1.0), A.CutMix(alpha=0.5)
    pipe = build(cutout, mixup, cutmix, seed=3)
    pipe(x, labels)
    cutout.count, mixup.alpha, cutmix.alpha = 3, 0.4, 1.0
    state = pipe.state_dict()
    out, targets = pipe(x, labels)
    assert dry_runs(pipe) == 2
    reference = build(A.Cutout(4, count=3), A.Mixup(alpha=0.4), A.CutMix(alpha=1.0))
    reference.load_state_dict(state)
    expected, expected_targets = reference(x, labels)
    assert torch.equal(out, expected) and torch.equal(targets, expected_targets)
    assert summary(pipe.last_params) == summary(reference.last_params)
    assert (8, 3, 4) in [shape for shape, _, _ in summary(pipe.last_params).values()]  # three Cutout boxes each


def test_a_node_put_in_place_of_another_is_planned_again(dry_runs):
    """RandomApply's node replaced by an op that draws otherwise: planned again, drawing as a graph built so."""
    x, labels = images_and_labels()
    apply = A.RandomApply(A.Brightness(0.3), p=0.5)
    pipe = A.Pipeline(A.HorizontalFlip(), apply, seed=4)
    pipe(x)
    apply.node = A.Cutout(3, count=2)
    state = pipe.state_dict()
    out = pipe(x)
    assert dry_runs(pipe) == 2
    reference = A.Pipeline(A.HorizontalFlip(), A.RandomApply(A.Cutout(3, count=2), p=0.5))
    reference.load_state_dict(state)
    assert torch.equal(out, reference(x))
    assert pipe.last_params[1]["node"]["boxes"].shape == (8, 2, 4)


def test_a_node_added_to_or_replaced_in_a_built_pipeline_is_planned_again(dry_runs):
    """``pipe.nodes`` edited after a call (an op appended, one replaced, inside a sub-pipeline too): planned again,
    drawing as a pipeline built so."""
    x, labels = images_and_labels()
    inner = A.Pipeline(A.Brightness(0.3))
    pipe = A.Pipeline(A.HorizontalFlip(), inner, seed=5)
    pipe(x)
    pipe.nodes.append(A.Cutout(2, count=3))
    inner.nodes[0] = A.Contrast(0.2, p=0.5)
    state = pipe.state_dict()
    out = pipe(x)
    assert dry_runs(pipe) == 2
    reference = A.Pipeline(A.HorizontalFlip(), A.Pipeline(A.Contrast(0.2, p=0.5)), A.Cutout(2, count=3))
    reference.load_state_dict(state)
    assert torch.equal(out, reference(x))
    assert summary(pipe.last_params) == summary(reference.last_params)
