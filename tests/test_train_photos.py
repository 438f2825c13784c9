"""The training script on a folder of real photos (JPEG crops of scikit-image's photographs, each of its own size):
streamed through ImageFolder -> augpipe.collate -> DataLoader -> Pipeline, tested on a resize and centre crop or
on test-time crops, resumed exactly, and learning."""
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import augpipe as A
import augpipe.io
from training import checkpoint
from training.data import load_dataset
from training.photos import make_photo_folder
from test_train import metrics, same_weights
from training.train import (IMAGENET_MEAN, IMAGENET_STD, Dist, build_parser, build_pipelines, evaluate, run,
                            eval_loader, train_loader)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """8 classes of 5 photos, 40 to 72 pixels a side: 32 for training and 8 for testing, 4 steps of 8 an epoch."""
    return make_photo_folder(tmp_path_factory.mktemp("photos"), per_class=5, min_side=40, max_side=72, split=True)


def flags(root):
    return ["--dataset", "folder", "--data-dir", str(root), "--image-size", "24", "--widths", "8", "16",
            "--batch-size", "8", "--no-progress", "--seed", "1"]


# Test-time ten crops at two scales, so that the resumed and the multi-worker runs score through them too.
TTA = ["--tta", "tencrop", "--tta-scales", "24", "30"]


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return out, run(flags(photos) + TTA + ["--epochs", "2", "--out", str(out)])


def test_photos_are_read_from_disk_each_epoch_at_their_own_sizes(photos, tmp_path, monkeypatch):
    """No decode up front and no squashing: every epoch reads each file once, and the DataLoader's batches pack
    the photos at the sizes of the files."""
    read = []

    def counting(path):
        read.append(path)
        return A.read_image(path)

    monkeypatch.setattr(augpipe.io, "read_image", counting)
    args = build_parser().parse_args(flags(photos))
    splits = load_dataset("folder", photos)
    assert not read
    images, labels = next(iter(train_loader(splits.train, args, Dist())))
    assert isinstance(images, A.PackedImages) and len(images) == 8
    sizes = [Image.open(path).size[::-1] for path in read]  # (H, W) of the files read, in the batch's order
    assert images.image_sizes == sizes and len(set(sizes)) > 1
    assert labels.tolist() == [dict(splits.train.folder.samples)[path] for path in read]
    read.clear()
    run(flags(photos) + ["--epochs", "2", "--out", str(tmp_path)])
    assert sorted(read) == sorted(2 * [p for p, _ in splits.train.folder.samples + splits.test.folder.samples])


def test_recipe_and_test_path_ops(photos):
    """The ImageNet recipe from each photo's own size; tested on Resize(round(24 * 256 / 224)) + CenterCrop(24),
    or on the ten crops of each --tta scale; ImageNet's channel statistics."""
    splits = load_dataset("folder", photos)
    train, evals = build_pipelines(build_parser().parse_args(flags(photos)), splits, Dist())
    assert [type(n).__name__ for n in train.nodes] == ["RandomResizedCrop", "HorizontalFlip", "Brightness",
                                                       "Contrast", "Normalize", "RandomApply", "LabelSmoothing"]
    assert train.nodes[0].size == (24, 24) and train.nodes[0].antialias
    [test] = evals
    assert [type(n).__name__ for n in test.nodes] == ["Resize", "CenterCrop", "Normalize"]
    assert test.nodes[0].shorter == 27 and test.nodes[0].antialias and test.nodes[1].size == (24, 24)
    assert test.nodes[2].mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert test.nodes[2].std.flatten().tolist() == pytest.approx(IMAGENET_STD)
    _, evals = build_pipelines(build_parser().parse_args(flags(photos) + TTA), splits, Dist())
    assert [[type(n).__name__ for n in p.nodes] for p in evals] == [["Resize", "TenCrop", "Normalize"]] * 2
    assert [p.nodes[0].shorter for p in evals] == [24, 30] and {p.nodes[1].size for p in evals} == {(24, 24)}
    none = build_parser().parse_args(flags(photos) + ["--augment", "none"])
    assert [type(n).__name__ for n in build_pipelines(none, splits, Dist())[0].nodes] == [
        "Resize", "CenterCrop", "Normalize", "LabelSmoothing"]


def test_the_test_path_matches_pil_resize_and_centre_crop(photos):
    """Each test photo as PIL gives it: the shorter side resized to 27 (bilinear, averaging when it shrinks), the
    longer in proportion, then the central 24x24 window (top = round((H - 24) / 2))."""
    splits = load_dataset("folder", photos)
    _, [test] = build_pipelines(build_parser().parse_args(flags(photos)), splits, Dist())
    images, _ = next(iter(eval_loader(splits.test, build_parser().parse_args(flags(photos)), Dist())))
    assert isinstance(images, A.PackedImages)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = test(images) * std + mean  # (8, 3, 24, 24) back on the [0, 1] scale
    for i, index in enumerate(splits.test.indices):
        photo = Image.open(splits.test.folder.samples[index][0]).convert("RGB")
        w, h = photo.size
        size = (27, int(27 * h / w)) if w <= h else (int(27 * w / h), 27)  # PIL's (width, height)
        resized = np.asarray(photo.resize(size, Image.BILINEAR), dtype=np.float64) / 255
        top, left = round((size[1] - 24) / 2), round((size[0] - 24) / 2)
        expected = torch.from_numpy(resized[top:top + 24, left:left + 24].transpose(2, 0, 1))
        diff = (out[i].double() - expected).abs() * 255  # PIL rounds to uint8: up to half a level
        assert diff.mean() < 0.5 and diff.max() < 1.5, f"test photo {i}"


def test_tta_on_photos_scores_each_photo_as_a_loop_over_photos_and_views(photos, reference):
    """The packed test batch through both scales' ten crops, against each photo alone through the same
    Pipelines, its 20 views' softmaxes averaged here."""
    _, result = reference
    args = build_parser().parse_args(flags(photos) + TTA)
    splits = load_dataset("folder", photos)
    _, evals = build_pipelines(args, splits, Dist())
    loss, acc = evaluate(result.model, evals, eval_loader(splits.test, args, Dist()), Dist())
    assert (loss, acc) == (result.history[-1]["test_loss"], result.history[-1]["test_acc"])
    right, nll = 0, 0.0
    with torch.no_grad():
        for image, label in splits.test:
            views = torch.cat([pipe(image) for pipe in evals])  # one image: (10, 3, 24, 24) per scale
            assert views.shape == (20, 3, 24, 24)
            probs = torch.softmax(result.model(views).double(), 1).mean(0)
            right += int(probs.argmax() == label)
            nll -= probs[label].log().item()
    assert acc == right / 8 and loss == pytest.approx(nll / 8, rel=1e-5)


def test_workers_change_nothing_and_a_resume_after_kill_9_is_exact(photos, reference, tmp_path):
    out, result = reference
    two = run(flags(photos) + TTA + ["--epochs", "2", "--out", str(tmp_path / "two"), "--workers", "2"])
    assert same_weights(two.model.state_dict(), result.model.state_dict())
    assert metrics(tmp_path / "two") == metrics(out)
    assert metrics(out)[-1]["tta"] == "tencrop" and metrics(out)[-1]["tta_scales"] == [24, 30]
    # 4 steps per epoch: die at step 6, in the middle of epoch 2, after epoch 1's checkpoint was written.
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "training.train", *flags(photos), *TTA, "--epochs", "2", "--out", str(killed),
           "--workers", "2", "--kill-after-steps", "6"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint.load(killed / "checkpoint.pt")["epoch"] == 1 and len(metrics(killed)) == 1
    resumed = run(["--out", str(killed), "--resume", "--workers", "2", "--no-progress"])
    assert metrics(killed) == metrics(out)
    assert same_weights(resumed.model.state_dict(), result.model.state_dict())


def test_a_scale_smaller_than_the_crop_is_refused_before_any_folder(photos, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(flags(photos) + ["--out", str(tmp_path / "run"), "--tta", "fivecrop", "--tta-scales", "30", "20"])
    assert ("argument --tta-scales: 20 is smaller than the 24x24 crops (--image-size); use 24 or more"
            in capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_it_learns_the_photographs(tmp_path):
    """One class per photograph, crops of it at their own sizes: a 2-stage CNN gets well above chance (1/8) on 16
    held-out photos (the single-folder layout, split 80/20 per class) in 5 epochs."""
    root = make_photo_folder(tmp_path / "photos", per_class=10, min_side=40, max_side=72)
    r = run(["--dataset", "folder", "--data-dir", str(root), "--image-size", "24", "--widths", "8", "16",
             "--batch-size", "8", "--no-progress", "--epochs", "5", "--mix", "0", "--label-smoothing", "0",
             "--lr", "0.1", "--out", str(tmp_path / "run")])
    assert r.history[-1]["test_acc"] > 0.5
