"""The training script end to end on a tiny digits subset: outputs, exact resume (also after kill -9), errors."""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training import checkpoint
from training.data import channel_stats, load_digits
from training.train import average_views, build_parser, lr_factor, main, resume_config, run, seed_for

ROOT = Path(__file__).resolve().parents[1]
# Tiny but real: 192 training and 64 test digits at 16x16, a 2-stage CNN, 6 steps per epoch.
TINY = ["--limit-train", "192", "--limit-test", "64", "--image-size", "16", "--widths", "8", "16",
        "--batch-size", "32", "--no-progress", "--seed", "3"]


def metrics(out):
    """metrics.jsonl without the wall-clock field, which legitimately differs between runs."""
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run that the resume tests must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    result = run(TINY + ["--epochs", "3", "--out", str(out)])
    return out, result


def test_end_to_end_outputs(reference):
    out, result = reference
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"epoch", "train_loss", "test_loss", "test_acc", "seconds"} <= r.keys()
        assert r["tta"] == "none" and r["tta_scales"] is None
        assert 0.0 <= r["test_acc"] <= 1.0 and r["seconds"] > 0
        assert r["test_acc"] * 64 == pytest.approx(round(r["test_acc"] * 64))  # a fraction of 64 images
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["test_loss"] < rows[0]["test_loss"]
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and len(state["ranks"]) == 1 and "_extra_state" in state["ranks"][0]["pipeline"]
    assert same_weights(state["model"], result.model.state_dict())
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temporaries behind


def test_same_seed_reproduces_and_other_seed_differs(reference, tmp_path):
    out, _ = reference
    again = run(TINY + ["--epochs", "1", "--out", str(tmp_path / "a")])
    assert again.history[0]["train_loss"] == metrics(out)[0]["train_loss"]
    other = run([*TINY[:-1], "4", "--epochs", "1", "--out", str(tmp_path / "b")])
    assert other.history[0]["train_loss"] != again.history[0]["train_loss"]


def test_it_learns(tmp_path):
    # Without augmentation a 5k-parameter CNN gets well above chance (10%) on 64 held-out digits in 60 steps.
    r = run(TINY + ["--epochs", "5", "--out", str(tmp_path), "--widths", "16", "32", "--batch-size", "16",
                    "--lr", "0.1", "--augment", "none"])
    assert r.history[-1]["test_acc"] > 0.5


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path, capsys):
    out, result = reference
    assert main(TINY + ["--epochs", "3", "--out", str(tmp_path)]) == 0
    resumed = run(TINY + ["--epochs", "3", "--out", str(tmp_path), "--resume"])
    assert metrics(tmp_path) == metrics(out)
    assert same_weights(resumed.model.state_dict(), result.model.state_dict())
    assert "all 3 epochs already done, nothing to train" in capsys.readouterr().err
    run(TINY + ["--epochs", "1", "--out", str(tmp_path)])  # without --resume: said before it happens
    assert "holds a run already; starting afresh replaces it" in capsys.readouterr().err


def test_resume_after_kill_9_mid_epoch_is_exact(reference, tmp_path):
    out, result = reference
    # 6 steps per epoch: die at step 9, in the middle of epoch 2, after epoch 1's checkpoint was written.
    cmd = [sys.executable, "-m", "training.train", *TINY, "--epochs", "3", "--out", str(tmp_path),
           "--kill-after-steps", "9"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint.load(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert len(metrics(tmp_path)) == 1
    resumed = run(TINY + ["--out", str(tmp_path), "--resume"])  # settings come from the checkpoint
    assert metrics(tmp_path) == metrics(out)
    assert same_weights(resumed.model.state_dict(), result.model.state_dict())


def test_workers_change_nothing_and_a_resume_with_workers_is_exact(tmp_path):
    """--workers is a runtime flag: it must not move the global stream that dropout draws from (each DataLoader
    iterator draws its workers' seed, from the global generator unless the loader has its own)."""
    tiny = TINY + ["--epochs", "2", "--dropout", "0.3"]
    plain = run(tiny + ["--out", str(tmp_path / "plain")])
    workers = run(tiny + ["--out", str(tmp_path / "workers"), "--workers", "1"])
    assert same_weights(plain.model.state_dict(), workers.model.state_dict())
    cmd = [sys.executable, "-m", "training.train", *tiny, "--workers", "1", "--out", str(tmp_path / "killed"),
           "--kill-after-steps", "9"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    resumed = run(TINY + ["--out", str(tmp_path / "killed"), "--resume", "--workers", "1"])
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "plain")
    assert same_weights(resumed.model.state_dict(), plain.model.state_dict())


def test_resume_without_checkpoint_starts_fresh(reference, tmp_path):
    out, _ = reference
    run(TINY + ["--epochs", "1", "--out", str(tmp_path), "--resume"])
    first, ref = metrics(tmp_path)[0], metrics(out)[0]
    assert [first[k] for k in ("train_loss", "test_loss", "test_acc")] == [
        ref[k] for k in ("train_loss", "test_loss", "test_acc")]  # "lr" differs: the schedule spans --epochs


def test_resume_rejects_conflicting_flags(reference, tmp_path):
    run(TINY + ["--epochs", "1", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"other settings: --lr 0.5 \(checkpoint: 0.2\).*Drop these flags"):
        run(TINY + ["--out", str(tmp_path), "--resume", "--lr", "0.5"])


def test_resume_may_change_the_test_time_augmentation(tmp_path):
    """--tta and --tta-scales change no weight: a resume takes them as typed, else from the checkpoint."""
    run(TINY + ["--epochs", "1", "--out", str(tmp_path)])
    run(TINY + ["--out", str(tmp_path), "--resume", "--tta", "fivecrop", "--tta-scales", "16", "18"])  # no conflict

    def resumed(*typed):
        argv = ["--resume", *typed]
        args = build_parser().parse_args(argv)
        saved = dict(vars(build_parser().parse_args(["--lr", "0.5", "--tta", "tencrop", "--tta-scales", "36", "40"])))
        from training.train import explicit_flags
        resume_config(saved, args, explicit_flags(argv), tmp_path / "checkpoint.pt")
        return args.lr, args.tta, args.tta_scales

    assert resumed() == (0.5, "tencrop", [36, 40])
    assert resumed("--tta", "fivecrop") == (0.5, "fivecrop", [36, 40])
    assert resumed("--tta-scales", "32") == (0.5, "tencrop", [32])
    assert resumed("--tta", "none") == (0.5, "none", None)


def digits_test_set(model):
    """TINY's test images as the model sees them before any view: float [0, 1] (64, 1, 16, 16), the labels, and the
    Normalize of TINY's 192 training images; the model in eval mode."""
    splits = load_digits(16)
    mean, std = channel_stats(splits.train.images[:192])
    model.eval()
    return splits.test.images[:64].float() / 255, splits.test.labels[:64], mean[0], std[0]


def test_tta_averages_the_softmax_over_every_view_and_changes_no_weight(tmp_path):
    """--tta scores the trained model differently and trains the same weights. The scores are checked against
    loops written here: none is the model on the normalized test images; tencrop pads each image by the crop
    padding (2) as the training crop does, takes the four corner and the centre 16x16 crops of the 20x20 result
    and of its mirror image, and averages the 10 softmaxes."""
    plain = run(TINY + ["--epochs", "2", "--out", str(tmp_path / "none")])
    ten = run(TINY + ["--epochs", "2", "--out", str(tmp_path / "ten"), "--tta", "tencrop"])
    assert same_weights(plain.model.state_dict(), ten.model.state_dict())
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in ten.history]
    assert ten.history[-1]["tta"] == "tencrop" and ten.history[-1]["tta_scales"] == [16]

    x, y, mean, std = digits_test_set(plain.model)
    with torch.no_grad():
        logits = plain.model((x - mean) / std)
        assert plain.history[-1]["test_acc"] == (logits.argmax(1) == y).double().mean().item()
        assert plain.history[-1]["test_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)

        padded = F.pad(x, (2, 2, 2, 2))  # (64, 1, 20, 20), black as the RandomCrop padding
        probs = torch.zeros(64, 10, dtype=torch.float64)
        for image in (padded, padded.flip(-1)):
            for top, left in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2)):
                view = (image[..., top:top + 16, left:left + 16] - mean) / std
                probs += torch.softmax(plain.model(view).double(), 1) / 10
    assert ten.history[-1]["test_acc"] == (probs.argmax(1) == y).double().mean().item()
    assert ten.history[-1]["test_loss"] == pytest.approx(-probs[torch.arange(64), y].log().mean().item(), rel=1e-5)


def test_average_views_is_the_mean_softmax_of_a_loop_over_views():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, 7, generator=g, dtype=torch.float64) * 4
    logits[0, 3] = torch.tensor([300.0, -300.0, 0, 0, 0, 0, 0])  # one view certain: others underflow in it
    labels = torch.tensor([1, 0, 2, 3, 4, 6])
    from training.losses import soft_cross_entropy
    scores = average_views(logits)
    for b in range(6):
        mean = sum(torch.softmax(logits[b, v], 0) for v in range(10)) / 10
        torch.testing.assert_close(scores[b].exp(), mean, rtol=1e-12, atol=1e-15)
        assert scores[b].argmax() == mean.argmax()
        nll = -mean[labels[b]].log()
        torch.testing.assert_close(soft_cross_entropy(scores[b:b + 1], labels[b:b + 1]), nll, rtol=1e-12, atol=0)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(average_views(logits[:, :1]), torch.log_softmax(logits[:, 0], 1), rtol=0, atol=1e-15)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage, not a zip archive")
    with pytest.raises(ValueError, match=r"checkpoint.load: .*checkpoint.pt is corrupt or not a torch checkpoint"):
        run(TINY + ["--out", str(tmp_path), "--resume"])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"is not a training checkpoint written by training.train"):
        checkpoint.load(tmp_path / "checkpoint.pt")


def test_truncated_checkpoint_is_a_clear_error(reference, tmp_path):
    out, _ = reference
    data = (out / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"is corrupt or not a torch checkpoint"):
        checkpoint.load(tmp_path / "checkpoint.pt")


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "f.bin"
    checkpoint.atomic_write(path, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(path, failing)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_gives_the_mode_a_plain_write_gives(tmp_path):
    """mkstemp makes 0600 files; a checkpoint, metrics.jsonl or plot should read like any file the user writes."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    checkpoint.atomic_write(tmp_path / "atomic", lambda f: f.write(b"x"))
    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode


def test_mlp_selu_fractional_flags_run(tmp_path):
    r = run(TINY + ["--epochs", "1", "--out", str(tmp_path / "m"), "--arch", "mlp", "--activation", "selu",
                    "--init", "lecun_normal", "--dropout", "0.1", "--augment", "none"])
    assert r.history[0]["test_acc"] > 0.1
    r = run(TINY + ["--epochs", "1", "--out", str(tmp_path / "f"), "--pooling", "fractional", "--mix", "0"])
    assert [type(m).__name__ for m in r.model.modules() if "Pool" in type(m).__name__] == ["FractionalMaxPool2d"] * 2
    assert 0 < r.history[0]["train_loss"] < 2 * math.log(10)  # a mean cross-entropy near ln 10, not NaN or a sum


def test_bad_arguments_are_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(TINY + ["--out", str(tmp_path / "run"), "--batch-size", "1000"])
    err = capsys.readouterr().err
    assert "error: argument --batch-size: 1000 is more than the 192 training images; use --batch-size 192" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        run(["--activation", "swish"])
    for flags, says in ((["--tta", "fivecrop", "--tta-scales", "11"], "argument --tta-scales: 11 leaves images of "
                         "11x11, 15x15 after the --crop-padding 2, smaller than the 16x16 crops"),
                        (["--tta-scales", "20"], "argument --tta-scales: only with --tta fivecrop or tencrop")):
        with pytest.raises(SystemExit):
            run(TINY + ["--out", str(tmp_path / "run"), *flags])
        assert says in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


def image_folder(root, per_class):
    """ROOT/<class>/<image>.png: two classes of small RGB images, as load_image_folder reads them."""
    from PIL import Image
    for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 12), tuple(v + i for v in colour)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_default_batch_on_a_small_folder_is_refused_in_one_line_before_any_folder(tmp_path):
    # 2 x 25 images, 20% held out per class: 40 training images, fewer than the default batch of 64.
    data = image_folder(tmp_path / "data", 25)
    out = tmp_path / "runs" / "small"
    proc = subprocess.run([sys.executable, "-m", "training.train", "--dataset", "folder", "--data-dir", str(data),
                           "--out", str(out), "--device", "cpu", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("python -m training.train: error: argument --batch-size: 64 is more than the 40 training images; "
                    "use --batch-size 40 or less, or more images")
    assert not (tmp_path / "runs").exists()


def test_batch_size_check_counts_per_process():
    from training.train import UsageError, check_batch_size
    check_batch_size(40, 40, 1)
    check_batch_size(42, 41, 2)  # DistributedSampler pads 41 images to 21 per process
    with pytest.raises(UsageError, match=r"44 is more than the 41 training images \(22 per process, which gets 21"
                                         r" of them\); use --batch-size 42 or less"):
        check_batch_size(44, 41, 2)
    with pytest.raises(UsageError, match="--batch-size: 33 must be divisible by the 2 processes"):
        check_batch_size(33, 1000, 2)


@pytest.mark.parametrize("flag, value, says", [
    ("--epochs", "0", "must be an int >= 1, got 0"), ("--label-smoothing", "-0.5", "must be a number >= 0 and < 1"),
    ("--mix", "-1", "must be a number >= 0 and <= 1"), ("--weight-decay", "-1", "must be a number >= 0"),
    ("--warmup", "-1", "must be a number >= 0"), ("--limit-test", "0", "must be an int >= 1"),
    ("--lr", "nan", "must be a number >= 0, got nan"),
])
def test_out_of_range_flags_are_refused_before_anything_runs(flag, value, says, tmp_path, capsys):
    """Each was taken silently (no epochs, smoothing or decay of the wrong sign) or failed late and unclearly."""
    with pytest.raises(SystemExit):
        run(TINY + ["--out", str(tmp_path), flag, value])
    assert f"argument {flag}: {says}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_lr_schedule_and_seeds():
    f = [lr_factor(s, 4, 20) for s in range(20)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0] and f[4] == 1.0 and f[-1] == pytest.approx(1 / 16)
    assert all(b <= a for a, b in zip(f[3:], f[4:]))
    assert seed_for(0, "augment", 0) != seed_for(0, "augment", 1) != seed_for(1, "augment", 0)
    # the same number in every process and on every run (a resumed run must draw what the first run drew)
    assert seed_for(5, "order") == 7367472053990595707 and seed_for(0, "augment", 0) == 8421271896127959284


def test_console_entry_point_help():
    proc = subprocess.run([sys.executable, "-m", "training.train", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--out", "--epochs", "--seed", "--resume", "--device", "--activation", "--init", "--dropout",
                 "--dataset", "--data-dir", "--compile", "--tta", "--tta-scales"):
        assert flag in proc.stdout
