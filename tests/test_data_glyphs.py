"""The glyph benchmark's builder (imagedata/glyphs.py) and the kit reading its builds.

Unit tests render Latin letters from matplotlib's DejaVuSans.ttf (a requirement of the kit), so they
need nothing from Debian; one integration test renders the real Noto CJK faces (Debian package
fonts-noto-cjk, listed in requirements-apt.txt)."""

import hashlib
import json
import os

import matplotlib
import numpy as np
import pytest
from fakedata import dataset_of

from imagedata import DataError, glyphs, load_fashion_mnist
from infra.config import resolve

DEJAVU = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
DEJAVU_BOLD = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
LATIN = "IHM"  # little, more and most ink
TINY = {"classes": 3, "train_per_class": 4, "test_per_class": 2, "seed": 0, "size": 28}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def tiny_build(out, **params):
    return glyphs.build(out, **{**TINY, **params}, chars=LATIN, faces=[(DEJAVU, 0), (DEJAVU_BOLD, 0)])


def file_bytes(d):
    return {name: (d / name).read_bytes() for name in (*FILES, "manifest.json")}


@pytest.fixture
def latin(monkeypatch):
    """The kit's character list replaced by LATIN, so the kit accepts the DejaVu builds."""
    monkeypatch.setattr(glyphs, "CHARS", LATIN)


def test_build_is_deterministic_and_its_manifest_right(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    manifest = tiny_build(a)
    tiny_build(b)
    assert file_bytes(a) == file_bytes(b)
    tiny_build(c, seed=1)
    assert (c / FILES[0]).read_bytes() != (a / FILES[0]).read_bytes()
    assert json.loads((a / "manifest.json").read_text()) == manifest
    assert manifest["files"] == {n: hashlib.md5((a / n).read_bytes()).hexdigest() for n in FILES}
    assert manifest["params"] == TINY and manifest["chars"] == LATIN
    assert [f["name"] for f in manifest["faces"]] == ["DejaVu Sans Book", "DejaVu Sans Bold"]
    assert manifest["pillow"] and manifest["freetype"] and manifest["font_package"] is None


def test_build_is_read_by_the_idx_loader_with_its_labels(tmp_path):
    tiny_build(tmp_path, train_per_class=8)
    images, labels = load_fashion_mnist(tmp_path, "train")
    assert images.shape == (24, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [8, 8, 8]
    assert labels.tolist() != sorted(labels.tolist())  # shuffled, as Fashion-MNIST
    ink = [images[labels == k].mean() for k in range(3)]
    assert ink[0] < ink[1] < ink[2], ink  # I < H < M: each label holds its own letter
    val_images, val_labels = load_fashion_mnist(tmp_path, "val")
    assert val_images.shape == (6, 28, 28) and np.bincount(val_labels).tolist() == [2, 2, 2]


def test_a_character_missing_from_a_face_and_a_missing_font_package(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"character '一' \(U\+4E00\) is missing from font DejaVu Sans Book"):
        glyphs.build(tmp_path / "x", **TINY, chars="A一B", faces=[(DEJAVU, 0)])
    monkeypatch.setattr(glyphs, "FONT_DIR", str(tmp_path / "noto"))
    with pytest.raises(DataError, match="apt-get install fonts-noto-cjk") as e:
        glyphs.build(tmp_path / "y", **TINY)
    assert "\n" not in str(e.value)


def test_cli_error_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(glyphs, "FONT_DIR", str(tmp_path / "noto"))
    assert glyphs.main(["--out", str(tmp_path / "out"), "--classes", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: font file") and "apt-get install fonts-noto-cjk" in err


def glyph_cfg(directory, **spec):
    return {"model": {"num_classes": 3},
            "data": {"name": "glyphs", "glyphs": {"dir": str(directory), **TINY, **spec}, "resolution": 28,
                     "augment": "none"}}


def test_the_kit_reads_a_build(tmp_path, latin):
    manifest = tiny_build(tmp_path)
    train, val = dataset_of(glyph_cfg(tmp_path), "train"), dataset_of(glyph_cfg(tmp_path), "val")
    assert (len(train), len(val)) == (12, 6) and train.classes == list(LATIN)
    assert train.transform.mean == (manifest["mean"],) and train.transform.std == (manifest["std"],)
    assert manifest["mean"] == pytest.approx(train.images.mean() / 255, abs=1e-6)


@pytest.mark.parametrize("change, differs", [
    ({"seed": 1}, "seed 0 (config: 1)"),
    ({"classes": 2}, "classes 3 (config: 2)"),
    ({"train_per_class": 5, "size": 32}, "train_per_class 4 (config: 5), size 28 (config: 32)"),
])
def test_a_build_that_differs_from_the_config_is_an_error(tmp_path, latin, change, differs):
    tiny_build(tmp_path)
    with pytest.raises(DataError) as e:
        dataset_of(glyph_cfg(tmp_path, **change), "train")
    message = str(e.value)
    assert "\n" not in message and f"was built with {differs}: rebuild with" in message
    want = {**TINY, **change}
    assert (f"python -m imagedata.glyphs --out {tmp_path} --classes {want['classes']} --train-per-class "
            f"{want['train_per_class']} --test-per-class {want['test_per_class']} --seed {want['seed']} "
            f"--size {want['size']}") in message


def test_changed_recipe_characters_or_files_are_errors(tmp_path, latin, monkeypatch):
    tiny_build(tmp_path)
    monkeypatch.setattr(glyphs, "CHARS", "IHW")
    with pytest.raises(DataError, match="built with character list"):
        dataset_of(glyph_cfg(tmp_path), "train")
    monkeypatch.setattr(glyphs, "CHARS", LATIN)
    monkeypatch.setattr(glyphs, "FORMAT", glyphs.FORMAT + 1)
    with pytest.raises(DataError, match=f"built with recipe format {glyphs.FORMAT - 1}"):
        dataset_of(glyph_cfg(tmp_path), "train")
    monkeypatch.undo()
    monkeypatch.setattr(glyphs, "CHARS", LATIN)
    images = tmp_path / FILES[2]
    raw = images.read_bytes()
    images.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    dataset_of(glyph_cfg(tmp_path), "train")  # the train files are intact
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte does not match its md5 in manifest.json"):
        dataset_of(glyph_cfg(tmp_path), "val")
    with pytest.raises(DataError, match=r"data.glyphs: unknown keys \['classe'\]"):
        dataset_of(glyph_cfg(tmp_path, classe=3), "train")


def test_a_missing_build_names_the_build_command(tmp_path):
    for d, what in ((tmp_path / "absent", "does not exist"), (tmp_path, "has no manifest.json")):
        with pytest.raises(DataError) as e:
            dataset_of(glyph_cfg(d), "train")
        assert "\n" not in str(e.value)
        assert str(e.value).startswith(f"glyph dataset directory {d} {what}: build it with "
                                       f"`python -m imagedata.glyphs --out {d} --classes 3 ")


def test_config_asks_for_the_builders_defaults():
    cfg = resolve(os.path.join(os.path.dirname(__file__), "..", "configs", "glyphs.yaml"))
    assert cfg["data"]["name"] == "glyphs" and cfg["model"]["num_classes"] == glyphs.DEFAULTS["classes"]
    assert glyphs.glyph_spec(cfg["data"]["glyphs"]) == (glyphs.GLYPHS_DIR, glyphs.DEFAULTS)
    assert cfg["train"]["zero_init_residual"] is True and cfg["data"]["resolution"] == 56


def test_noto_cjk_build_has_every_character_in_every_face(tmp_path):
    """Integration: the real fonts (fonts-noto-cjk; `bash install.sh` installs it). Every one of the
    100 characters renders in all 20 faces, and the kit reads the build."""
    assert os.path.isdir(glyphs.FONT_DIR), f"{glyphs.FONT_DIR} missing: apt-get install {glyphs.FONT_PACKAGE}"
    spec = {"classes": 100, "train_per_class": 1, "test_per_class": 1, "seed": 0, "size": 28}
    manifest = glyphs.build(tmp_path, **spec)
    assert len(manifest["faces"]) == 20 and manifest["font_package"]["version"]
    assert {f["name"].split(" CJK ")[1].split()[0] for f in manifest["faces"]} == set(glyphs.REGIONS)
    cfg = glyph_cfg(tmp_path, **spec)
    cfg["model"]["num_classes"] = 100
    train = dataset_of(cfg, "train")
    assert sorted(train.labels.tolist()) == list(range(100)) and train.classes == list(glyphs.CHARS)
