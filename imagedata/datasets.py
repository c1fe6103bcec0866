"""Datasets: ImageNet-style image files (class folders or list files) and Fashion-MNIST arrays.

Items are drawn by key `(index, epoch, seed)` (a bare int means epoch 0, seed 0): the key seeds
the sample's augmentation, so the loaders can make every epoch differ yet be reproducible.
An item is `(image uint8 CxHxW, label int64, bad int64)` (the dataset's `normalize` turns a batch of
them into float32 on the device): when the file at `index` cannot be
decoded, the next readable index is used instead (deterministic) and `bad` holds the
unreadable index (else -1), so the loader can count and report it in the main process even
when the decoding happened in a worker. Only the first unreadable file of a run of them is
reported by that item; each one is reported when its own index is drawn.
"""

import os

import numpy as np
import paddle
from PIL import Image

from .errors import DataError
from .glyphs import glyph_spec, load_glyphs
from .idx import FASHION_MNIST_DIR, load_fashion_mnist
from .settings import LAYOUTS, DataSettings
from .transforms import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEval,
    ImageTrain,
    Normalize,
    SmallImage,
    sample_rng,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")
# What PIL raises on truncated, corrupt or vanished files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class UnreadableSample(Exception):
    """Raised by `_load` for a sample that cannot be decoded; never leaves the dataset."""


def _split_key(key):
    if isinstance(key, tuple):
        index, epoch, seed = key
        return int(index), int(epoch), int(seed)
    return int(key), 0, 0


class SampleDataset(paddle.io.Dataset):
    """Base: labelled samples, a transform `(raw, rng) -> array`, unreadable-sample replacement."""

    def __init__(self, labels, transform, classes):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.classes = list(classes)

    def __len__(self):
        return len(self.labels)

    def _load(self, i):
        raise NotImplementedError

    def describe(self, i):
        """Human-readable name of sample `i` (a file path for image files)."""
        return f"sample {i}"

    @property
    def normalize(self):
        """The Normalize (float conversion, mean, std) for batches of this dataset's uint8 items;
        None for a transform without `mean` and `std` (one that returns finished float arrays)."""
        mean, std = getattr(self.transform, "mean", None), getattr(self.transform, "std", None)
        return None if mean is None or std is None else Normalize(mean, std)

    def __getitem__(self, key):
        index, epoch, seed = _split_key(key)
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        bad = -1
        for step in range(n):
            i = (index + step) % n
            try:
                raw = self._load(i)
            except UnreadableSample:
                if bad < 0:
                    bad = i
                continue
            image = self.transform(raw, sample_rng(seed, epoch, index))
            return image, np.int64(self.labels[i]), np.int64(bad)
        raise DataError(f"no sample of this dataset can be read (first tried: {self.describe(index)})")

    def subset(self, indices):
        raise NotImplementedError

    def concat(self, other):
        """This dataset's samples followed by `other`'s (same kind and classes), with this transform."""
        raise NotImplementedError

    def with_classes(self, keep):
        """Only the samples of the classes `keep` (indices into `classes`), relabelled 0..len(keep)-1
        in that order: a harder or smaller task from the same files."""
        if not isinstance(keep, (list, tuple)) or not all(isinstance(c, int) and not isinstance(c, bool) for c in keep):
            raise DataError(f"data.classes {keep!r}: expected a list of class indices, e.g. [0, 2, 4, 6]")
        keep = list(keep)
        if not keep or len(set(keep)) != len(keep) or not all(0 <= c < len(self.classes) for c in keep):
            raise DataError(f"data.classes {keep}: expected distinct class indices in 0..{len(self.classes) - 1}")
        lookup = np.full(len(self.classes), -1, dtype=np.int64)
        lookup[keep] = np.arange(len(keep))
        chosen = self.subset(np.flatnonzero(lookup[self.labels] >= 0))
        chosen.labels = lookup[chosen.labels]
        chosen.classes = [self.classes[c] for c in keep]
        return chosen


class ImageFiles(SampleDataset):
    """Image files on disk, decoded with PIL as RGB (or 'L' for one-channel models). `draft` (w, h): a
    JPEG is decoded at the largest reduced scale (1/2, 1/4, 1/8) keeping both sides >= w, h (PIL's
    draft mode: libjpeg's DCT scaling, far cheaper than a full decode), before the transform resizes it;
    other formats decode whole. None: every image decodes at full size."""

    def __init__(self, paths, labels, transform, classes, mode="RGB", root=None, draft=None):
        super().__init__(labels, transform, classes)
        self.paths = list(paths)
        self.mode = mode
        self.root = root
        self.draft = None if draft is None else tuple(draft)
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def _load(self, i):
        try:
            with Image.open(self.paths[i]) as image:
                if self.draft is not None:
                    image.draft(None, self.draft)  # the scale only: the colour conversion stays convert's
                return image.convert(self.mode)
        except DECODE_ERRORS:
            raise UnreadableSample(self.paths[i]) from None

    def describe(self, i):
        return self.paths[i]

    def subset(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        return ImageFiles([self.paths[i] for i in idx], self.labels[idx], self.transform, self.classes,
                          self.mode, self.root, self.draft)

    def concat(self, other):
        return ImageFiles(self.paths + other.paths, np.concatenate([self.labels, other.labels]), self.transform,
                          self.classes, self.mode, self.root, self.draft)


class ArrayImages(SampleDataset):
    """Images held in memory as a uint8 array [N, H, W] (Fashion-MNIST)."""

    def __init__(self, images, labels, transform, classes):
        super().__init__(labels, transform, classes)
        self.images = images
        if len(images) != len(self.labels):
            raise DataError(f"{len(images)} images but {len(self.labels)} labels")

    def _load(self, i):
        return self.images[i]

    def subset(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImages(self.images[idx], self.labels[idx], self.transform, self.classes)

    def concat(self, other):
        return ArrayImages(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]),
                           self.transform, self.classes)


# --- ImageNet layouts ----------------------------------------------------------------------------

def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(split_dir):
    """Sorted class sub-directory names of `split_dir` (their index is the label)."""
    if not os.path.isdir(split_dir):
        raise DataError(f"image directory {split_dir} does not exist")
    entries = sorted(os.scandir(split_dir), key=lambda e: e.name)
    classes = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if not classes:
        loose = sum(1 for e in entries if e.is_file() and _is_image(e.name))
        hint = (f" ({loose} images lie directly in it: sort them into class folders, or give a "
                f"{os.path.basename(split_dir)}_list.txt with 'path label' lines)") if loose else ""
        raise DataError(f"image directory {split_dir} has no class folders{hint}")
    return classes


def scan_folders(split_dir, classes=None):
    """(paths, labels, classes) of `split_dir/<class>/<image>`, classes sorted by name.

    `classes` fixes the label order (e.g. the training split's for the validation split)."""
    own = class_folders(split_dir)
    if classes is None:
        classes = own
    else:
        unknown = sorted(set(own) - set(classes))
        if unknown:
            raise DataError(f"{split_dir} has class folders the training split lacks: {unknown[:5]}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        if not os.path.isdir(folder):
            continue
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        paths.extend(os.path.join(folder, f) for f in files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataError(f"image directory {split_dir} has class folders but no image files "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    return paths, labels, classes


def read_list_file(list_path, root):
    """(paths, labels) from PaddleClas-style lines `relative/path label` (paths relative to root)."""
    paths, labels = [], []
    try:
        f = open(list_path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"list file {list_path} does not exist") from None
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"{list_path}:{lineno}: expected 'path label', got {line!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise DataError(f"{list_path}:{lineno}: label {parts[1]!r} is not an integer") from None
            if label < 0:
                raise DataError(f"{list_path}:{lineno}: negative label {label}")
            paths.append(os.path.join(root, parts[0]))
            labels.append(label)
    if not paths:
        raise DataError(f"list file {list_path} lists no images")
    if not os.path.isfile(paths[0]):  # one probe catches a wrong image_dir without a 1.3M-file scan
        raise DataError(f"{list_path}: first listed image {paths[0]} does not exist (is data.image_dir right?)")
    return paths, labels


def image_split(image_dir, split, layout="auto"):
    """(paths, labels, classes) of one split of an ImageNet-style directory."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown data.layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if not image_dir:
        raise DataError("data.image_dir is not set (pass --image_dir DIR or data.image_dir=DIR)")
    if not os.path.isdir(image_dir):
        raise DataError(f"image directory {image_dir} does not exist")
    list_path = os.path.join(image_dir, f"{split}_list.txt")
    split_dir = os.path.join(image_dir, split)
    if layout == "auto":
        if os.path.isfile(list_path):
            layout = "lists"
        elif os.path.isdir(split_dir):
            layout = "folders"
        else:
            raise DataError(f"{image_dir} has neither {split}_list.txt nor a {split}/ directory of class folders")
    if layout == "lists":
        paths, labels = read_list_file(list_path, image_dir)
        classes = [str(c) for c in range(max(labels) + 1)]
        return paths, labels, classes
    train_classes = None
    if split != "train" and os.path.isdir(os.path.join(image_dir, "train")):
        train_classes = class_folders(os.path.join(image_dir, "train"))
    return scan_folders(split_dir, train_classes)


# --- subsets -------------------------------------------------------------------------------------

def stratified_subset(labels, n, seed):
    """Sorted indices of `n` samples whose class mix follows the full set's (seeded, reproducible).

    Each class gets floor(n * share); the leftover places go to the classes with the largest
    fractional parts (ties broken by the seeded generator); members are drawn without replacement.
    """
    labels = np.asarray(labels)
    total = len(labels)
    n = int(n)
    if n <= 0:
        raise DataError(f"subset size must be positive, got {n}")
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    left = n - int(quota.sum())
    if left:
        order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
        quota[order[:left]] += 1
    chosen = []
    for c, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == c)
        if q:
            chosen.append(rng.choice(members, size=int(q), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --- from the data settings ----------------------------------------------------------------------

def _norm(data, mean, std):
    return tuple(data.mean or mean), tuple(data.std or std)


def build_dataset(data, split="train", augment=None):
    """The `split` ('train' or 'val') dataset the data settings (DataSettings) describe, subset applied.

    augment: None = augment the training split only. With augmentation the `data.augment`
    kind applies ('standard': ImageNet RandomResizedCrop + flip, Fashion-MNIST pad-2 random
    crop + flip; 'flip'; 'none'); without it, the evaluation transform.
    """
    if not isinstance(data, DataSettings):
        raise TypeError(f"build_dataset takes DataSettings (DataSettings.from_config(cfg)), got {type(data).__name__}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected 'train' or 'val'")
    augment = split == "train" if augment is None else augment
    kind = data.augment if augment else "none"
    dataset = _split_dataset(data, split, kind)
    if data.holdout:
        dataset = _apply_holdout(data, split, kind, dataset, int(data.holdout))
    size = data.train_subset if split == "train" else data.val_subset
    if size is not None:
        dataset = dataset.subset(stratified_subset(dataset.labels, size, data.subset_seed))
    if len(dataset) and dataset.labels.max() >= data.num_classes:
        raise DataError(f"the {split} split has labels up to {int(dataset.labels.max())} but model.num_classes "
                        f"is {data.num_classes}: set model.num_classes, or keep fewer classes with data.classes")
    return dataset


def _apply_holdout(data, split, kind, dataset, holdout):
    """`data.holdout` training images leave the training split and join the validation split:
    a larger validation set where the official one is small (Fashion-MNIST's 10,000 images put
    +-0.16% of sampling noise on each accuracy, as much as seed-to-seed training noise)."""
    train = dataset if split == "train" else _split_dataset(data, "train", kind)
    if not 0 < holdout < len(train):
        raise DataError(f"data.holdout {holdout}: the training split has {len(train)} images "
                        f"(hold out between 1 and {len(train) - 1})")
    held = stratified_subset(train.labels, holdout, data.subset_seed)
    if split == "train":
        return dataset.subset(np.setdiff1d(np.arange(len(train)), held))
    if list(train.classes) != list(dataset.classes):
        raise DataError("data.holdout: the training and validation splits have different classes")
    return dataset.concat(train.subset(held))


def _split_dataset(data, split, kind):
    dataset = _whole_split(data, split, kind)
    return dataset if data.classes is None else dataset.with_classes(list(data.classes))


def _whole_split(data, split, kind):
    name, resolution = data.name, data.resolution
    if name in ("fashion_mnist", "glyphs"):
        if name == "glyphs":  # IDX files too, checked against the config's data.glyphs (imagedata/glyphs.py)
            glyphs = None if data.glyphs is None else dict(data.glyphs)
            images, labels, manifest = load_glyphs(*glyph_spec(glyphs), split)
            norm, classes = ((manifest["mean"],), (manifest["std"],)), list(manifest["chars"])
        else:
            images, labels = load_fashion_mnist(data.fashion_mnist_dir or FASHION_MNIST_DIR, split)
            norm, classes = (FASHION_MNIST_MEAN, FASHION_MNIST_STD), [str(c) for c in range(10)]
        mean, std = _norm(data, *norm)
        transform = SmallImage(resolution, pad=2 if kind == "standard" else 0, flip=kind != "none",
                               mean=mean, std=std)
        return ArrayImages(images, labels, transform, classes)
    paths, labels, classes = image_split(data.image_dir, split, data.layout)
    mode = {3: "RGB", 1: "L"}.get(data.in_channels)
    if mode is None:
        raise DataError(f"image files can feed models with 1 or 3 input channels, not {data.in_channels}")
    mean, std = _norm(data, IMAGENET_MEAN if mode == "RGB" else (0.5,), IMAGENET_STD if mode == "RGB" else (0.5,))
    draft = None
    if kind == "standard":
        transform = ImageTrain(resolution, data.crop_scale, data.crop_ratio, mean, std)
    else:
        resize = data.val_resize or int(round(resolution / 0.875))
        transform = ImageEval(resolution, resize, flip=kind == "flip", mean=mean, std=std)
        draft = (resize, resize) if data.jpeg_draft else None  # the shorter side stays >= resize
    return ImageFiles(paths, labels, transform, classes, mode, root=data.image_dir, draft=draft)
