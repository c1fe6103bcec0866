"""Batches for one rank: sharded, seeded per epoch, with unreadable images counted and reported.

Training shards come from `paddle.io.DistributedBatchSampler` (every rank the same number of
batches, as data-parallel training needs); its shuffle is seeded by (seed, epoch) rather than
the epoch alone, so different seeds see different orders. A resumed epoch starts at its first
untrained batch (`set_epoch(e, start_batch=k)`): the skipped batches are never loaded, and since
every sample's augmentation is seeded by its key, batch k onwards is what it would have been.
Evaluation shards (`exact_shards`)
split the indices rank::world without padding, so summed metrics count each sample once.
"""

import itertools
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


# Bytes of images each rank sends per round of a sharded decode's all-gather (`gather(across_ranks=True)`):
# the round's buffers (this size times the ranks) are all it needs beside the result.
GATHER_ROUND_BYTES = 64 * 2**20


def gather(dataset, indices, num_workers=0, seed=0, batch_size=256, across_ranks=False, keep=True):
    """Decode the items at `indices` (in that order) into (images uint8, labels int64) arrays, not
    normalised (`dataset.normalize` does that).

    Goes through `build_loader` once, so ImageNet JPEGs decode in `num_workers` processes; `seed` is
    the augmentation seed of the item keys (calibration with train transforms). One preallocated
    array is filled: a list plus a stack would need twice the memory. (The evaluation cache and the
    BN calibration batches of `supernet.calibration` are read this way.)

    `across_ranks` under several ranks (paddle.distributed): rank r decodes positions r::world and the
    shares are all-gathered in rounds of about GATHER_ROUND_BYTES per rank (`_share_out`), so each image is
    decoded once in the job and every rank gets the arrays one process decoding all of them gets (the same
    item keys: the same augmentation, the same replacement of an unreadable file). It is collective: every
    rank calls it at the same point, and `keep=False` makes a rank only contribute its share (returns None;
    a rank with nothing to score still joins). A rank whose share fails to decode stops every rank.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise DataError("no images selected for the cache (empty dataset or subset size 0)")
    world, rank = 1, 0
    if across_ranks:
        from runtime.device import rank as this_rank
        from runtime.device import world_size

        world = world_size()
        rank = this_rank() if world > 1 else 0
    loader = build_loader(dataset.subset(indices), batch_size, shuffle=False, drop_last=False,
                          num_workers=num_workers, seed=seed, exact_shards=True, num_replicas=world, rank=rank,
                          normalize=False)
    if world == 1:
        images, labels = _decode(iter(loader), indices.size, None, None)
        return images, labels
    return _share_out(iter(loader), indices.size, rank, world, keep)


def _decode(batches, count, images, labels):
    """Fill `images`/`labels` (allocated from the first batch when None) with `count` items of `batches`."""
    pos = 0
    for x, y in batches:
        x, y = x.numpy(), y.numpy().reshape(-1)
        if images is None:
            images = np.empty((count,) + x.shape[1:], dtype=x.dtype)
            labels = np.empty(count, dtype=np.int64)
        if pos + len(x) > count:
            raise DataError(f"the loader returned more than the {count} images asked for")
        images[pos:pos + len(x)] = x
        labels[pos:pos + len(x)] = y
        pos += len(x)
    if pos != count:
        raise DataError(f"the loader returned {pos} images for {count} indices")
    return images, labels


def _agreed(ok, value, what):
    """Every rank's `value`, once all report success (`ok`); a DataError on the others when one failed."""
    from runtime.device import gather_from_all

    values = gather_from_all((ok, value))
    failed = [r for r, (good, _) in enumerate(values) if not good]
    if failed and ok:
        raise DataError(f"rank(s) {', '.join(map(str, failed))} could not {what} (their logs say why)")
    return [v for _, v in values]


def _share_out(batches, count, rank, world, keep):
    """This rank's share (positions rank::world) decoded, then every share all-gathered: (images, labels)
    of all `count` items on every rank that keeps them (None with keep=False).

    The shares are decoded straight into the strided views of the result, so a rank holds the result
    and one round's buffers, never a second copy. Collectives, in the same order on every rank: the
    item shape and dtype (a rank with an empty share knows neither), whether every share decoded, then
    the rounds of `rows` items per rank over the longest share (shorter shares padded with zeros: a round
    never sends an empty tensor, on which gloo fails) and the labels in one round."""
    import paddle
    import paddle.distributed as dist

    share = len(range(rank, count, world))
    first, error = None, None
    try:
        first = next(batches, None) if share else None
        if share and first is None:
            raise DataError(f"the loader returned no images for this rank's {share}")
    except Exception as e:  # noqa: BLE001 - re-raised below, once the other ranks know
        error = e
    meta = None if first is None else (tuple(first[0].shape[1:]), str(first[0].numpy().dtype))
    metas = [m for m in _agreed(error is None, meta, "decode their share of the images") if m is not None]
    if error is not None:
        raise error
    item, dtype = metas[0]
    images = np.empty((count if keep else share,) + item, dtype=dtype)
    labels = np.empty(count if keep else share, dtype=np.int64)
    mine_images = images[rank::world] if keep else images
    mine_labels = labels[rank::world] if keep else labels
    try:
        if share:
            _decode(itertools.chain([first], batches), share, mine_images, mine_labels)
    except Exception as e:  # noqa: BLE001 - re-raised below, once the other ranks know
        error = e
    _agreed(error is None, None, "decode their share of the images")
    if error is not None:
        raise error
    longest = len(range(0, count, world))  # rank 0's share
    rows = max(1, GATHER_ROUND_BYTES // max(1, int(np.prod(item, dtype=np.int64)) * np.dtype(dtype).itemsize))

    def exchange(mine, start, width, target):
        """One round: rows start..start+width of every rank's share (padded to `width`), written into the
        strided views of `target` (None: received and dropped)."""
        buf = np.zeros((width,) + mine.shape[1:], dtype=mine.dtype)
        part = mine[start:start + width]
        buf[:len(part)] = part
        got = []
        dist.all_gather(got, paddle.to_tensor(buf))
        if target is not None:
            for q, tensor in enumerate(got):
                dest = target[q::world][start:start + width]
                dest[:] = tensor.numpy()[:len(dest)]

    for start in range(0, longest, rows):
        exchange(mine_images, start, min(rows, longest - start), images if keep else None)
    exchange(mine_labels, 0, longest, labels if keep else None)
    return (images, labels) if keep else None
