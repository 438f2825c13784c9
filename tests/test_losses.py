"""soft_cross_entropy against torch's cross_entropy (hard and probability targets, label smoothing)."""
import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import soft_cross_entropy


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_int_targets_equal_torch_cross_entropy(eps, reduction):
    logits = torch.randn(16, 10, generator=gen(1), dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (16,), generator=gen(2))
    ours = soft_cross_entropy(logits, y, label_smoothing=eps, reduction=reduction)
    ref = F.cross_entropy(logits, y, label_smoothing=eps, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-13)
    (g,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g, g_ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_soft_targets_equal_torch_probability_targets(eps):
    logits = torch.randn(8, 5, generator=gen(3), dtype=torch.float64)
    q = torch.softmax(torch.randn(8, 5, generator=gen(4), dtype=torch.float64), dim=1)
    torch.testing.assert_close(soft_cross_entropy(logits, q, eps),
                               F.cross_entropy(logits, q, label_smoothing=eps), rtol=1e-13, atol=1e-13)


def test_brute_force_formula_and_mixup_of_one_hots():
    logits = torch.tensor([[2.0, 0.5, -1.0]], dtype=torch.float64)
    q = torch.tensor([[0.7, 0.3, 0.0]], dtype=torch.float64)  # Mixup of classes 0 and 1 with lambda 0.7
    logp = logits[0] - torch.logsumexp(logits[0], 0)
    expected = -(0.7 * logp[0] + 0.3 * logp[1])
    assert soft_cross_entropy(logits, q).item() == pytest.approx(expected.item(), rel=1e-14)
    # Mixing hard losses equals the loss of the mixed target (the loss is linear in q).
    l0 = soft_cross_entropy(logits, torch.tensor([0]))
    l1 = soft_cross_entropy(logits, torch.tensor([1]))
    assert soft_cross_entropy(logits, q).item() == pytest.approx((0.7 * l0 + 0.3 * l1).item(), rel=1e-14)


def test_stable_for_extreme_logits():
    logits = torch.tensor([[1000.0, -1000.0]], requires_grad=True)
    loss = soft_cross_entropy(logits, torch.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(2000.0) and torch.isfinite(logits.grad).all()


def test_bad_inputs_name_the_function_and_shapes():
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"soft_cross_entropy: soft targets must be \(B, K\) = \(4, 3\), got \(4, 2\)"):
        soft_cross_entropy(logits, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"int targets must be \(B,\) = \(4,\), got \(3,\)"):
        soft_cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must be \(B, K\), got shape \(4,\)"):
        soft_cross_entropy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        soft_cross_entropy(logits, torch.zeros(4, dtype=torch.long), 1.5)
    with pytest.raises(TypeError, match=r"targets must be int labels or float probabilities, got torch.bool"):
        soft_cross_entropy(logits, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"soft_cross_entropy: int labels must be in \[0, 3\) for 3 logits"):
        soft_cross_entropy(logits, torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("targets", [torch.tensor([0, 2]), torch.tensor([[0.7, 0.0, 0.3], [0.0, 0.0, 1.0]])])
def test_a_masked_class_logit_of_minus_infinity_costs_nothing(targets):
    """A class with logit -inf has probability 0, so the loss is the loss without that class (0 log 0 = 0; torch's
    cross_entropy with probability targets gives NaN here), and its logit gets no gradient."""
    logits = torch.tensor([[2.0, -math.inf, 0.5], [1.0, -math.inf, -1.0]], dtype=torch.float64, requires_grad=True)
    ours = soft_cross_entropy(logits, targets)
    kept = torch.tensor([0, 2])
    reference = logits.detach()[:, kept].requires_grad_()
    expected = F.cross_entropy(reference, targets // 2 if targets.dim() == 1 else targets[:, kept])
    torch.testing.assert_close(ours, expected)
    ours.backward(), expected.backward()
    torch.testing.assert_close(logits.grad[:, kept], reference.grad)
    assert torch.equal(logits.grad[:, 1], torch.zeros(2, dtype=torch.float64))
