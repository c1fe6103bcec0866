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
    need `normalize` (imagedata.Normalize), applied per batch on the device."""

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
    """The cache of `images` (uint8 pixels or float arrays) as `dtype`, where `place` says. With
    place 'auto' on a GPU, float32 images that do not fit in `device_gb` while their uint8 pixels
    do are kept as uint8 on the device (normalised per batch there by the same `normalize` that would
    have made the float32 cache, so the same numbers): the host fallback copies every batch to the
    device again for every subnet, blocking and unpinned (ImageNet's 50,000 val images: 30 GB as
    float32, 7.5 GB as uint8)."""
    if (place == "auto" and on_gpu and dtype == "float32" and normalize is not None
            and getattr(images, "dtype", None) == np.uint8
            and images.nbytes * 4 > float(device_gb) * 2**30 >= images.nbytes):
        dtype = "uint8"
    images = to_cache_dtype(images, dtype, normalize)
    where = choose_place(images.nbytes, place, device_gb, on_gpu, what)
    return TensorSet(images, labels, on_device=(where == "device"), normalize=normalize)
