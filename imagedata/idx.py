"""IDX files (the MNIST family's format) read with numpy, gzipped or plain.

Format: two zero bytes, a type byte, a dimension count, then one big-endian uint32 per
dimension and the row-major data. Fashion-MNIST ships as four such files.
"""

import gzip
import os

import numpy as np

from .errors import DataError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"


class IdxError(DataError):
    """An IDX file is truncated or does not start with a valid IDX header."""


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IdxError(f"{path}: corrupt gzip stream ({e})") from None
    return raw


def parse_idx(raw, source="<bytes>"):
    if len(raw) < 4:
        raise IdxError(f"{source}: {len(raw)} bytes is too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise IdxError(f"{source}: bad IDX magic number 0x{raw[:4].hex()} "
                       f"(expected 0x0000TTNN with type TT in {sorted(f'{t:02x}' for t in IDX_TYPES)})")
    dtype = np.dtype(IDX_TYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{source}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(f"{source}: header says {dims} x {dtype.itemsize} bytes = {expected} bytes of data, "
                       f"file has {len(raw) - header}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (native byte order), gzipped or not."""
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), source=path)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise DataError(f"Fashion-MNIST file {os.path.join(directory, stem)}.gz (or without .gz) not found; "
                    f"`{INSTALL_HINT}` provides it in {FASHION_MNIST_DIR}, or set data.fashion_mnist_dir")


def load_fashion_mnist(directory=FASHION_MNIST_DIR, split="train"):
    """(images uint8 [N, 28, 28], labels int64 [N]) of the 'train' (60k) or 'val' (t10k, 10k) split."""
    if split not in FASHION_MNIST_FILES:
        raise DataError(f"unknown split {split!r}: expected 'train' or 'val'")
    if not os.path.isdir(directory):
        raise DataError(f"Fashion-MNIST directory {directory} does not exist; `{INSTALL_HINT}` "
                        f"installs the dataset in {FASHION_MNIST_DIR}, or set data.fashion_mnist_dir")
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    image_path, label_path = _find(directory, image_stem), _find(directory, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxError(f"{image_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise IdxError(f"{label_path}: expected {len(images)} labels, got shape {labels.shape}")
    return images, labels.astype(np.int64)
