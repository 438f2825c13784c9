"""The policies (augpipe.policies): their op and magnitude tables against torchvision's published definitions,
typed here from reading torchvision's source; the frequencies of what they draw; each sample's result against
its drawn members applied one at a time, sample by sample, and against PIL on a photograph; replay, neutral
params, any size and batch, compiled == eager, and bad input."""
import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageEnhance, ImageOps
from scipy import stats
from skimage import data, transform

import augpipe as A
from augpipe import functional as F
from augpipe import policies as P
from augpipe.ops import Shape

NAMES = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
         "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
ID = {name: k for k, name in enumerate(NAMES)}
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
# torchvision's RandAugment and TrivialAugmentWide draw from these 14; AutoAugment adds Invert and has no Identity.
RANDAUGMENT_OPS = NAMES[:14]
SIGNED = GEOMETRIC | {"Brightness", "Color", "Contrast", "Sharpness"}
AUGMIX_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Posterize", "Solarize", "AutoContrast",
              "Equalize", "Brightness", "Color", "Contrast", "Sharpness")


def draw(policy, batch: int, size=(24, 40), seed: int = 0, channels: int = 3) -> dict:
    """The policy's params for a batch, drawn from a seeded generator."""
    return policy.sample(Shape(batch, channels, *size), torch.Generator().manual_seed(seed), "cpu")


def magnitudes_of(params: dict, name: str) -> torch.Tensor:
    """The magnitudes drawn for member ``name``, over every sample and slot."""
    return params["magnitude"][params["op"] == ID[name]]


def test_members_are_named_in_their_index_order():
    assert P.MEMBERS == NAMES


# ------------------------------------------------------------------------------------------ tables
# torchvision's magnitudes (torchvision/transforms/v2/_auto_augment.py, ``_AUGMENTATION_SPACE``), worked out by hand
# at given bins for images of height 24 and width 40. Translations are ``int()`` of the linspace value; Posterize is
# ``round(8 - bin / ((bins - 1) / 4))``; Solarize ``linspace(1, 0)`` on the float scale. Signed members come out
# with either sign, so the tables hold the absolute value.
RANDAUGMENT_AT = {
    (31, 9): {"Identity": 0, "ShearX": 0.09, "ShearY": 0.09, "TranslateX": 5, "TranslateY": 3, "Rotate": 9,
              "Brightness": 0.27, "Color": 0.27, "Contrast": 0.27, "Sharpness": 0.27, "Posterize": 7,
              "Solarize": 0.7, "AutoContrast": 0, "Equalize": 0},
    (31, 30): {"Identity": 0, "ShearX": 0.3, "ShearY": 0.3, "TranslateX": 18, "TranslateY": 10, "Rotate": 30,
               "Brightness": 0.9, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9, "Posterize": 4,
               "Solarize": 0.0, "AutoContrast": 0, "Equalize": 0},
    (31, 0): {"Identity": 0, "ShearX": 0, "ShearY": 0, "TranslateX": 0, "TranslateY": 0, "Rotate": 0,
              "Brightness": 0, "Color": 0, "Contrast": 0, "Sharpness": 0, "Posterize": 8, "Solarize": 1.0,
              "AutoContrast": 0, "Equalize": 0},
    (10, 4): {"Identity": 0, "ShearX": 0.4 / 3, "ShearY": 0.4 / 3, "TranslateX": 8, "TranslateY": 4,
              "Rotate": 40 / 3, "Brightness": 0.4, "Color": 0.4, "Contrast": 0.4, "Sharpness": 0.4, "Posterize": 6,
              "Solarize": 5 / 9, "AutoContrast": 0, "Equalize": 0},
}


@pytest.mark.parametrize("bins, level", list(RANDAUGMENT_AT))
def test_randaugment_magnitudes_are_torchvisions(bins, level):
    expected = RANDAUGMENT_AT[(bins, level)]
    params = draw(A.RandAugment(num_ops=3, magnitude=level, num_magnitude_bins=bins), 1000)
    assert set(params["op"].unique().tolist()) == {ID[name] for name in RANDAUGMENT_OPS}
    for name, value in expected.items():
        m = magnitudes_of(params, name)
        got = m.abs().unique()
        assert got.numel() == 1 and math.isclose(got.item(), value, rel_tol=1e-6, abs_tol=1e-7), (name, got)
        # the geometric and enhance members come with either sign, the others never negative
        assert (m < 0).any() == (name in SIGNED and value != 0) and (m > 0).any() == (value != 0), name


# TrivialAugmentWide (torchvision's wide space, 31 bins): the largest magnitude, and the posterize bits per bin
# (8 - round(bin / 5)): bins 0-2 keep 8 bits, 3-7 7, 8-12 6, 13-17 5, 18-22 4, 23-27 3 and 28-30 2.
WIDE_LARGEST = {"ShearX": 0.99, "ShearY": 0.99, "TranslateX": 32, "TranslateY": 32, "Rotate": 135,
                "Brightness": 0.99, "Color": 0.99, "Contrast": 0.99, "Sharpness": 0.99}
WIDE_POSTERIZE_BINS = {8: 3, 7: 5, 6: 5, 5: 5, 4: 5, 3: 5, 2: 3}


def test_trivialaugment_scales_are_torchvisions_wide_ones():
    params = draw(A.TrivialAugmentWide(), 20000, size=(16, 16))
    assert set(params["op"].unique().tolist()) == {ID[name] for name in RANDAUGMENT_OPS}
    for name, largest in WIDE_LARGEST.items():
        m = magnitudes_of(params, name).abs()
        assert math.isclose(m.max().item(), largest, rel_tol=1e-6), name
        if name.startswith("Translate"):  # whole pixels, and 32 whatever the image size
            assert set(m.unique().tolist()) == {int(largest * b / 30) for b in range(31)}
        else:
            assert torch.allclose(m.unique(), torch.tensor([largest * b / 30 for b in range(31)]), rtol=1e-6)
    for name in WIDE_LARGEST:
        assert (magnitudes_of(params, name) < 0).any(), name
    assert set(magnitudes_of(params, "Posterize").unique().tolist()) == set(WIDE_POSTERIZE_BINS)
    assert torch.allclose(magnitudes_of(params, "Solarize").unique(), torch.tensor([b / 30 for b in range(31)]))


# AutoAugment's policies as torchvision's source lists them, typed as (member, probability, bin) for a few of the
# 25 sub-policies of each, with how often each member appears over the 50 entries.
AUTOAUGMENT_SOME = {
    "imagenet": {0: (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), 10: (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
                 17: (("Sharpness", 0.4, 7), ("Invert", 0.6, None)), 24: (("Equalize", 0.8, None),
                                                                         ("Equalize", 0.6, None))},
    "cifar10": {0: (("Invert", 0.1, None), ("Contrast", 0.2, 6)), 3: (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
                14: (("Solarize", 0.5, 2), ("Invert", 0.0, None)), 24: (("TranslateY", 0.7, 9),
                                                                       ("AutoContrast", 0.9, None))},
    "svhn": {0: (("ShearX", 0.9, 4), ("Invert", 0.2, None)), 15: (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
             18: (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), 24: (("ShearX", 0.7, 2), ("Invert", 0.1, None))},
}
AUTOAUGMENT_COUNTS = {
    "imagenet": {"Equalize": 17, "Posterize": 5, "Rotate": 6, "Solarize": 7, "AutoContrast": 2, "Color": 6,
                 "Contrast": 2, "Invert": 3, "Sharpness": 1, "ShearX": 1},
    "cifar10": {"Invert": 3, "Contrast": 2, "Rotate": 1, "TranslateX": 2, "Sharpness": 5, "ShearY": 2,
                "TranslateY": 5, "AutoContrast": 7, "Equalize": 9, "Posterize": 1, "Color": 5, "Brightness": 4,
                "Solarize": 4},
    "svhn": {"ShearX": 6, "Invert": 12, "ShearY": 8, "Equalize": 6, "Solarize": 5, "Rotate": 4, "AutoContrast": 3,
             "TranslateY": 4, "Contrast": 1, "TranslateX": 1},
}


@pytest.mark.parametrize("policy", list(AUTOAUGMENT_SOME))
def test_autoaugment_policies_are_torchvisions(policy):
    table = P.autoaugment_policy(policy)
    assert len(table) == 25 and all(len(sub) == 2 for sub in table)
    for index, entries in AUTOAUGMENT_SOME[policy].items():
        assert table[index] == tuple((ID[name], p, b) for name, p, b in entries)
    counts = {}
    for sub in table:
        for member, _, _ in sub:
            counts[NAMES[member]] = counts.get(NAMES[member], 0) + 1
    assert counts == AUTOAUGMENT_COUNTS[policy]


# AutoAugment's magnitudes: RandAugment's scale over 10 bins, with Invert; at the bins its policies use.
AUTOAUGMENT_AT = {("Posterize", 8): 4, ("Posterize", 5): 6, ("Rotate", 9): 30, ("Rotate", 3): 10,
                  ("Solarize", 5): 4 / 9, ("Color", 0): 0, ("Contrast", 8): 0.8, ("ShearY", 8): 0.8 / 3,
                  ("TranslateY", 9): 10, ("TranslateX", 3): 6, ("Sharpness", 1): 0.1}


def test_autoaugment_magnitudes_are_torchvisions():
    seen = set()
    for policy in AUTOAUGMENT_SOME:
        table = P.autoaugment_policy(policy)
        params = draw(A.AutoAugment(policy), 4000)
        for slot in range(2):
            member, _, level = zip(*[sub[slot] for sub in table])
            for name, b in {(NAMES[m], b) for m, b in zip(member, level)} & set(AUTOAUGMENT_AT):
                at = torch.tensor([NAMES[m] == name and lv == b for m, lv in zip(member, level)])
                drawn = at[params["policy"]] & (params["op"][:, slot] == ID[name])
                got = params["magnitude"][drawn, slot].abs().unique()
                assert got.numel() == 1 and math.isclose(got.item(), AUTOAUGMENT_AT[(name, b)], rel_tol=1e-6)
                seen.add((name, b))
    assert seen == set(AUTOAUGMENT_AT)


# AugMix (torchvision's partial space, plus the four enhance ops with all_ops): 10 bins, of which a severity s
# draws the first s. At severity 3, images 24 x 40: bins 0, 1, 2.
AUGMIX_AT_SEVERITY_3 = {"ShearX": (0, 0.1 / 3, 0.2 / 3), "TranslateX": (0, 1, 2), "TranslateY": (0, 0, 1),
                        "Rotate": (0, 10 / 3, 20 / 3), "Posterize": (4, 3), "Solarize": (1, 8 / 9, 7 / 9),
                        "Brightness": (0, 0.1, 0.2), "Sharpness": (0, 0.1, 0.2)}


def test_augmix_magnitudes_are_torchvisions():
    params = draw(A.AugMix(), 3000)
    assert set(params["op"].unique().tolist()) == {ID[name] for name in AUGMIX_OPS} | {ID["Identity"]}
    for name, values in AUGMIX_AT_SEVERITY_3.items():
        got = magnitudes_of(params, name).abs().unique()
        assert torch.allclose(got, torch.tensor(sorted(set(values)), dtype=got.dtype), rtol=1e-6), name
    # the full scale: Posterize reaches 0 bits (black) at severity 9 and 10, as torchvision's
    bits = magnitudes_of(draw(A.AugMix(severity=10, all_ops=False), 3000), "Posterize").unique().tolist()
    assert bits == [0, 1, 2, 3, 4]
    partial = draw(A.AugMix(all_ops=False), 2000)
    assert set(partial["op"].unique().tolist()) == {ID[name] for name in AUGMIX_OPS[:9]} | {ID["Identity"]}


# ------------------------------------------------------------------------------------------ frequencies
def _uniform_counts(values: torch.Tensor, categories) -> list[int]:
    return [int((values == c).sum()) for c in categories]


def test_randaugment_draws_members_and_signs_uniformly_per_sample_and_slot():
    params = draw(A.RandAugment(num_ops=2), 14000, seed=1)
    for slot in range(2):
        counts = _uniform_counts(params["op"][:, slot], [ID[n] for n in RANDAUGMENT_OPS])
        assert stats.chisquare(counts).pvalue > 1e-3
    for name in ("ShearX", "TranslateY", "Rotate", "Brightness", "Sharpness"):
        m = magnitudes_of(params, name)
        assert stats.binomtest(int((m < 0).sum()), m.numel()).pvalue > 1e-3, name
    # the two slots are drawn independently: the 14 x 14 pairs are equally likely
    pairs = params["op"][:, 0] * 14 + params["op"][:, 1]
    assert stats.chisquare(_uniform_counts(pairs, range(196))).pvalue > 1e-3


def test_two_samples_of_one_call_draw_their_own_ops_and_magnitudes():
    for policy in (A.RandAugment(), A.TrivialAugmentWide(), A.AutoAugment(), A.AugMix()):
        params = draw(policy, 64, seed=3)
        rows = {tuple(row) for row in params["op"].flatten(1).tolist()}
        assert len(rows) >= 10, type(policy).__name__  # of 14 members at least, for TrivialAugmentWide
    wide = draw(A.TrivialAugmentWide(), 64, seed=3)["magnitude"]
    assert wide.abs().unique().numel() > 16


def test_trivialaugment_bins_are_uniform():
    params = draw(A.TrivialAugmentWide(), 62000, seed=2)
    bins = torch.round(magnitudes_of(params, "Rotate").abs() / 4.5).long()  # 135 degrees over 30 steps
    counts = _uniform_counts(bins, range(31))
    assert stats.chisquare(counts).pvalue > 1e-3
    bits = magnitudes_of(params, "Posterize")
    expected = [WIDE_POSTERIZE_BINS[b] / 31 * bits.numel() for b in WIDE_POSTERIZE_BINS]
    assert stats.chisquare(_uniform_counts(bits, WIDE_POSTERIZE_BINS), expected).pvalue > 1e-3


def test_magnitude_std_follows_timm():
    """timm's magnitude noise per application: N(magnitude, std) clipped to [0, top bin]; inf: U[0, magnitude].
    Rotate's degrees are RandAugment's bins (30 degrees over 30 steps)."""
    normal = magnitudes_of(draw(A.RandAugment(magnitude=9, magnitude_std=0.5), 20000, seed=4), "Rotate").abs()
    assert stats.kstest(normal.double().numpy(), stats.norm(9, 0.5).cdf).pvalue > 1e-3
    flat = magnitudes_of(draw(A.RandAugment(magnitude=9, magnitude_std=math.inf), 20000, seed=5), "Rotate").abs()
    assert stats.kstest(flat.double().numpy(), stats.uniform(0, 9).cdf).pvalue > 1e-3
    clipped = magnitudes_of(draw(A.RandAugment(magnitude=29, magnitude_std=2.0), 20000, seed=6), "Rotate").abs()
    assert clipped.max() == 30 and 0.25 < (clipped == 30).float().mean() < 0.37  # P(N(29, 2) > 30) = 0.31
    # each sample and slot draws its own
    assert magnitudes_of(draw(A.RandAugment(magnitude_std=0.5), 64), "Solarize").unique().numel() > 1


def test_autoaugment_draws_sub_policies_uniformly_and_applies_entries_with_their_probability():
    batch = 50000
    for policy in AUTOAUGMENT_SOME:
        params = draw(A.AutoAugment(policy), batch, seed=7)
        assert stats.chisquare(_uniform_counts(params["policy"], range(25))).pvalue > 1e-3
        table = P.autoaugment_policy(policy)
        for index, sub in enumerate(table):
            mine = params["policy"] == index
            for slot, (member, probability, _) in enumerate(sub):
                applied = int((params["op"][mine, slot] == member).sum())
                n = int(mine.sum())
                if probability in (0.0, 1.0):
                    assert applied == n * probability
                else:
                    assert stats.binomtest(applied, n, probability).pvalue > 1e-4, (policy, index, slot)


def test_augmix_draws_depths_members_and_weights_per_sample():
    batch = 30000
    params = draw(A.AugMix(), batch, seed=8)
    depth = (params["op"] != ID["Identity"]).sum(2)  # no AugMix member is Identity
    assert stats.chisquare(_uniform_counts(depth.flatten(), (1, 2, 3))).pvalue > 1e-3
    steps = params["op"][params["op"] != ID["Identity"]]
    assert stats.chisquare(_uniform_counts(steps, [ID[n] for n in AUGMIX_OPS])).pvalue > 1e-3
    w = params["weights"]
    assert torch.allclose(w.sum(1), torch.ones(batch, dtype=w.dtype))
    # Dirichlet(1, 1, 1): each weight is Beta(1, 2); m ~ Beta(1, 1)
    assert stats.kstest(w[:, 0].numpy(), stats.beta(1, 2).cdf).pvalue > 1e-3
    assert stats.kstest(params["mix"].numpy(), stats.uniform(0, 1).cdf).pvalue > 1e-3
    skewed = draw(A.AugMix(alpha=0.3, mixture_width=2, chain_depth=2), batch, seed=9)
    assert (skewed["op"] != ID["Identity"]).all()
    assert stats.kstest(skewed["mix"].numpy(), stats.beta(0.3, 0.3).cdf).pvalue > 1e-3
    assert stats.kstest(skewed["weights"][:, 1].numpy(), stats.beta(0.3, 0.3).cdf).pvalue > 1e-3


# ------------------------------------------------------------------------------------------ each member, per sample
def shear_x(m, size):
    return torch.tensor([[1.0, m, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def shear_y(m, size):
    return torch.tensor([[1.0, 0.0, 0.0], [m, 1.0, 0.0], [0.0, 0.0, 1.0]])


def translate_x(t, size):
    return torch.tensor([[1.0, 0.0, -t], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def translate_y(t, size):
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -t], [0.0, 0.0, 1.0]])


def rotate(degrees, size):
    """Counter-clockwise on screen about the centre c (torchvision's rotate, PIL's Image.rotate), y pointing down:
    the output point c + (dx, dy) reads x = cx + cos a dx - sin a dy, y = cy + sin a dx + cos a dy."""
    a = math.radians(degrees)
    cy, cx = size[0] / 2, size[1] / 2
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]],
                        dtype=torch.float64).float()


MATRICES = {"ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x, "TranslateY": translate_y,
            "Rotate": rotate}
# the kernel each photometric member is, with torchvision's parameter for a magnitude m
KERNELS = {
    "Brightness": lambda x, m: F.brightness(x, torch.tensor([1 + m])),
    "Color": lambda x, m: F.saturation(x, torch.tensor([1 + m])),
    "Contrast": lambda x, m: F.contrast(x, torch.tensor([1 + m])),
    "Sharpness": lambda x, m: F.sharpness(x, torch.tensor([1 + m])),
    "Posterize": lambda x, m: F.posterize(x, torch.tensor([int(m)])),
    "Solarize": lambda x, m: F.solarize(x, torch.tensor([m])),
    "AutoContrast": lambda x, m: F.autocontrast(x, torch.tensor([True])),
    "Equalize": lambda x, m: F.equalize(x, torch.tensor([True])),
    "Invert": lambda x, m: F.invert(x, torch.tensor([True])),
}


def member_alone(x: torch.Tensor, name: str, m: float, fill: float = 0.0) -> torch.Tensor:
    """One image (1, C, H, W) float with one member applied as its own op would: a bilinear warp by the matrix
    written above, or the member's kernel."""
    if name == "Identity":
        return x
    if name in MATRICES:
        size = tuple(x.shape[-2:])
        return F.warp_affine(x, MATRICES[name](m, size)[None], size, fill, "fill")
    if name == "Color" and x.shape[1] == 1:
        return x
    return KERNELS[name](x, m)


def loop(x: torch.Tensor, params: dict, fill: float = 0.0) -> torch.Tensor:
    """Sample by sample, slot by slot, each drawn member applied alone."""
    out = []
    for b in range(x.shape[0]):
        y = x[b:b + 1]
        for k in range(params["op"].shape[1]):
            y = member_alone(y, NAMES[params["op"][b, k]], params["magnitude"][b, k].item(), fill)
        out.append(y)
    return torch.cat(out)


@functools.cache
def photos(size=(36, 44)) -> torch.Tensor:
    """astronaut, chelsea and coffee, small: uint8 (3, 3, H, W)."""
    out = []
    for image in (data.astronaut(), data.chelsea(), data.coffee()):
        small = transform.resize(image, size, anti_aliasing=True, preserve_range=True)
        out.append(torch.from_numpy(np.clip(np.round(small), 0, 255).astype(np.uint8)).permute(2, 0, 1))
    return torch.stack(out)


def batch_of(n: int) -> torch.Tensor:
    """n float images: the photographs, mirrored and turned, as levels / 255."""
    views = [photos(), photos().flip(-1), photos().flip(-2), photos().flip(-1, -2)]
    return (torch.cat(views * (n // 12 + 1))[:n].float() / 255).contiguous()


def _close_but_for_levels(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal but for a rare value that a level op put on the other side of a level, at most one part in a thousand
    (where a rounding moved a pixel across Solarize's threshold, the two differ by much more than a level)."""
    gap = (ours - reference).abs()
    assert (gap > 1e-5).float().mean() <= 1e-3, f"{int((gap > 1e-5).sum())} values differ, up to {gap.max()}"


@pytest.mark.parametrize("make", [lambda: A.TrivialAugmentWide(fill=0.25), lambda: A.RandAugment(3, 17),
                                  lambda: A.AutoAugment("svhn"), lambda: A.AutoAugment("cifar10")],
                         ids=["trivialaugment", "randaugment", "autoaugment_svhn", "autoaugment_cifar10"])
def test_each_sample_gets_its_members_as_if_applied_alone(make):
    x = batch_of(48)
    pipe = A.Pipeline(make(), seed=11)
    out = pipe(x)
    params = pipe.last_params[0]
    assert len(set(params["op"].flatten().tolist())) >= 10
    _close_but_for_levels(out, loop(x, params, fill=pipe.nodes[0].fill))
    assert not torch.equal(out, x)


def test_augmix_is_the_blend_of_its_chains_per_sample():
    x = batch_of(12)
    pipe = A.Pipeline(A.AugMix(severity=6, fill=0.5), seed=12)
    out = pipe(x)
    p = pipe.last_params[0]
    expected = []
    for b in range(x.shape[0]):
        mix = p["mix"][b].item() * x[b:b + 1]
        for i in range(p["op"].shape[1]):
            chain = loop(x[b:b + 1], {"op": p["op"][b:b + 1, i], "magnitude": p["magnitude"][b:b + 1, i]}, 0.5)
            mix = mix + (1 - p["mix"][b].item()) * p["weights"][b, i].item() * chain
        expected.append(mix)
    _close_but_for_levels(out, torch.cat(expected))


# Against PIL on the astronaut: replayed params, one member per sample. PIL's affine transforms read output pixel
# centres through the inverse matrix (a, b, c, d, e, f), x_in = a x + b y + c, bilinearly.
PIL_CASES = [
    ("ShearX", 0.3, lambda im, m: im.transform(im.size, Image.AFFINE, (1, m, 0, 0, 1, 0), Image.BILINEAR)),
    ("ShearY", -0.2, lambda im, m: im.transform(im.size, Image.AFFINE, (1, 0, 0, m, 1, 0), Image.BILINEAR)),
    ("TranslateX", 7, lambda im, t: im.transform(im.size, Image.AFFINE, (1, 0, -t, 0, 1, 0), Image.BILINEAR)),
    ("TranslateY", -5, lambda im, t: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -t), Image.BILINEAR)),
    ("Rotate", 25, lambda im, a: im.rotate(a, Image.BILINEAR)),
    ("Rotate", -110, lambda im, a: im.rotate(a, Image.BILINEAR)),
    ("Color", -0.6, lambda im, m: ImageEnhance.Color(im).enhance(1 + m)),
    ("Brightness", 0.5, lambda im, m: ImageEnhance.Brightness(im).enhance(1 + m)),
    ("Sharpness", 0.9, lambda im, m: ImageEnhance.Sharpness(im).enhance(1 + m)),
    ("Posterize", 3, lambda im, m: ImageOps.posterize(im, int(m))),
    ("Solarize", 0.4, lambda im, t: ImageOps.solarize(im, math.ceil(255 * t))),
    ("Equalize", 0, lambda im, m: ImageOps.equalize(im)),
    ("AutoContrast", 0, lambda im, m: ImageOps.autocontrast(im)),
    ("Invert", 0, lambda im, m: ImageOps.invert(im)),
]


def test_members_on_a_photograph_are_pils():
    """uint8 astronaut through replayed params, each sample one member, against PIL on the uint8 image. Geometry
    is compared where PIL's bilinear read has all four taps inside the image, within a level (PIL rounds its
    weights to fixed point); the enhance ops within a level (PIL truncates its blend), the level ops exactly but
    for a value in a thousand (docs/references.md, "Levels")."""
    image = photos(size=(64, 64))[0]
    n = len(PIL_CASES)
    op = torch.tensor([[ID[name]] for name, _, _ in PIL_CASES])
    magnitude = torch.tensor([[float(m)] for _, m, _ in PIL_CASES])
    # AutoAugment's CIFAR-10 policy runs every photometric member (RandAugment has no Invert); one slot
    out = A.Pipeline(A.AutoAugment("cifar10"))(image.repeat(n, 1, 1, 1), params=[{"op": op, "magnitude": magnitude}])
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    for b, (name, m, reference) in enumerate(PIL_CASES):
        expected = torch.from_numpy(np.array(reference(pil, m))).permute(2, 0, 1).long()
        gap = (torch.round(out[b] * 255).long() - expected).abs()
        if name in MATRICES:
            matrix = MATRICES[name](m, (64, 64)).double()
            sx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
            sy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
            inside = (sx >= 1) & (sx <= 63) & (sy >= 1) & (sy <= 63)
            assert inside.float().mean() > 0.3
            assert gap[:, inside].max() <= 1, name
        else:
            assert gap.max() <= 1, name
            assert (gap > 0).float().mean() <= (1 if name in ("Color", "Brightness", "Sharpness") else 1e-3), name


def test_a_one_channel_image_takes_every_member_but_color_which_leaves_it():
    gray = batch_of(14).mean(1, keepdim=True)
    op = torch.tensor([[k] for k in range(14)])
    magnitude = torch.tensor([[0.0], [0.2], [0.2], [3.0], [-4.0], [20.0], [0.5], [-0.7], [0.5], [0.5], [4.0], [0.5],
                              [0.0], [0.0]])
    params = {"op": op, "magnitude": magnitude}
    out = A.Pipeline(A.RandAugment(num_ops=1))(gray, params=[params])
    torch.testing.assert_close(out, loop(gray, params), atol=1e-6, rtol=0)
    assert torch.equal(out[ID["Color"]], gray[ID["Color"]])


def test_the_first_slot_is_read_with_the_geometry_before_it():
    pipe = A.Pipeline(A.RandomCrop(32, 4), A.HorizontalFlip(), A.RandAugment(), A.Normalize((0.5,) * 3, (0.2,) * 3))
    plan = pipe.explain((8, 3, 32, 32))
    assert "geometry [RandomCrop(size=(32, 32), padding=4, padding_mode='constant'), HorizontalFlip(p=0.5), " \
           "PolicyGeometry(RandAugment, fill=0.0)]" in plan
    assert [type(s).__name__ for s in pipe.static_steps()] == ["RandomCrop", "HorizontalFlip", "PolicyGeometry",
                                                               "PolicyPixels", "PolicyGeometry", "PolicyPixels",
                                                               "Normalize"]


def test_masks_and_boxes_follow_the_geometric_members():
    x = batch_of(3)
    masks = torch.zeros(3, 36, 44, dtype=torch.long)
    masks[:, 10:20, 10:30] = 1
    boxes = torch.tensor([[[10.0, 10.0, 30.0, 20.0]]] * 3)
    params = {"op": torch.tensor([[ID["TranslateX"]], [ID["TranslateY"]], [ID["Equalize"]]]),
              "magnitude": torch.tensor([[5.0], [-3.0], [0.0]])}
    out = A.Pipeline(A.TrivialAugmentWide())(x, masks=masks, boxes=boxes, params=[params])
    assert torch.equal(out["masks"][0], masks[0].roll(5, 1))
    assert torch.equal(out["masks"][1], masks[1].roll(-3, 0))
    assert torch.equal(out["masks"][2], masks[2])
    moved = torch.tensor([[15.0, 10, 35, 20], [10, 7, 30, 17], [10, 10, 30, 20]])
    torch.testing.assert_close(out["boxes"][:, 0], moved)
    with pytest.raises(ValueError, match="AugMix.*cannot carry masks"):
        A.Pipeline(A.AugMix())(x, masks=masks)


# ------------------------------------------------------------------------------------------ properties
def test_replay_gives_the_same_images_and_a_new_call_new_draws():
    x = batch_of(12)
    for policy in (A.RandAugment(magnitude_std=0.5), A.TrivialAugmentWide(), A.AutoAugment(), A.AugMix()):
        pipe = A.Pipeline(A.RandomCrop(36, 2), policy, seed=13)
        out = pipe(x)
        params = pipe.last_params
        assert torch.equal(pipe(x, params=params), out)
        again = pipe(x)
        assert not torch.equal(again, out)
        assert torch.equal(A.Pipeline(A.RandomCrop(36, 2), policy, seed=13)(x), out)  # the seed gives the draws


def test_identity_and_not_applied_samples_keep_their_input_exactly():
    x = batch_of(12)
    assert torch.equal(A.Pipeline(A.RandAugment(num_ops=0))(x), x)
    identity = {"op": torch.zeros(12, 2, dtype=torch.long), "magnitude": torch.zeros(12, 2)}
    assert torch.equal(A.Pipeline(A.RandAugment())(x, params=[identity]), x)
    uint8 = (x * 255).round().to(torch.uint8)
    assert torch.equal(A.Pipeline(A.RandAugment())(uint8, params=[identity]), x)
    for policy in (A.RandAugment(), A.TrivialAugmentWide(), A.AutoAugment("svhn"), A.AugMix()):
        assert torch.equal(A.Pipeline(A.RandomApply(policy, p=0.0), seed=1)(x), x)
    # a sample that drew Identity in every slot keeps its values while the others change
    x = batch_of(48)
    pipe = A.Pipeline(A.RandAugment(num_ops=1), seed=14)
    out = pipe(x)
    kept = pipe.last_params[0]["op"][:, 0] == ID["Identity"]
    assert kept.any() and torch.equal(out[kept], x[kept])


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 5), height=st.integers(1, 12), width=st.integers(1, 12), seed=st.integers(0, 2**16),
       which=st.sampled_from(["randaugment", "trivialaugment", "autoaugment", "augmix"]))
def test_any_size_and_batch_each_sample_independent_of_the_others(batch, height, width, seed, which):
    make = {"randaugment": lambda: A.RandAugment(magnitude=20), "trivialaugment": A.TrivialAugmentWide,
            "autoaugment": lambda: A.AutoAugment("cifar10"), "augmix": lambda: A.AugMix(severity=8)}[which]
    x = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    pipe = A.Pipeline(make(), seed=seed)
    out = pipe(x)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    params = pipe.last_params[0]
    b = seed % batch
    alone = pipe(x[b:b + 1], params=[{k: v[b:b + 1] for k, v in params.items()}])
    torch.testing.assert_close(alone[0], out[b], atol=1e-6, rtol=0)


def test_compiled_randaugment_equals_eager(compiled_graphs):
    x = (batch_of(24) * 255).round().to(torch.uint8)
    nodes = lambda: [A.RandomCrop(36, 4), A.HorizontalFlip(), A.RandAugment(2, 14, magnitude_std=0.5),  # noqa: E731
                     A.Normalize((0.5,) * 3, (0.25,) * 3)]
    before = compiled_graphs()
    compiled = A.Pipeline(*nodes(), seed=15, compile=True)
    out = compiled(x)
    assert compiled_graphs() > before
    expected = A.Pipeline(*nodes(), seed=15)(x)
    _close_but_for_levels(out * 0.25, expected * 0.25)  # on the image's scale


def test_compiled_trivialaugment_equals_eager(compiled_graphs):
    x = (batch_of(24) * 255).round().to(torch.uint8)
    nodes = lambda: [A.RandomResizedCrop(28), A.HorizontalFlip(), A.TrivialAugmentWide()]  # noqa: E731
    before = compiled_graphs()
    compiled = A.Pipeline(*nodes(), seed=16, compile=True)
    out = compiled(x)
    assert compiled_graphs() > before
    expected = A.Pipeline(*nodes(), seed=16)(x)
    _close_but_for_levels(out, expected)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("make, error, message", [
    (lambda: A.RandAugment(magnitude=31), ValueError, r"RandAugment: magnitude must be in 0..30, got 31"),
    (lambda: A.RandAugment(magnitude=-1), ValueError, r"RandAugment: magnitude must be in 0..30"),
    (lambda: A.RandAugment(magnitude=9.5), TypeError, r"RandAugment: magnitude must be an int"),
    (lambda: A.RandAugment(num_ops=-1), ValueError, r"RandAugment: num_ops must be >= 0"),
    (lambda: A.RandAugment(num_magnitude_bins=1, magnitude=0), ValueError, r"num_magnitude_bins must be >= 2"),
    (lambda: A.RandAugment(magnitude_std=-0.5), ValueError, r"RandAugment: magnitude_std must be a number >= 0"),
    (lambda: A.RandAugment(magnitude_std=math.nan), ValueError, r"magnitude_std must be a number >= 0"),
    (lambda: A.RandAugment(fill=math.nan), ValueError, r"RandAugment: fill must be finite"),
    (lambda: A.TrivialAugmentWide(num_magnitude_bins=0), ValueError, r"TrivialAugmentWide: num_magnitude_bins"),
    (lambda: A.AutoAugment("imagenet1k"), ValueError,
     r"AutoAugment: policy must be one of \['cifar10', 'imagenet', 'svhn'\], got 'imagenet1k'"),
    (lambda: A.AutoAugment(None), TypeError, r"AutoAugment: policy must be a string"),
    (lambda: A.AugMix(severity=0), ValueError, r"AugMix: severity must be in 1..10, got 0"),
    (lambda: A.AugMix(severity=11), ValueError, r"AugMix: severity must be in 1..10"),
    (lambda: A.AugMix(mixture_width=0), ValueError, r"AugMix: mixture_width must be >= 1"),
    (lambda: A.AugMix(alpha=0.0), ValueError, r"AugMix: alpha must be a finite number > 0"),
    (lambda: A.AugMix(chain_depth=1.5), TypeError, r"AugMix: chain_depth must be an int"),
])
def test_bad_arguments_are_refused_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("channels", [2, 4])
def test_images_without_rgb_or_gray_are_refused_naming_the_policy(channels):
    x = torch.rand(2, channels, 8, 8)
    for policy in (A.RandAugment(), A.TrivialAugmentWide(), A.AutoAugment(), A.AugMix()):
        with pytest.raises(ValueError, match=rf"{type(policy).__name__}\(.*Color and Contrast need RGB or "
                                             rf"grayscale images, 3 or 1 channels, got {channels}"):
            A.Pipeline(policy)(x)
    # AugMix without the enhance ops takes any channel count; AutoAugment's SVHN policy has Contrast
    assert A.Pipeline(A.AugMix(all_ops=False), seed=0)(x).shape == x.shape
    with pytest.raises(ValueError, match="AutoAugment.*: Contrast needs RGB or grayscale"):
        A.Pipeline(A.AutoAugment("svhn"))(x)


def test_images_of_mixed_sizes_are_refused():
    packed = [torch.rand(3, 10, 12), torch.rand(3, 8, 9)]
    with pytest.raises(ValueError, match="RandAugment.*gets images of different sizes"):
        A.Pipeline(A.RandAugment())(packed)
    assert A.Pipeline(A.RandomResizedCrop(8), A.RandAugment(), seed=0)(packed).shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_policies_make_no_host_sync_and_give_the_cpu_images():
    """Draws, tables (buffers on the device), the per-sample selection and AugMix's chains: nothing waits for the
    device; the same params on the CPU give the same images but for a rare level."""
    x = (batch_of(24) * 255).round().to(torch.uint8)
    on_device = x.cuda()
    for policy in (A.RandAugment(magnitude_std=0.5), A.TrivialAugmentWide(), A.AutoAugment(), A.AugMix()):
        pipe = A.Pipeline(A.RandomCrop(36, 4), A.HorizontalFlip(), policy, seed=17)
        pipe(on_device)  # the first call creates the generator and moves the tables
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = pipe(on_device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        cpu_params = [{k: v.cpu() for k, v in p.items()} for p in pipe.last_params]
        _close_but_for_levels(out.cpu(), pipe(x, params=cpu_params))
