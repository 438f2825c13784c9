"""Datasets: digits against scikit-learn and PIL, CIFAR-10 and folder loaders on small files made here."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training.data import (CIFAR10_CLASSES, PhotoFolder, channel_stats, load_cifar10, load_dataset,
                           load_digits, load_image_folder, open_image_folder, stratified_split)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_split_sizes_types_and_stratification(digits):
    assert len(digits.train) + len(digits.test) == 1797
    assert len(digits.test) == 359  # sum over classes of round(0.2 * n_c)
    x, y = digits.train[0]
    assert x.dtype == torch.uint8 and x.shape == (1, 32, 32) and isinstance(y, int)
    assert digits.num_classes == 10 and digits.channels == 1 and digits.image_size == (32, 32)
    counts = torch.bincount(digits.test.labels, minlength=10)
    total = torch.bincount(torch.cat([digits.train.labels, digits.test.labels]), minlength=10)
    assert torch.equal(counts, (0.2 * total.double()).round().long())
    assert int(digits.train.images.max()) == 255 and int(digits.train.images.min()) == 0


def test_digits_split_is_fixed_and_disjoint(digits):
    again = load_digits()
    assert torch.equal(again.test.images, digits.test.images)
    train, test = stratified_split(torch.tensor([0, 1] * 50), 0.2, seed=0)
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 100
    # No test image is a copy of a training image (the split is over distinct samples).
    flat_train = {bytes(t.numpy()) for t in digits.train.images}
    assert sum(bytes(t.numpy()) in flat_train for t in digits.test.images) < 5


def test_digits_pixels_match_sklearn_upsampled_with_pil():
    from sklearn.datasets import load_digits as sk
    d = sk()
    ours = load_digits(image_size=32, test_fraction=0.5, split_seed=1)
    # Find sklearn image 0 via the labels/pixels: rebuild every image with PIL's bilinear resize and compare the set.
    ref = np.stack([np.asarray(Image.fromarray((img / 16).astype(np.float32), mode="F").resize((32, 32),
                   Image.BILINEAR)) for img in d.images[:50]])
    ref = np.clip(np.round(ref * 255), 0, 255).astype(np.int64)
    all_ours = torch.cat([ours.train.images, ours.test.images]).squeeze(1).long().numpy()
    for r in ref:
        assert np.abs(all_ours - r).reshape(len(all_ours), -1).max(1).min() <= 1


def test_dataloader_batches_are_uint8_bchw(digits):
    images, labels = next(iter(DataLoader(digits.train, batch_size=16)))
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 32, 32)
    assert labels.dtype == torch.int64 and labels.shape == (16,)


def test_channel_stats_against_numpy():
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(x)
    a = x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, a.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, a.transpose(1, 0, 2, 3).reshape(3, -1).std(1, ddof=1), rtol=1e-12)


def write_cifar(root, n=4):
    """A CIFAR-10 folder in the real format with n images per batch; returns the images it wrote."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = (data, labels)
    return written


def test_cifar10_reads_the_pickle_layout(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    splits = load_cifar10(tmp_path)  # the parent folder works too
    assert len(splits.train) == 20 and len(splits.test) == 4 and splits.classes == CIFAR10_CLASSES
    data, labels = written["data_batch_2"]
    # Row-major 3072 = 3 x 32 x 32 (R plane, G plane, B plane), as the CIFAR-10 page describes.
    assert torch.equal(splits.train.images[4, 1, 0, :], torch.from_numpy(data[0, 1024:1056]))
    assert splits.train.labels[4:8].tolist() == labels
    assert load_dataset("cifar10", tmp_path / "cifar-10-batches-py").test.images.shape == (4, 3, 32, 32)


def test_cifar10_missing_or_malformed_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_cifar10: .*nowhere is not a directory; expected .*data_batch_1"):
        load_cifar10(tmp_path / "nowhere")
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*data_batch_3; expected .*test_batch"):
        load_cifar10(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 python batch"):
        load_cifar10(tmp_path / "c")


def write_folder(root, classes=("cat", "dog"), n=5, size=(10, 12), mode="RGB"):
    rng = np.random.default_rng(1)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_image_folder_single_tree_is_split_and_resized(tmp_path):
    write_folder(tmp_path, n=5)
    splits = load_image_folder(tmp_path, image_size=16)
    assert splits.classes == ("cat", "dog") and len(splits.train) == 8 and len(splits.test) == 2
    assert splits.train.images.shape[1:] == (3, 16, 16) and splits.train.images.dtype == torch.uint8
    assert torch.bincount(splits.test.labels).tolist() == [1, 1]


def test_image_folder_train_test_layout_and_grayscale_pixels(tmp_path):
    write_folder(tmp_path / "train", n=2, size=(8, 8), mode="L")
    write_folder(tmp_path / "test", n=1, size=(8, 8), mode="L")
    splits = load_image_folder(tmp_path, image_size=8)
    assert len(splits.train) == 4 and len(splits.test) == 2 and splits.channels == 1
    expected = np.array(Image.open(tmp_path / "train" / "dog" / "1.png"))
    assert torch.equal(splits.train.images[3, 0], torch.from_numpy(expected))
    assert splits.train.labels.tolist() == [0, 0, 1, 1]


def test_image_folder_scales_16_bit_grayscale_to_8_bit(tmp_path):
    """PIL's convert("L") clips a 16-bit image at 255; a 16-bit PNG's 0..65535 must become 0..255."""
    ramp = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)  # 0 .. 63000
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(ramp).save(tmp_path / c / f"{i}.png")  # 16-bit PNG: PIL reads it as mode I;16 or I
    splits = load_image_folder(tmp_path, image_size=8, test_fraction=0.5)
    expected = torch.from_numpy(np.rint(ramp * (255 / 65535)).astype(np.uint8))
    assert torch.equal(splits.train.images[0, 0], expected)
    assert len(expected.unique()) > 50


def test_image_folder_errors_name_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_image_folder: .*missing is not a directory; expected ROOT/<class>"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no class sub-folders; expected ROOT/<class>/<image>"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read image .*x.png"):
        load_image_folder(tmp_path / "bad")
    write_folder(tmp_path / "mismatch" / "train")
    write_folder(tmp_path / "mismatch" / "test", classes=("cat", "cow"))
    with pytest.raises(ValueError, match=r"has classes \['cat', 'cow'\] but the train folder has \['cat', 'dog'\]"):
        load_image_folder(tmp_path / "mismatch")


def test_load_dataset_validates_name_and_dir():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of digits, cifar10, folder"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match=r"dataset 'cifar10' needs a data directory \(--data-dir\)"):
        load_dataset("cifar10")


def test_open_image_folder_reads_each_photo_at_its_own_size_as_rgb(tmp_path):
    """The folder the training script streams: nothing decoded up front, each item the file's own pixels and size
    (grayscale repeated into three channels, alpha dropped, as PIL's convert("RGB")), the split of digits."""
    rng = np.random.default_rng(2)
    sizes = [(10, 12), (17, 9), (8, 8), (21, 14), (13, 11)]  # (width, height)
    for c, mode in (("a", "L"), ("b", "RGBA"), ("c", "RGB")):
        (tmp_path / c).mkdir()
        for i, (w, h) in enumerate(sizes):
            shape = (h, w) if mode == "L" else (h, w, len(mode))
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / c / f"{i}.png")
    splits = load_dataset("folder", tmp_path)
    assert isinstance(splits.train, PhotoFolder) and splits.streamed and splits.image_size is None
    assert splits.classes == ("a", "b", "c") and splits.channels == 3
    train, test = stratified_split(torch.tensor([0] * 5 + [1] * 5 + [2] * 5), 0.2, seed=0)
    assert splits.train.indices == train.tolist() and splits.test.indices == test.tolist()
    assert splits.test.labels.tolist() == [0, 1, 2]
    for dataset in (splits.train, splits.test):
        for j, i in enumerate(dataset.indices):
            image, label = dataset[j]
            path = tmp_path / "abc"[i // 5] / f"{i % 5}.png"
            expected = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
            assert label == i // 5 and image.dtype == torch.uint8
            assert torch.equal(image, torch.from_numpy(np.ascontiguousarray(expected)))
    part = splits.train.subset(torch.tensor([3, 0]))
    assert part.indices == [splits.train.indices[3], splits.train.indices[0]]
    assert torch.equal(part[1][0], splits.train[0][0])


def test_open_image_folder_train_test_layout_and_errors(tmp_path):
    write_folder(tmp_path / "tt" / "train", n=3)
    write_folder(tmp_path / "tt" / "test", n=1)
    splits = open_image_folder(tmp_path / "tt")
    assert len(splits.train) == 6 and len(splits.test) == 2 and splits.test.labels.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match=r"open_image_folder: .*missing is not a directory; expected ROOT/"):
        open_image_folder(tmp_path / "missing")
    write_folder(tmp_path / "mismatch" / "train")
    write_folder(tmp_path / "mismatch" / "test", classes=("cat", "cow"))
    with pytest.raises(ValueError, match=r"has classes \['cat', 'cow'\] but the train folder has \['cat', 'dog'\]"):
        open_image_folder(tmp_path / "mismatch")
    write_folder(tmp_path / "few", n=2)
    with pytest.raises(ValueError, match=r"too few images \(4\) to hold out 20% per class"):
        open_image_folder(tmp_path / "few")
