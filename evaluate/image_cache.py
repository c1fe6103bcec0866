"""The evaluation images and calibration batches, decoded once and held as tensors.

Ranking 45,000 subnets means showing every one of them the same images; decoding JPEGs or
building a DataLoader per subnet would cost more than the forward passes. So the evaluation
set (full split or a seeded class-stratified subset) and the K calibration batches are read
once into arrays and kept on the device when they fit (otherwise in host memory, copied one
batch at a time). The same seeds always give the same images, for every subnet and every run.

The cache holds normalised float32 or float16 images, or the decoded uint8 pixels
(`evaluate.cache_dtype: uint8`, a quarter of float32: the 50,000 ImageNet val images at 224 px
take 7.5 GB instead of 30 GB), normalised per batch on the device by the dataset's `Normalize`.
"""

import numpy as np
import paddle

from encoding import KitError

CACHE_PLACES = ("auto", "device", "host")
CACHE_DTYPES = ("float32", "float16", "uint8")


class TensorSet:
    """Images (N, C, H, W) and int64 labels (N,), on the device or in host memory; uint8 images
    need `normalize` (supernet.data.Normalize), applied per batch on the device."""

    def __init__(self, images, labels, on_device, normalize=None):
        self.on_device = on_device
        self.normalize = normalize
        if on_device:
            self.images = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(images)
            self.labels = labels if isinstance(labels, paddle.Tensor) else paddle.to_tensor(labels)
        else:
            self.images = images.numpy() if isinstance(images, paddle.Tensor) else np.asarray(images)
            self.labels = labels.numpy() if isinstance(labels, paddle.Tensor) else np.asarray(labels)
        if self.images.dtype in (paddle.uint8, np.uint8) and normalize is None:
            raise KitError("a uint8 image cache needs the Normalize of its dataset")

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def shape(self):
        return tuple(self.images.shape)

    def batches(self, batch_size):
        """(images float32, labels int64) device tensors, in order; no copies when on the device."""
        for start in range(0, len(self), batch_size):
            x = self.images[start:start + batch_size]
            y = self.labels[start:start + batch_size]
            if not self.on_device:
                x, y = paddle.to_tensor(x), paddle.to_tensor(y)
            if x.dtype == paddle.uint8:
                x = self.normalize(x)
            elif x.dtype != paddle.float32:
                x = x.astype("float32")
            yield x, y


def gather(dataset, indices, num_workers=0, seed=0, batch_size=256):
    """Decode the items at `indices` (in that order) into (images uint8, labels int64) arrays, not
    normalised (`dataset.normalize` does that).

    Goes through the data package's loader once, so ImageNet JPEGs decode in `num_workers`
    processes; `seed` is the augmentation seed of the item keys (calibration with train
    transforms). One preallocated array is filled: a list plus a stack would need twice the memory.
    """
    from supernet.data import build_loader

    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise KitError("no images selected for the cache (empty dataset or subset size 0)")
    loader = build_loader(dataset.subset(indices), batch_size, shuffle=False, drop_last=False,
                          num_workers=num_workers, seed=seed, exact_shards=True, num_replicas=1, rank=0,
                          normalize=False)
    images = labels = None
    pos = 0
    for x, y in loader:
        x, y = x.numpy(), y.numpy().reshape(-1)
        if images is None:
            images = np.empty((indices.size,) + x.shape[1:], dtype=x.dtype)
            labels = np.empty(indices.size, dtype=np.int64)
        images[pos:pos + len(x)] = x
        labels[pos:pos + len(x)] = y
        pos += len(x)
    if pos != indices.size:
        raise KitError(f"the loader returned {pos} images for {indices.size} indices")
    return images, labels


def choose_place(nbytes, place, device_gb, on_gpu, what="evaluation set"):
    """'device' or 'host' for an array of `nbytes`, following the config's cache setting."""
    if place not in CACHE_PLACES:
        raise KitError(f"unknown cache place {place!r}: expected one of {', '.join(CACHE_PLACES)}")
    if place == "host":
        return "host"
    fits = nbytes <= float(device_gb) * 2**30
    if place == "device":
        if on_gpu and not fits:
            raise KitError(f"{what} needs {nbytes / 2**30:.2f} GiB but evaluate.cache_device_gb is {device_gb}; "
                           f"raise it, use evaluate.cache=host, a smaller evaluate.eval_subset or "
                           f"evaluate.cache_dtype=uint8 (or float16)")
        return "device"
    return "device" if (fits or not on_gpu) else "host"


def to_cache_dtype(images, dtype, normalize=None, chunk=256):
    """`images` as the cache holds them: uint8 pixels kept as they are (dtype uint8), or normalised
    (uint8 pixels through `normalize`, chunk by chunk on the device) and stored as float32/float16."""
    if dtype not in CACHE_DTYPES:
        raise KitError(f"unknown cache dtype {dtype!r}: expected one of {', '.join(CACHE_DTYPES)}")
    if images.dtype != np.uint8:
        if dtype == "uint8":
            raise KitError(f"cache dtype uint8 needs the decoded uint8 pixels, got {images.dtype} images")
        return images.astype(dtype, copy=False)
    if dtype == "uint8":
        return images
    if normalize is None:
        raise KitError("normalising uint8 images for the cache needs the Normalize of their dataset")
    out = np.empty(images.shape, dtype=dtype)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = normalize(paddle.to_tensor(images[start:start + chunk])).numpy()
    return out


def make_tensor_set(images, labels, place="auto", device_gb=4.0, dtype="float32", on_gpu=False,
                    what="evaluation set", normalize=None):
    images = to_cache_dtype(images, dtype, normalize)
    where = choose_place(images.nbytes, place, device_gb, on_gpu, what)
    return TensorSet(images, labels, on_device=(where == "device"), normalize=normalize)


def calibration_indices(num_items, num_batches, batch_size, seed):
    """K*B distinct training-split indices from a seeded generator (with replacement only when
    the split is smaller than K*B), split into K batches."""
    total = int(num_batches) * int(batch_size)
    if num_batches < 1 or batch_size < 1:
        raise KitError(f"calibration needs batches >= 1 and batch_size >= 1, got {num_batches} and {batch_size}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(num_items, size=total, replace=total > num_items)
    return idx.reshape(num_batches, batch_size)
