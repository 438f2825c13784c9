"""Train a small model with an augpipe Pipeline applied on the training device after the DataLoader.

    python -m training.train --out runs/digits                 # digits, CNN, the default recipe
    python -m training.train --out runs/digits --resume        # continue after an interruption, bit-exactly
    python -m training.train --dataset folder --data-dir photos/ --image-size 224 --workers 4 --tta tencrop
    torchrun --nproc_per_node=2 -m training.train --out runs/ddp

Data flows one way: uint8 batches from the DataLoader ((B, C, H, W), or an augpipe.PackedImages for photos of
mixed sizes) -> device -> Pipeline (float images, soft targets) -> model. Exact resume rests on three facts: the
data order of an epoch is a pure function of (seed, epoch) (DistributedSampler reseeds per epoch); every other
random stream (torch's global RNG for dropout and fractional pooling, each rank's Pipeline generator) is saved in
the end-of-epoch checkpoint; and an interrupted epoch is rerun from that checkpoint, so nothing from a partial
epoch survives.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from . import activations, checkpoint
from .data import DATASETS, PhotoFolder, Splits, channel_stats, load_dataset
from .init import SCHEMES
from .losses import soft_cross_entropy
from .models import ARCHS, POOLINGS, ModelConfig, build_model, count_parameters

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
PLOT = "metrics.png"
# Flags that only say how to run, not what to compute; everything else defines the run and must match on resume.
RUNTIME_FLAGS = ("out", "resume", "device", "compile", "workers", "progress", "kill_after_steps")
# Flags that change only how the test set is scored, never the weights: a resume may change them. Typed, they
# apply from the resumed epoch on (each metrics row says which applied); otherwise the checkpoint's apply.
EVAL_FLAGS = ("tta", "tta_scales")
TTA_MODES = ("none", "fivecrop", "tencrop")
# Photo folders are normalized with ImageNet's channel statistics: the folder's own would need a full decode.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, but not for on/off flags ("--no-progress (default: True)" read as if it were on) or
    for flags whose default is None (their help says what None means)."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def number(kind, low, high=None, high_open=False):
    """An argparse type: ``kind`` (int or float) in [low, high] (or [low, high) with ``high_open``); argparse
    reports a value outside as "argument --flag: must be ..." and exits."""
    def parse(text: str):
        value = kind(text)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or value < low or above:
            upper = "" if high is None else f" and {'<' if high_open else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {'an int' if kind is int else 'a number'} >= {low}{upper}, "
                                             f"got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse's own message for text that is not a number names the type
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0],
                                formatter_class=_DefaultsHelp)
    p.add_argument("--out", default="runs/train", help="output directory: metrics.jsonl, metrics.png, checkpoint.pt")
    p.add_argument("--epochs", type=number(int, 1), default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt if it exists (an interrupted epoch is rerun)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available)")
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="folder: photos streamed from --data-dir (ROOT/<class>/*, split 80/20 per class with a "
                        "fixed seed, or ROOT/train/<class> and ROOT/test/<class>), decoded in the DataLoader "
                        "workers at their own sizes, read as RGB, and normalized with ImageNet's channel mean "
                        "(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), since the folder's own statistics "
                        "would need a full decode")
    p.add_argument("--data-dir", default=None, help="dataset folder for cifar10 and folder")
    p.add_argument("--image-size", type=number(int, 1), default=32,
                   help="digits: the side they are upsampled to; folder: the side of the square crops the model "
                        "sees (the photos keep their own sizes on disk and in the batch)")
    p.add_argument("--arch", choices=ARCHS, default="cnn")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64],
                   help="CNN channels per stage, or MLP hidden units per layer")
    p.add_argument("--activation", choices=activations.NAMES, default="relu")
    p.add_argument("--init", choices=SCHEMES, default="kaiming_normal")
    p.add_argument("--dropout", type=float, default=0.0, help="drop probability (alpha dropout with selu)")
    p.add_argument("--pooling", choices=POOLINGS, default="max")
    p.add_argument("--no-batch-norm", dest="batch_norm", action="store_false")
    p.add_argument("--batch-size", type=number(int, 1), default=64,
                   help="global batch, split evenly across processes")
    p.add_argument("--lr", type=number(float, 0), default=0.2,
                   help="peak learning rate of SGD with Nesterov momentum 0.9")
    p.add_argument("--weight-decay", type=number(float, 0), default=5e-4)
    p.add_argument("--warmup", type=number(float, 0), default=1.0,
                   help="epochs of linear warm-up before the linear decay")
    p.add_argument("--augment", choices=("default", "none"), default="default",
                   help="default: pad+crop (folder: RandomResizedCrop to --image-size and a horizontal flip), "
                        "brightness, contrast, Mixup/CutMix; none: only normalize (folder: the test resize and "
                        "centre crop first)")
    p.add_argument("--crop-padding", type=int, default=2, help="padding of the pad+crop (digits and cifar10)")
    p.add_argument("--mix", type=number(float, 0, 1), default=0.5,
                   help="probability that a sample gets Mixup or CutMix")
    p.add_argument("--label-smoothing", type=number(float, 0, 1, high_open=True), default=0.1)
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="test-time augmentation: score each test image by its softmax averaged over views (and "
                        "--tta-scales); the loss is the NLL of the averaged probabilities. fivecrop: the 4 corner "
                        "crops and the centre crop; tencrop: also their mirror images. folder: crops of "
                        "--image-size from the resized photo; digits/cifar10: crops of the image's own size after "
                        "padding it by --crop-padding, i.e. the training crop's 4 extreme shifts and no shift "
                        "(digits are never mirrored in training). none: folder photos are resized to "
                        "round(image_size * 256 / 224) and centre-cropped. A --resume may change it")
    p.add_argument("--tta-scales", type=number(int, 1), nargs="+", default=None, metavar="SIDE",
                   help="the shorter side each test image is resized to before the --tta crops, one set of views "
                        "per side, all averaged (default: folder round(image_size * 256 / 224), digits/cifar10 "
                        "their own size). A --resume may change it")
    p.add_argument("--compile", action="store_true", help="torch.compile the model and the augmentation graph")
    p.add_argument("--workers", type=number(int, 0), default=0, help="DataLoader worker processes")
    p.add_argument("--limit-train", type=number(int, 1), default=None, help="use only the first N training images")
    p.add_argument("--limit-test", type=number(int, 1), default=None, help="use only the first N test images")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--kill-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: SIGKILL self
    return p


def explicit_flags(argv: list[str]) -> set[str]:
    """The flags the user actually typed (argparse can't tell an explicit default from an omitted flag)."""
    p = build_parser()
    unset = object()  # argparse fills in a default only for attributes the namespace does not have yet
    namespace = argparse.Namespace(**{k: unset for k in vars(p.parse_args([]))})
    return {k for k, v in vars(p.parse_args(argv, namespace=namespace)).items() if v is not unset}


def seed_for(seed: int, *tags) -> int:
    """A 63-bit seed that is a pure function of (seed, tags): independent streams for data order, augmentation per
    rank and training noise per rank, without the collisions of seed + rank arithmetic."""
    digest = hashlib.sha256(repr((seed,) + tags).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


# ------------------------------------------------------------------------------------------------ processes
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(device_flag: str | None) -> Dist:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process when it is absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    name = device_flag or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cpu":
            # N processes on one machine would each start one thread per core; share the cores instead.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Dist(rank, world, local_rank, device)


def all_sum(values: list[float], d: Dist) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type != "cpu" else "cpu")
    if d.enabled:
        dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------------------------ pieces
def build_pipelines(args, splits: Splits, d: Dist):
    """(train, evals): the training Pipeline and the test Pipelines, one per --tta scale (one without TTA), whose
    outputs ``evaluate`` scores together.

    Digits are not flip-invariant (a mirrored 2 is no 2), so the default graph for in-memory data shifts and
    re-lights the image and mixes samples instead; photos get the ImageNet recipe, RandomResizedCrop from each
    photo's own size and a flip, and are tested on a resize and centre crop."""
    import augpipe as A

    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if splits.streamed else channel_stats(splits.train.images)
    K = splits.num_classes
    nodes = []
    if args.augment == "default":
        if splits.streamed:
            nodes += [A.RandomResizedCrop(args.image_size), A.HorizontalFlip()]
        else:
            nodes.append(A.RandomCrop(splits.image_size, padding=args.crop_padding))
        nodes += [A.Brightness(0.2), A.Contrast(0.2)]
    elif splits.streamed:
        nodes += eval_geometry(args, splits)[0]  # every photo of a batch must come to one size
    nodes.append(A.Normalize(mean=mean, std=std))
    if args.augment == "default" and args.mix > 0:
        nodes.append(A.RandomApply(A.OneOf(A.Mixup(alpha=1.0), A.CutMix(alpha=1.0)), p=args.mix))
    if args.label_smoothing > 0:
        nodes.append(A.LabelSmoothing(args.label_smoothing))
    train = A.Pipeline(*nodes, seed=seed_for(args.seed, "augment", d.rank), num_classes=K, compile=args.compile)
    evals = [A.Pipeline(*ops, A.Normalize(mean=mean, std=std), seed=0, num_classes=K)
             for ops in eval_geometry(args, splits)]
    return train, evals


def eval_resize(image_size: int) -> int:
    """The shorter side a photo is resized to before the centre crop of image_size: 256 for 224, as ResNet."""
    return round(image_size * 256 / 224)


def tta_scales(args, splits: Splits) -> list[int] | None:
    """The shorter sides the test images are resized to before the --tta crops (None without TTA): --tta-scales,
    or by default eval_resize(--image-size) for photos and their own size for images in memory. Raises
    UsageError for scales without TTA and for a scale too small for the crops."""
    import augpipe as A

    if args.tta == "none":
        if args.tta_scales:
            raise UsageError("argument --tta-scales: only with --tta fivecrop or tencrop")
        return None
    if splits.streamed:
        size = args.image_size
        for s in args.tta_scales or []:
            if s < size:
                raise UsageError(f"argument --tta-scales: {s} is smaller than the {size}x{size} crops "
                                 f"(--image-size); use {size} or more")
        return list(args.tta_scales or [eval_resize(size)])
    (H, W), pad = splits.image_size, args.crop_padding
    for s in args.tta_scales or []:
        h, w = A.Resize(s).output_size((H, W))
        if h + 2 * pad < H or w + 2 * pad < W:
            raise UsageError(f"argument --tta-scales: {s} leaves images of {h}x{w}, {h + 2 * pad}x{w + 2 * pad} "
                             f"after the --crop-padding {pad}, smaller than the {H}x{W} crops")
    return list(args.tta_scales or [min(H, W)])


def eval_geometry(args, splits: Splits) -> list[list]:
    """The geometric ops of each test Pipeline: one list per --tta scale (one list without TTA).

    Without TTA: photos Resize(eval_resize) + CenterCrop, in-memory images none. With TTA, per scale s: photos
    Resize(s) and the crops of --image-size; in-memory images Resize(s) (unless s is their size), the training
    crop's padding (a centre crop larger than the image pads it evenly with black, as RandomCrop's padding
    does), and the crops of their own size."""
    import augpipe as A

    scales = tta_scales(args, splits)
    if scales is None:
        size = args.image_size
        return [[A.Resize(eval_resize(size)), A.CenterCrop(size)]] if splits.streamed else [[]]
    crops = A.FiveCrop if args.tta == "fivecrop" else A.TenCrop
    if splits.streamed:
        return [[A.Resize(s), crops(args.image_size)] for s in scales]
    (H, W), pad = splits.image_size, args.crop_padding
    out = []
    for s in scales:
        h, w = A.Resize(s).output_size((H, W))
        ops = [] if (h, w) == (H, W) else [A.Resize(s)]
        ops += [A.CenterCrop((h + 2 * pad, w + 2 * pad))] if pad else []
        out.append(ops + [crops((H, W))])
    return out


def model_config(args, splits: Splits) -> ModelConfig:
    H, W = (args.image_size, args.image_size) if splits.streamed else splits.image_size
    if args.arch == "mlp" and H != W:
        raise ValueError(f"train: the MLP needs square images, the dataset has {H}x{W}")
    return ModelConfig(arch=args.arch, in_channels=splits.channels, image_size=H, num_classes=splits.num_classes,
                       activation=args.activation, init=args.init, dropout=args.dropout, pooling=args.pooling,
                       widths=tuple(args.widths), batch_norm=args.batch_norm)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1, then linear decay to 0 at the last step (short runs converge fastest this way)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class UsageError(ValueError):
    """A flag that does not fit the data or the processes, found once the data is loaded: ``run`` reports it as
    argparse reports a bad flag (usage, one line, exit status 2), before anything is written."""


def check_batch_size(batch_size: int, images: int, world: int) -> None:
    """Every process needs one whole batch per epoch (the loader drops a last partial one): refuse a batch larger
    than the training set rather than train on nothing, or silently on a smaller batch than asked for."""
    if batch_size % world:
        raise UsageError(f"argument --batch-size: {batch_size} must be divisible by the {world} processes")
    per_rank, shard = batch_size // world, math.ceil(images / world)  # DistributedSampler's share, padded
    if shard < per_rank:
        each = "" if world == 1 else f" ({per_rank} per process, which gets {shard} of them)"
        raise UsageError(f"argument --batch-size: {batch_size} is more than the {images} training images{each}; "
                         f"use --batch-size {world * shard} or less, or more images")


def train_loader(dataset, args, d: Dist) -> DataLoader:
    import augpipe as A

    check_batch_size(args.batch_size, len(dataset), d.world)
    per_rank = args.batch_size // d.world
    # The same sampler class with or without torchrun: its epoch order is a pure function of (seed, epoch).
    sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=seed_for(args.seed, "order") % 2 ** 62)
    # drop_last: a last batch of 1 breaks batch norm, and every epoch sees a new order anyway.
    # generator: each new iterator draws its workers' base seed, by default from torch's global generator, which
    # dropout and fractional pooling draw from too. Persistent workers make one iterator, a resumed run another,
    # and no workers one per epoch: each would shift the model's draws differently. A generator of its own keeps
    # the global stream the same whatever --workers is and across a resume.
    # Photos of mixed sizes: augpipe.collate packs them into a PackedImages; the Pipeline crops each at its size.
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=args.workers,
                      pin_memory=d.device.type == "cuda", persistent_workers=args.workers > 0,
                      collate_fn=A.collate if isinstance(dataset, PhotoFolder) else None,
                      generator=torch.Generator().manual_seed(seed_for(args.seed, "loader", d.rank)))


def eval_loader(dataset, args, d: Dist, batch_size: int = 256) -> DataLoader:
    """This rank's share of the test set, every world-th image, in order. Photos are decoded in --workers processes
    and packed by augpipe.collate; images in memory need no workers."""
    import augpipe as A

    workers = args.workers if isinstance(dataset, PhotoFolder) else 0
    # A generator of its own: every DataLoader iterator draws a seed, by default from the global generator,
    # which the training's dropout draws from too.
    return DataLoader(dataset.subset(torch.arange(d.rank, len(dataset), d.world)), batch_size=batch_size,
                      num_workers=workers, pin_memory=d.device.type == "cuda", persistent_workers=workers > 0,
                      collate_fn=A.collate if isinstance(dataset, PhotoFolder) else None,
                      generator=torch.Generator().manual_seed(0))


def subset(dataset, limit: int | None):
    return dataset if limit is None else dataset.subset(torch.arange(min(limit, len(dataset))))


# ------------------------------------------------------------------------------------------------ epochs
def train_one_epoch(model, pipe, loader, optimizer, scheduler, d: Dist, epoch: int, args, step0: int) -> float:
    """One pass over this rank's shard; returns the mean training loss over all ranks."""
    from tqdm import tqdm

    import augpipe as A

    model.train()
    batches = A.DeviceLoader(loader, pipe, d.device)  # uint8 (B, C, H, W) moved, then augmented on the device
    batches.set_epoch(epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    count = 0
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{args.epochs}", disable=not (args.progress and d.main),
               leave=False, dynamic_ncols=True)
    for i, (x, targets) in enumerate(bar):  # float (B, C, H, W), soft (B, K)
        loss = soft_cross_entropy(model(x), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach().double() * x.shape[0]
        count += x.shape[0]
        if i % 10 == 0 and bar.disable is False:
            bar.set_postfix(loss=f"{loss.item():.4f}")  # a host sync, so only every 10 steps
        if args.kill_after_steps is not None and step0 + i + 1 >= args.kill_after_steps:
            os.kill(os.getpid(), signal.SIGKILL)  # simulate a crash mid-epoch (tests of --resume)
    total, n = all_sum([loss_sum.item(), count], d)
    return total / n


def average_views(logits: Tensor) -> Tensor:
    """(B, V, K) logits of V views of each image -> (B, K) log of the softmax averaged over the views:
    log((1/V) sum_v softmax(z_v)) = logsumexp_v log_softmax(z_v) - log V, which stays finite where a view's
    probability underflows. Its argmax is the averaged prediction; as logits it gives the NLL of the averaged
    probabilities (their log-softmax is themselves, as they sum to 1)."""
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=1) - math.log(logits.shape[1])


@torch.no_grad()
def evaluate(model, pipes, loader, d: Dist) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on this rank's test batches (``eval_loader``: uint8 images or a
    PackedImages, and labels), summed over ranks.

    Each test Pipeline gives images (b, C, h, w), or views (b, V, C, h, w) when it ends in FiveCrop or TenCrop.
    One plain Pipeline is scored on its logits; otherwise the softmax is averaged over every view of every
    Pipeline (``average_views``)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    correct = torch.zeros((), dtype=torch.int64, device=d.device)
    count = 0
    for images, labels in loader:
        images, labels = images.to(d.device), labels.to(d.device)  # uint8 (b, C, H, W) or packed, (b,)
        outputs = [pipe(images) for pipe in pipes]
        if len(outputs) == 1 and outputs[0].dim() == 4:
            scores = model(outputs[0])  # (b, K) logits
        else:
            views = [x if x.dim() == 5 else x.unsqueeze(1) for x in outputs]  # (b, V, C, h, w)
            logits = torch.cat([model(x.flatten(0, 1)).view(*x.shape[:2], -1) for x in views], 1)  # (b, V_all, K)
            scores = average_views(logits)
        loss_sum += soft_cross_entropy(scores, labels, reduction="sum").double()
        correct += (scores.argmax(1) == labels).sum()
        count += len(labels)
    total, right, n = all_sum([loss_sum.item(), correct.item(), count], d)
    return total / n, right / n


# ------------------------------------------------------------------------------------------------ outputs
def write_metrics(out: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl from the history (atomically), so a resumed run never keeps lines of a lost epoch."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    checkpoint.atomic_write(out / METRICS, lambda f: f.write(text.encode()))


def plot(out: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (augmented, soft targets)")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "o-", color="C1")
    ax_acc.set(xlabel="epoch", ylabel="%", title=f"test accuracy (last {100 * history[-1]['test_acc']:.2f}%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.25)  # tight_layout is slow
    checkpoint.atomic_write(out / PLOT, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def rank_state(pipe, d: Dist) -> dict:
    state = {"torch_rng": torch.get_rng_state(), "pipeline": pipe.state_dict()}
    if d.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(d.device)
    return state


def gather_rank_states(pipe, d: Dist) -> list[dict]:
    """Every rank's random streams, so that rank 0's checkpoint can restore all of them."""
    mine = rank_state(pipe, d)
    if not d.enabled:
        return [mine]
    states = [None] * d.world
    dist.all_gather_object(states, mine)
    return states


def restore_rank_state(state: dict, pipe, d: Dist) -> None:
    torch.set_rng_state(state["torch_rng"])
    pipe.load_state_dict(state["pipeline"])
    if "cuda_rng" in state and d.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], d.device)


def check_resume_config(saved: dict, args, explicit: set[str], path: Path) -> None:
    """A resumed run takes its settings from the checkpoint; a flag typed now that disagrees is an error, except
    the runtime flags and the eval-only flags (EVAL_FLAGS), which change no weight."""
    free = RUNTIME_FLAGS + EVAL_FLAGS
    conflicts = [f"--{k.replace('_', '-')} {getattr(args, k)!r} (checkpoint: {saved[k]!r})"
                 for k in sorted(explicit) if k in saved and k not in free and getattr(args, k) != saved[k]]
    if conflicts:
        raise ValueError(f"train: {path} was written by a run with other settings: {'; '.join(conflicts)}. "
                         f"Drop these flags to resume it, or use another --out")


def resume_config(saved: dict, args, explicit: set[str], path: Path) -> None:
    """Set ``args`` for a resumed run: the checkpoint's settings, except the runtime flags (as given now) and the
    eval-only flags typed now. An eval-only flag not typed keeps the checkpoint's value, so that a plain --resume
    scores as the run it continues, and --tta fivecrop alone keeps its scales; --tta none drops them."""
    check_resume_config(saved, args, explicit, path)
    kept = RUNTIME_FLAGS + tuple(k for k in EVAL_FLAGS if k in explicit)
    for k, v in saved.items():
        if k not in kept:
            setattr(args, k, v)
    if args.tta == "none" and "tta_scales" not in explicit:
        args.tta_scales = None


@dataclass
class TrainResult:
    model: nn.Module  # the bare model (not the DDP / compiled wrapper)
    history: list[dict]
    rank: int
    world: int
    augment_seed: int


def run(argv: list[str] | None = None) -> TrainResult:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    ckpt_path = out / CHECKPOINT
    saved = None
    if args.resume and ckpt_path.exists():
        saved = checkpoint.load(ckpt_path)
        resume_config(saved["config"], args, explicit_flags(argv), ckpt_path)

    d = setup_distributed(args.device)
    try:
        return _train(args, out, saved, d)
    except UsageError as e:
        build_parser().error(str(e))
    finally:
        if d.enabled:
            dist.destroy_process_group()


def _train(args, out: Path, saved: dict | None, d: Dist) -> TrainResult:
    splits = load_dataset(args.dataset, args.data_dir, args.image_size)
    splits = Splits(subset(splits.train, args.limit_train), subset(splits.test, args.limit_test))
    cfg = model_config(args, splits)
    check_batch_size(args.batch_size, len(splits.train), d.world)
    tta_scales(args, splits)  # refuses scales too small for the crops
    if d.main:  # only once the data and the flags are known to fit: a refused run leaves no empty folder
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed_for(args.seed, "model"))  # the same initial weights on every rank
    model = build_model(cfg).to(d.device)
    pipe, eval_pipes = build_pipelines(args, splits, d)
    pipe.to(d.device)
    for p in eval_pipes:
        p.to(d.device)
    decay = [p for p in model.parameters() if p.dim() > 1]  # no weight decay on biases and norm scales
    rest = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=args.lr, momentum=0.9, nesterov=True)
    loader = train_loader(splits.train, args, d)
    tests = eval_loader(splits.test, args, d)
    total = args.epochs * len(loader)
    warmup = min(total, max(1, round(args.warmup * len(loader))))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))

    start_epoch, history = 0, []
    if saved is not None:
        if len(saved["ranks"]) != d.world:
            raise ValueError(f"train: the checkpoint was written by {len(saved['ranks'])} processes, this run has "
                             f"{d.world}; an exact resume needs the same number (torchrun --nproc_per_node)")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, history = saved["epoch"], list(saved["history"])
        restore_rank_state(saved["ranks"][d.rank], pipe, d)
    else:
        torch.manual_seed(seed_for(args.seed, "train", d.rank))  # dropout / fractional pooling noise per rank

    bare = model
    if args.compile:
        model = torch.compile(model)
    if d.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda"
                                                    else None)
    if d.main:
        if saved is None and (out / CHECKPOINT).exists():  # the old run's files go once this one saves an epoch
            print(f"train: {out} holds a run already; starting afresh replaces it at the end of the first epoch "
                  f"(--resume continues it instead)", file=sys.stderr)
        epochs = (f"epochs {start_epoch + 1}..{args.epochs}" if start_epoch < args.epochs
                  else f"all {args.epochs} epochs already done, nothing to train")
        sizes = (f"photos of their own sizes cropped to {args.image_size}x{args.image_size}" if splits.streamed
                 else f"images {splits.image_size}")
        tta = "" if args.tta == "none" else f", tested with {args.tta} over {len(eval_pipes)} scale(s)"
        print(f"training {cfg.arch} ({count_parameters(bare):,} parameters) on {args.dataset}: "
              f"{len(splits.train)} train / {len(splits.test)} test {sizes}, {d.world} "
              f"process(es) on {d.device}, {epochs}{tta}", file=sys.stderr)

    last_plot = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        t0 = time.perf_counter()
        train_loss = train_one_epoch(model, pipe, loader, optimizer, scheduler, d, epoch, args,
                                     step0=epoch * len(loader))
        if d.enabled:  # batch-norm statistics drift apart per rank; evaluate and save rank 0's
            for b in bare.buffers():
                dist.broadcast(b, 0)
        test_loss, test_acc = evaluate(bare, eval_pipes, tests, d)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "test_loss": test_loss,
                        "test_acc": test_acc, "lr": scheduler.get_last_lr()[0], "tta": args.tta,
                        "tta_scales": tta_scales(args, splits), "seconds": time.perf_counter() - t0})
        ranks = gather_rank_states(pipe, d)
        if d.main:
            checkpoint.save(out / CHECKPOINT, {
                "epoch": epoch + 1, "model": bare.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ranks": ranks, "history": history,
                "config": dict(vars(args))})
            write_metrics(out, history)
            # Drawing costs ~0.5 s, a lot next to a 2 s epoch: refresh the plot at most every 30 s and at the end.
            if epoch + 1 == args.epochs or time.perf_counter() - last_plot > 30:
                plot(out, history)
                last_plot = time.perf_counter()
            row = history[-1]
            print(f"epoch {epoch + 1}/{args.epochs}  train_loss {train_loss:.4f}  test_loss {test_loss:.4f}  "
                  f"test_acc {100 * test_acc:.2f}%  {row['seconds']:.1f}s", file=sys.stderr)
        if d.enabled:
            dist.barrier()  # no rank runs ahead of a checkpoint that describes it
    return TrainResult(bare, history, d.rank, d.world, pipe.seed)


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
