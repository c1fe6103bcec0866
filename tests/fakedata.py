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
