"""collate and DeviceLoader: uint8 batches from PIL / numpy / tensors, augmented after the DataLoader."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import augpipe as A


def hwc(seed, h=6, w=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("convert", [lambda a: Image.fromarray(a), lambda a: a,
                                     lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous()])
def test_collate_stacks_uint8_chw_without_float(convert):
    arrays = [hwc(i) for i in range(3)]
    images, labels = A.collate([(convert(a), i) for i, a in enumerate(arrays)])
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 6, 5)
    for i, a in enumerate(arrays):
        assert torch.equal(images[i], torch.from_numpy(a).permute(2, 0, 1))
    assert labels.tolist() == [0, 1, 2]


def test_collate_grayscale_pil_gets_one_channel():
    images, _ = A.collate([(Image.fromarray(hwc(0)[..., 0]), 0)])
    assert images.shape == (1, 1, 6, 5)


def test_collate_dicts_pad_boxes_and_keypoints_with_nan():
    samples = [{"image": hwc(0), "label": 1, "mask": np.ones((6, 5), np.int64), "boxes": [[0, 0, 2, 2]],
                "keypoints": [[1, 1], [2, 2]]},
               {"image": hwc(1), "label": 0, "mask": np.zeros((6, 5), np.int64),
                "boxes": np.zeros((0, 4)), "keypoints": [[3, 3], [4, 4]]}]
    batch = A.collate(samples)
    assert set(batch) == {"images", "labels", "masks", "boxes", "keypoints"}
    assert batch["boxes"].shape == (2, 1, 4) and torch.isnan(batch["boxes"][1]).all()
    assert batch["boxes"][0].tolist() == [[0, 0, 2, 2]]
    assert batch["masks"].shape == (2, 6, 5) and batch["masks"].dtype == torch.int64
    out = A.Pipeline(A.HorizontalFlip(p=1.0), num_classes=2)(**batch)
    assert out["keypoints"][0].tolist() == [[4.0, 1.0], [3.0, 2.0]]


def test_collate_mixed_sizes_packs_instead_of_stacking():
    images, labels = A.collate([(hwc(0), 0), (hwc(1, h=7), 1)])
    assert isinstance(images, A.PackedImages) and images.image_sizes == [(6, 5), (7, 5)]
    assert torch.equal(images[1], torch.from_numpy(hwc(1, h=7)).permute(2, 0, 1)) and labels.tolist() == [0, 1]


def test_collate_rejects_float_images():
    with pytest.raises(TypeError, match="HW or HWC uint8"):
        A.collate([(hwc(0).astype(np.float32), 0)])


class Squares(Dataset):
    """Each image is filled with its own index, so order and identity survive the trip."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return np.full((4, 4, 3), i, dtype=np.uint8), i % 3


def test_device_loader_with_two_workers_runs_the_pipeline_after_collate():
    loader = DataLoader(Squares(), batch_size=4, num_workers=2, collate_fn=A.collate)
    pipe = A.Pipeline(A.Brightness((2.0, 2.0)), seed=0, num_classes=3)
    device_loader = A.DeviceLoader(loader, pipe, device="cpu")
    assert len(device_loader) == 3
    seen = []
    for images, targets in device_loader:
        assert images.dtype == torch.float32 and targets.shape[1] == 3
        seen += (images[:, 0, 0, 0] * 255 / 2).round().long().tolist()  # brightness x2 of value i / 255
        torch.testing.assert_close(targets.sum(1), torch.ones(len(images)))
    assert seen == list(range(10))


def test_device_loader_with_a_distributed_sampler_reshuffles_per_epoch():
    sampler = DistributedSampler(Squares(), num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = DataLoader(Squares(), batch_size=5, sampler=sampler, collate_fn=A.collate)
    device_loader = A.DeviceLoader(loader, A.Pipeline(num_classes=3), device="cpu")
    orders = []
    for epoch in (0, 1):
        device_loader.set_epoch(epoch)
        seen = [round(v * 255) for images, _ in device_loader for v in images[:, 0, 0, 0].tolist()]
        assert seen == list(sampler)  # this rank's share, in the sampler's order for the epoch
        orders.append(seen)
    assert len(orders[0]) == 5 and orders[0] != orders[1]


def test_per_sample_use_inside_a_dataset():
    pipe = A.Pipeline(A.HorizontalFlip(p=1.0), seed=0)
    image = torch.from_numpy(hwc(0)).permute(2, 0, 1)
    out = pipe(image)
    assert out.shape == (3, 6, 5)
    torch.testing.assert_close(out, image.flip(-1).float() / 255)


class Drawn(Dataset):
    """Returns the params its own pipeline drew for each item: a crop offset and a brightness factor."""

    def __init__(self, seed):
        self.pipe = A.Pipeline(A.RandomCrop(8, padding=4), A.Brightness(0.5), seed=seed)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        self.pipe(torch.zeros(3, 8, 8, dtype=torch.uint8))
        crop, brightness = self.pipe.last_params
        return torch.stack([crop["top"][0].double(), crop["left"][0].double(), brightness["factor"][0].double()])


@pytest.mark.parametrize("seed", [None, 0])
def test_a_pipeline_in_dataset_workers_draws_anew_per_worker_and_epoch(seed):
    """Each worker starts as a copy of the pipeline; from one stream they would all draw the same, and every
    epoch's fresh workers would repeat the last. The worker's seed (per worker, per epoch) makes them differ, and
    follows the main process's torch seed, as torch draws in workers do (with the pipeline's seed fixed, the
    run is reproducible)."""
    def epochs(torch_seed):
        torch.manual_seed(torch_seed)
        loader = DataLoader(Drawn(seed), batch_size=1, num_workers=2)  # worker k gets items k, k + 2, ...
        return [torch.cat(list(loader)) for _ in range(2)]

    first, second = epochs(1)
    assert not torch.equal(first[0::2], first[1::2])  # the two workers' draws, item by item
    assert not torch.equal(first, second)
    assert len({tuple(row.tolist()) for row in torch.cat([first, second])}) == 16  # no draw repeats at all
    if seed is not None:  # seed=None seeds the pipeline from the OS, on purpose not reproducible
        again = epochs(1)
        assert torch.equal(again[0], first) and torch.equal(again[1], second)  # reproducible from the torch seed


def test_collate_converts_palette_and_other_modes_to_colours():
    """np.asarray of a "P" image gives palette indices, which brightness or Normalize would treat as colours."""
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    rgb[1, 2] = (10, 200, 30)
    photo = Image.fromarray(rgb, "RGB")
    for mode, channels in (("P", 3), ("CMYK", 3), ("YCbCr", 3), ("1", 1), ("LA", 4)):
        images, _ = A.collate([(photo.convert(mode), 0)])
        expected = np.asarray(photo.convert(mode).convert({"1": "L", "LA": "RGBA"}.get(mode, "RGB")))
        assert images.shape == (1, channels, 4, 5), mode
        assert np.array_equal(images[0].permute(1, 2, 0).numpy().squeeze(-1) if channels == 1
                              else images[0].permute(1, 2, 0).numpy(), expected), mode
    images, _ = A.collate([(photo.convert("P"), 0)])
    assert images[0, :, 0, 0].tolist() == [255, 0, 0]  # the colour, not its palette index
    with pytest.raises(TypeError, match="PIL mode 'I;16' holds 16-bit or float pixels"):
        A.collate([(photo.convert("L").convert("I;16"), 0)])


@pytest.mark.parametrize("samples, error, match", [
    ([{"image": hwc(0), "keypoints": [[10, 20, 2]]}], ValueError,
     r"keypoints must be \(N, 2\) per sample, sample 0 has shape \(1, 3\); drop the visibility column"),
    ([{"image": hwc(0), "boxes": np.zeros((2, 6))}], ValueError, r"boxes must be \(N, 4\) per sample"),
    ([{"image": hwc(0), "label": 0}, {"image": hwc(1), "label": 1, "boxes": np.zeros((1, 4))}], ValueError,
     r"sample 0 is keys \['image', 'label'\], sample 1 is keys \['boxes', 'image', 'label'\]"),
    ([{"image": hwc(0), "label": 0}, (hwc(1), 1)], ValueError, r"sample 1 is an \(image, label\) pair"),
    ([(hwc(0), "cat"), (hwc(1), "dog")], TypeError, r"labels must be numbers.*\['str'\]"),
])
def test_collate_refuses_what_it_would_scramble_or_drop(samples, error, match):
    """Keypoints with a visibility column were reshaped into wrong rows; a later sample's extra keys were dropped."""
    with pytest.raises(error, match=match):
        A.collate(samples)


def test_set_epoch_reaches_a_distributed_sampler_inside_a_batch_sampler():
    from torch.utils.data import BatchSampler
    sampler = DistributedSampler(Squares(), num_replicas=2, rank=0, shuffle=True, seed=0)
    loader = DataLoader(Squares(), batch_sampler=BatchSampler(sampler, 5, drop_last=False), collate_fn=A.collate)
    A.DeviceLoader(loader, A.Pipeline(num_classes=3), device="cpu").set_epoch(5)
    assert sampler.epoch == 5


def dict_batches():
    """Two collated dict batches with every kind of target, as a DataLoader with collate gives them."""
    def sample(i):
        rng = np.random.default_rng(i)
        return {"image": hwc(i), "label": i % 3, "mask": rng.integers(0, 4, (6, 5)),
                "boxes": [[0.5, 1.0, 4.0, 5.0], [1.0, 0.0, 2.5, 3.0]][:1 + i % 2],
                "keypoints": [[1.0, 2.0], [4.5, 0.5]]}
    return [A.collate([sample(i) for i in range(k, k + 3)]) for k in (0, 3)]


def test_device_loader_runs_the_pipeline_on_dict_batches_with_the_same_values():
    batches = dict_batches()
    make = lambda: A.Pipeline(A.HorizontalFlip(), A.RandomCrop(5, padding=1), A.Brightness(0.5),  # noqa: E731
                              seed=3, num_classes=3)
    got = list(A.DeviceLoader(batches, make(), device="cpu"))
    direct = make()
    assert len(got) == 2
    for out, batch in zip(got, batches):
        expected = direct(**batch)
        assert set(out) == {"images", "targets", "masks", "boxes", "keypoints"} == set(expected)
        for key in expected:
            torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0, equal_nan=True)


def test_device_loader_moves_every_tensor_of_a_dict_batch():
    """The meta device stands in for an accelerator: each tensor must reach the pipeline there, with its shape and
    dtype; a CPU tensor bound for the CPU is passed on as it is, not copied."""
    batches = dict_batches()
    seen = []

    def record(**batch):
        seen.append(batch)
        return batch

    assert len(list(A.DeviceLoader(batches, record, device="meta"))) == 2
    for got, batch in zip(seen, batches):
        assert set(got) == set(batch) == {"images", "labels", "masks", "boxes", "keypoints"}
        for key, value in batch.items():
            assert got[key].device.type == "meta", key
            assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
    kept = []
    list(A.DeviceLoader(batches, lambda **batch: kept.append(batch), device="cpu"))
    assert all(kept[i][k] is batches[i][k] for i in range(2) for k in batches[i])
