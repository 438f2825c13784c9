"""Every experiment in its --tiny configuration writes a valid JSON record and a PNG; a few behaviours that only
hold if the experiment measures what it says (zeros init is symmetric, LeCun keeps a SELU net at std ~1, the
small-random tanh numbers of docs/references.md, centring and scaling shrink the Hessian's condition number, the
curvature measure is the Hessian's mean eigenvalue)."""
import json
import math
import platform

import numpy as np
import pytest
import torch
from PIL import Image

from training import experiments as E
from training.init import initialize

RECORD_KEYS = {"experiment", "claim", "config", "seed", "tiny", "results", "torch", "python", "machine",
               "wall_seconds", "command"}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    for name in E.EXPERIMENTS:
        E.run(name, out, tiny=True, seed=0)
    return {name: json.loads((out / f"{name}.json").read_text()) for name in E.EXPERIMENTS}, out


def _numbers(value, path="results"):
    """Every number in a JSON tree with its path (bools are flags, not numbers)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


@pytest.mark.parametrize("name", list(E.EXPERIMENTS))
def test_writes_json_record_and_png(records, name):
    recs, out = records
    rec = recs[name]
    assert set(rec) == RECORD_KEYS
    assert rec["experiment"] == name and rec["tiny"] is True and rec["seed"] == 0
    assert rec["torch"] == torch.__version__
    assert rec["config"] == json.loads(json.dumps(E.EXPERIMENTS[name].tiny))
    assert isinstance(rec["results"], dict) and rec["results"]
    assert isinstance(rec["wall_seconds"], float) and math.isfinite(rec["wall_seconds"])
    assert rec["command"] == f"python -m training.experiments {name} --out {out} --tiny --seed 0"
    assert rec["python"] == platform.python_version() and f"{torch.get_num_threads()} torch thread" in rec["machine"]
    numbers = list(_numbers(rec["results"]))
    assert numbers, name
    for path, v in numbers:
        assert math.isfinite(v), path
    for path, v in numbers:  # accuracies, errors and calibration errors are fractions
        if path.rsplit(".", 1)[-1] in ("acc", "test_acc", "train_acc", "ece", "train_error"):
            assert 0 <= v <= 1, path
    with Image.open(out / f"{name}.png") as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # something was drawn


def test_zeros_init_leaves_every_hidden_unit_identical(records):
    res = records[0]["init_stats"]["results"]
    for act, schemes in res["layers"].items():
        assert schemes["zeros"]["hidden_units_identical"], act
        assert all(layer["std"] == 0 and layer["grad_norm"] == 0 for layer in schemes["zeros"]["layers"])
        for scheme in ("small_random", "xavier_normal", "kaiming_normal", "lecun_normal"):
            assert not schemes[scheme]["hidden_units_identical"], (act, scheme)
    for run in res["zeros_symmetry"]:  # after real training steps on digits
        if run["init"] == "zeros":
            assert run["weight_row_spread"] == 0 and run["activation_spread"] == 0, run
        else:
            assert run["weight_row_spread"] > 1e-3, run
    sigmoid_zeros = next(r for r in res["zeros_symmetry"] if r["activation"] == "sigmoid" and r["init"] == "zeros")
    assert sigmoid_zeros["first_layer_weight_norm"] > 0  # it did learn: identical units, not frozen ones


def test_the_init_record_states_the_published_small_random_tanh_numbers(records):
    reference = records[0]["init_stats"]["results"]["reference_small_random_tanh_std"]
    # 6 tanh layers of 4096, N(0, 0.01^2) (docs/references.md, "Initialization")
    assert reference == [0.49, 0.29, 0.18, 0.11, 0.07, 0.05]


def test_selu_std_stays_near_one_with_lecun_and_alpha_dropout(records):
    variants = records[0]["selu"]["results"]["variants"]
    assert len(variants["lecun"]) == 32
    assert 0.5 <= variants["lecun"][-1]["std"] <= 2
    assert 0.5 <= variants["lecun + AlphaDropout"][-1]["std"] <= 2
    assert abs(variants["lecun + AlphaDropout"][-1]["mean"]) < 0.1
    assert variants["kaiming"][-1]["std"] > 4  # ReLU's gain sqrt 2 makes the std grow with depth


def test_centring_and_scaling_improve_conditioning(records):
    cond = records[0]["normalization"]["results"]["conditions"]
    kappa = [cond[name]["hessian_at_zero"]["condition"] for name in ("raw 0-255", "scaled 0-1", "centred 0-1")]
    assert kappa[0] > 5 * kappa[1] > 5 * 5 * kappa[2]
    assert cond["raw 0-255"]["largest_stable_lr"] < cond["standardized"]["largest_stable_lr"]


def test_curvature_along_random_directions_is_the_hessians_mean_eigenvalue():
    """E[D' H D] over uniform unit directions D is trace(H) / P; the second difference must agree, and carry no
    gradient term (it is the same at eps 1e-4 and 1e-2 even where the gradient is large, at W = 0)."""
    data = E.preprocessings(8)["scaled 0-1"]
    model = E.softmax_regression(64)
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    h = torch.autograd.functional.hessian(
        lambda p: E.full_loss(model, p, data.x_train.double(), data.y_train), params)
    mean_eigenvalue = float(torch.diagonal(h).sum()) / params.numel()
    small, large = (E.perturbation_sensitivity(model, data, eps, 2000, 0) for eps in (1e-4, 1e-2))
    assert small["curvature"] == pytest.approx(mean_eigenvalue, rel=0.1)
    assert small["curvature"] == pytest.approx(large["curvature"], rel=1e-3)
    assert large["change"] > 50 * small["change"]  # the first-order change grows with eps


def test_small_random_tanh_matches_the_reference_numbers():
    """6 x 4096 tanh, N(0, 0.01^2) weights, batch 16 of N(0, 1): 0.49 .. 0.05 (docs/references.md, "Initialization")."""
    torch.manual_seed(0)
    net = initialize(E.deep_net(4096, 4096, 6, "tanh"), "small_random", "tanh")
    x = torch.randn(16, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stats, _ = E.layer_stats(net, x)
    assert [s["std"] for s in stats] == pytest.approx([0.49, 0.29, 0.18, 0.11, 0.07, 0.05], abs=0.01)


def test_expected_calibration_error_against_a_loop():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 10, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 10, (500,), generator=g)
    conf, pred = probs.max(1)
    expected = 0.0
    for b in range(15):
        inside = [i for i in range(500) if min(int(float(conf[i]) * 15), 14) == b]  # bins [b/15, (b+1)/15)
        if inside:
            acc = sum(float(pred[i] == labels[i]) for i in inside) / len(inside)
            expected += len(inside) / 500 * abs(acc - sum(float(conf[i]) for i in inside) / len(inside))
    assert E.expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)
    one_hot = torch.nn.functional.one_hot(labels, 10).double()
    assert E.expected_calibration_error(one_hot, labels) == 0  # confident and right
    assert E.expected_calibration_error(one_hot, (labels + 1) % 10) == 1  # confident and wrong


def test_command_line_writes_both_files(tmp_path):
    threads = torch.get_num_threads()
    try:
        assert E.main(["selu", "--out", str(tmp_path), "--tiny", "--seed", "3"]) == 0
    finally:
        torch.set_num_threads(threads)
    rec = json.loads((tmp_path / "selu.json").read_text())
    assert rec["seed"] == 3 and (tmp_path / "selu.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        E.main(["nope", "--out", str(tmp_path)])
