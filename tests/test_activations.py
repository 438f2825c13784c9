"""Every activation and its gradient against torch.nn.functional in float64, including |x| = 60."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from training import activations as A

REFERENCE = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "elu": lambda x: F.elu(x, alpha=1.0),
    "selu": F.selu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def grid() -> torch.Tensor:
    """Dense grid over [-60, 60] plus the points where formulas tend to break: 0, tiny and huge values."""
    special = [0.0, 1e-300, -1e-300, 1e-8, -1e-8, 1e-3, -1e-3, 20.0, -20.0, 40.0, -40.0, 60.0, -60.0]
    return torch.cat([torch.linspace(-60, 60, 4801, dtype=torch.float64), torch.tensor(special, dtype=torch.float64)])


def values_and_grads(fn, x):
    x = x.clone().requires_grad_()
    y = fn(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


@pytest.mark.parametrize("name", A.NAMES)
def test_values_and_gradients_match_torch_float64(name):
    x = grid()
    y, g = values_and_grads(A.FUNCTIONS[name], x)
    y_ref, g_ref = values_and_grads(REFERENCE[name], x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(g, g_ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", A.NAMES)
def test_nan_and_infinities_come_out_as_torch_gives_them(name):
    """A NaN must survive (a diverged run must show); relu once sent it to 0."""
    x = torch.tensor([math.nan, math.inf, -math.inf, 0.0], dtype=torch.float64)
    torch.testing.assert_close(A.FUNCTIONS[name](x), REFERENCE[name](x), equal_nan=True)


@pytest.mark.parametrize("name", A.NAMES)
def test_module_wrapper_matches_function_and_get(name):
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    module = A.get(name)
    assert isinstance(module, A.MODULES[name])
    torch.testing.assert_close(module(x), A.FUNCTIONS[name](x), rtol=0, atol=0)


@pytest.mark.parametrize("name", A.NAMES)
def test_float32_stays_finite_at_large_magnitude(name):
    x = torch.tensor([-1e4, -60.0, -30.0, 30.0, 60.0, 1e4], requires_grad=True)
    y = A.FUNCTIONS[name](x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    torch.testing.assert_close(y, REFERENCE[name](x.detach()))


def test_formulas_at_known_points():
    # docs/references.md, "Activations": SELU's saturation value and GELU's definition x Phi(x).
    x = torch.tensor([-60.0, 1.0], dtype=torch.float64)
    assert A.selu(x)[0].item() == pytest.approx(-1.0507009873554805 * 1.6732632423543773, rel=1e-15)
    assert A.gelu(x)[1].item() == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), rel=1e-15)
    assert A.leaky_relu(torch.tensor([-2.0]))[0].item() == pytest.approx(-0.02)
    # Small-x relative accuracy: tanh x ~ x and sigmoid'(0) = 1/4 (an abs()-based formula gets 0 there).
    t = torch.tensor([1e-30], dtype=torch.float64)
    assert A.tanh(t).item() == pytest.approx(1e-30, rel=1e-15)
    _, g = values_and_grads(A.sigmoid, torch.zeros(1, dtype=torch.float64))
    assert g.item() == 0.25


def test_gelu_tanh_approximation_error_bound():
    # docs/references.md, "Activations": the tanh form is within 4.7e-4 of the exact GELU.
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    err = (A.gelu_tanh(x) - A.gelu(x)).abs().max().item()
    assert 4.0e-4 < err < 4.8e-4


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-80, max_value=80, allow_nan=False), st.sampled_from(A.NAMES))
def test_property_matches_torch_anywhere(v, name):
    x = torch.tensor([v], dtype=torch.float64)
    y, g = values_and_grads(A.FUNCTIONS[name], x)
    y_ref, g_ref = values_and_grads(REFERENCE[name], x)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"activations.get: unknown activation 'swish'.*relu.*gelu_tanh"):
        A.get("swish")
