"""The preview command on two small generated images: every grid is written, and the text is the drawn params."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import augpipe as A
from augpipe import preview

NAMES = {"horizontal_flip", "vertical_flip", "random_crop", "random_resized_crop", "random_rotation",
         "random_affine", "random_perspective", "elastic_transform", "brightness", "contrast", "cutout", "mixup",
         "cutmix", "fractional_pool_pseudorandom",
         "fractional_pool_random", "label_smoothing", "cifar_recipe", "imagenet_recipe",
         "resize", "random_resize", "random_crop_pad_if_needed", "center_crop", "five_crop", "ten_crop",
         "saturation", "hue", "color_jitter", "grayscale", "random_grayscale", "pca_lighting",
         "sharpness", "posterize", "solarize", "equalize", "autocontrast", "invert", "gaussian_blur",
         "random_erasing", "rand_augment", "trivial_augment_wide", "auto_augment", "augmix"}


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    """A 40x30 gradient and a 30x40 checkerboard, so that the centre-square crop and resize both run."""
    folder = tmp_path_factory.mktemp("images")
    y, x = np.mgrid[0:40, 0:30]
    gradient = np.stack((x * 8, y * 6, 255 - x * 8), axis=-1).astype(np.uint8)
    checker = (((np.mgrid[0:30, 0:40] // 5).sum(0) % 2) * 255).astype(np.uint8)
    paths = [folder / "gradient.png", folder / "checker.png"]
    Image.fromarray(gradient).save(paths[0])
    Image.fromarray(checker).save(paths[1])  # grayscale: loaded as RGB
    return [str(p) for p in paths]


def test_writes_every_grid(image_paths, tmp_path, capsys, monkeypatch):
    drawn = preview.draw_grid
    lines = []

    def draw_grid(path, title, rows, *args):  # keeps the text under every tile
        lines.extend(line for _, tiles in rows for _, text in tiles for line in text.splitlines())
        return drawn(path, title, rows, *args)

    monkeypatch.setattr(preview, "draw_grid", draw_grid)
    written = preview.main(["--out", str(tmp_path / "grids"), "--images", *image_paths, "--draws", "1",
                            "--size", "32", "--seed", "1"])
    assert {p.stem for p in written} == NAMES
    assert {p.stem for p in (tmp_path / "grids").glob("*.png")} == NAMES
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            w, h = im.size
            pixels = np.asarray(im)
        # Two columns of at least one 32-pixel tile each (five for the crop views), two rows (originals, then a
        # draw or the targets; the views take three).
        assert 2 * 32 < w < 900 and 2 * 32 < h < 800, (path.name, im.size)
        assert pixels.std() > 10, path.name  # not blank
    assert str(written[0]) in capsys.readouterr().out
    too_long = [line for line in lines if len(line) > preview.LABEL_CHARS]
    assert len(lines) > 100 and too_long == [], too_long  # a longer line runs into the next tile's


def test_loaded_images_are_square_uint8(image_paths):
    images, names = preview.load_images(image_paths, 16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert names == ["gradient", "checker"]
    assert torch.equal(images[1, 0], images[1, 1])  # the grayscale file became three equal channels


def test_text_is_the_drawn_parameters(image_paths):
    images, _ = preview.load_images(image_paths, 32)
    (draw,) = preview.run([A.Brightness(0.4)], images, seed=5, draws=1)
    pipe = A.Pipeline(A.Brightness(0.4), seed=5, num_classes=preview.NUM_CLASSES)
    expected = pipe(images)
    factors = pipe.last_params[0]["factor"]
    assert draw.texts == [f"brightness {f:.3f}" for f in factors.tolist()]
    assert torch.equal(draw.images, expected)
    assert torch.equal(draw.params[0]["factor"], factors)


def test_cutmix_text_gives_box_lambda_and_partner():
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    (draw,) = preview.run([A.CutMix(1.0)], images, seed=2, draws=1)
    params = draw.params[0]
    lam = A.functional.cutmix_lambda(params["box"], (20, 20))
    for b, text in enumerate(draw.texts):
        y1, x1, y2, x2 = params["box"][b].tolist()
        if y1 == y2 or x1 == x2:
            assert text == "cutmix off"
            continue
        j = int(params["perm"][b])
        assert text.splitlines()[0] == f"cutmix y {y1}:{y2} x {x1}:{x2}"
        assert text.splitlines()[1] == f"λ {float(lam[b]):.2f}, patch of " + ("itself" if j == b else f"#{j}")


def test_recipes_are_shown_unnormalized():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    entry = next(e for e in preview.catalogue(32) if e.name == "cifar_recipe")
    (draw,) = preview.run(entry.nodes, images, seed=0, draws=1)
    normalized = A.Pipeline(*entry.nodes, seed=0)(images)
    mean, std = torch.tensor(preview.CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(preview.CIFAR_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(draw.images, (normalized * std + mean).clamp(0, 1))
    # One line per drawn value: crop, flip, brightness, contrast, cutout, then cutmix (off or two lines).
    lines = draw.texts[0].splitlines()
    assert lines[0].startswith("crop top ") and lines[1].startswith("hflip ") and lines[4].startswith("cutout ")


def test_bad_image_path_names_it(tmp_path, capsys):
    missing = tmp_path / "no_such_picture.jpg"
    with pytest.raises(SystemExit):
        preview.main(["--out", str(tmp_path), "--images", str(missing)])
    assert str(missing) in capsys.readouterr().err
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    with pytest.raises(SystemExit):
        preview.main(["--out", str(tmp_path), "--images", str(not_an_image)])
    assert str(not_an_image) in capsys.readouterr().err


def test_import_augpipe_does_not_import_plotting():
    code = ("import sys, augpipe, augpipe.preview; "
            "print(sorted(m for m in ('matplotlib', 'skimage', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_perspective_and_elastic_text_is_their_drawn_parameters(image_paths):
    images, _ = preview.load_images(image_paths, 32)
    (draw,) = preview.run([A.RandomPerspective(0.5, p=1.0)], images, seed=3, draws=1)
    inward = draw.params[0]["inward"]
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = inward[0].tolist()
    assert draw.texts[0] == f"corners in {x0}/{y0} {x1}/{y1}\n{x2}/{y2} {x3}/{y3}"
    (draw,) = preview.run([A.ElasticTransform()], images, seed=3, draws=1)
    lengths = draw.params[0]["displacement"][1].norm(dim=-1)
    assert draw.texts[1] == f"shift max {float(lengths.max()):.1f} px\nmean {float(lengths.mean()):.2f} px"


def _photos(seed: int, n: int = 4, size: int = 24) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_color_jitter_text_is_its_order_and_factors():
    images = _photos(0)
    (draw,) = preview.run([A.ColorJitter(0.4, 0.4, 0.4, 0.1)], images, seed=7, draws=1)
    pipe = A.Pipeline(A.ColorJitter(0.4, 0.4, 0.4, 0.1), seed=7)
    assert torch.equal(draw.images, pipe(images))
    q = pipe.last_params[0]
    for b, text in enumerate(draw.texts):
        b_, c_, s_, h_ = (float(q[k][b]) for k in ("brightness", "contrast", "saturation", "hue"))
        written = {0: f"b {b_:.2f}", 1: f"c {c_:.2f}", 2: f"s {s_:.2f}", 3: f"h {h_:+.3f}"}
        first, second = (written[int(k)] for k in q["order"][b, :2]), (written[int(k)] for k in q["order"][b, 2:])
        assert text == " → ".join(first) + " →\n" + " → ".join(second)


def test_color_jitter_text_leaves_out_absent_ops():
    (draw,) = preview.run([A.ColorJitter(brightness=0.5, hue=0.2)], _photos(1), seed=3, draws=1)
    q = draw.params[0]
    for b, text in enumerate(draw.texts):
        order = [int(k) for k in q["order"][b] if int(k) in (0, 3)]  # brightness and hue only
        written = {0: f"b {float(q['brightness'][b]):.2f}", 3: f"h {float(q['hue'][b]):+.3f}"}
        assert text == " → ".join(written[k] for k in order)


def test_level_and_lighting_text_is_the_drawn_parameters():
    images = _photos(2, n=8)
    (draw,) = preview.run([A.Solarize(0.5), A.Posterize(3), A.Invert()], images, seed=4, draws=1)
    solarize, posterize, invert = draw.params
    for b, text in enumerate(draw.texts):
        t = float(solarize["threshold"][b])
        assert text.splitlines() == ["solarize from 0.500" if t == 0.5 else "solarize off",
                                     f"posterize {3 if posterize['bits'][b] == 3 else 8} bits",
                                     f"invert {'on' if invert['invert'][b] else 'off'}"]
    assert {line for text in draw.texts for line in text.splitlines()} >= {"solarize off", "solarize from 0.500"}

    (draw,) = preview.run([A.PCALighting(0.5)], images, seed=4, draws=1)
    alpha = draw.params[0]["alpha"].double()
    vec, val = torch.tensor(A.colour.IMAGENET_EIGVEC, dtype=torch.float64), torch.tensor(A.colour.IMAGENET_EIGVAL)
    for b, text in enumerate(draw.texts):
        # The added RGB shift, written out as the sum over components of alpha_i lambda_i v_i.
        shift = [sum(float(alpha[b, i]) * float(val[i]) * float(vec[c, i]) for i in range(3)) for c in range(3)]
        assert text.splitlines() == ["α " + " ".join(f"{a:+.2f}" for a in alpha[b].tolist()),
                                     "rgb " + " ".join(f"{v:+.3f}" for v in shift)]


def test_random_resize_text_gives_the_drawn_size_and_crop():
    images = _photos(3, size=32)
    nodes = [A.RandomResize(12, 32), A.RandomCrop(20, pad_if_needed=True)]
    (draw,) = preview.run(nodes, images, seed=1, draws=1)
    resize, crop = draw.params
    assert draw.images.shape == (4, 3, 20, 20)
    for b, text in enumerate(draw.texts):
        h, w = (int(v) for v in resize["size"][b])
        assert min(h, w) in range(12, 33)
        assert text == f"resize to {h}x{w}\ncrop top {int(crop['top'][b])} left {int(crop['left'][b])}"


def test_crop_views_are_a_row_each_with_their_own_text():
    images = _photos(4, n=2, size=20)
    nodes = [A.Brightness(0.4), A.TenCrop(12)]
    (draw,) = preview.run(nodes, images, seed=2, draws=1)
    pipe = A.Pipeline(*nodes, seed=2)
    assert draw.views == 10 and torch.equal(draw.images, pipe(images).flatten(0, 1))
    factor, views = pipe.last_params
    for r, text in enumerate(draw.texts):
        top, left = views["top_left"][r].long().tolist()
        # Brightness drew once per image, before the views: row r of image r // 10.
        assert text.splitlines() == [f"brightness {float(factor['factor'][r // 10]):.3f}",
                                     f"top {top} left {left}" + (", h-mirror" if r % 10 >= 5 else "")]
    assert draw.texts[0].endswith("top 0 left 0") and draw.texts[9].endswith("top 4 left 4, h-mirror")
    entry = preview.Preview("ten", "", nodes, fixed=True)
    _, rows = preview.grid_rows(entry, images, ["a", "b"], seed=2, draws=3)
    assert [label for label, _ in rows] == ["original", "views 1-5", "views 6-10"]
    assert [text for _, tiles in rows[1:] for _, text in tiles] == draw.texts[:10]


def test_one_channel_output_is_drawn_gray():
    images = _photos(5)
    (draw,) = preview.run([A.Grayscale()], images, seed=0, draws=1)
    assert draw.images.shape == (4, 1, 24, 24) and draw.texts == ["gray, 1 channel"] * 4
    picture = preview._picture(draw.images[0])
    assert picture.shape == (24, 24, 3) and np.array_equal(picture[..., 0], picture[..., 2])


def test_every_op_of_the_package_is_previewed():
    """An op exported by augpipe and missing from the catalogue is an op the preview forgot."""
    shown = {type(node) for entry in preview.catalogue(32) for node in entry.nodes}
    not_augmentations = {A.Op, A.GeometricOp, A.Lambda, A.Normalize}
    ops = {getattr(A, name) for name in A.__all__ if isinstance(getattr(A, name), type)
           and issubclass(getattr(A, name), A.Op)} - not_augmentations
    assert ops - shown == set()


def test_blur_and_erasing_text_is_the_drawn_parameters():
    images = _photos(6, n=8)
    (draw,) = preview.run([A.GaussianBlur(3, p=0.5), A.RandomErasing(0.75, count=2)], images, seed=8, draws=1)
    blur, erase = draw.params
    for b, text in enumerate(draw.texts):
        sigma = float(blur["sigma"][b])
        boxes = [f"erase y {y1}:{y2} x {x1}:{x2}" for y1, x1, y2, x2 in erase["boxes"][b].long().tolist()
                 if y2 > y1 and x2 > x1]
        assert text.splitlines() == [f"blur σ {sigma:.2f}" if sigma else "blur off"] + (boxes or ["erase off"])
    lines = [line for text in draw.texts for line in text.splitlines()]
    assert "blur off" in lines and "erase off" in lines and any(line.startswith("erase y") for line in lines)


def test_policy_text_is_each_slots_member_and_magnitude():
    images = _photos(7, n=8, size=32)
    (draw,) = preview.run([A.RandAugment(2, 9)], images, seed=6, draws=1)
    q = draw.params[0]
    # The magnitudes in the unit the params hold them, written per member by hand.
    unit = {"ShearX": "{:+.2f}", "ShearY": "{:+.2f}", "TranslateX": "{:+.0f}", "TranslateY": "{:+.0f}",
            "Rotate": "{:+.1f}°", "Brightness": "{:+.2f}", "Color": "{:+.2f}", "Contrast": "{:+.2f}",
            "Sharpness": "{:+.2f}", "Posterize": "{:.0f}", "Solarize": "{:.2f}"}
    for b, text in enumerate(draw.texts):
        names = [A.policies.MEMBERS[k] for k in q["op"][b].tolist()]
        expected = [name + (" " + unit[name].format(m + 0) if name in unit else "")
                    for name, m in zip(names, q["magnitude"][b].tolist())]
        assert text.splitlines() == expected
    (draw,) = preview.run([A.AutoAugment("imagenet")], images, seed=6, draws=1)
    q = draw.params[0]
    for b, text in enumerate(draw.texts):
        assert text.splitlines()[0] == f"sub-policy {int(q['policy'][b])}"
        assert [line.split()[0] for line in text.splitlines()[1:]] == [A.policies.MEMBERS[k] for k in q["op"][b]]


def test_augmix_text_is_the_mix_and_each_chain():
    images = _photos(8, n=8, size=32)
    (draw,) = preview.run([A.AugMix(mixture_width=2, chain_depth=-1)], images, seed=9, draws=1)
    q = draw.params[0]
    for b, text in enumerate(draw.texts):
        lines = text.splitlines()
        assert lines[0] == f"m {float(q['mix'][b]):.2f}"
        # Each chain: its weight, then its members by short name and magnitude (a wrapped line goes on indented).
        unit = {"ShX": "{:+.2f}", "ShY": "{:+.2f}", "TX": "{:+.0f}", "TY": "{:+.0f}", "Rot": "{:+.0f}°",
                "Bri": "{:+.2f}", "Col": "{:+.2f}", "Con": "{:+.2f}", "Sha": "{:+.2f}", "Pos": "{:.0f}",
                "Sol": "{:.2f}"}
        expected = []
        for i in range(2):
            expected.append(f"{float(q['weights'][b, i]):.2f}:")
            for k, m in zip(q["op"][b, i].tolist(), q["magnitude"][b, i].tolist()):
                name = preview.SHORT_MEMBERS[A.policies.MEMBERS[k]]
                if k != A.policies.IDENTITY:  # Identity: past the chain's depth
                    expected.append(name + (unit[name].format(m + 0) if name in unit else ""))
        assert " ".join(lines[1:]).split() == expected
