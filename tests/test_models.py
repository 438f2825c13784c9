"""Models: shapes, that each config field reaches the layers, and the fractional pooling layer vs its kernel."""
import pytest
import torch
from torch import nn

from training import activations
from training.dropout import AlphaDropout, Dropout
from training.models import CNN, MLP, FractionalMaxPool2d, ModelConfig, build_model, count_parameters


def batch(b=4, c=1, s=32, seed=0):
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
@pytest.mark.parametrize("activation", activations.NAMES)
def test_every_activation_builds_and_backpropagates(arch, activation):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, activation=activation, widths=(8, 16), image_size=16, dropout=0.2)
    model = build_model(cfg)
    logits = model(batch(s=16))
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    acts = [m for m in model.modules() if isinstance(m, activations.MODULES[activation])]
    assert len(acts) == 2


@pytest.mark.parametrize("pooling,expected", [("max", [16, 8, 4]), ("fractional", [23, 16, 11])])
def test_cnn_pooling_shrinks_by_its_ratio(pooling, expected):
    model = build_model(ModelConfig(pooling=pooling, widths=(4, 4, 4)))
    sizes, x = [], batch()
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (nn.MaxPool2d, FractionalMaxPool2d)):
            sizes.append(x.shape[-1])
    assert sizes == expected
    assert model(batch()).shape == (4, 10)


def test_fractional_layer_matches_kernel_in_eval_and_is_random_in_training():
    from augpipe.functional import fractional_max_pool2d
    x = batch(b=3, c=2, s=12)
    layer = FractionalMaxPool2d(2 ** 0.5).eval()
    torch.manual_seed(0)
    first = layer(x)
    torch.manual_seed(1)
    torch.testing.assert_close(layer(x), first, rtol=0, atol=0)  # eval draws nothing: the seed does not matter
    ref = fractional_max_pool2d(x, (8, 8), torch.full((3, 2), 0.5, dtype=torch.float64))
    torch.testing.assert_close(first, ref, rtol=0, atol=0)
    layer.train()
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(1)
    assert torch.equal(a, layer(x))  # training draws from the (seeded) global RNG
    assert not torch.equal(a, layer(x))
    # Max pooling never invents values: every output is the max of some input window, so it is <= the global max
    # and each output value occurs in its input channel.
    assert all(torch.isin(a[b, c], x[b, c]).all() for b in range(3) for c in range(2))


def test_init_scheme_and_dropout_kind_reach_the_layers():
    zero = build_model(ModelConfig(init="zeros", widths=(4, 4)))
    convs = [m for m in zero.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs and all(torch.count_nonzero(m.weight) == 0 for m in convs)
    selu = build_model(ModelConfig(activation="selu", dropout=0.1, widths=(4,)))
    relu = build_model(ModelConfig(activation="relu", dropout=0.1, widths=(4,)))
    assert isinstance(selu.dropout, AlphaDropout) and isinstance(relu.dropout, Dropout)


def test_kaiming_std_uses_the_activation_gain():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", activation="tanh", init="kaiming_normal", widths=(2000,),
                                    image_size=16))
    w = model.net[1].weight  # Linear(256, 2000)
    assert w.std().item() == pytest.approx((5 / 3) / 256 ** 0.5, rel=0.02)


def test_batch_norm_flag_and_parameter_count():
    with_bn = build_model(ModelConfig(widths=(8, 16)))
    without = build_model(ModelConfig(widths=(8, 16), batch_norm=False))
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    # conv weights (1*8*9 + 8*16*9) + head (16*10 + 10); BN adds 2 per channel, bias-free convs; plain convs add biases
    assert count_parameters(with_bn) == 72 + 1152 + 170 + 2 * (8 + 16)
    assert count_parameters(without) == 72 + 1152 + 170 + 8 + 16


def test_model_is_deterministic_given_the_seed():
    torch.manual_seed(3)
    a = build_model(ModelConfig(widths=(4,)))
    torch.manual_seed(3)
    b = build_model(ModelConfig(widths=(4,)))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("field,value,match", [
    ("arch", "resnet", r"unknown arch 'resnet'; expected one of cnn, mlp"),
    ("activation", "swish", r"unknown activation 'swish'"),
    ("init", "he", r"unknown init 'he'"),
    ("pooling", "avg", r"unknown pooling 'avg'; expected one of max, fractional"),
    ("dropout", 1.0, r"dropout is a drop probability in \[0, 1\), got 1.0"),
    ("fractional_alpha", 3.0, r"fractional_alpha must be in \(1, 2\], got 3.0"),
])
def test_bad_config_is_rejected(field, value, match):
    with pytest.raises(ValueError, match="ModelConfig: " + match):
        ModelConfig(**{field: value})


def test_fractional_pooling_is_refused_for_the_mlp_which_has_no_pooling():
    with pytest.raises(ValueError, match="ModelConfig: pooling 'fractional' is the CNN's downsampling; the MLP"):
        ModelConfig(arch="mlp", pooling="fractional")


def test_mlp_rejects_wrong_input_shape():
    model = MLP(ModelConfig(arch="mlp", image_size=8, widths=(4,)))
    with pytest.raises(ValueError, match=r"MLP: expected input \(B, 1, 8, 8\), got \(2, 1, 16, 16\)"):
        model(torch.zeros(2, 1, 16, 16))
    assert isinstance(CNN(ModelConfig(widths=(4,))), nn.Module)
