"""Small experiments that measure the lecture's claims on real data (docs/references.md has the published numbers).

    python -m training.experiments NAME --out DIR [--tiny] [--seed S] [--threads T]

NAME is one of ``EXPERIMENTS`` or ``all``. Each writes ``DIR/NAME.json`` (the measured figures, the config that
produced them, the torch version and the wall seconds) and ``DIR/NAME.png`` (the plot). The full configurations
take up to about two minutes each on a 2-core CPU; ``--tiny`` runs a seconds-long configuration for the tests.

Every training run goes through ``train_eval`` on scikit-learn's digits (training.data) upsampled to 16x16:
torch.manual_seed(seed) before the model is built (initialization, dropout and fractional-pooling noise), a
torch.Generator seeded with the same seed for the batch order, and augpipe pipelines with their own explicit seed.
The numbers are what these small runs measured; where a published claim does not reproduce, the JSON says so
rather than the configuration being tuned until it does.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

import augpipe as A
from augpipe import functional as AF

from . import activations
from .data import load_digits
from .dropout import AlphaDropout, Dropout
from .init import initialize
from .losses import soft_cross_entropy
from .models import ModelConfig, build_model

NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Data:
    """Float images (N, C, H, W), already in the form the model reads, and int labels (N,)."""
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def per_class_subset(labels: Tensor, per_class: int, seed: int) -> Tensor:
    """Sorted indices of ``per_class`` samples of each class, chosen by a permutation seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    picks = [idx[torch.randperm(len(idx), generator=g)[:per_class]]
             for idx in (torch.nonzero(labels == c).flatten() for c in torch.unique(labels))]
    return torch.cat(picks).sort().values


def digits(image_size: int = 16, per_class: int | None = None, subset_seed: int = 0) -> Data:
    """The digits split of training.data as float [0, 1]; ``per_class`` keeps a fixed low-data training subset
    (the same for every seed, so that seeds vary the model and the augmentation, not the data)."""
    s = load_digits(image_size)
    x, y = s.train.images.float() / 255, s.train.labels
    if per_class is not None:
        keep = per_class_subset(y, per_class, subset_seed)
        x, y = x[keep], y[keep]
    return Data(x, y, s.test.images.float() / 255, s.test.labels)


def make_model(seed: int, **fields) -> nn.Module:
    """A training.models model built right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return build_model(ModelConfig(num_classes=NUM_CLASSES, **fields))


# ------------------------------------------------------------------------------------------------------- metrics
def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = 15) -> float:
    """sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)| over equal-width confidence bins (Guo et al.)."""
    conf, pred = probs.max(dim=1)
    which = (conf * bins).long().clamp(max=bins - 1)  # (N,) bin of each sample
    correct = (pred == labels).double()
    gap = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct - conf.double())
    return float(gap.abs().sum() / len(labels))


def reliability(probs: Tensor, labels: Tensor, bins: int = 15) -> dict:
    """Per-bin count, accuracy and mean confidence, for a reliability diagram."""
    conf, pred = probs.max(dim=1)
    which = (conf * bins).long().clamp(max=bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, (pred == labels).double())
    mean_conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, conf.double())
    safe = count.clamp(min=1)
    return {"count": count.long().tolist(), "accuracy": (acc / safe).tolist(), "confidence": (mean_conf / safe).tolist()}


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Softmax probabilities (N, K) in eval mode."""
    model.eval()
    return torch.cat([model(chunk).double().softmax(dim=1) for chunk in x.split(batch_size)])


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    probs = predict(model, x)
    if not torch.isfinite(probs).all():  # a diverged model
        return {"acc": math.nan, "loss": math.nan, "ece": math.nan}
    nll = -probs.gather(1, y[:, None]).clamp_min(1e-300).log().mean()
    return {"acc": float((probs.argmax(1) == y).double().mean()), "loss": float(nll),
            "ece": expected_calibration_error(probs, y)}


# ------------------------------------------------------------------------------------------------------- training
def train_eval(model: nn.Module, data: Data, epochs: int, lr: float, pipeline: A.Pipeline | None = None, *,
               batch_size: int = 64, seed: int = 0, momentum: float = 0.9, cosine: bool = True,
               target_error: float | None = None) -> dict:
    """SGD with momentum on soft cross-entropy; returns per-epoch history and final train/test metrics.

    ``pipeline`` (with num_classes set) turns each batch into augmented images and soft targets. The training
    error is measured on the batches as they are trained on, over the last epoch's worth of batches (a running
    error, as in Krizhevsky et al.'s Figure 1). With ``target_error`` training stops the first time that running
    error is at or below it; ``epochs_to_target`` is then fractional (steps / steps per epoch). A non-finite loss
    stops training and sets ``diverged``.
    """
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / total))) if cosine else (lambda s: 1.0))
    window: deque[tuple[int, int]] = deque(maxlen=steps_per_epoch)  # (errors, samples) per recent batch
    history, reached, diverged, step = [], None, False, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        loss_sum = err_sum = 0.0
        for idx in torch.randperm(n, generator=order).split(batch_size):
            x, y = data.x_train[idx], data.y_train[idx]
            x, t = (x, y) if pipeline is None else pipeline(x, y)
            logits = model(x)
            loss = soft_cross_entropy(logits, t)
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            errors = int((logits.argmax(1) != y).sum())  # against the image's own label, also under mixing
            window.append((errors, len(idx)))
            loss_sum, err_sum = loss_sum + float(loss.detach()) * len(idx), err_sum + errors
            running = sum(e for e, _ in window) / sum(m for _, m in window)
            if target_error is not None and reached is None and len(window) == steps_per_epoch \
                    and running <= target_error:
                reached = (step / steps_per_epoch, time.perf_counter() - start)
        if diverged:
            break
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n, "train_error": err_sum / n,
                        "seconds": time.perf_counter() - start})
        if reached is not None:
            break
    return {"history": history, "diverged": diverged, "epochs_run": len(history),
            "epochs_to_target": None if reached is None else reached[0],
            "seconds_to_target": None if reached is None else reached[1],
            "seconds": time.perf_counter() - start,
            "train": evaluate(model, data.x_train, data.y_train), "test": evaluate(model, data.x_test, data.y_test)}


def mean_std(values: list[float]) -> dict:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0, "values": list(values)}


# ------------------------------------------------------------------------------------------------------- deep nets
def deep_net(in_features: int, width: int, depth: int, activation: str,
             dropout: Callable[[], nn.Module] | None = None) -> nn.Sequential:
    """``depth`` blocks of Linear (no bias) -> activation [-> dropout]; block i's output is layer i's activation."""
    blocks, n_in = [], in_features
    for _ in range(depth):
        block = [nn.Linear(n_in, width, bias=False), activations.get(activation)]
        blocks.append(nn.Sequential(*block, *([dropout()] if dropout else [])))
        n_in = width
    return nn.Sequential(*blocks)


def layer_stats(net: nn.Sequential, x: Tensor) -> tuple[list[dict], list[Tensor]]:
    """Mean and std of every block's output for input x (B, D), and the outputs themselves."""
    outs, stats = [], []
    for block in net:
        x = block(x)
        outs.append(x)
        stats.append({"mean": float(x.detach().mean()), "std": float(x.detach().std())})
    return stats, outs


def standardized_digits_features(image_size: int = 8) -> Tensor:
    """Training digits flattened to (N, image_size^2), each pixel zero mean over the set, divided by the global
    std (per-pixel scaling would blow up the nearly constant border pixels)."""
    x = load_digits(image_size).train.images.flatten(1).double() / 255
    x = x - x.mean(0)
    return (x / x.std()).float()


# ------------------------------------------------------------------------------------------------------- init_stats
REFERENCE_SMALL_RANDOM_TANH = [0.49, 0.29, 0.18, 0.11, 0.07, 0.05]  # docs/references.md, "Initialization"
INIT_SCHEMES = ("zeros", "small_random", "xavier_normal", "kaiming_normal", "lecun_normal")
GAIN_OF = {"tanh": "tanh", "relu": "relu", "selu": "relu", "sigmoid": "sigmoid"}  # kaiming for SELU: ReLU's sqrt 2


def zeros_symmetry(data: Data, activation: str, scheme: str, hidden: tuple[int, ...], epochs: int, seed: int) -> dict:
    """Train an MLP from ``scheme`` and measure how different its hidden units are: the largest distance of a
    hidden unit's incoming weight row from unit 0's, and the largest spread of the units' test activations."""
    model = make_model(seed, arch="mlp", image_size=data.x_train.shape[-1], activation=activation, init=scheme,
                       widths=hidden, batch_norm=False)
    result = train_eval(model, data, epochs, lr=0.1, seed=seed)
    linears = [m for m in model.net if isinstance(m, nn.Linear)][:-1]  # the hidden layers
    with torch.no_grad():
        row_spread = max(float((lin.weight - lin.weight[:1]).norm(dim=1).max()) for lin in linears)
        h = model.net[:3](data.x_test)  # flatten -> linear -> activation: first hidden layer (N, width)
        spread, norm = float((h - h[:, :1]).abs().max()), float(linears[0].weight.norm())
    return {"activation": activation, "init": scheme, "weight_row_spread": row_spread, "activation_spread": spread,
            "first_layer_weight_norm": norm, "train_acc": result["train"]["acc"], "test_acc": result["test"]["acc"]}


def init_stats(cfg: dict, seed: int) -> dict:
    """Per-layer activation mean/std and weight-gradient norms of a deep net on N(0, 1) inputs, per activation and
    scheme (a cross-entropy head with random labels gives the gradients); then zeros init on real training."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg["batch"], cfg["width"], generator=g)
    labels = torch.randint(0, NUM_CLASSES, (cfg["batch"],), generator=g)
    nets = {}
    for act in cfg["activations"]:
        nets[act] = {}
        for scheme in INIT_SCHEMES:
            torch.manual_seed(seed)
            net = nn.Sequential(deep_net(cfg["width"], cfg["width"], cfg["depth"], act),
                                nn.Linear(cfg["width"], NUM_CLASSES, bias=False))
            initialize(net, scheme, GAIN_OF[act])
            stats, outs = layer_stats(net[0], x)
            soft_cross_entropy(net[1](outs[-1]), labels).backward()
            for s, block in zip(stats, net[0]):
                s["grad_norm"] = float(block[0].weight.grad.norm())
            identical = all(bool((h == h[:, :1]).all()) for h in outs)  # every unit equals unit 0, every layer
            nets[act][scheme] = {"layers": stats, "hidden_units_identical": identical}
    measured = [s["std"] for s in nets["tanh"]["small_random"]["layers"][:6]] if "tanh" in nets else []
    data = digits(cfg["image_size"], cfg["per_class"])
    symmetry = [zeros_symmetry(data, act, scheme, tuple(cfg["mlp_widths"]), cfg["epochs"], seed)
                for act in ("tanh", "sigmoid") for scheme in ("zeros", "small_random", "xavier_normal")]
    return {"layers": nets, "reference_small_random_tanh_std": REFERENCE_SMALL_RANDOM_TANH,
            "measured_small_random_tanh_std": measured, "zeros_symmetry": symmetry}


def plot_init_stats(res: dict, cfg: dict, fig) -> None:
    acts = list(res["layers"])
    axes = fig.subplots(len(acts), 3, squeeze=False)
    for row, act in zip(axes, acts):
        for scheme, r in res["layers"][act].items():
            stats, style = r["layers"], ("s--" if scheme == "xavier_normal" else "o-")
            depth = range(1, len(stats) + 1)
            for ax, key in zip(row, ("mean", "std", "grad_norm")):  # log axes cannot show zeros init's exact 0
                ax.plot(depth, [s[key] if key == "mean" or s[key] > 0 else math.nan for s in stats], style, ms=3,
                        label=scheme, mfc="none" if scheme == "xavier_normal" else None)
        if act == "tanh" and cfg["width"] == 4096:
            ref = res["reference_small_random_tanh_std"]
            row[1].plot(range(1, len(ref) + 1), ref, "kx", ms=8, label="reference small_random")
        for ax, key in zip(row, ("activation mean", "activation std (log)", "|dL/dW| Frobenius (log)")):
            ax.set_title(f"{act}: {key}", fontsize=9)
            ax.set_xlabel("layer")
        row[1].set_yscale("log")
        row[2].set_yscale("log")
    axes[0][2].legend(*axes[0][1].get_legend_handles_labels(), fontsize=7, loc="center", ncols=2)
    zeros = max(z["weight_row_spread"] for z in res["zeros_symmetry"] if z["init"] == "zeros")
    others = min(z["weight_row_spread"] for z in res["zeros_symmetry"] if z["init"] != "zeros")
    fig.suptitle(f"{cfg['depth']} layers of {cfg['width']}, N(0,1) inputs, batch {cfg['batch']}. zeros init: every "
                 "activation and gradient is exactly 0 (absent on the log axes); xavier = lecun on square layers\n"
                 f"MLP trained on digits: largest distance between two hidden units' weight rows {zeros:.2g} from zeros "
                 f"init, >= {others:.2g} from random inits", fontsize=9)


# ------------------------------------------------------------------------------------------------------- activations
def _to_target(act: str, lr: float, seed: int, data: Data, cfg: dict, max_epochs: int) -> dict:
    model = make_model(seed, activation=act, image_size=cfg["image_size"], widths=tuple(cfg["widths"]),
                       batch_norm=False)
    r = train_eval(model, data, max_epochs, lr, seed=seed, cosine=False, target_error=cfg["target_error"])
    return {k: r[k] for k in ("epochs_to_target", "seconds_to_target", "diverged", "epochs_run", "history")}


def activations_speed(cfg: dict, seed: int) -> dict:
    """Epochs and seconds to a fixed running training error per activation, same CNN without batch norm, dropout
    or augmentation, constant learning rate picked per activation from a small grid (fewest epochs wins).

    A grid run stops once it can no longer beat the best learning rate so far (whole epochs); the chosen learning
    rate is then rerun with the other seeds, and the figures are the mean over seeds.
    """
    data = digits(cfg["image_size"])
    out = {}
    for act in cfg["activations"]:
        runs, budget = {}, cfg["max_epochs"]
        for lr in cfg["lrs"]:
            runs[str(lr)] = r = _to_target(act, lr, seed, data, cfg, budget)
            if r["epochs_to_target"] is not None:
                budget = min(budget, math.ceil(r["epochs_to_target"]))
        best = min(runs, key=lambda lr: (runs[lr]["epochs_to_target"] or math.inf,
                                         runs[lr]["history"][-1]["train_error"] if runs[lr]["history"] else 1.0))
        repeats = [runs[best]]
        if runs[best]["epochs_to_target"] is not None:
            repeats += [_to_target(act, float(best), s, data, cfg, cfg["max_epochs"])
                        for s in range(seed + 1, seed + cfg["seeds"])]
        hits = [r for r in repeats if r["epochs_to_target"] is not None]
        summary = {k: mean_std([r[k] for r in hits]) if hits else None for k in ("epochs_to_target", "seconds_to_target")}
        out[act] = {"best_lr": float(best), **summary, "seeds_reached": f"{len(hits)}/{len(repeats)}",
                    "repeats": [{k: r[k] for k in ("epochs_to_target", "seconds_to_target", "diverged", "epochs_run")}
                                for r in repeats], "runs": runs}
    relu, tanh = out.get("relu", {}), out.get("tanh", {})
    ratio = (tanh["epochs_to_target"]["mean"] / relu["epochs_to_target"]["mean"]
             if relu.get("epochs_to_target") and tanh.get("epochs_to_target") else None)
    return {"per_activation": out, "tanh_over_relu_epochs": ratio, "published_ratio": 6.0, "seed": seed}


def plot_activations(res: dict, cfg: dict, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    per = res["per_activation"]
    for act, r in per.items():
        hist = r["runs"][str(r["best_lr"])]["history"]
        ax1.plot([h["epoch"] for h in hist], [max(h["train_error"], 1e-3) for h in hist], "o-", ms=3,
                 label=f"{act} (lr {r['best_lr']:g})")
    ax1.axhline(cfg["target_error"], color="k", ls="--", lw=1)
    ax1.set(yscale="log", xlabel="epoch", ylabel="training error (per epoch, on the trained batches)",
            title=f"seed {res['seed']}, best lr per activation; dashed: target {cfg['target_error']:.0%}")
    ax1.legend(fontsize=7)
    names = list(per)
    epochs = [per[a]["epochs_to_target"] or {"mean": 0.0, "std": 0.0} for a in names]
    bars = ax2.bar(names, [e["mean"] for e in epochs], yerr=[e["std"] for e in epochs], capsize=3,
                   color=["C%d" % i for i in range(len(names))])
    for b, a in zip(bars, names):
        e, s = per[a]["epochs_to_target"], per[a]["seconds_to_target"]
        ax2.text(b.get_x() + b.get_width() / 2, 0.05 if e is None else e["mean"] + e["std"],
                 f"not reached\nin {cfg['max_epochs']} ep" if e is None else
                 f"{e['mean']:.1f} ep\n{s['mean']:.1f} s\n{per[a]['seeds_reached']} seeds",
                 ha="center", va="bottom", fontsize=7)
    ratio = res["tanh_over_relu_epochs"]
    ax2.set_ylim(0, 1.25 * max(e["mean"] + e["std"] for e in epochs))
    ax2.set(ylabel=f"epochs to {cfg['target_error']:.0%} training error (mean, std of {cfg['seeds']} seeds)",
            title=f"tanh / relu epochs = {ratio:.2f} (Krizhevsky: ~6)" if ratio else "tanh / relu: not reached")
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)


# ------------------------------------------------------------------------------------------------------- normalization
def preprocessings(image_size: int) -> dict[str, Data]:
    """The same digits as raw pixel values 0..255, scaled to [0, 1], centred (the training set's mean image
    subtracted, still on the 0-1 scale) and standardized (centred, then divided by the global std)."""
    d = digits(image_size)
    mean = d.x_train.mean(0)
    std = (d.x_train - mean).std()

    def affine(shift, scale):
        return Data((d.x_train - shift) * scale, d.y_train, (d.x_test - shift) * scale, d.y_test)

    return {"raw 0-255": affine(0.0, 255.0), "scaled 0-1": d, "centred 0-1": affine(mean, 1.0),
            "standardized": affine(mean, 1 / std)}


def softmax_regression(features: int) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, NUM_CLASSES))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    return model


def full_loss(model: nn.Module, params: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the softmax regression with flat parameters ``params`` (W then b)."""
    w = params[: model[1].weight.numel()].view_as(model[1].weight)
    b = params[model[1].weight.numel():]
    return soft_cross_entropy(x.flatten(1) @ w.T + b, y)


def perturbation_sensitivity(model: nn.Module, data: Data, eps: float, directions: int, seed: int) -> dict:
    """Along random unit directions D of all parameters, on the training set: the mean loss change
    |L(W + eps D) - L(W)| and the mean curvature (L(W + eps D) + L(W - eps D) - 2 L(W)) / eps^2 (D' H D).

    Wherever the gradient is not zero it dominates the change, which then grows with eps; at trained weights the
    change says how far training got (each preprocessing stops at its own loss), so there the curvature, which has
    no gradient term, is the loss's sensitivity to the weights."""
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    x, y = data.x_train.double(), data.y_train
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(directions, params.numel(), generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    base = full_loss(model, params, x, y)
    plus = torch.stack([full_loss(model, params + eps * di, x, y) for di in d])
    minus = torch.stack([full_loss(model, params - eps * di, x, y) for di in d])
    curvature = (plus + minus - 2 * base) / eps ** 2
    return {"change": float((plus - base).abs().mean()), "curvature": float(curvature.mean())}


def hessian_condition(model: nn.Module, data: Data) -> dict:
    """Condition number of the training-loss Hessian of the softmax regression at its current parameters,
    over the eigenvalues above 1e-9 of the largest (the rest are exact flat directions: always-black pixels and
    the softmax's shift invariance, in which gradient descent never moves). Meaningful at W = 0, where the
    spectrum has that gap; at trained weights the saturated softmax spreads eigenvalues continuously down past
    any cut-off, so the smallest kept one, and the condition number, are the cut-off's (measured: about 1e9 for
    every preprocessing, 1e6 or 1e12 with the cut-off at 1e-6 or 1e-12)."""
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    x, y = data.x_train.double(), data.y_train
    h = torch.autograd.functional.hessian(lambda p: full_loss(model, p, x, y), params)
    ev = torch.linalg.eigvalsh(h)
    kept = ev[ev > 1e-9 * ev.max()]
    return {"condition": float(kept.max() / kept.min()), "largest": float(kept.max()), "smallest": float(kept.min()),
            "flat_directions": int(len(ev) - len(kept))}


def normalization(cfg: dict, seed: int) -> dict:
    """Raw vs scaled vs standardized inputs to softmax regression: the learning-rate range that trains, the
    loss's sensitivity to small weight perturbations (change and curvature, at W = 0 and at the trained W), the
    Hessian's condition at W = 0 and its largest eigenvalue at the trained W."""
    out = {}
    features = cfg["image_size"] ** 2
    for name, data in preprocessings(cfg["image_size"]).items():
        sweep, best = {}, None
        for lr in cfg["lrs"]:
            torch.manual_seed(seed)
            model = softmax_regression(features)
            r = train_eval(model, data, cfg["epochs"], lr, seed=seed, cosine=False)
            final = r["train"]["loss"]
            stable = not r["diverged"] and math.isfinite(final) and final < math.log(NUM_CLASSES)
            sweep[str(lr)] = {"stable": stable, "train_loss": final if math.isfinite(final) else None,
                              "test_acc": r["test"]["acc"]}
            if stable and (best is None or final < best[1]):
                best = (lr, final, model)
        at_zero = softmax_regression(features)
        stable_lrs = [float(lr) for lr, s in sweep.items() if s["stable"]]
        out[name] = {
            "lr_sweep": sweep, "largest_stable_lr": max(stable_lrs, default=None),
            "best_lr": None if best is None else best[0],
            "best_train_loss": None if best is None else best[1],
            "best_test_acc": None if best is None else sweep[str(best[0])]["test_acc"],
            "sensitivity_at_zero": {str(e): perturbation_sensitivity(at_zero, data, e, cfg["directions"], seed)
                                    for e in cfg["eps"]},
            "sensitivity_at_trained": None if best is None else {
                str(e): perturbation_sensitivity(best[2], data, e, cfg["directions"], seed) for e in cfg["eps"]},
            "hessian_at_zero": hessian_condition(at_zero, data),
            # only the largest eigenvalue: the condition number there is set by the cut-off (hessian_condition)
            "hessian_at_trained": None if best is None else {"largest": hessian_condition(best[2], data)["largest"]}}
    return {"conditions": out}


def plot_normalization(res: dict, cfg: dict, fig) -> None:
    ax1, ax2, ax3 = fig.subplots(1, 3)
    conds = res["conditions"]
    for name, r in conds.items():
        lrs = [float(lr) for lr in r["lr_sweep"]]
        losses = [s["train_loss"] if s["stable"] else math.nan for s in r["lr_sweep"].values()]
        ax1.plot(lrs, losses, "o-", ms=3, label=f"{name} (largest stable {r['largest_stable_lr']:.0e})"
                 if r["largest_stable_lr"] else name)
    ax1.axhline(math.log(NUM_CLASSES), color="k", ls="--", lw=1)
    ax1.set(xscale="log", yscale="log", xlabel="learning rate (SGD, momentum 0.9)",
            ylabel=f"training loss after {cfg['epochs']} epochs", title="unstable runs omitted; dashed: log 10")
    ax1.legend(fontsize=7)
    names, eps = list(conds), str(cfg["eps"][len(cfg["eps"]) // 2])
    pos = torch.arange(len(names)).float()
    for off, key, label in ((-0.2, "sensitivity_at_zero", "at W = 0"), (0.2, "sensitivity_at_trained", "at trained W")):
        ax2.bar(pos + off, [((conds[n][key] or {}).get(eps) or {}).get("curvature", math.nan) for n in names], 0.4,
                label=label)
    ax2.set(yscale="log", xticks=pos.tolist(), xticklabels=names,
            ylabel=f"mean (L(W + eD) + L(W - eD) - 2 L(W)) / e^2, e = {eps}",
            title="curvature along random unit directions D")
    ax2.legend(fontsize=7)
    ax3.bar(pos, [conds[n]["hessian_at_zero"]["condition"] for n in names], 0.6)
    ax3.set(yscale="log", xticks=pos.tolist(), xticklabels=names, ylabel="Hessian condition number at W = 0",
            title="softmax regression Hessian at W = 0\n(exactly flat directions excluded)")
    for ax in (ax2, ax3):
        ax.tick_params(axis="x", labelsize=8)


# ------------------------------------------------------------------------------------------------------- dropout
def dropout_gap(cfg: dict, seed: int) -> dict:
    """Train/test accuracy and loss of an MLP on a small training subset for several drop probabilities."""
    data = digits(cfg["image_size"], cfg["per_class"])
    out = {}
    for p in cfg["ps"]:
        runs = []
        for s in range(seed, seed + cfg["seeds"]):
            model = make_model(s, arch="mlp", image_size=cfg["image_size"], widths=tuple(cfg["widths"]),
                               batch_norm=False, dropout=p)
            r = train_eval(model, data, cfg["epochs"], cfg["lr"], batch_size=cfg["batch_size"], seed=s)
            runs.append({"train_acc": r["train"]["acc"], "test_acc": r["test"]["acc"],
                         "train_loss": r["train"]["loss"], "test_loss": r["test"]["loss"]})
        out[str(p)] = {k: mean_std([run[k] for run in runs]) for k in runs[0]}
        out[str(p)]["acc_gap"] = mean_std([run["train_acc"] - run["test_acc"] for run in runs])
        out[str(p)]["loss_gap"] = mean_std([run["test_loss"] - run["train_loss"] for run in runs])
    return {"per_p": out, "train_size": len(data.y_train)}


def plot_dropout(res: dict, cfg: dict, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    ps = [float(p) for p in res["per_p"]]
    rows = list(res["per_p"].values())
    for key, label in (("train_acc", "train"), ("test_acc", "test")):
        ax1.errorbar(ps, [r[key]["mean"] for r in rows], [r[key]["std"] for r in rows], marker="o", capsize=3,
                     label=label)
    ax1.set(xlabel="drop probability p", ylabel="accuracy", xticks=ps,
            title=f"MLP {tuple(cfg['widths'])}, {res['train_size']} training images, {cfg['seeds']} seeds")
    ax1.legend(fontsize=8)
    for key, label in (("acc_gap", "train - test accuracy"), ("loss_gap", "test - train loss")):
        ax2.errorbar(ps, [r[key]["mean"] for r in rows], [r[key]["std"] for r in rows], marker="o", capsize=3,
                     label=label)
    ax2.set(xlabel="drop probability p", ylabel="generalization gap", xticks=ps, title="mean and std over seeds")
    ax2.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------------- augmentation
def augmentation_recipes(size: int, cutout: int) -> dict[str, list]:
    """The compared recipes. Digits are not mirror-symmetric (a flipped 2 is no 2), so the geometric part is
    pad-and-crop without flips; Mixup and CutMix are each added to crop + colour as alternatives to Cutout."""
    crop = [A.RandomCrop(size, padding=size // 8)]  # pad 2 on 16x16, the CIFAR recipe's 4 on 32x32
    colour = crop + [A.Brightness(0.4), A.Contrast(0.4)]
    return {"none": [], "crop": crop, "crop+bc": colour, "crop+bc+cutout": colour + [A.Cutout(cutout)],
            "crop+bc+mixup": colour + [A.Mixup(1.0)], "crop+bc+cutmix": colour + [A.CutMix(1.0, p=0.5)]}


def augmentation(cfg: dict, seed: int) -> dict:
    """Test accuracy of the CNN trained on a low-data subset under each augmentation recipe, over seeds."""
    data = digits(cfg["image_size"], cfg["per_class"])
    out = {}
    for name, ops in augmentation_recipes(cfg["image_size"], cfg["cutout"]).items():
        runs = []
        for s in range(seed, seed + cfg["seeds"]):
            pipe = A.Pipeline(*ops, seed=1000 + s, num_classes=NUM_CLASSES)
            model = make_model(s, image_size=cfg["image_size"], widths=tuple(cfg["widths"]))
            r = train_eval(model, data, cfg["epochs"], cfg["lr"], pipe, batch_size=cfg["batch_size"], seed=s)
            runs.append(r)
        out[name] = {"test_acc": mean_std([r["test"]["acc"] for r in runs]),
                     "train_acc": mean_std([r["train"]["acc"] for r in runs]),
                     "seconds": mean_std([r["seconds"] for r in runs])}
    return {"recipes": out, "train_size": len(data.y_train)}


def plot_augmentation(res: dict, cfg: dict, fig) -> None:
    ax = fig.subplots()
    names = list(res["recipes"])
    test = [res["recipes"][n]["test_acc"] for n in names]
    ax.bar(names, [t["mean"] for t in test], yerr=[t["std"] for t in test], capsize=4, color="C0", alpha=0.7)
    for i, t in enumerate(test):
        ax.plot([i] * len(t["values"]), t["values"], "k.", ms=4)
        ax.text(i, t["mean"] + t["std"] + 0.003, f"{100 * t['mean']:.1f}", ha="center", fontsize=8)
    lo = min(min(t["values"]) for t in test)
    ax.set(ylim=(max(0.0, lo - 0.05), 1.0), ylabel="test accuracy (mean, std, seeds as dots)",
           title=f"CNN on {res['train_size']} digits ({cfg['image_size']}x{cfg['image_size']}), "
                 f"{cfg['epochs']} epochs, {cfg['seeds']} seeds; no flips (digits are not mirror-symmetric)")
    ax.tick_params(axis="x", labelsize=8)


# ------------------------------------------------------------------------------------------------------- label smoothing
def label_smoothing(cfg: dict, seed: int) -> dict:
    """Accuracy, NLL and expected calibration error (15 bins) of the CNN trained with eps = 0 and 0.1."""
    data = digits(cfg["image_size"], cfg["per_class"])
    out = {}
    for eps in cfg["eps"]:
        runs, probs = [], []
        for s in range(seed, seed + cfg["seeds"]):
            pipe = A.Pipeline(*([A.LabelSmoothing(eps)] if eps else []), seed=1000 + s, num_classes=NUM_CLASSES)
            model = make_model(s, image_size=cfg["image_size"], widths=tuple(cfg["widths"]))
            runs.append(train_eval(model, data, cfg["epochs"], cfg["lr"], pipe, seed=s))
            probs.append(predict(model, data.x_test))
        pooled = torch.cat(probs)
        labels = data.y_test.repeat(len(probs))
        out[str(eps)] = {"test_acc": mean_std([r["test"]["acc"] for r in runs]),
                         "test_nll": mean_std([r["test"]["loss"] for r in runs]),
                         "test_ece": mean_std([r["test"]["ece"] for r in runs]),
                         "mean_confidence": float(pooled.max(1).values.mean()),
                         "reliability_pooled": reliability(pooled, labels)}
    return {"per_eps": out, "train_size": len(data.y_train), "test_size": len(data.y_test)}


def plot_label_smoothing(res: dict, cfg: dict, fig) -> None:
    axes = fig.subplots(1, len(res["per_eps"]), squeeze=False)[0]
    for ax, (eps, r) in zip(axes, res["per_eps"].items()):
        rel, bins = r["reliability_pooled"], len(r["reliability_pooled"]["count"])
        centres = [(i + 0.5) / bins for i in range(bins)]
        used = [i for i, c in enumerate(rel["count"]) if c > 0]
        ax.bar([centres[i] for i in used], [rel["accuracy"][i] for i in used], 1 / bins, edgecolor="k",
               alpha=0.7, label="accuracy")
        ax.plot([centres[i] for i in used], [rel["confidence"][i] for i in used], "r.", label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        share = ax.twinx()  # how many predictions each bin holds: most sit in the top bin
        total = sum(rel["count"])
        share.bar([centres[i] for i in used], [rel["count"][i] / total for i in used], 0.4 / bins, color="0.3",
                  label="share of predictions")
        share.set(yscale="log", ylim=(1e-4, 1e2), ylabel="share of predictions (grey, log)")
        share.legend(fontsize=7, loc="lower right")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy (blue bars)",
               title=f"eps {eps}: acc {100 * r['test_acc']['mean']:.1f}±{100 * r['test_acc']['std']:.1f}%, "
                     f"ECE {100 * r['test_ece']['mean']:.1f}±{100 * r['test_ece']['std']:.1f}%")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"reliability, test predictions of {cfg['seeds']} seeds pooled (15 bins)", fontsize=9)


# ------------------------------------------------------------------------------------------------------- fractional pool
FMP_VARIANTS = {"pseudorandom disjoint": (True, False), "pseudorandom overlapping": (True, True),
                "random disjoint": (False, False), "random overlapping": (False, True)}


def photograph(size: int) -> Tensor:
    """scikit-image's cat (Chelsea), centre square, area-resized to (1, 3, size, size) float [0, 1]."""
    from skimage import data as skdata

    img = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1).float() / 255  # (3, 300, 451)
    h, w = img.shape[-2:]
    left = (w - h) // 2
    return nn.functional.interpolate(img[None, :, :, left:left + h], size=(size, size), mode="area")


def repeated_pooling(image: Tensor, alpha: float, passes: int, pseudo_random: bool, overlapping: bool,
                     generator: torch.Generator) -> list[Tensor]:
    """The image after 0..passes fractional max-pooling passes by ``alpha``, each a fresh draw."""
    out = [image]
    for _ in range(passes):
        x = out[-1]
        size = AF.fractional_output_size(x.shape[-1], alpha)
        out.append(AF.fractional_max_pool2d(x, size, overlapping=overlapping, pseudo_random=pseudo_random,
                                            generator=generator))
    return out


def fractional_pool(cfg: dict, seed: int) -> dict:
    """Graham's distortion picture (repeated pooling of one photograph per variant; how much two independent
    draws differ after all passes) and the CNN's test accuracy with fractional vs max pooling."""
    image = photograph(cfg["photo_size"])
    pictures, draw_rms = {}, {}
    for name, (pseudo, overlap) in FMP_VARIANTS.items():
        g = torch.Generator().manual_seed(seed)
        a = repeated_pooling(image, cfg["alpha"], cfg["passes"], pseudo, overlap, g)
        b = repeated_pooling(image, cfg["alpha"], cfg["passes"], pseudo, overlap, g)
        pictures[name] = a
        draw_rms[name] = float((a[-1] - b[-1]).pow(2).mean().sqrt())
    data = digits(cfg["image_size"], cfg["per_class"])
    accuracy = {}
    for pooling in ("max", "fractional"):
        runs = [train_eval(make_model(s, image_size=cfg["image_size"], widths=tuple(cfg["widths"]), pooling=pooling),
                           data, cfg["epochs"], cfg["lr"], seed=s) for s in range(seed, seed + cfg["seeds"])]
        accuracy[pooling] = {"test_acc": mean_std([r["test"]["acc"] for r in runs]),
                             "train_acc": mean_std([r["train"]["acc"] for r in runs]),
                             "seconds": mean_std([r["seconds"] for r in runs])}
    return {"sizes": [p.shape[-1] for p in pictures["random overlapping"]], "draw_to_draw_rms": draw_rms,
            "accuracy": accuracy, "train_size": len(data.y_train), "_pictures": pictures}


def plot_fractional_pool(res: dict, cfg: dict, fig) -> None:
    pictures = res["_pictures"]
    cols = cfg["passes"] + 1
    grid = fig.add_gridspec(len(pictures), cols + 2)
    for r, (name, steps) in enumerate(pictures.items()):
        for c, x in enumerate(steps):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(x[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{x.shape[-1]}px", fontsize=8)
            if c == 0:
                ax.set_ylabel(name.replace(" ", "\n"), fontsize=8)
        fig.axes[-1].set_xlabel(f"draw rms {res['draw_to_draw_rms'][name]:.3f}", fontsize=7)
    ax = fig.add_subplot(grid[:, cols:])
    acc = res["accuracy"]
    names = list(acc)
    ax.bar(names, [acc[n]["test_acc"]["mean"] for n in names], yerr=[acc[n]["test_acc"]["std"] for n in names],
           capsize=4, color=["C0", "C1"])
    for i, n in enumerate(names):
        ax.plot([i] * len(acc[n]["test_acc"]["values"]), acc[n]["test_acc"]["values"], "k.", ms=4)
        ax.text(i, 0.5, f"{100 * acc[n]['test_acc']['mean']:.1f}%", ha="center", fontsize=8, color="w")
    ax.set(ylim=(0.0, 1.0), ylabel="CNN test accuracy")
    ax.set_title(f"digits, {res['train_size']} train,\n{cfg['seeds']} seeds", fontsize=8)
    fig.suptitle(f"fractional max pooling by alpha = {cfg['alpha']:.3f}, repeated {cfg['passes']} times "
                 "(after Graham 2014); 'draw rms': how much two independent draws differ at the end",
                 fontsize=9)


# ------------------------------------------------------------------------------------------------------- selu
def selu(cfg: dict, seed: int) -> dict:
    """Per-layer mean/std of a deep SELU net (train mode) on standardized digits, for init and dropout variants.
    kaiming uses ReLU's gain sqrt 2 (torch's default for kaiming_normal_), lecun gain 1."""
    x = standardized_digits_features()
    variants = {"lecun": ("lecun_normal", None), "kaiming": ("kaiming_normal", None),
                "lecun + Dropout": ("lecun_normal", lambda: Dropout(cfg["p"])),
                "lecun + AlphaDropout": ("lecun_normal", lambda: AlphaDropout(cfg["p"]))}
    out = {}
    for name, (scheme, drop) in variants.items():
        torch.manual_seed(seed)
        net = initialize(deep_net(x.shape[1], cfg["width"], cfg["depth"], "selu", drop), scheme, "relu").train()
        with torch.no_grad():
            out[name] = layer_stats(net, x)[0]
    return {"variants": out, "input_features": x.shape[1], "samples": x.shape[0]}


def plot_selu(res: dict, cfg: dict, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for name, stats in res["variants"].items():
        depth = range(1, len(stats) + 1)
        ax1.plot(depth, [s["std"] for s in stats], "o-", ms=3, label=name)
        ax2.plot(depth, [s["mean"] for s in stats], "o-", ms=3, label=name)
    ax1.axhline(1.0, color="k", ls="--", lw=1)
    ax1.set(yscale="log", xlabel="layer", ylabel="activation std", title="std (fixed point 1)")
    ax2.axhline(0.0, color="k", ls="--", lw=1)
    ax2.set(xlabel="layer", ylabel="activation mean", title="mean (fixed point 0)")
    ax1.legend(fontsize=8)
    fig.suptitle(f"{cfg['depth']}-layer SELU net, width {cfg['width']}, dropout p = {cfg['p']} in train mode, "
                 f"standardized digits in", fontsize=9)


# ------------------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Experiment:
    measure: Callable[[dict, int], dict]
    plot: Callable[[dict, dict, object], None]
    full: dict
    tiny: dict
    claim: str


_CNN = {"image_size": 16, "widths": [16, 32, 64]}

EXPERIMENTS: dict[str, Experiment] = {
    "init_stats": Experiment(
        init_stats, plot_init_stats,
        full={"width": 4096, "depth": 10, "batch": 16, "activations": ["tanh", "relu", "selu"], "image_size": 16,
              "per_class": None, "mlp_widths": [32, 32], "epochs": 5},
        tiny={"width": 64, "depth": 4, "batch": 16, "activations": ["tanh", "relu", "selu"], "image_size": 8,
              "per_class": 10, "mlp_widths": [8, 8], "epochs": 2},
        claim="small N(0, 0.01^2) init in 6 layers of 4096 tanh: std 0.49, 0.29, 0.18, 0.11, 0.07, 0.05; "
              "zeros init leaves every hidden unit identical"),
    "activations": Experiment(
        activations_speed, plot_activations,
        full={**_CNN, "activations": ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "selu", "gelu"],
              "lrs": [0.03, 0.1, 0.3], "max_epochs": 20, "target_error": 0.05, "seeds": 3},
        tiny={"image_size": 8, "widths": [4, 8], "activations": ["relu", "tanh"], "lrs": [0.1], "max_epochs": 2,
              "target_error": 0.8, "seeds": 2},
        claim="a 4-layer CNN on CIFAR-10 reached 25% training error six times faster with ReLU than with tanh "
              "(Krizhevsky et al. 2012, Fig. 1)"),
    "normalization": Experiment(
        normalization, plot_normalization,
        full={"image_size": 8, "lrs": [10.0 ** (k / 2) for k in range(-16, 7)], "epochs": 5,
              "eps": [1e-4, 1e-3, 1e-2], "directions": 64},
        tiny={"image_size": 8, "lrs": [1e-5, 1e-2, 1.0], "epochs": 1, "eps": [1e-3], "directions": 4},
        claim="before normalization the loss is very sensitive to small weight changes; after zero-centring and "
              "scaling much less so"),
    "dropout": Experiment(
        dropout_gap, plot_dropout,
        full={"image_size": 16, "per_class": 20, "widths": [512, 512], "ps": [0.0, 0.2, 0.5], "seeds": 5,
              "epochs": 100, "lr": 0.03, "batch_size": 32},
        tiny={"image_size": 8, "per_class": 5, "widths": [16], "ps": [0.0, 0.5], "seeds": 2, "epochs": 2,
              "lr": 0.03, "batch_size": 32},
        claim="dropout (p = 0.5 on large fully-connected layers) reduces overfitting (Srivastava et al. 2014)"),
    "augmentation": Experiment(
        augmentation, plot_augmentation,
        full={**_CNN, "per_class": 20, "cutout": 8, "seeds": 4, "epochs": 60, "lr": 0.05, "batch_size": 32},
        tiny={"image_size": 8, "widths": [4, 8], "per_class": 3, "cutout": 4, "seeds": 1, "epochs": 1, "lr": 0.05,
              "batch_size": 32},
        claim="CIFAR-10: crop+flip 10.6% -> 4.7% error (He 2016); Cutout 4.72 -> 3.99; Mixup 5.6 -> 4.2; "
              "ImageNet top-1 error: baseline 23.68, Cutout 22.93, Mixup 22.58, CutMix 21.40"),
    "label_smoothing": Experiment(
        label_smoothing, plot_label_smoothing,
        full={**_CNN, "per_class": None, "eps": [0.0, 0.1], "seeds": 3, "epochs": 15, "lr": 0.05},
        tiny={"image_size": 8, "widths": [4, 8], "per_class": 5, "eps": [0.0, 0.1], "seeds": 1, "epochs": 1,
              "lr": 0.05},
        claim="label smoothing improves calibration (Mueller et al. 2019); alone it can hurt accuracy "
              "(CutMix paper, Table 5)"),
    "fractional_pool": Experiment(
        fractional_pool, plot_fractional_pool,
        full={**_CNN, "photo_size": 128, "alpha": 2 ** (1 / 3), "passes": 6, "per_class": None, "seeds": 3,
              "epochs": 10, "lr": 0.05},
        tiny={"image_size": 8, "widths": [4, 8], "photo_size": 16, "alpha": 2 ** 0.5, "passes": 2, "per_class": 3,
              "seeds": 1, "epochs": 1, "lr": 0.05},
        claim="overlapping pseudorandom fractional max pooling worked best; random sequences give an elastic "
              "distortion look (Graham 2014; CIFAR-10 3.47% error with many test passes)"),
    "selu": Experiment(
        selu, plot_selu,
        full={"width": 1024, "depth": 32, "p": 0.1},
        tiny={"width": 64, "depth": 32, "p": 0.1},
        claim="with LeCun normal init a deep SELU net keeps activation std about 1 per layer (10 x 4096: ~1.0); "
              "alpha dropout keeps mean 0 and variance 1 where ordinary dropout does not"),
}


# ------------------------------------------------------------------------------------------------------- running
def _jsonable(value):
    """Floats that are not finite become None (JSON has no NaN); keys starting with '_' (pictures) are dropped."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(name: str, out: str | Path, tiny: bool = False, seed: int = 0) -> dict:
    """Run one experiment and write ``out/name.json`` and ``out/name.png``; returns the JSON record."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiments: unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}, all")
    exp = EXPERIMENTS[name]
    cfg = exp.tiny if tiny else exp.full
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = exp.measure(cfg, seed)
    seconds = time.perf_counter() - start
    record = {"experiment": name, "claim": exp.claim, "config": cfg, "seed": seed, "tiny": tiny,
              "results": results, "torch": torch.__version__, "python": platform.python_version(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
              "wall_seconds": seconds,
              "command": f"python -m training.experiments {name} --out {out}{' --tiny' if tiny else ''} --seed {seed}"}
    clean = _jsonable(record)
    (out / f"{name}.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")
    _plot(exp, results, cfg, out / f"{name}.png")
    return clean


def _plot(exp: Experiment, results: dict, cfg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 7), layout="constrained")
    try:
        exp.plot(results, cfg, fig)
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--out", required=True, help="folder for NAME.json and NAME.png")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long configuration (for the tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 keeps the seconds comparable on a shared machine (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in EXPERIMENTS if args.name == "all" else [args.name]:
        record = run(name, args.out, args.tiny, args.seed)
        print(f"{name}: {record['wall_seconds']:.1f} s -> {Path(args.out) / name}.json, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
