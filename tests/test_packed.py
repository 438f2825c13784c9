"""PackedImages and the packed collate: images of their own sizes in one buffer, against brute-force references."""
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

import augpipe as A
from augpipe.loader import to_chw_uint8

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def images_of(sizes, channels=3, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return [torch.randn(channels, h, w, generator=g).to(dtype) for h, w in sizes]
    return [torch.randint(0, 256, (channels, h, w), generator=g).to(dtype) for h, w in sizes]


def brute_force_layout(images):
    """Sizes, offsets and the flat pixels written out by hand: sample after sample, CHW."""
    sizes, offsets, flat, at = [], [], [], 0
    for image in images:
        c, h, w = image.shape
        sizes.append([h, w])
        offsets.append(at)
        for ch in range(c):
            for y in range(h):
                flat.extend(image[ch, y].tolist())
        at += c * h * w
    return sizes, offsets, flat


def one_storage(packed):
    """data, sizes and offsets are views into the one buffer."""
    pointer = packed.buffer.untyped_storage().data_ptr()
    return all(t.untyped_storage().data_ptr() == pointer for t in (packed.data, packed.sizes, packed.offsets))


def assert_images_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert torch.equal(g, e)


SIZES = [(5, 7), (1, 1), (12, 3), (4, 9)]


# --------------------------------------------------------------------------------------- pack / unpack
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_pack_unpack_round_trip_is_exact(channels, dtype):
    images = images_of(SIZES, channels, dtype)
    before = [t.clone() for t in images]
    packed = A.PackedImages.pack(images)
    assert len(packed) == 4 and packed.channels == channels and packed.dtype == dtype
    assert packed.device == torch.device("cpu") and packed.data.dtype == dtype
    assert_images_equal(packed.unpack(), before)
    assert_images_equal([packed[i] for i in range(4)], before)
    assert torch.equal(packed[-1], before[-1])
    assert_images_equal(images, before)  # the caller's tensors are untouched


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=6),
       channels=st.sampled_from([1, 2, 3, 4]), dtype=st.sampled_from([torch.uint8, torch.float32, torch.float64,
                                                                       torch.int64, torch.float16]),
       seed=st.integers(0, 2 ** 16))
def test_pack_matches_a_brute_force_layout(sizes, channels, dtype, seed):
    images = images_of(sizes, channels, dtype, seed)
    packed = A.PackedImages.pack(images)
    ref_sizes, ref_offsets, ref_flat = brute_force_layout(images)
    assert packed.sizes.dtype == torch.int64 and packed.offsets.dtype == torch.int64
    assert packed.sizes.tolist() == ref_sizes and packed.offsets.tolist() == ref_offsets
    assert packed.data.tolist() == ref_flat
    assert packed.max_size == (max(h for h, _ in sizes), max(w for _, w in sizes))
    assert packed.image_sizes == [tuple(s) for s in sizes]
    assert_images_equal(packed.unpack(), images)
    assert one_storage(packed)


def test_the_buffer_holds_pixels_then_aligned_sizes_and_offsets():
    packed = A.PackedImages.pack(images_of([(3, 3), (1, 2)], channels=1))  # 11 pixel bytes
    buffer = packed.buffer
    assert buffer.dtype == torch.uint8 and buffer.dim() == 1 and buffer.is_contiguous()
    base = buffer.data_ptr()
    assert packed.data.data_ptr() == base
    assert packed.sizes.data_ptr() - base == 16  # the first multiple of 8 after the 11 pixel bytes
    assert packed.offsets.data_ptr() - base == 16 + 2 * 2 * 8
    assert buffer.numel() == 16 + 3 * 2 * 8 and buffer[11:16].tolist() == [0] * 5
    assert np.frombuffer(buffer[16:].numpy().tobytes(), dtype=np.int64).tolist() == [3, 3, 1, 2, 0, 9]


def test_pack_reads_strided_inputs_and_owns_its_copy():
    base = torch.arange(4 * 5 * 3, dtype=torch.uint8).reshape(4, 5, 3)
    permuted = base.permute(2, 0, 1)  # (3, 4, 5), not contiguous
    expanded = torch.arange(6, dtype=torch.uint8).reshape(1, 2, 3).expand(3, 2, 3)
    packed = A.PackedImages.pack([permuted, expanded])
    assert_images_equal(packed.unpack(), [permuted.contiguous(), expanded.contiguous()])
    packed.data.zero_()
    assert base.sum() == sum(range(60)) and expanded.sum() == 3 * 15  # the inputs do not share the buffer


def test_pack_detaches_from_autograd():
    image = torch.rand(3, 2, 2, requires_grad=True)
    packed = A.PackedImages.pack([image, torch.rand(3, 1, 4)])
    assert not packed.data.requires_grad and torch.equal(packed[0], image.detach())


def test_a_4d_tensor_packs_as_its_samples():
    batch = torch.randint(0, 256, (3, 2, 4, 5), dtype=torch.uint8)
    assert_images_equal(A.PackedImages.pack(batch).unpack(), list(batch))


def test_pack_refuses_bad_lists_naming_what_it_got():
    with pytest.raises(ValueError, match="PackedImages.pack: got no images"):
        A.PackedImages.pack([])
    with pytest.raises(ValueError, match="PackedImages.pack: image 1 has 1 channels and image 0 has 3"):
        A.PackedImages.pack([torch.zeros(3, 2, 2), torch.zeros(1, 2, 2)])
    with pytest.raises(TypeError, match="PackedImages.pack: image 1 is torch.float32 and image 0 is torch.uint8"):
        A.PackedImages.pack([torch.zeros(3, 2, 2, dtype=torch.uint8), torch.zeros(3, 2, 2)])
    with pytest.raises(TypeError, match="PackedImages.pack: image 0 is shape \\(2, 2\\), expected a \\(C, H, W\\)"):
        A.PackedImages.pack([torch.zeros(2, 2)])
    with pytest.raises(TypeError, match="image 0 is a ndarray"):
        A.PackedImages.pack([np.zeros((3, 2, 2))])
    with pytest.raises(ValueError, match="PackedImages.pack: image 1 is 3x0x2"):
        A.PackedImages.pack([torch.zeros(3, 2, 2), torch.zeros(3, 0, 2)])


def test_repr_names_batch_channels_dtype_device_and_size_range():
    text = repr(A.PackedImages.pack(images_of(SIZES)))
    assert text == "PackedImages(B=4, C=3, dtype=torch.uint8, device=cpu, H 1..12, W 1..9)"


def test_indexing_checks_its_range():
    packed = A.PackedImages.pack(images_of(SIZES))
    with pytest.raises(IndexError, match="index 4 is out of range for 4 images"):
        packed[4]
    with pytest.raises(TypeError, match="index with an int"):
        packed[0:2]
    assert torch.equal(packed[np.int64(2)], packed.unpack()[2])


# --------------------------------------------------------------------------------------- plain constructor
def test_the_plain_constructor_copies_and_checks_the_layout():
    images = images_of(SIZES, channels=2, dtype=torch.float32)
    ref_sizes, ref_offsets, ref_flat = brute_force_layout(images)
    data, sizes, offsets = torch.tensor(ref_flat), torch.tensor(ref_sizes), torch.tensor(ref_offsets)
    packed = A.PackedImages(data, sizes, offsets, 2)
    assert_images_equal(packed.unpack(), images)
    assert packed.max_size == (12, 9) and one_storage(packed)
    packed.data.zero_()
    assert data.tolist() == ref_flat  # a copy, not the caller's tensor
    with pytest.raises(ValueError, match="back to back.*expected offsets \\[0, 70, 72, 144\\]"):
        A.PackedImages(data, sizes, offsets + 1, 2)
    with pytest.raises(ValueError, match="216 values, got offsets .* and 215 values"):
        A.PackedImages(data[1:], sizes, offsets, 2)
    with pytest.raises(ValueError, match="sizes must be \\(B, 2\\)"):
        A.PackedImages(data, sizes.T, offsets, 2)
    with pytest.raises(TypeError, match="integer tensors"):
        A.PackedImages(data, sizes.float(), offsets, 2)


# --------------------------------------------------------------------------------------- moving
class CopyCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "copy" in func.__name__:
            self.copies.append((func.__name__, tuple(args[0].shape), args[0].dtype))
        return func(*args, **(kwargs or {}))


def test_to_the_same_device_is_self_and_another_device_is_one_copy_of_the_buffer():
    packed = A.PackedImages.pack(images_of(SIZES, dtype=torch.float32))
    assert packed.to("cpu") is packed and packed.to(torch.device("cpu"), non_blocking=True) is packed
    assert one_storage(packed)
    with CopyCounter() as counter:  # the meta device stands in for a second device on any machine
        moved = packed.to("meta")
    assert counter.copies == [("_to_copy.default", tuple(packed.buffer.shape), torch.uint8)]
    assert moved.device.type == "meta" and moved.dtype == torch.float32 and moved.max_size == (12, 9)
    storage = moved.buffer.untyped_storage()._cdata  # meta storages hold no data: compare the storages themselves
    assert all(t.untyped_storage()._cdata == storage for t in (moved.data, moved.sizes, moved.offsets))
    assert [tuple(t.shape) for t in moved.unpack()] == [(3, h, w) for h, w in SIZES]


def test_pickling_keeps_one_buffer():
    packed = A.PackedImages.pack(images_of(SIZES))
    again = pickle.loads(pickle.dumps(packed))
    assert one_storage(again) and again.image_sizes == packed.image_sizes
    assert_images_equal(again.unpack(), packed.unpack())


@cuda
def test_pin_memory_and_cuda_moves_keep_one_buffer():
    images = images_of(SIZES, dtype=torch.float32)
    packed = A.PackedImages.pack(images)
    assert not packed.is_pinned()
    pinned = packed.pin_memory()
    assert pinned.is_pinned() and one_storage(pinned) and pinned.pin_memory() is pinned
    assert_images_equal(pinned.unpack(), images)
    moved = pinned.to("cuda", non_blocking=True)
    assert moved.device.type == "cuda" and one_storage(moved) and moved.max_size == (12, 9)
    assert moved.to("cuda") is moved
    assert_images_equal([t.cpu() for t in moved.unpack()], images)
    assert moved.sizes.tolist() == [list(s) for s in SIZES]
    on_gpu = A.PackedImages.pack([t.cuda() for t in images])  # packing device tensors
    rebuilt = A.PackedImages(on_gpu.data, on_gpu.sizes, on_gpu.offsets, 3)  # the plain constructor on the GPU
    for built in (on_gpu, rebuilt):
        assert built.device.type == "cuda" and one_storage(built) and built.max_size == (12, 9)
        for name in ("data", "sizes", "offsets"):
            assert torch.equal(getattr(built, name).cpu(), getattr(packed, name)), name


# --------------------------------------------------------------------------------------- collate
def hwc(seed, h, w, c=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_collate_of_one_size_still_stacks():
    arrays = [hwc(i, 6, 5) for i in range(3)]
    images, labels = A.collate([(a, i) for i, a in enumerate(arrays)])
    assert isinstance(images, torch.Tensor) and images.shape == (3, 3, 6, 5)
    assert torch.equal(images, torch.stack([to_chw_uint8(a) for a in arrays]))


@pytest.mark.parametrize("convert", [lambda a: Image.fromarray(a), lambda a: a, lambda a: torch.from_numpy(a),
                                     lambda a: torch.from_numpy(a).permute(2, 0, 1).contiguous()])
def test_collate_of_mixed_sizes_packs_the_per_sample_images(convert):
    samples = [convert(hwc(i, h, w)) for i, (h, w) in enumerate([(6, 5), (9, 7), (6, 8)])]
    images, labels = A.collate([(s, i) for i, s in enumerate(samples)])
    assert isinstance(images, A.PackedImages) and images.dtype == torch.uint8 and images.channels == 3
    assert_images_equal(images.unpack(), [to_chw_uint8(s) for s in samples])
    assert images.sizes.tolist() == [[6, 5], [9, 7], [6, 8]] and labels.tolist() == [0, 1, 2]
    assert isinstance(A.collate(samples), A.PackedImages)  # bare images too


@pytest.mark.parametrize("modes", [("L", "RGB"), ("RGBA", "L"), ("L", "RGB", "RGBA")])
def test_collate_of_mixed_channels_and_sizes_brings_the_channels_up_then_packs(modes):
    pictures = [Image.fromarray(hwc(i, 6 + i, 5 + 2 * i, c=4)).convert(mode) for i, mode in enumerate(modes)]
    target = "RGBA" if "RGBA" in modes else "RGB"
    images, _ = A.collate([(p, 0) for p in pictures])
    reference = [torch.from_numpy(np.array(p.convert(target))).permute(2, 0, 1) for p in pictures]
    assert isinstance(images, A.PackedImages) and images.channels == len(target)
    assert_images_equal(images.unpack(), reference)


def test_collate_refuses_channel_counts_it_does_not_convert_at_mixed_sizes():
    with pytest.raises(ValueError, match="different channel counts \\[2, 3\\]"):
        A.collate([hwc(0, 6, 5, c=2), hwc(1, 7, 5, c=3)])


def dict_samples(mask_dtype=np.int64):
    sizes = [(6, 5), (8, 9), (7, 4)]
    rng = np.random.default_rng(0)
    return [{"image": hwc(i, h, w), "label": i, "mask": rng.integers(0, 5, (h, w)).astype(mask_dtype),
             "boxes": [[0, 0, 2, 2]] * (i + 1), "keypoints": [[1, 1]]} for i, (h, w) in enumerate(sizes)]


@pytest.mark.parametrize("mask_dtype", [np.int64, np.uint8, np.int32])
def test_collate_packs_each_mask_with_its_image(mask_dtype):
    samples = dict_samples(mask_dtype)
    batch = A.collate(samples)
    images, masks = batch["images"], batch["masks"]
    assert isinstance(images, A.PackedImages) and isinstance(masks, A.PackedImages)
    assert_images_equal(images.unpack(), [to_chw_uint8(s["image"]) for s in samples])
    assert masks.channels == 1 and masks.dtype == torch.from_numpy(np.zeros(1, mask_dtype)).dtype
    assert torch.equal(masks.sizes, images.sizes)
    assert_images_equal(masks.unpack(), [torch.from_numpy(s["mask"])[None] for s in samples])
    assert batch["labels"].tolist() == [0, 1, 2]
    assert batch["boxes"].shape == (3, 3, 4) and torch.isnan(batch["boxes"][0, 1:]).all()  # NaN padding as before
    assert batch["boxes"][2].tolist() == [[0, 0, 2, 2]] * 3 and batch["keypoints"].shape == (3, 1, 2)


def test_collate_keeps_stacking_the_masks_of_a_same_size_batch():
    samples = [{"image": hwc(i, 6, 5), "mask": np.full((6, 5), i, np.int64)} for i in range(2)]
    batch = A.collate(samples)
    assert isinstance(batch["masks"], torch.Tensor) and batch["masks"].shape == (2, 6, 5)
    assert batch["masks"][:, 0, 0].tolist() == [0, 1]


@pytest.mark.parametrize("sizes", [[(6, 5), (6, 5)], [(6, 5), (8, 9)]])
def test_collate_names_the_sample_whose_mask_is_not_its_image_size(sizes):
    samples = [{"image": hwc(i, h, w), "mask": np.zeros((h, w), np.int64)} for i, (h, w) in enumerate(sizes)]
    samples[1]["mask"] = np.zeros((6, 6), np.int64)
    with pytest.raises(ValueError, match=f"sample 1 has a mask of shape \\(6, 6\\) for an image of size "
                                         f"{sizes[1][0]}x{sizes[1][1]}"):
        A.collate(samples)


class MixedSizes(Dataset):
    """Image i is filled with i, of its own size, so order and identity survive the trip."""
    sizes = [(5, 4), (3, 6), (7, 7), (4, 2), (6, 3)]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        return np.full((*self.sizes[i], 3), i, dtype=np.uint8), i


@pytest.mark.parametrize("workers", [0, 1])
def test_a_dataloader_with_collate_yields_packed_batches(workers):
    loader = DataLoader(MixedSizes(), batch_size=3, num_workers=workers, collate_fn=A.collate)
    batches = list(loader)
    assert [len(images) for images, _ in batches] == [3, 2]
    for (images, labels), first in zip(batches, (0, 3)):
        assert isinstance(images, A.PackedImages) and one_storage(images)
        expected = [torch.full((3, *MixedSizes.sizes[i]), i, dtype=torch.uint8) for i in labels.tolist()]
        assert labels.tolist() == list(range(first, first + len(images)))
        assert_images_equal(images.unpack(), expected)


def test_device_loader_moves_a_packed_batch_like_a_tensor():
    loader = DataLoader(MixedSizes(), batch_size=5, collate_fn=A.collate)
    seen = list(A.DeviceLoader(loader, lambda images, labels: (images, labels), device="cpu"))
    assert len(seen) == 1
    images, labels = seen[0]
    assert isinstance(images, A.PackedImages) and images.device.type == "cpu"
    assert_images_equal(images.unpack(), [to_chw_uint8(MixedSizes()[i][0]) for i in range(5)])

    samples = dict_samples()
    dict_loader = DataLoader(samples, batch_size=3, collate_fn=A.collate)
    (batch,) = list(A.DeviceLoader(dict_loader, lambda **b: b, device="cpu"))
    assert isinstance(batch["images"], A.PackedImages) and isinstance(batch["masks"], A.PackedImages)
    assert_images_equal(batch["masks"].unpack(), [torch.from_numpy(s["mask"])[None] for s in samples])


@cuda
def test_device_loader_pins_and_moves_a_packed_batch_to_cuda():
    loader = DataLoader(dict_samples(), batch_size=3, collate_fn=A.collate)
    (batch,) = list(A.DeviceLoader(loader, lambda **b: b, device="cuda"))
    for key in ("images", "masks"):
        assert isinstance(batch[key], A.PackedImages) and batch[key].device.type == "cuda"
        assert one_storage(batch[key])
    assert_images_equal([t.cpu() for t in batch["masks"].unpack()],
                        [torch.from_numpy(s["mask"])[None] for s in dict_samples()])
    assert batch["images"].sizes.tolist() == [[6, 5], [8, 9], [7, 4]] and not math.isnan(batch["boxes"][0, 0, 0])
