"""Init variances against the formulas (docs/references.md, "Initialization") and against torch.nn.init's statistics."""
import math

import pytest
import torch
from torch import nn

from training import init as I


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def big_layers():
    # Large enough (>= 2e5 weights) that the sample std is within ~0.5% of the true std.
    return [nn.Linear(1000, 300), nn.Conv2d(64, 96, kernel_size=5), nn.Conv1d(32, 700, kernel_size=9)]


# Names torch.nn.init.calculate_gain knows; the others' gains are checked against a quadrature below.
TORCH_GAINS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def fixed_point_gain(name):
    """1 / sqrt(E[f(z)^2]), z ~ N(0, 1), by scipy's adaptive quadrature of the activation written out here."""
    from scipy import integrate
    from scipy.special import erf

    f = {"elu": lambda z: z if z > 0 else math.expm1(z),
         "gelu": lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2))),
         "gelu_tanh": lambda z: 0.5 * z * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))),
         "relu": lambda z: max(z, 0.0)}[name]
    density = lambda z: f(z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    second_moment = integrate.quad(density, -math.inf, 0)[0] + integrate.quad(density, 0, math.inf)[0]
    return 1 / math.sqrt(second_moment)


def reference_gain(nonlinearity):
    if nonlinearity in TORCH_GAINS:
        return nn.init.calculate_gain(nonlinearity, 0.01 if nonlinearity == "leaky_relu" else None)
    return fixed_point_gain(nonlinearity)


def expected_std(scheme, fan_in, fan_out, nonlinearity):
    """The formulas, written out independently of training.init."""
    g = reference_gain(nonlinearity)
    return {"zeros": 0.0, "small_random": 0.01,
            "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)), "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
            "kaiming_uniform": g / math.sqrt(fan_in), "kaiming_normal": g / math.sqrt(fan_in),
            "lecun_normal": 1 / math.sqrt(fan_in)}[scheme]


def fans_by_hand(layer):
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    k = math.prod(layer.kernel_size)
    return layer.in_channels * k, layer.out_channels * k  # conv fan_in counts the kernel


@pytest.mark.parametrize("scheme", I.SCHEMES)
@pytest.mark.parametrize("nonlinearity", I.NONLINEARITIES)
def test_std_and_mean_match_formula(scheme, nonlinearity):
    for layer in big_layers():
        nn.init.constant_(layer.bias, 3.0)
        I.initialize(layer, scheme, nonlinearity, generator=gen())
        w = layer.weight.detach().double()
        std = expected_std(scheme, *fans_by_hand(layer), nonlinearity)
        assert torch.count_nonzero(layer.bias) == 0
        if std == 0:
            assert torch.count_nonzero(w) == 0
            continue
        assert w.std().item() == pytest.approx(std, rel=0.01)
        assert abs(w.mean().item()) < 0.02 * std
        if scheme.endswith("uniform"):
            bound = math.sqrt(3) * std
            assert w.abs().max().item() <= bound
            assert w.abs().max().item() > 0.999 * bound
        else:  # normal: 4.5 sigma is rarer than 1 in 10^5 weights, the kurtosis is 3
            assert ((w - w.mean()) ** 4).mean().item() / w.var().item() ** 2 == pytest.approx(3.0, rel=0.05)


TORCH_EQUIVALENT = {
    "xavier_uniform": lambda w, nl: nn.init.xavier_uniform_(w),
    "xavier_normal": lambda w, nl: nn.init.xavier_normal_(w),
    "kaiming_uniform": lambda w, nl: nn.init.kaiming_uniform_(w, a=0.01, nonlinearity=nl),
    "kaiming_normal": lambda w, nl: nn.init.kaiming_normal_(w, a=0.01, nonlinearity=nl),
}


@pytest.mark.parametrize("scheme", sorted(TORCH_EQUIVALENT))
@pytest.mark.parametrize("nonlinearity", ["linear", "tanh", "relu", "leaky_relu"])
def test_statistics_agree_with_torch_nn_init(scheme, nonlinearity):
    ours, theirs = nn.Conv2d(64, 128, 3), nn.Conv2d(64, 128, 3)
    I.initialize(ours, scheme, nonlinearity, generator=gen(1))
    torch.manual_seed(2)
    TORCH_EQUIVALENT[scheme](theirs.weight.data, nonlinearity)
    assert ours.weight.std().item() == pytest.approx(theirs.weight.std().item(), rel=0.02)
    assert ours.weight.abs().max().item() == pytest.approx(theirs.weight.abs().max().item(), rel=0.25)


def test_every_linear_and_conv_in_a_model_is_initialized_and_others_untouched():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4, 5))
    I.initialize(model, "zeros")
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if not n.startswith("1."))
    assert torch.equal(model[1].weight, torch.ones(8))  # BatchNorm keeps its own init


def test_same_generator_seed_same_weights():
    a, b = nn.Linear(20, 30), nn.Linear(20, 30)
    I.initialize(a, "kaiming_normal", generator=gen(5))
    I.initialize(b, "kaiming_normal", generator=gen(5))
    assert torch.equal(a.weight, b.weight)


def test_zeros_never_breaks_symmetry():
    # docs/references.md, "Initialization": with zero init every hidden unit stays identical after training steps.
    torch.manual_seed(0)
    model = I.initialize(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)), "zeros")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    w = model[0].weight
    assert torch.allclose(w, w[:1].expand_as(w))


def test_lecun_normal_keeps_selu_activations_at_unit_std():
    # docs/references.md, "Initialization": LeCun normal keeps a deep SELU net at std ~1 (narrower than 4096: fast).
    from training.activations import selu
    g = gen(3)
    x = torch.randn(512, 1024, generator=g)
    for _ in range(10):
        layer = I.initialize(nn.Linear(1024, 1024), "lecun_normal", "linear", generator=g)
        with torch.no_grad():
            x = selu(layer(x))
    assert x.std().item() == pytest.approx(1.0, abs=0.1)


def test_small_random_shrinks_deep_tanh_activations():
    g = gen(4)
    x = torch.randn(256, 1024, generator=g)
    stds = []
    for _ in range(6):
        layer = I.initialize(nn.Linear(1024, 1024), "small_random", "tanh", generator=g)
        with torch.no_grad():
            x = torch.tanh(layer(x))
        stds.append(x.std().item())
    assert all(b < a for a, b in zip(stds, stds[1:])) and stds[-1] < 0.05 * stds[0]


def test_every_activation_name_is_a_nonlinearity():
    from training.activations import NAMES
    assert set(NAMES) | {"linear"} == set(I.NONLINEARITIES)


@pytest.mark.parametrize("nonlinearity", I.NONLINEARITIES)
def test_gain_matches_torch_or_the_fixed_point(nonlinearity):
    assert I.gain(nonlinearity) == pytest.approx(reference_gain(nonlinearity), rel=1e-6)


def test_selu_gain_is_torchs_three_quarters():
    assert I.gain("selu") == nn.init.calculate_gain("selu") == 0.75


def test_fixed_point_quadrature_gives_relus_sqrt_2():
    # The reference quadrature, on the one rectifier with a closed form.
    assert fixed_point_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-9)


@pytest.mark.parametrize("nonlinearity", sorted(I.FIXED_POINT_GAINS))
def test_fixed_point_gain_keeps_deep_pre_activations_at_unit_std(nonlinearity):
    # The property the gain is chosen for: a Kaiming-normal layer maps unit-variance pre-activations to unit
    # variance. (The fixed point is stable for ELU; for GELU a deep stack drifts down a few percent a layer.)
    from training.activations import FUNCTIONS
    g = gen(6)
    y = torch.randn(1024, 1024, generator=g)
    stds = []
    for _ in range(3):
        layer = I.initialize(nn.Linear(1024, 1024), "kaiming_normal", nonlinearity, generator=g)
        with torch.no_grad():
            y = layer(FUNCTIONS[nonlinearity](y))
        stds.append(y.std().item())
    assert stds[0] == pytest.approx(1.0, abs=0.02)
    assert stds[-1] == pytest.approx(1.0, abs=0.05)


def test_lecun_normal_with_selu_is_accepted_and_has_no_gain():
    layer = I.initialize(nn.Linear(2000, 400), "lecun_normal", "selu", generator=gen(7))
    assert layer.weight.std().item() == pytest.approx(1 / math.sqrt(2000), rel=0.01)


def test_bad_scheme_and_nonlinearity_name_what_was_given():
    with pytest.raises(ValueError, match=r"initialize: unknown scheme 'he'.*kaiming_normal"):
        I.initialize(nn.Linear(2, 2), "he")
    with pytest.raises(ValueError, match=r"initialize: unknown nonlinearity 'swish'.*leaky_relu"):
        I.initialize(nn.Linear(2, 2), "xavier_normal", "swish")
