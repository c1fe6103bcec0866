"""The uint8 data path: workers hand over uint8 pixels, `Normalize` makes float32 on the device, and
the batches equal the former per-sample float32 normalisation (x / 255 - mean) / std, on image folders
and on Fashion-MNIST; the evaluation cache held as uint8 scores like the float32 one."""

import os

import numpy as np
import paddle
import pytest
from fakedata import dataset_of, write_fashion_like
from test_data_images import _cfg, write_image_tree

from evaluate.evaluator import evaluate_model
from evaluate.oracle import build_calibration_batches, build_eval_set
from evaluate.settings import EvalSettings
from imagedata import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    build_loader,
)
from infra.config import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def former_normalisation(chw_uint8, mean, std):
    """What the transforms returned before: numpy float32 per sample, HWC arithmetic, then CHW."""
    a = np.asarray(chw_uint8.transpose(1, 2, 0), dtype=np.float32) / 255.0
    a = (a - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))


@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), (FASHION_MNIST_MEAN, FASHION_MNIST_STD)])
def test_normalize_equals_the_former_numpy_arithmetic_for_every_pixel_value(mean, std):
    c = len(mean)
    pixels = np.tile(np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16), (2, c, 1, 1))
    out = Normalize(mean, std)(paddle.to_tensor(pixels))
    assert out.dtype == paddle.float32
    np.testing.assert_array_equal(out.numpy(), np.stack([former_normalisation(p, mean, std) for p in pixels]))
    floats = paddle.ones([1, c, 2, 2])
    assert Normalize(mean, std)(floats) is floats  # already normalised: untouched


def _same_batches_as_before(ds, mean, std, workers, batch=4):
    raw = build_loader(ds, batch, shuffle=True, drop_last=False, num_workers=workers, seed=3, normalize=False)
    cooked = build_loader(ds, batch, shuffle=True, drop_last=False, num_workers=workers, seed=3)
    n = 0
    for (r, ry), (x, y) in zip(raw, cooked, strict=True):
        assert r.dtype == paddle.uint8 and x.dtype == paddle.float32  # uint8 crosses from the workers
        np.testing.assert_array_equal(ry.numpy(), y.numpy())
        expected = np.stack([former_normalisation(p, mean, std) for p in r.numpy()])
        np.testing.assert_array_equal(x.numpy(), expected)
        n += len(y)
    assert n == len(ds)


@pytest.mark.parametrize("augment", [True, False])
def test_image_folder_batches_are_uint8_from_workers_and_normalise_as_before(tmp_path, augment):
    tree = write_image_tree(str(tmp_path / "imgs"), corrupt=False)
    ds = dataset_of(_cfg(tree, "folders"), "train", augment=augment)
    item = ds[(0, 0, 0)][0]
    assert item.dtype == np.uint8 and item.shape == (3, 32, 32)
    _same_batches_as_before(ds, IMAGENET_MEAN, IMAGENET_STD, workers=1 if augment else 0)


def test_fashion_mnist_batches_normalise_as_before(tmp_path):
    d = write_fashion_like(str(tmp_path / "fm"), n_train=30, n_val=10)
    cfg = {"data": {"name": "fashion_mnist", "fashion_mnist_dir": d, "resolution": 32, "augment": "standard"}}
    ds = dataset_of(cfg, "train")
    assert ds[0][0].dtype == np.uint8 and ds[0][0].shape == (1, 32, 32)
    _same_batches_as_before(ds, FASHION_MNIST_MEAN, FASHION_MNIST_STD, workers=1)


def _eval_cfg(d, dtype):
    return resolve(os.path.join(ROOT, "configs", "demo.yaml"), overrides=[
        f"data.fashion_mnist_dir={d}", "data.holdout=null", "data.resolution=28", "evaluate.subset=40",
        f"evaluate.cache_dtype={dtype}", "evaluate.calibration.batches=2", "evaluate.calibration.batch_size=8"])


def test_uint8_cache_scores_like_float32_and_calibration_batches_normalise_as_before(tmp_path):
    d = write_fashion_like(str(tmp_path / "fm"), n_train=60, n_val=50, learnable=True)
    sets = {dtype: build_eval_set(_eval_cfg(d, dtype), EvalSettings.from_config(_eval_cfg(d, dtype)), on_gpu=False)
            for dtype in ("float32", "uint8", "float16")}
    assert sets["uint8"].images.dtype == paddle.uint8 and sets["float32"].images.dtype == paddle.float32
    assert sets["uint8"].images.numel() == sets["float32"].images.numel() == 40 * 28 * 28
    first = [next(sets[k].batches(16))[0].numpy() for k in ("float32", "uint8")]
    np.testing.assert_array_equal(first[0], first[1])
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(1, 8, 3, stride=2), paddle.nn.BatchNorm2D(8), paddle.nn.ReLU(),
                                 paddle.nn.AdaptiveAvgPool2D(1), paddle.nn.Flatten(), paddle.nn.Linear(8, 10))
    scores = {k: evaluate_model(model, s, 16) for k, s in sets.items()}
    assert scores["uint8"][:2] == scores["float32"][:2]
    assert scores["uint8"][2] == pytest.approx(scores["float32"][2], rel=1e-6)
    assert scores["float16"][2] == pytest.approx(scores["float32"][2], rel=1e-2)
    calib = build_calibration_batches(_eval_cfg(d, "uint8"), EvalSettings.from_config(_eval_cfg(d, "uint8")))
    assert [tuple(b.shape) for b in calib] == [(8, 1, 28, 28)] * 2 and calib[0].dtype == paddle.float32
    ds = dataset_of(_eval_cfg(d, "uint8"), "train", augment=False)
    from supernet.calibration import calibration_indices

    idx = calibration_indices(len(ds), 2, 8, 0)
    expected = np.stack([former_normalisation(ds[int(i)][0], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
                         for i in idx[1]])
    np.testing.assert_array_equal(calib[1].numpy(), expected)
