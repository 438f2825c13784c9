"""On a CUDA device: the same images and targets as on the CPU, compiled (Triton) equal to eager, no host sync in a
call (the range check of float images included: a device-side assert), the DeviceLoader's prefetch and a short
training run. Skipped without CUDA; benchmarks/gpu_check.sh runs them.

The CPU is the reference: a CUDA pipeline's parameters (``last_params``) are replayed by the same pipeline on the
CPU, so the two must agree up to float32 rounding.
"""
import os
import signal
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import augpipe as A
from test_execution import assert_same, batch, every_op_cifar, every_op_imagenet


def every_warp(compile):
    """The projective and dense reads: a perspective and an elastic field composed with flips and a padded crop."""
    return A.Pipeline(
        A.HorizontalFlip(), A.RandomPerspective(0.5, p=0.7, fill=0.5), A.RandomCrop(36, padding=2),
        A.ElasticTransform(20.0, 3.0, p=0.6), A.Brightness(0.3), A.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        A.CutMix(), seed=2, num_classes=7, compile=compile)


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
RECIPES = [(every_op_cifar, 32), (every_op_imagenet, 40), (every_warp, 40)]


def moved(obj, device):
    """Every tensor of a nested params structure (lists, tuples, dicts) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: moved(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(moved(v, device) for v in obj)
    return obj


@pytest.mark.parametrize("make, size", RECIPES)
def test_cuda_eager_gives_the_cpu_images_and_targets(make, size):
    x, y = batch(32, size)
    cuda = make(False)
    out, targets = cuda(x.cuda(), y.cuda())
    assert out.is_cuda and targets.is_cuda
    reference = make(False)(x, y, params=moved(cuda.last_params, "cpu"))
    assert_same((out.cpu(), targets.cpu()), reference, image_atol=1e-4, target_atol=1e-5)


@pytest.mark.parametrize("make, size", RECIPES)
def test_cuda_compiled_equals_eager(make, size):
    compiled, eager = make(True), make(False)
    for b in (16, 11, 13):  # a partial last batch too
        x, y = (t.cuda() for t in batch(b, size, seed=b))
        result = compiled(x, y)
        assert_same(result, eager(x, y, params=compiled.last_params))


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("make, size", RECIPES)
def test_cuda_call_has_no_host_sync(make, size, compile):
    pipe = make(compile)
    x, y = (t.cuda() for t in batch(64, size))
    for _ in range(2):  # the first calls create the generator, move the constants and compile
        pipe(x, y)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, targets = pipe(x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.is_cuda and targets.is_cuda and out.shape[0] == 64


def test_cuda_float_images_are_range_checked_without_a_host_sync():
    pipe = A.Pipeline(A.HorizontalFlip(), A.Brightness(0.2), A.Normalize((0.5,) * 3, (0.25,) * 3), seed=0)
    x = batch(64, 32)[0].cuda().float() / 255
    pipe(x)  # the first call creates the generator and moves the constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = pipe(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()  # an in-range batch leaves no failed device assert behind
    assert out.is_cuda and out.shape == x.shape


# A failed device-side assert leaves the process's CUDA context unusable, so the bad call runs in a process of its
# own. The call must return without waiting for the device; the error comes at the next synchronizing call.
OUT_OF_RANGE = """
import torch
import augpipe as A
pipe = A.Pipeline(A.HorizontalFlip(p=1.0), seed=0)
x = torch.rand(8, 3, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
pipe(x)
torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode("error")
out = pipe(x * 255)
torch.cuda.set_sync_debug_mode("default")
print("returned without a sync", flush=True)
try:
    torch.cuda.synchronize()
except RuntimeError as e:
    print("raised at the sync:", e, flush=True)
    raise SystemExit(3)
print("no error at the sync", flush=True)
"""


def test_cuda_out_of_range_float_images_raise_at_the_next_sync():
    from test_train import ROOT
    env = {k: v for k, v in os.environ.items() if k != "CUDA_LAUNCH_BLOCKING"}
    proc = subprocess.run([sys.executable, "-c", OUT_OF_RANGE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    said = proc.stdout + proc.stderr
    assert "returned without a sync" in proc.stdout, said
    assert proc.returncode == 3 and "raised at the sync" in proc.stdout and "device-side assert" in said, said


def test_device_loader_prefetches_to_cuda_and_augments_there():
    x, y = batch(20, 32)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, pin_memory=True)
    pipe = every_op_cifar(False)
    seen = 0
    for (images, targets), (cpu_x, cpu_y) in zip(A.DeviceLoader(loader, pipe, "cuda"), loader):
        assert images.is_cuda and targets.is_cuda
        reference = every_op_cifar(False)(cpu_x, cpu_y, params=moved(pipe.last_params, "cpu"))
        assert_same((images.cpu(), targets.cpu()), reference, image_atol=1e-4, target_atol=1e-5)
        seen += images.shape[0]
    assert seen == 20


def test_device_loader_takes_batches_already_on_the_gpu():
    """pin_memory() refuses a CUDA tensor: only CPU batches may be pinned before the copy."""
    x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, device="cuda")
    (out,) = list(A.DeviceLoader([x], A.Pipeline(A.HorizontalFlip(p=1.0)), "cuda"))
    torch.testing.assert_close(out, x.flip(-1).float() / 255)


def test_cuda_training_learns_and_resumes_after_kill_9(tmp_path):
    from test_train import ROOT, TINY, metrics
    from training.train import run
    args = TINY + ["--device", "cuda", "--widths", "16", "32", "--batch-size", "16", "--lr", "0.1", "--epochs", "5"]
    full = run(args + ["--out", str(tmp_path / "full")])
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    assert full.history[-1]["test_acc"] > 0.2  # twice chance; with Mixup/CutMix on 192 digits an H200 got 0.297
    # 12 steps per epoch: die at step 30, in epoch 3, then resume from epoch 2's checkpoint.
    cmd = [sys.executable, "-m", "training.train", *args, "--out", str(tmp_path / "resumed"),
           "--kill-after-steps", "30"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run(["--out", str(tmp_path / "resumed"), "--resume", "--device", "cuda", "--no-progress"])  # settings: checkpoint
    # CUDA's convolution backward is not deterministic (atomic adds), so even two uninterrupted runs differ, and
    # the difference grows with steps: on an H200 two uninterrupted runs differed by 2.1e-3 relative in the test
    # loss of epoch 2, and the resumed run's epoch 3 by 6e-4. The epochs and the schedule must match exactly.
    # On the CPU, tests/test_train.py asks for bit-equal weights and metrics.
    for a, b in zip(metrics(tmp_path / "full"), metrics(tmp_path / "resumed"), strict=True):
        assert a.keys() == b.keys() and a["epoch"] == b["epoch"] and a["lr"] == b["lr"]
        for k in ("train_loss", "test_loss"):
            assert a[k] == pytest.approx(b[k], rel=1e-2), k
        assert abs(a["test_acc"] - b["test_acc"]) <= 2 / 64  # a prediction or two may flip
