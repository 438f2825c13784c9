"""Labels in the forms users pass them (lists, numpy arrays), the checks on them, and exact output ranges."""
import warnings

import numpy as np
import pytest
import torch

import augpipe as A


def images(b=4, seed=0):
    return torch.randint(0, 256, (b, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def one_hot_by_hand(labels, k):
    out = torch.zeros(len(labels), k)
    for i, c in enumerate(labels):
        out[i, c] = 1.0
    return out


# ----------------------------------------------------------------------------------------------- label types
@pytest.mark.parametrize("form", [list, tuple, np.array, lambda v: np.array(v, dtype=np.int32),
                                  lambda v: np.array(v, dtype=np.uint8)])
def test_int_labels_as_list_or_numpy_give_the_tensors_targets(form):
    labels = [2, 0, 1, 2]
    graph = lambda: A.Pipeline(A.Mixup(), A.LabelSmoothing(0.1), seed=5, num_classes=3)  # noqa: E731
    x_t, t_t = graph()(images(), torch.tensor(labels))
    x_f, t_f = graph()(images(), form(labels))
    assert torch.equal(x_f, x_t) and torch.equal(t_f, t_t)
    # and the tensor's targets are the formula's: one-hot, mixed with the drawn partner, smoothed
    pipe = graph()
    _, t = pipe(images(), form(labels))
    lam, perm = pipe.last_params[0]["lam"].float(), pipe.last_params[0]["perm"]
    y = one_hot_by_hand(labels, 3)
    mixed = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    assert torch.allclose(t, 0.9 * mixed + 0.1 / 3, atol=1e-6)


def test_numpy_float_soft_labels_give_the_tensors_targets():
    soft = np.array([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)
    _, from_tensor = A.Pipeline(A.CutMix(), seed=2)(images(), torch.from_numpy(soft.copy()))
    _, from_numpy = A.Pipeline(A.CutMix(), seed=2)(images(), soft)
    _, from_list = A.Pipeline(A.CutMix(), seed=2)(images(), soft.tolist())
    assert torch.equal(from_numpy, from_tensor) and torch.equal(from_list, from_tensor)
    assert from_numpy.dtype == torch.float32


def test_one_image_takes_one_int_label():
    x = images(1)[0]
    _, t = A.Pipeline(A.HorizontalFlip(), num_classes=4)(x, 3)
    assert torch.equal(t, torch.tensor([0.0, 0.0, 0.0, 1.0]))


def test_labels_go_to_the_images_device():
    # The only device every machine has is the CPU, so a meta-device label tensor stands in for "elsewhere":
    # targets must come out on the images' device whatever device the labels were on.
    pipe = A.Pipeline(A.HorizontalFlip(), num_classes=3)
    _, t = pipe(images(), [0, 1, 2, 0])
    assert t.device == images().device
    if torch.cuda.is_available():
        _, t = pipe(images().cuda(), torch.tensor([0, 1, 2, 0]))
        assert t.device.type == "cuda"
        _, t = pipe(images(), torch.tensor([0, 1, 2, 0], device="cuda"))
        assert t.device.type == "cpu"


@pytest.mark.parametrize("bad, error, says", [
    ("cat", TypeError, "labels must be a torch.Tensor, a list or a numpy array, got str"),
    ([["a"], ["b"]], TypeError, "labels must be int class indices or float soft labels, got list"),
    ([True, False, True, False], TypeError, "got torch.bool"),
    ([0, 1, 5, 2], ValueError, r"labels must be in \[0, 3\), got values in \[0, 5\]"),
])
def test_bad_labels_are_named(bad, error, says):
    with pytest.raises(error, match=says):
        A.Pipeline(A.HorizontalFlip(), num_classes=3)(images(), bad)


# ----------------------------------------------------------------------------------------------- soft label sums
@pytest.mark.parametrize("form", [torch.tensor, np.array, list])
def test_soft_labels_that_do_not_sum_to_1_are_refused_with_the_sums(form):
    soft = [[0.2, 0.8], [0.5, 0.4], [1.0, 0.0], [2.0, 1.0]]
    with pytest.raises(ValueError, match=r"sum to 1 in each row.*2 rows.*row 1: 0\.9\b.*row 3: 3\b"):
        A.Pipeline(A.Mixup())(images(), form(soft))


def test_soft_labels_within_the_tolerance_pass():
    soft = torch.tensor([[0.2, 0.8], [0.5, 0.5004], [0.3333, 0.6667], [0.0, 1.0]])
    _, t = A.Pipeline(A.HorizontalFlip())(images(), soft)
    assert torch.equal(t, soft)


# ----------------------------------------------------------------------------------------------- mixing without labels
@pytest.mark.parametrize("node", [
    A.Mixup(), A.CutMix(), A.RandomApply(A.Mixup(), p=0.5), A.OneOf(A.HorizontalFlip(), A.CutMix()),
    A.Pipeline(A.HorizontalFlip(), A.RandomApply(A.OneOf(A.Mixup(), A.CutMix()), p=0.3)),
])
def test_mixing_without_labels_warns(node):
    pipe = A.Pipeline(A.Brightness(0.1), node, seed=0)
    with pytest.warns(UserWarning, match=r"Mixup/CutMix mix the images but no labels were given") as seen:
        out = pipe(images())
    assert out.shape == (4, 3, 8, 8)
    assert seen[0].filename == __file__  # points at the caller's line


def test_no_warning_with_labels_masks_or_without_mixing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.Pipeline(A.Mixup(), num_classes=3)(images(), [0, 1, 2, 0])
        A.Pipeline(A.CutMix())(images(), masks=torch.zeros(4, 8, 8, dtype=torch.long))  # masks are the targets
        A.Pipeline(A.HorizontalFlip(), A.Cutout(2))(images())


# ----------------------------------------------------------------------------------------------- exact output range
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Every op, and compositions that take the other resampling paths (a padded crop blended into a resized crop's
# read, a rotation after a crop). Fills of 1 put the fill at the top of the range.
RANGE_GRAPHS = {
    "crop": lambda h, w: [A.RandomCrop((h, w), padding=2, fill=1.0)],
    "crop_reflect": lambda h, w: [A.RandomCrop((h, w), padding=2, padding_mode="reflect")],
    "resized_crop": lambda h, w: [A.RandomResizedCrop((h + 3, max(1, w - 2)))],
    "padded_then_resized": lambda h, w: [A.RandomCrop((h, w), padding=3, fill=1.0), A.RandomResizedCrop((h, w))],
    "rotation": lambda h, w: [A.RandomRotation(45, fill=1.0)],
    "affine": lambda h, w: [A.RandomAffine(20, translate=(0.2, 0.1), scale=(0.7, 1.3), shear=10, fill=1.0)],
    "crop_then_rotation": lambda h, w: [A.RandomCrop((h, w), padding=1), A.RandomRotation(30)],
    "flips": lambda h, w: [A.HorizontalFlip(), A.VerticalFlip()],
    "brightness_contrast": lambda h, w: [A.Brightness(0.9), A.Contrast(0.9)],
    "cutout": lambda h, w: [A.Cutout(3, count=2, fill=1.0)],
    "mixup": lambda h, w: [A.RandomResizedCrop((h, w)), A.Mixup(alpha=0.4)],
    "cutmix": lambda h, w: [A.RandomRotation(10), A.CutMix()],
    "fractional_pool": lambda h, w: [A.RandomResizedCrop((h, w)), A.FractionalPool()],
}


def mostly_white(b, h, w, seed):
    """uint8 images with most pixels at 255 (where an overshoot shows) and a few other values."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)
    x[torch.rand(x.shape, generator=g) < 0.8] = 255
    x[0] = 255  # one all-white image: every output pixel must be exactly 1 where no fill below 1 reaches it
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(RANGE_GRAPHS)), h=st.integers(4, 33), w=st.integers(4, 33),
       seed=st.integers(0, 2 ** 16), as_float=st.booleans())
def test_outputs_stay_within_0_and_1_exactly(name, h, w, seed, as_float):
    x = mostly_white(6, h, w, seed)
    if as_float:
        x = x.float() / 255  # exact: a float image in [0, 1]
    out, _ = A.Pipeline(*RANGE_GRAPHS[name](h, w), seed=seed, num_classes=2)(x, torch.zeros(6, dtype=torch.long))
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0, (name, out.min().item(), out.max().item())


@pytest.mark.parametrize("name", ["resized_crop", "rotation"])
def test_white_stays_exactly_white_through_a_resample(name):
    # A blend of equal values is that value: the bilinear reads must give 1, not 0.99999994 or 1.0000001.
    x = torch.full((4, 3, 13, 17), 255, dtype=torch.uint8)
    out = A.Pipeline(*RANGE_GRAPHS[name](13, 17), seed=3)(x)
    assert torch.equal(out, torch.ones_like(out))


def test_outputs_stay_within_0_and_1_compiled():
    # One small compiled check: the compiled separable resampler reads its taps another way (one index and a fixed
    # step); the rotation's read is the same code eager and compiled.
    torch._dynamo.reset()
    graph = [A.RandomCrop((13, 17), padding=2, fill=1.0), A.RandomResizedCrop((15, 11)), A.Brightness(0.5),
             A.Mixup()]
    pipe = A.Pipeline(*graph, seed=1, num_classes=2, compile=True)
    for seed in range(3):
        out, _ = pipe(mostly_white(8, 13, 17, seed), torch.zeros(8, dtype=torch.long))
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0
