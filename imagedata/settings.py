"""The `data:` section read once: a frozen settings object, checked when it is built (a bad key or value is
refused with one line naming it), that the data pipeline takes instead of the raw config. Defaults live in
configs/imagenet.yaml only: every key must be there (a config extends it with `base:`).

    data = DataSettings.from_config(cfg)
    dataset = build_dataset(data, "train")
"""

import os
from dataclasses import dataclass
from types import MappingProxyType

from infra.config import exact_keys, get

from .errors import DataError

DATASETS = ("imagenet", "fashion_mnist", "glyphs")
LAYOUTS = ("auto", "folders", "lists")
AUGMENTS = ("standard", "flip", "none")
KEYS = ("name", "image_dir", "layout", "fashion_mnist_dir", "glyphs", "resolution", "val_resize", "crop_scale",
        "crop_ratio", "augment", "mean", "std", "train_subset", "val_subset", "subset_seed", "holdout", "classes",
        "num_workers", "jpeg_draft")
# Keys that say where the files are or how fast they load, not what the images are.
LOCATION_KEYS = ("image_dir", "fashion_mnist_dir", "layout", "num_workers")


MAX_AUTO_WORKERS = 16  # `auto`'s cap: 16 PIL decoders outrun one GPU's training; more only cost memory


def workers_flag(text):
    """The type of --num_workers: `auto` or an integer (checked by `worker_count`)."""
    return text if text == "auto" else int(text)


def worker_count(value, key="data.num_workers", environ=None, cpu_count=None):
    """Loader worker processes per rank of `data.num_workers`: an integer >= 0 as given, or `auto`: this
    rank's share of the cores (runtime.cpu_speed.cores_per_process: the cores this process may run on
    over the ranks on this node) less one for the rank's own process (it collates and launches the
    steps), at least 1 (decoding then overlaps the steps) and at most MAX_AUTO_WORKERS."""
    if value == "auto":
        from runtime.cpu_speed import cores_per_process

        return min(MAX_AUTO_WORKERS, max(1, cores_per_process(environ, cpu_count) - 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{key} must be an integer >= 0 or auto, got {value!r}")
    return value


def _int(value, key, minimum, optional=True):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"data.{key} must be an integer >= {minimum}{' or null' if optional else ''}, got {value!r}")
    return value


def _pair(value, key):
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) or value[0] > value[1]):
        raise DataError(f"data.{key} must be a pair [low, high] of numbers, got {value!r}")
    return (float(value[0]), float(value[1]))


def _floats(value, key):
    if value is None:
        return None
    if (not isinstance(value, list | tuple) or not value
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise DataError(f"data.{key} must be a list of numbers (one per channel) or null, got {value!r}")
    return tuple(float(v) for v in value)


def _bool(value, key):
    if not isinstance(value, bool):
        raise DataError(f"data.{key} must be true or false, got {value!r}")
    return value


def _choice(value, key, allowed):
    if value not in allowed:
        raise DataError(f"data.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(frozen=True)
class DataSettings:
    """The `data:` section (and the two model keys the images must fit), checked and frozen. What each key
    does: configs/imagenet.yaml."""
    name: str
    image_dir: str | None
    layout: str
    fashion_mnist_dir: str | None
    glyphs: MappingProxyType | None
    resolution: int
    val_resize: int | None
    crop_scale: tuple
    crop_ratio: tuple
    augment: str
    mean: tuple | None
    std: tuple | None
    train_subset: int | None
    val_subset: int | None
    subset_seed: int
    holdout: int | None
    classes: tuple | None
    num_workers: int       # resolved: `auto` is worker_count's number for this process
    jpeg_draft: bool       # evaluation resizes decode JPEGs at a reduced scale first (PIL's draft mode)
    in_channels: int       # model.in_channels: 1 (grayscale) or 3 (RGB) for image files
    num_classes: int       # model.num_classes: labels must be below it

    @classmethod
    def from_config(cls, cfg):
        data = get(cfg, "data", None)
        if not isinstance(data, dict):
            raise DataError("config has no 'data:' section (see configs/imagenet.yaml)")
        data = exact_keys(data, KEYS, "data")
        name = _choice(data["name"], "name", DATASETS)
        image_dir = data["image_dir"]
        if isinstance(image_dir, str) and not image_dir.strip():
            raise DataError("data.image_dir is empty: give the image directory (--image_dir DIR) or leave it out")
        if image_dir is not None and name != "imagenet":
            raise DataError(f"data.image_dir is set but data.name is {name}: set data.name=imagenet "
                            "(or use configs/imagenet.yaml) to train on an image directory")
        glyphs = data["glyphs"]
        if glyphs is not None and not isinstance(glyphs, dict):
            raise DataError(f"data.glyphs must be a mapping or null, got {glyphs!r}")
        classes = data["classes"]
        if classes is not None and (not isinstance(classes, list | tuple)
                                    or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)):
            raise DataError(f"data.classes {classes!r}: expected a list of class indices, e.g. [0, 2, 4, 6]")
        return cls(
            name=name, image_dir=None if image_dir is None else str(image_dir),
            layout=_choice(data["layout"], "layout", LAYOUTS),
            fashion_mnist_dir=data["fashion_mnist_dir"],
            glyphs=None if glyphs is None else MappingProxyType(dict(glyphs)),
            resolution=_int(data["resolution"], "resolution", 1, optional=False),
            val_resize=_int(data["val_resize"], "val_resize", 1),
            crop_scale=_pair(data["crop_scale"], "crop_scale"), crop_ratio=_pair(data["crop_ratio"], "crop_ratio"),
            augment=_choice(data["augment"], "augment", AUGMENTS),
            mean=_floats(data["mean"], "mean"), std=_floats(data["std"], "std"),
            train_subset=_int(data["train_subset"], "train_subset", 1),
            val_subset=_int(data["val_subset"], "val_subset", 1),
            subset_seed=_int(data["subset_seed"], "subset_seed", 0, optional=False),
            holdout=_int(data["holdout"], "holdout", 1),
            classes=None if classes is None else tuple(classes),
            num_workers=worker_count(data["num_workers"]),
            jpeg_draft=_bool(data["jpeg_draft"], "jpeg_draft"),
            in_channels=int(get(cfg, "model.in_channels")), num_classes=int(get(cfg, "model.num_classes")))

    def check_images_exist(self):
        """Refuse an ImageNet-style run whose image directory is unset or missing (before a launcher starts)."""
        if self.name != "imagenet":
            return
        if self.image_dir is None:
            raise DataError("data.image_dir is not set (pass --image_dir DIR or data.image_dir=DIR)")
        if not os.path.isdir(self.image_dir):
            raise DataError(f"image directory {self.image_dir} does not exist")
