"""Per-sample transforms that draw their randomness from a generator passed in.

Every random choice (crop box, flip) comes from `sample_rng(seed, epoch, index)`, never from
a global generator, so an image gets the same augmentation whether it is decoded in the main
process or a worker, with any number of workers, and in a resumed run as in an
uninterrupted one. Geometry uses `paddle.vision.transforms.functional` on PIL images.

Transforms return uint8 CxHxW arrays: a worker hands a 224 px ImageNet sample across shared
memory as 150 KB instead of 602 KB of float32. `Normalize` does the float conversion and the
(x / 255 - mean) / std on the batch once it is on the device (the loaders, the evaluation cache
and the calibration batches all call it); the arithmetic and its order are the former per-sample
numpy ones, so results are unchanged.
"""

import math

import numpy as np
import paddle
from paddle.vision.transforms import functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pixel mean and standard deviation of the 60,000 Fashion-MNIST training images (scaled to [0, 1]).
FASHION_MNIST_MEAN = (0.2860406,)
FASHION_MNIST_STD = (0.3530242,)



def sample_rng(seed, epoch, index):
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def to_chw(image):
    """PIL image or uint8 HxW(xC) array -> uint8 CxHxW (contiguous)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"transforms take 8-bit images, got an array of {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    return np.ascontiguousarray(a.transpose(2, 0, 1))


class Normalize:
    """uint8 images (N, C, H, W) -> float32 (x / 255 - mean) / std, computed where the batch is (the
    device). Float batches pass through unchanged: they were normalised already."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} need one value per channel")

    def _constants(self, place):
        """(mean, std) as (1, C, 1, 1) float32 tensors on `place`, made once per place: uploading them
        from numpy at every batch is two host-to-device copies (and syncs) per batch on a GPU."""
        cache = self.__dict__.setdefault("_on_place", {})
        key = str(place)
        if key not in cache:
            c = len(self.mean)
            cache[key] = tuple(paddle.to_tensor(np.asarray(v, dtype=np.float32).reshape(1, c, 1, 1), place=place)
                               for v in (self.mean, self.std))
        return cache[key]

    def __getstate__(self):  # loader workers get the numbers, not tensors on a device
        return {k: v for k, v in self.__dict__.items() if k != "_on_place"}

    def __call__(self, images):
        if not isinstance(images, paddle.Tensor):
            images = paddle.to_tensor(np.ascontiguousarray(images))
        if images.dtype != paddle.uint8:
            return images
        x = images.astype("float32") / 255.0
        mean, std = self._constants(x.place)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


def random_resized_crop_box(width, height, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), tries=10):
    """(top, left, h, w) of a crop covering a random fraction `scale` of the area with aspect
    ratio (w/h) log-uniform in `ratio`; after `tries` misses, the largest centred crop whose
    aspect ratio lies in `ratio`."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(tries):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    own = width / height
    if own < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif own > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class ImageTrain:
    """RandomResizedCrop(resolution, scale, ratio) + RandomHorizontalFlip; uint8 out, `mean`/`std` for Normalize."""

    def __init__(self, resolution, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.resolution, self.scale, self.ratio = int(resolution), tuple(scale), tuple(ratio)
        self.mean, self.std = mean, std

    def __call__(self, image: Image.Image, rng):
        top, left, h, w = random_resized_crop_box(image.width, image.height, rng, self.scale, self.ratio)
        image = F.resize(F.crop(image, top, left, h, w), (self.resolution, self.resolution), "bilinear")
        if rng.random() < 0.5:
            image = F.hflip(image)
        return to_chw(image)


class ImageEval:
    """Resize the shorter side to `resize`, CenterCrop(resolution), optional flip; uint8 out."""

    def __init__(self, resolution, resize, flip=False, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.resolution, self.resize, self.flip = int(resolution), int(resize), flip
        self.mean, self.std = mean, std

    def __call__(self, image: Image.Image, rng):
        image = F.center_crop(F.resize(image, self.resize, "bilinear"), self.resolution)
        if self.flip and rng.random() < 0.5:
            image = F.hflip(image)
        return to_chw(image)


class SmallImage:
    """Grey-scale arrays (Fashion-MNIST): optional zero-pad + random crop back to size, optional
    horizontal flip, resize to `resolution` when it differs; uint8 out."""

    def __init__(self, resolution, pad=0, flip=False, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD):
        self.resolution, self.pad, self.flip = int(resolution), int(pad), flip
        self.mean, self.std = mean, std

    def __call__(self, image: np.ndarray, rng):
        h, w = image.shape
        if self.pad:
            padded = np.pad(image, self.pad)
            top = int(rng.integers(0, 2 * self.pad + 1))
            left = int(rng.integers(0, 2 * self.pad + 1))
            image = padded[top:top + h, left:left + w]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
        if (h, w) != (self.resolution, self.resolution):
            image = F.resize(Image.fromarray(np.ascontiguousarray(image)), (self.resolution, self.resolution),
                             "bilinear")
        return to_chw(image)
