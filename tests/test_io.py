"""read_image and ImageFolder against PIL, numpy formulas and a brute-force walk; the scikit-image photo folder."""
import os
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from torch.utils.data import DataLoader

import augpipe as A
from augpipe.io import IMG_EXTENSIONS
from training import photos
from training.photos import make_photo_folder


def pixels(h, w, channels, seed=0):
    """(H, W) or (H, W, channels) uint8: ramps with no mirror symmetry, plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    base = np.stack([(7 * y + 3 * x + 40 * c) % 256 for c in range(channels)], -1)
    out = np.clip(base + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def chw(array):
    """(H, W) or (H, W, C) array -> (C, H, W) tensor, the reference layout."""
    array = np.asarray(array)
    return torch.from_numpy(np.array(array[..., None] if array.ndim == 2 else array)).permute(2, 0, 1)


def palette_image(h, w, transparent_index=None):
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 16, (h, w), dtype=np.uint8), "P")
    im.putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tolist())
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


# (image to write, file name, mode PIL's convert must give for the reference)
WRITTEN = {
    "RGB JPEG": (lambda: Image.fromarray(pixels(20, 30, 3)), "a.jpg", "RGB"),
    "RGB PNG": (lambda: Image.fromarray(pixels(20, 30, 3)), "a.png", "RGB"),
    "RGBA PNG": (lambda: Image.fromarray(pixels(20, 30, 4), "RGBA"), "a.png", "RGBA"),
    "L PNG": (lambda: Image.fromarray(pixels(20, 30, 1)), "a.png", "L"),
    "L JPEG": (lambda: Image.fromarray(pixels(20, 30, 1)), "a.jpg", "L"),
    "LA PNG": (lambda: Image.fromarray(pixels(20, 30, 2), "LA"), "a.png", "RGBA"),
    "P PNG": (lambda: palette_image(20, 30), "a.png", "RGB"),
    "P PNG with transparency": (lambda: palette_image(20, 30, transparent_index=3), "a.png", "RGBA"),
    "1-bit PNG": (lambda: Image.fromarray(pixels(20, 30, 1) > 128), "a.png", "L"),
    "CMYK JPEG": (lambda: Image.fromarray(pixels(20, 30, 4), "CMYK"), "a.jpg", "RGB"),
    "BMP": (lambda: Image.fromarray(pixels(20, 30, 3)), "a.bmp", "RGB"),
    "WEBP": (lambda: Image.fromarray(pixels(20, 30, 3)), "a.webp", "RGB"),
}


@pytest.mark.parametrize("case", WRITTEN)
def test_read_image_equals_pil_converted(tmp_path, case):
    make, name, mode = WRITTEN[case]
    path = tmp_path / name
    make().save(path)
    with Image.open(path) as im:
        if case.startswith("P PNG"):
            assert im.mode == "P" and ("transparency" in im.info) == case.endswith("transparency")
        expected = chw(im.convert(mode))
    got = A.read_image(path)
    assert got.dtype == torch.uint8 and got.is_contiguous() and got.shape == expected.shape
    assert torch.equal(got, expected)


def test_read_image_gives_a_writable_tensor_of_its_own(tmp_path):
    Image.fromarray(pixels(8, 9, 3)).save(tmp_path / "a.png")
    first = A.read_image(tmp_path / "a.png")
    first.zero_()
    assert torch.equal(A.read_image(str(tmp_path / "a.png")), chw(pixels(8, 9, 3)))


# EXIF orientation (tag 0x0112) -> what a viewer shows, as index formulas on the stored (H, W) pixels.
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored about the main diagonal
    6: lambda a: np.rot90(a, k=-1),  # stored rotated 90 anticlockwise: shown turned 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored about the anti-diagonal
    8: lambda a: np.rot90(a, k=1),  # shown turned 90 anticlockwise
}


@pytest.mark.parametrize("orientation", UPRIGHT)
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_read_image_applies_exif_orientation(tmp_path, orientation, suffix):
    path = tmp_path / f"a{suffix}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels(12, 20, 3)).save(path, exif=exif)
    with Image.open(path) as im:
        assert im.getexif()[0x0112] == orientation
        stored = np.asarray(im.convert("RGB"))  # the pixels as stored, before any orientation
    got = A.read_image(path)
    assert got.shape == ((3, 12, 20) if orientation <= 4 else (3, 20, 12))
    assert torch.equal(got, chw(UPRIGHT[orientation](stored)))


def test_anti_diagonal_formula_is_the_transverse():
    """The orientation-7 formula by its definition: output (i, j) reads stored (H-1-j, W-1-i)."""
    a = pixels(3, 5, 3)
    out = UPRIGHT[7](a)
    assert all((out[i, j] == a[2 - j, 4 - i]).all() for i in range(5) for j in range(3))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_raises_naming_it(tmp_path, suffix):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # PIL's default, which read_image relies on
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(pixels(64, 64, 3, seed=2)).save(whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with Image.open(cut) as im:
        assert im.size == (64, 64)  # the header alone reads fine: only a full decode finds the missing half
    with pytest.raises(ValueError, match=rf"read_image: cannot decode '.*cut\{suffix}'"):
        A.read_image(cut)


def test_truncated_jpeg_decodes_when_the_caller_opts_in_to_pil_truncated_images(tmp_path, monkeypatch):
    """Documented: a caller who sets PIL's LOAD_TRUNCATED_IMAGES gets PIL's filled-in image, not an error."""
    whole = tmp_path / "whole.jpg"
    Image.fromarray(pixels(64, 64, 3, seed=2)).save(whole)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert A.read_image(cut).shape == (3, 64, 64)


@pytest.mark.parametrize("content", [b"", b"not an image\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
                                     b"\xff\xd8\xff\xe0" + b"\x13" * 100])
def test_non_image_raises_naming_the_file(tmp_path, content):
    path = tmp_path / "notes.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"read_image: cannot decode '.*notes\.jpg'"):
        A.read_image(path)


def test_missing_file_and_folder_raise_os_errors_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        A.read_image(tmp_path / "absent.png")
    with pytest.raises(IsADirectoryError):
        A.read_image(tmp_path)


def test_sixteen_bit_png_is_refused_naming_the_file_and_mode(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).save(path)
    with pytest.raises(ValueError, match=r"read_image: '.*deep\.png' has PIL mode 'I(;16)?'"):
        A.read_image(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 40), w=st.integers(1, 40), mode=st.sampled_from(["L", "LA", "RGB", "RGBA", "P"]),
       seed=st.integers(0, 2**16))
def test_png_round_trip_equals_the_array(tmp_path, h, w, mode, seed):
    """Written from numpy, read back: L keeps one channel; LA is (L, L, L, A); P is its palette looked up."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "round.png"
    if mode == "P":
        index = rng.integers(0, 256, (h, w), dtype=np.uint8)
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        im = Image.fromarray(index, "P")
        im.putpalette(palette.ravel().tolist())
        expected = palette[index]
    else:
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        array = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        im = Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)
        expected = array[..., [0, 0, 0, 1]] if mode == "LA" else array
    im.save(path)
    assert torch.equal(A.read_image(path), chw(expected))


# ------------------------------------------------------------------------------------------------------ ImageFolder
def build_tree(root):
    """Classes with nested folders, upper-case extensions, other files, a file at the root and odd names."""
    files = ["zebra/b.PNG", "zebra/a.png", "zebra/z.png", "zebra/deep/er/x.JPG", "zebra/deep/a.jpeg",
             "zebra/notes.txt", "zebra/z.jpg.bak", "Apple/1.png", "Apple/sub/0.png", "Apple/sub.png", "Apple/c.Png",
             "mango/m/n.webp", "mango/README", "mango two/q.bmp", "loose.png"]
    for i, name in enumerate(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.lower().endswith(IMG_EXTENSIONS):
            Image.fromarray(pixels(5 + i, 7 + 2 * i, 3, seed=i)).save(path, format=_format(path))
        else:
            path.write_text("not an image")
    (root / "kiwi-gold").mkdir()
    Image.fromarray(pixels(4, 4, 1)).save(root / "kiwi-gold" / "only.png")
    return root


def _format(path):
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}[path.suffix.lower()]


def walk_reference(root, extensions=IMG_EXTENSIONS):
    """Brute force: every directory of root is a class; every file below it, at any depth, with a matching
    lower-cased suffix, sorted by (class, its folder, its name)."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    rows = []
    for label, name in enumerate(classes):
        for dirpath, _, filenames in os.walk(os.path.join(root, name)):
            for f in filenames:
                if os.path.splitext(f)[1].lower() in extensions:
                    rows.append((label, dirpath, f))
    rows.sort()
    return classes, [(os.path.join(d, f), label) for label, d, f in rows]


def test_image_folder_matches_a_brute_force_walk(tmp_path):
    root = build_tree(tmp_path)
    classes, samples = walk_reference(root)
    folder = A.ImageFolder(root)
    assert folder.classes == classes == ["Apple", "kiwi-gold", "mango", "mango two", "zebra"]
    assert folder.class_to_idx == {c: i for i, c in enumerate(classes)}
    assert folder.samples == samples
    assert folder.targets == [label for _, label in samples]
    assert len(folder) == len(samples) == 12
    # torchvision's order: a folder's own files (by name), then those of its sub-folders.
    assert [os.path.relpath(p, root) for p, _ in folder.samples[:4]] == ["Apple/1.png", "Apple/c.Png",
                                                                          "Apple/sub.png", "Apple/sub/0.png"]
    for i in (0, 5, -1):
        image, label = folder[i]
        assert isinstance(label, int) and label == samples[i][1]
        assert torch.equal(image, A.read_image(samples[i][0]))


def test_image_folder_keeps_each_photo_at_its_own_size(tmp_path):
    root = build_tree(tmp_path)
    folder = A.ImageFolder(root)
    for i, (path, _) in enumerate(folder.samples):
        with Image.open(path) as im:
            assert folder[i][0].shape[1:] == (im.height, im.width)


def test_image_folder_extensions_are_matched_case_insensitively(tmp_path):
    root = build_tree(tmp_path)
    for extensions in (".PNG", [".png"]):
        with pytest.raises(ValueError, match=r"class folders \['mango', 'mango two'\] of .* hold no file ending "
                                             r"in \.png \(case-insensitive\)"):
            A.ImageFolder(root, extensions=extensions)
    folder = A.ImageFolder(root, extensions=(".Png", ".BMP", ".webp"))
    assert folder.samples == walk_reference(root, (".png", ".bmp", ".webp"))[1]
    assert len(folder) == 10  # the two JPEGs are left out


def test_image_folder_refuses_missing_empty_and_classless_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        A.ImageFolder(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"'.*' has no class sub-folders.*\.jpg \.jpeg \.png"):
        A.ImageFolder(tmp_path)
    Image.fromarray(pixels(4, 4, 3)).save(tmp_path / "flat.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        A.ImageFolder(tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("nothing")
    with pytest.raises(ValueError, match=rf"class folders \['cats'\] of '{re.escape(str(tmp_path))}' hold no file "
                                         r"ending in \.jpg \.jpeg"):
        A.ImageFolder(tmp_path)


@pytest.mark.parametrize("kwargs, message", [({"on_error": "ignore"}, "on_error must be 'raise' or 'skip'"),
                                             ({"extensions": ()}, "extensions must be non-empty strings"),
                                             ({"extensions": [".png", ""]}, "extensions must be non-empty")])
def test_image_folder_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.ImageFolder(tmp_path, **kwargs)


def test_image_folder_index_out_of_range(tmp_path):
    folder = A.ImageFolder(build_tree(tmp_path))
    with pytest.raises(IndexError):
        folder[len(folder)]
    assert list(folder)[-1][1] == folder.targets[-1]  # iteration stops at IndexError


def corrupt_folder(root, bad):
    """Six PNGs in two classes; the files at positions ``bad`` of the sample order are cut short."""
    for i in range(6):
        folder = root / ("a" if i < 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels(8 + i, 9, 3, seed=i)).save(folder / f"{i}.png")
    folder = A.ImageFolder(root)
    for i in bad:
        path = folder.samples[i][0]
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return folder


def test_on_error_raise_names_the_corrupt_file(tmp_path):
    folder = corrupt_folder(tmp_path, bad=[2])
    assert folder.on_error == "raise"
    assert folder[1][1] == 0
    with pytest.raises(ValueError, match=r"read_image: cannot decode '.*a/2\.png'"):
        folder[2]


def test_on_error_skip_warns_once_and_gives_the_next_readable_sample(tmp_path):
    folder = corrupt_folder(tmp_path, bad=[2, 3])
    skipping = A.ImageFolder(tmp_path, on_error="skip")
    with pytest.warns(UserWarning) as caught:
        image, label = skipping[2]
    assert [str(w.message).split(" (")[0] for w in caught] == [
        f"ImageFolder: skipping unreadable file {folder.samples[2][0]!r}",
        f"ImageFolder: skipping unreadable file {folder.samples[3][0]!r}"]
    assert label == folder.samples[4][1] == 1 and torch.equal(image, A.read_image(folder.samples[4][0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad files are passed over without a second warning
        image, label = skipping[3]
    assert torch.equal(image, A.read_image(folder.samples[4][0]))
    assert torch.equal(skipping[0][0], A.read_image(folder.samples[0][0]))


def test_on_error_skip_wraps_around_and_raises_when_nothing_is_readable(tmp_path):
    folder = corrupt_folder(tmp_path / "end", bad=[5])
    skipping = A.ImageFolder(folder.root, on_error="skip")
    with pytest.warns(UserWarning, match=r"skipping unreadable file '.*b/5\.png'"):
        image, label = skipping[5]
    assert label == 0 and torch.equal(image, A.read_image(folder.samples[0][0]))
    everything = corrupt_folder(tmp_path / "all", bad=range(6))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"no file of the 6 .* is readable"):
        A.ImageFolder(everything.root, on_error="skip")[1]


# ----------------------------------------------------------------------------------------------- photo folder
SMALL = dict(per_class=3, min_side=48, max_side=96, classes=("astronaut", "coffee", "chelsea"))


def jpeg_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_photo_folder_is_deterministic_for_a_seed(tmp_path):
    first = jpeg_bytes(make_photo_folder(tmp_path / "a", seed=3, **SMALL))
    again = jpeg_bytes(make_photo_folder(tmp_path / "b", seed=3, **SMALL))
    other = jpeg_bytes(make_photo_folder(tmp_path / "c", seed=4, **SMALL))
    assert first == again and len(first) == 9
    assert first.keys() == other.keys() and all(first[k] != other[k] for k in first)
    assert len(set(first.values())) == 9


def test_photo_folder_sizes_classes_and_layout(tmp_path):
    root = make_photo_folder(tmp_path, per_class=5, min_side=40, max_side=72)
    folder = A.ImageFolder(root)
    assert folder.classes == sorted(photos.PHOTOS) and len(photos.PHOTOS) == 8
    assert sorted(folder.targets) == [c for c in range(8) for _ in range(5)]
    for path, label in folder.samples:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert 40 <= min(im.size) and max(im.size) <= 72
            assert os.path.basename(path).startswith(folder.classes[label])


def test_photo_folder_split_writes_train_and_test(tmp_path):
    root = make_photo_folder(tmp_path, split=True, **{**SMALL, "per_class": 6})
    train, test = A.ImageFolder(root / "train"), A.ImageFolder(root / "test")
    assert train.classes == test.classes == sorted(SMALL["classes"])
    assert len(train) == 3 * 5 and len(test) == 3 * 1
    names = {os.path.basename(p) for p, _ in train.samples} | {os.path.basename(p) for p, _ in test.samples}
    assert len(names) == 18


def test_photo_samples_look_like_their_photograph(tmp_path):
    """Each sample is a rescaled crop of its own photograph: its mean colour is nearer that photograph's crops
    than any other photograph's (the photographs' colours differ enough for crops of a quarter or more)."""
    root = make_photo_folder(tmp_path, per_class=4, min_side=32, max_side=48, classes=photos.PHOTOS)
    folder = A.ImageFolder(root)
    means = torch.stack([folder[i][0].float().mean((1, 2)) for i in range(len(folder))])  # (N, 3)
    labels = torch.tensor(folder.targets)
    centres = torch.stack([means[labels == c].mean(0) for c in range(8)])
    assert (torch.cdist(means, centres).argmin(1) == labels).float().mean() >= 0.9


def test_photo_folder_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="min_side <= max_side"):
        make_photo_folder(tmp_path, min_side=90, max_side=80)
    with pytest.raises(ValueError, match="per_class must be at least 2 with split=True"):
        make_photo_folder(tmp_path, per_class=1, split=True)
    with pytest.raises(ValueError, match="classes must be distinct names"):
        make_photo_folder(tmp_path, classes=("astronaut", "lena"))


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 2000), h=st.integers(1, 2000), low=st.integers(1, 300), extra=st.integers(0, 700),
       seed=st.integers(0, 2**31))
def test_output_size_sides_in_range_and_aspect_kept_when_it_fits(w, h, low, extra, seed):
    high = low + extra
    out_w, out_h = photos.output_size(w, h, low, high, torch.Generator().manual_seed(seed))
    assert low <= out_w <= high and low <= out_h <= high
    assert (out_w >= out_h) == (w >= h) or out_w == out_h
    aspect = max(w, h) / min(w, h)
    if aspect * low <= high:  # the aspect fits the range: kept to the rounding of the longer side
        assert abs(max(out_w, out_h) - min(out_w, out_h) * aspect) <= 0.5 + 1e-9


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 2000), h=st.integers(1, 2000), seed=st.integers(0, 2**31))
def test_crop_box_inside_with_area_and_ratio_in_the_ranges(w, h, seed):
    left, top, right, bottom = photos.crop_box(w, h, torch.Generator().manual_seed(seed))
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    cw, ch = right - left, bottom - top
    if cw < w and ch < h and min(cw, ch) > 1:  # neither side clipped: area and ratio as drawn, to rounding (0.5)
        assert (cw + 0.5) * (ch + 0.5) >= photos.AREA[0] * w * h and (cw - 0.5) * (ch - 0.5) <= w * h
        assert (cw - 0.5) / (ch + 0.5) <= photos.RATIO[1] and (cw + 0.5) / (ch - 0.5) >= photos.RATIO[0]


def test_photo_cli_writes_the_folder(tmp_path, capsys):
    photos.main([str(tmp_path / "cli"), "--per-class", "2", "--min-side", "30", "--max-side", "40", "--seed", "1"])
    assert "16 JPEG photos of 8 classes" in capsys.readouterr().out
    assert jpeg_bytes(tmp_path / "cli") == jpeg_bytes(make_photo_folder(tmp_path / "api", per_class=2, min_side=30,
                                                                        max_side=40, seed=1))


# ---------------------------------------------------------------------------------------------------- DataLoader
def test_dataloader_workers_decode_mixed_sizes_into_a_packed_batch(tmp_path):
    folder = A.ImageFolder(make_photo_folder(tmp_path, **SMALL))
    loader = DataLoader(folder, batch_size=4, num_workers=2, collate_fn=A.collate)
    batches = list(loader)
    assert [type(images) for images, _ in batches] == [A.PackedImages, A.PackedImages, torch.Tensor]  # 4, 4, 1
    got = [(image, int(label)) for images, labels in batches for image, label in zip(list(images), labels)]
    assert len(got) == len(folder) == 9
    assert len({tuple(image.shape) for image, _ in got}) > 1
    for (image, label), (path, target) in zip(got, folder.samples):
        assert label == target and torch.equal(image, A.read_image(path))


def test_dataloader_with_augpipe_collate_on_one_size(tmp_path):
    folder = A.ImageFolder(make_photo_folder(tmp_path, **{**SMALL, "min_side": 40, "max_side": 40}))
    loader = DataLoader(folder, batch_size=4, num_workers=2, collate_fn=A.collate)
    batches = list(loader)
    assert [tuple(images.shape) for images, _ in batches] == [(4, 3, 40, 40), (4, 3, 40, 40), (1, 3, 40, 40)]
    images = torch.cat([images for images, _ in batches])
    assert torch.equal(images, torch.stack([A.read_image(p) for p, _ in folder.samples]))
    assert torch.cat([labels for _, labels in batches]).tolist() == folder.targets
