"""Data for standalone training, supernet training and evaluation: one package, one API.

    data = DataSettings.from_config(cfg)             # the data: section, checked and frozen
    dataset = build_dataset(data, "train")           # items (CHW uint8, int64 label, bad flag)
    loader = build_loader(dataset, per_rank_batch, shuffle=True, drop_last=True,
                          num_workers=data.num_workers, seed=seed)
    for epoch in ...:
        loader.set_epoch(epoch)
        for images, labels in loader: ...            # float32, normalised on the device (dataset.normalize)
        loader.bad_count                              # unreadable images replaced this epoch

Names are resolved lazily (PEP 562), so `imagedata.settings` (checked before a launcher starts) does not
import Paddle; touching `imagedata.build_dataset` and friends does.
"""

from infra.lazy import lazy_exports

_EXPORTS = {
    "ArrayImages": "datasets", "ImageFiles": "datasets", "SampleDataset": "datasets", "build_dataset": "datasets",
    "image_split": "datasets", "read_list_file": "datasets", "scan_folders": "datasets",
    "stratified_subset": "datasets", "DataError": "errors", "DataSettings": "settings", "IdxError": "idx",
    "load_fashion_mnist": "idx", "parse_idx": "idx", "read_idx": "idx", "Loader": "loaders",
    "ShardedBatchSampler": "loaders", "build_loader": "loaders", "FASHION_MNIST_MEAN": "transforms",
    "FASHION_MNIST_STD": "transforms", "IMAGENET_MEAN": "transforms", "IMAGENET_STD": "transforms",
    "Normalize": "transforms",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
