"""Dropout statistics: inverted dropout keeps the mean, alpha dropout keeps mean 0 / variance 1 after SELU."""
import numpy as np
import pytest
import torch

from training.dropout import ALPHA_PRIME, AlphaDropout, Dropout, alpha_dropout, dropout


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


N = 400_000  # sampling error of a mean of unit-variance samples: ~1.6e-3


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_inverted_dropout_drop_rate_scale_and_mean(p):
    x = torch.rand(N, generator=gen(1), dtype=torch.float64) + 0.5
    y = dropout(x, p, generator=gen(2))
    dropped = y == 0
    assert dropped.double().mean().item() == pytest.approx(p, abs=4 * (p * (1 - p) / N) ** 0.5)
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p), rtol=1e-15, atol=0)
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.01)


def test_dropout_eval_and_p0_are_identity_and_module_matches_function():
    x = torch.randn(10, 20)
    m = Dropout(0.5, generator=gen(3)).eval()
    assert m(x) is x
    assert dropout(x, 0.0) is x
    m.train()
    torch.testing.assert_close(m(x), dropout(x, 0.5, generator=gen(3)), rtol=0, atol=0)


def test_dropout_gradient_is_the_mask_scaled():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.25, generator=gen(4))
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, (y != 0).double() / 0.75)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3])
def test_alpha_dropout_keeps_standard_normal_statistics(p):
    x = torch.randn(N, generator=gen(5), dtype=torch.float64)
    y = alpha_dropout(x, p, generator=gen(6))
    assert abs(y.mean().item()) < 0.01
    assert y.var().item() == pytest.approx(1.0, abs=0.01)
    # Dropped units all land on the single value a * alpha' + b, with frequency p.
    a = ((1 - p) * (1 + p * ALPHA_PRIME ** 2)) ** -0.5
    dropped_value = a * ALPHA_PRIME - a * ALPHA_PRIME * p
    assert (y == dropped_value).double().mean().item() == pytest.approx(p, abs=0.005)


def test_alpha_dropout_matches_torch_alpha_dropout_statistics():
    x = torch.randn(N, generator=gen(7), dtype=torch.float64)
    ours = alpha_dropout(x, 0.2, generator=gen(8))
    torch.manual_seed(9)
    theirs = torch.nn.functional.alpha_dropout(x, 0.2, training=True)
    assert ours.mean().item() == pytest.approx(theirs.mean().item(), abs=0.01)
    assert ours.std().item() == pytest.approx(theirs.std().item(), abs=0.01)
    # The dropped units share one value, the most frequent one; it must be the same as torch's.
    assert torch.mode(ours).values.item() == pytest.approx(torch.mode(theirs).values.item(), rel=1e-12)


def test_alpha_dropout_eval_identity():
    x = torch.randn(5, 5)
    assert AlphaDropout(0.1).eval()(x) is x


def test_global_rng_is_used_without_generator():
    x = torch.ones(1000)
    torch.manual_seed(11)
    a = dropout(x, 0.5)
    torch.manual_seed(11)
    b = Dropout(0.5)(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_p_is_rejected(p):
    with pytest.raises(ValueError, match=r"Dropout: p is the drop probability and must be in \[0, 1\), got"):
        Dropout(p)
    with pytest.raises(ValueError, match=r"alpha_dropout: p"):
        alpha_dropout(torch.zeros(2), p)


def test_p_must_be_a_number_and_numpy_numbers_are():
    with pytest.raises(TypeError, match="Dropout: p is the drop probability, a number, got str '0.5'"):
        Dropout("0.5")
    assert Dropout(np.float32(0.25)).p == 0.25
