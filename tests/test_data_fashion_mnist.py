"""IDX reading (gzipped and plain), Fashion-MNIST loading, its transforms and subsets."""

import gzip
import os

import numpy as np
import pytest
from fakedata import dataset_of, idx_bytes, write_fashion_like

from imagedata import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataError,
    IdxError,
    load_fashion_mnist,
    read_idx,
)
from imagedata.transforms import Normalize, SmallImage

REAL_DIR = "/usr/share/datasets/fashion-mnist"
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-7, 0, 70000], dtype=np.int32),
    np.array([[0.5, -1.25]], dtype=np.float32),
])
def test_idx_round_trip(tmp_path, array, gz):
    path = tmp_path / "x.idx"
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.shape == array.shape and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x01\x08\x01" + b"\x00" * 8)
    with pytest.raises(IdxError, match=f"{bad}: bad IDX magic number 0x00010801"):
        read_idx(bad)
    bad.write_bytes(b"\x00\x00\x07\x01" + b"\x00" * 8)
    with pytest.raises(IdxError, match="bad IDX magic number 0x00000701"):
        read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(idx_bytes(np.zeros((3, 4), np.uint8))[:-1])
    with pytest.raises(IdxError, match=r"header says \(3, 4\) x 1 bytes = 12 bytes of data, file has 11"):
        read_idx(short)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(IdxError, match="2 bytes is too short"):
        read_idx(tiny)


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_like_directory(tmp_path, gz):
    d = write_fashion_like(str(tmp_path / "fm"), gz=gz)
    images, labels = load_fashion_mnist(d, "train")
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(40)]
    assert load_fashion_mnist(d, "val")[0].shape == (20, 28, 28)


def test_missing_files_name_the_path_and_the_package(tmp_path):
    with pytest.raises(DataError, match=f"directory {tmp_path}/none does not exist.*apt-get install -y "
                                        "dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "none"), "train")
    with pytest.raises(DataError, match=f"{tmp_path}/train-images-idx3-ubyte.gz .*not found; `apt-get install "
                                        "-y dataset-fashion-mnist`"):
        load_fashion_mnist(str(tmp_path), "train")


def test_real_fashion_mnist_shapes_and_normalisation_constants():
    assert os.path.isdir(REAL_DIR), f"{REAL_DIR} absent: `bash install.sh` installs Debian's dataset-fashion-mnist"
    images, labels = load_fashion_mnist(REAL_DIR, "train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert load_fashion_mnist(REAL_DIR, "val")[0].shape == (10000, 28, 28)
    pixels = images.astype(np.float64) / 255
    assert pixels.mean() == pytest.approx(FASHION_MNIST_MEAN[0], abs=1e-6)
    assert pixels.std() == pytest.approx(FASHION_MNIST_STD[0], abs=1e-6)


def test_pad_crop_flip_is_a_shift_of_the_padded_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    padded = np.pad(image, 2)
    transform = SmallImage(28, pad=2, flip=True, mean=(0.0,), std=(1.0,))
    flips = set()
    for seed in range(8):
        out = transform(image, np.random.default_rng(seed))[0]
        matches = [(t, x, f) for t in range(5) for x in range(5) for f in (False, True)
                   if np.array_equal(out, padded[t:t + 28, x:x + 28][:, ::-1] if f else padded[t:t + 28, x:x + 28])]
        assert len(matches) == 1
        flips.add(matches[0][2])
    assert flips == {False, True}
    plain = SmallImage(28)(image, None)  # evaluation: the pixels as they are, normalised on the device
    np.testing.assert_array_equal(plain[0], image)
    plain = Normalize(FASHION_MNIST_MEAN, FASHION_MNIST_STD)(plain[None]).numpy()[0, 0]
    expected = (image / 255 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-6)
    assert SmallImage(32)(image, None).shape == (1, 32, 32)


def test_build_dataset_with_stratified_subset(tmp_path):
    d = write_fashion_like(str(tmp_path / "fm"), n_train=100)
    cfg = {"data": {"name": "fashion_mnist", "fashion_mnist_dir": d, "resolution": 28, "augment": "standard",
                    "train_subset": 30, "val_subset": None, "subset_seed": 2}}
    ds = dataset_of(cfg, "train")
    assert len(ds) == 30 and np.bincount(ds.labels).tolist() == [3] * 10
    again = dataset_of(cfg, "train")
    np.testing.assert_array_equal(ds.images, again.images)
    cfg["data"]["subset_seed"] = 3
    assert not np.array_equal(ds.images, dataset_of(cfg, "train").images)
    val = dataset_of(cfg, "val")
    assert len(val) == 20 and val[0][0].shape == (1, 28, 28)
    cfg["data"]["augment"] = "mixup"
    with pytest.raises(DataError, match="data.augment must be one of standard, flip, none, got 'mixup'"):
        dataset_of(cfg, "train")
    cfg["data"].update(augment="none", image_dir="/data/imagenet")
    with pytest.raises(DataError, match="data.image_dir is set but data.name is fashion_mnist"):
        dataset_of(cfg, "train")
