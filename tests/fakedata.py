"""Small Fashion-MNIST-format datasets the tests write themselves, so no test needs Debian's package.

The IDX encoding is written independently of the kit's reader: magic (0, 0, type, ndim), the
dimensions as big-endian uint32, then the data big-endian.
"""

import gzip
import os
import struct

import numpy as np

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


def idx_bytes(array):
    array = np.asarray(array)
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, TYPE_CODES[big.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big.tobytes()


def write_fashion_like(directory, n_train=40, n_val=20, gz=True, learnable=False, seed=1):
    """The four files Debian's dataset-fashion-mnist ships, with `n_train` / `n_val` 28x28 images
    labelled i % 10. Random pixels, or with `learnable` class c as a bright band at rows 2c+2..2c+7
    over dark noise (a net can learn it in a few steps)."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_val)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        if learnable:
            images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
            for i, c in enumerate(labels):
                images[i, 2 * c + 2:2 * c + 8, 3:25] = 220
        else:
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for stem, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            data = idx_bytes(arr)
            with open(os.path.join(directory, stem + (".gz" if gz else "")), "wb") as f:
                f.write(gzip.compress(data, mtime=0) if gz else data)
    return str(directory)


def kit_config(**sections):
    """configs/imagenet.yaml (every key's default) with `sections` laid over it, e.g.
    kit_config(data={"name": "fashion_mnist", "resolution": 28}, model={"num_classes": 10})."""
    from infra.config import default_config, load_yaml, merge

    return merge(load_yaml(default_config("imagenet")), sections)


def data_settings(data=None, model=None):
    """The DataSettings of `data` (and `model`) keys laid over configs/imagenet.yaml."""
    from imagedata.settings import DataSettings

    return DataSettings.from_config(kit_config(data=data or {}, model=model or {}))


def sampler_section(section=None, **keys):
    """A `supernet.sampler` section: configs/imagenet.yaml's with `section` and `keys` laid over it."""
    from infra.config import get

    return {**get(kit_config(), "supernet.sampler"), **(section or {}), **keys}


def optim_settings(keys=None):
    """OptimSettings of `train:`-style keys (max_epoch, lr_schedule and the optimiser's) laid over
    configs/imagenet.yaml's `train:` section."""
    from supernet.settings import OPTIM_KEYS, OptimSettings

    train = {**kit_config()["train"], **(keys or {})}
    return OptimSettings.from_section({k: train[k] for k in OPTIM_KEYS}, "train", train["max_epoch"],
                                      train["lr_schedule"])


def train_settings(keys=None):
    """TrainSettings of `keys` laid over configs/imagenet.yaml's `train:` section."""
    from supernet.settings import TrainSettings

    return TrainSettings.from_config(kit_config(train=keys or {}))


def dataset_of(cfg, split="train", augment=None):
    """imagedata.build_dataset of a config's `data:` (and `model:`) keys laid over configs/imagenet.yaml."""
    from imagedata import DataSettings, build_dataset

    return build_dataset(DataSettings.from_config(kit_config(**{k: cfg[k] for k in ("data", "model") if k in cfg})),
                         split, augment)
