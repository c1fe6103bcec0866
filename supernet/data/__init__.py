"""Data for standalone training, supernet training and evaluation: one package, one API.

    dataset = build_dataset(cfg, "train")            # items (CHW uint8, int64 label, bad flag)
    loader = build_loader(dataset, per_rank_batch, shuffle=True, drop_last=True,
                          num_workers=cfg["data"]["num_workers"], seed=seed)
    for epoch in ...:
        loader.set_epoch(epoch)
        for images, labels in loader: ...            # float32, normalised on the device (dataset.normalize)
        loader.bad_count                              # unreadable images replaced this epoch
"""

from .datasets import (
    ArrayImages,
    ImageFiles,
    SampleDataset,
    build_dataset,
    image_split,
    read_list_file,
    scan_folders,
    stratified_subset,
)
from .errors import DataError
from .idx import IdxError, load_fashion_mnist, parse_idx, read_idx
from .loaders import Loader, ShardedBatchSampler, build_loader
from .transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = [
    "ArrayImages", "ImageFiles", "SampleDataset", "build_dataset", "image_split", "read_list_file",
    "scan_folders", "stratified_subset", "DataError", "IdxError", "load_fashion_mnist", "parse_idx",
    "read_idx", "Loader", "ShardedBatchSampler", "build_loader", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "IMAGENET_MEAN", "IMAGENET_STD", "Normalize",
]
