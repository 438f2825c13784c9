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
         "fractional_pool_random", "label_smoothing", "cifar_recipe", "imagenet_recipe"}


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


def test_writes_every_grid(image_paths, tmp_path, capsys):
    written = preview.main(["--out", str(tmp_path / "grids"), "--images", *image_paths, "--draws", "1",
                            "--size", "32", "--seed", "1"])
    assert {p.stem for p in written} == NAMES
    assert {p.stem for p in (tmp_path / "grids").glob("*.png")} == NAMES
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            w, h = im.size
            pixels = np.asarray(im)
        # Two columns of at least one 32-pixel tile each, two rows (originals, then a draw or the targets).
        assert 2 * 32 < w < 600 and 2 * 32 < h < 800, (path.name, im.size)
        assert pixels.std() > 10, path.name  # not blank
    assert str(written[0]) in capsys.readouterr().out


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
        assert text.splitlines()[1].startswith(f"λ {float(lam[b]):.2f}, patch from #{j}")


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
    assert draw.texts[0] == "corners in " + " ".join(f"{x}/{y}" for x, y in inward[0].tolist())
    (draw,) = preview.run([A.ElasticTransform()], images, seed=3, draws=1)
    lengths = draw.params[0]["displacement"][1].norm(dim=-1)
    assert draw.texts[1] == f"shift max {float(lengths.max()):.1f} px\nmean {float(lengths.mean()):.2f} px"
