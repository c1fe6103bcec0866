"""Batches for one rank: sharded, seeded per epoch, with unreadable images counted and reported.

Training shards come from `paddle.io.DistributedBatchSampler` (every rank the same number of
batches, as data-parallel training needs); its shuffle is seeded by (seed, epoch) rather than
the epoch alone, so different seeds see different orders. A resumed epoch starts at its first
untrained batch (`set_epoch(e, start_batch=k)`): the skipped batches are never loaded, and since
every sample's augmentation is seeded by its key, batch k onwards is what it would have been.
Evaluation shards (`exact_shards`)
split the indices rank::world without padding, so summed metrics count each sample once.
"""

import logging

import numpy as np
import paddle
from paddle.io import DataLoader, DistributedBatchSampler

from .errors import DataError

log = logging.getLogger(__name__)


def _shuffle_seed(seed, epoch):
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class ShardedBatchSampler(DistributedBatchSampler):
    """Yields lists of `(index, epoch, seed)` keys; see `datasets` for what the key seeds."""

    def __init__(self, dataset, batch_size, shuffle, drop_last, seed=0, num_replicas=None, rank=None,
                 exact_shards=False):
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         drop_last=drop_last)
        self.seed = int(seed)
        self.exact_shards = exact_shards
        if exact_shards and (shuffle or drop_last):
            raise DataError("exact_shards is for evaluation: it needs shuffle=False and drop_last=False")
        self.set_epoch(0)

    def set_epoch(self, epoch, start_batch=0):
        start_batch = int(start_batch)
        if not 0 <= start_batch <= len(self):
            raise DataError(f"start_batch {start_batch} is outside the epoch's {len(self)} batches")
        self.logical_epoch = int(epoch)
        self.epoch = _shuffle_seed(self.seed, epoch)
        self.start_batch = start_batch

    def _indices(self):
        if self.exact_shards:
            mine = range(self.local_rank, len(self.dataset), self.nranks)
            return [list(mine[i:i + self.batch_size]) for i in range(0, len(mine), self.batch_size)]
        seed = self.epoch
        batches = list(super().__iter__())
        self.epoch = seed  # the parent advances it; keep the epoch's order reproducible
        return batches

    def __iter__(self):
        for batch in self._indices()[self.start_batch:]:
            yield [(int(i), self.logical_epoch, self.seed) for i in batch]

    def __len__(self):
        if self.exact_shards:
            mine = len(range(self.local_rank, len(self.dataset), self.nranks))
            return -(-mine // self.batch_size)
        return super().__len__()


class Loader:
    """Iterates `(images, labels)` tensors of this rank's shard; call `set_epoch(e)` before each epoch
    (`set_epoch(e, start_batch=k)` to resume it at batch k; `len()` still counts the whole epoch).

    Workers hand over uint8 batches, which arrive on the device; there the dataset's `normalize`
    makes them float32 (`normalize=False`: the uint8 batches themselves, e.g. for a uint8 cache).

    `bad_count` is the number of unreadable images met (and replaced) in the current or last
    pass; each one is logged with its path once per process.
    """

    def __init__(self, dataset, batch_size, shuffle, drop_last, num_workers=0, seed=0, num_replicas=None,
                 rank=None, exact_shards=False, normalize=True):
        if batch_size <= 0:
            raise DataError(f"batch size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.sampler = ShardedBatchSampler(dataset, batch_size, shuffle, drop_last, seed, num_replicas, rank,
                                           exact_shards)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=int(num_workers),
                                 return_list=True)
        self.normalize = dataset.normalize if normalize else None
        self.bad_count = 0
        self.reported = set()

    def set_epoch(self, epoch, start_batch=0):
        self.sampler.set_epoch(epoch, start_batch)

    @property
    def epoch(self):
        return self.sampler.logical_epoch

    def __len__(self):
        return len(self.sampler)

    def _note_bad(self, bad):
        flags = bad.numpy() if isinstance(bad, paddle.Tensor) else np.asarray(bad)
        for i in flags[flags >= 0]:
            self.bad_count += 1
            if int(i) not in self.reported:
                self.reported.add(int(i))
                log.warning("unreadable image %s replaced by the next readable sample", self.dataset.describe(int(i)))

    def __iter__(self):
        self.bad_count = 0
        on_gpu = paddle.device.get_device().startswith("gpu")
        for images, labels, bad in self.loader:
            self._note_bad(bad)
            if on_gpu:  # once per batch: left in (pinned) host memory, every op using them would copy again
                images, labels = to_device(images), to_device(labels)
            yield (self.normalize(images) if self.normalize is not None else images), labels


def to_device(tensor):
    """`tensor` on the GPU this process computes on, copied without blocking the host (a no-op when it
    is there already). The loader's batches arrive in pinned host memory, so the copy overlaps compute."""
    if tensor.place.is_gpu_place():
        return tensor
    return tensor.cuda(blocking=False)


def build_loader(dataset, batch_size, shuffle, drop_last, num_workers=0, seed=0, exact_shards=False,
                 num_replicas=None, rank=None, normalize=True) -> Loader:
    """A Loader of `batch_size` samples per rank (rank and world size from paddle.distributed
    unless given). Training: shuffle=True, drop_last=True. Evaluation: shuffle=False,
    drop_last=False, exact_shards=True. normalize=False yields the uint8 batches."""
    return Loader(dataset, batch_size, shuffle, drop_last, num_workers, seed, num_replicas, rank, exact_shards,
                  normalize)


def gather(dataset, indices, num_workers=0, seed=0, batch_size=256):
    """Decode the items at `indices` (in that order) into (images uint8, labels int64) arrays, not
    normalised (`dataset.normalize` does that).

    Goes through `build_loader` once, so ImageNet JPEGs decode in `num_workers` processes; `seed` is
    the augmentation seed of the item keys (calibration with train transforms). One preallocated
    array is filled: a list plus a stack would need twice the memory. (The evaluation cache and the
    BN calibration batches of `supernet.calibration` are read this way.)
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise DataError("no images selected for the cache (empty dataset or subset size 0)")
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
        raise DataError(f"the loader returned {pos} images for {indices.size} indices")
    return images, labels
