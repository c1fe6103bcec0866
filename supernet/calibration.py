"""BatchNorm statistics for one subnet of a shared-weight supernet: the `evaluate.calibration`
setting, the calibration batches and the recalibration itself.

The running statistics a supernet accumulates in training are a blend over many subnets, so
the mean/variance a particular subnet sees at its active slice may not match (the reason
SPOS-style evaluation recalibrates). Two modes:

- `none`: use the stored running statistics as they are (as the challenge's 1st and 3rd
  places did);
- `recalibrate`: recompute the active slice as the cumulative average of the batch mean and
  (biased) batch variance over K fixed calibration batches. The k-th batch runs with
  momentum (k-1)/k under Paddle's running = momentum * running + (1 - momentum) * batch, so
  batch 1 overwrites the slice (the reset) and batch K leaves the exact average. (Paddle's
  CPU kernel uses the biased batch variance, as the tests check against numpy; a cuDNN
  kernel may use the unbiased one, a factor n/(n-1) with n = batch x height x width, under
  1e-3 for any real calibration batch.)

Recalibration writes into the supernet's shared buffers. `BNSnapshot` puts them back after
each subnet, so the supernet after a subnet is the supernet before it: a result never depends
on which subnets came earlier in the list, and the cheap-vs-full comparisons of `fidelity`
all start from the checkpoint's statistics.

Beside the model (not in `evaluate/`) because two layers set a subnet's statistics and must set
them identically: scoring (`evaluate.evaluator` and the oracle)
and deployment (`supernet.export`, which copies them into the exported net).
"""

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import paddle

from infra.config import ConfigError, get, set_key
from infra.errors import KitError

MODES = ("none", "recalibrate")


def apply_protocol(cfg, force=()):
    """Fill `evaluate.*` keys from the named evaluation protocol: `evaluate.protocols[NAME]` maps
    keys under `evaluate.` (e.g. `calibration.mode`) to values, and each one whose config value is
    null takes the protocol's value (so any key given explicitly still wins). Keys in `force` take
    the protocol's value whatever they hold (a fidelity setting that names a protocol). Returns `cfg`
    (changed in place); configs without `evaluate.protocol` pass unchanged. Beside the
    calibration setting, below `evaluate/`, because `supernet.export` applies the same protocol to set
    BN statistics as `evaluate.settings.EvalSettings` does when it reads the section."""
    name = get(cfg, "evaluate.protocol", None)
    if name is None:
        return cfg
    presets = get(cfg, "evaluate.protocols", None) or {}
    if name not in presets or not isinstance(presets[name], dict):
        raise ConfigError(f"evaluate.protocol {name!r} is not one of evaluate.protocols: {', '.join(presets)}")
    for key, value in presets[name].items():
        full = f"evaluate.{key}"
        if get(cfg, full, None) is None or full in force:
            set_key(cfg, full, copy.deepcopy(value))
    return cfg



@dataclass(frozen=True)
class Calibration:
    """`evaluate.calibration`: how BN statistics are set per subnet (mode 'none': stored ones)."""
    mode: str
    batches: int | None
    batch_size: int | None
    seed: int | None
    augment: bool | None

    @classmethod
    def from_config(cls, cfg):
        """The section of a config whose protocol preset is already filled in
        (`apply_protocol`); refuses a bad mode, and K or B below 1 when recalibrating."""
        mode = get(cfg, "evaluate.calibration.mode", None)
        if mode not in MODES:
            raise KitError(f"evaluate.calibration.mode must be one of {', '.join(MODES)}, got {mode!r}")
        values = {k: get(cfg, f"evaluate.calibration.{k}", None) for k in ("batches", "batch_size", "seed", "augment")}
        if mode == "recalibrate":
            for k in ("batches", "batch_size"):
                v = values[k]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise KitError(f"evaluate.calibration.{k} must be an integer >= 1, got {v!r}")
        return cls(mode=mode, **values)

    def pinned(self, data):
        """What decides the calibration batches (`data`: the data section minus file locations); all but
        `mode` are moot for mode 'none'."""
        if self.mode == "none":
            return {"mode": "none"}
        return {"mode": self.mode, "data": data, "batches": self.batches, "batch_size": self.batch_size,
                "seed": self.seed, "augment": self.augment}


def calibration_indices(num_items, num_batches, batch_size, seed):
    """K*B distinct training-split indices from a seeded generator (with replacement only when
    the split is smaller than K*B), split into K batches."""
    total = int(num_batches) * int(batch_size)
    if num_batches < 1 or batch_size < 1:
        raise KitError(f"calibration needs batches >= 1 and batch_size >= 1, got {num_batches} and {batch_size}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(num_items, size=total, replace=total > num_items)
    return idx.reshape(num_batches, batch_size)


def calibration_batches(cfg, calibration, num_workers=0, across_ranks=False, keep=True):
    """K calibration batches (float32 device tensors, normalised on the device) from the training
    split of the config's `data:`; [] for mode 'none'.

    The indices and, with train transforms, the augmentation both follow calibration.seed.
    `across_ranks`/`keep`: decoded over the ranks, collectively (imagedata.loaders.gather); keep=False
    only contributes this rank's share and returns None.
    """
    from imagedata import DataSettings, build_dataset
    from imagedata.loaders import gather

    c = calibration
    if c.mode == "none":
        return []
    dataset = build_dataset(DataSettings.from_config(cfg), split="train", augment=bool(c.augment))
    k, b = int(c.batches), int(c.batch_size)
    idx = calibration_indices(len(dataset), k, b, int(c.seed))
    got = gather(dataset, idx.reshape(-1), num_workers=num_workers, seed=int(c.seed), across_ranks=across_ranks,
                 keep=keep)
    if got is None:
        return None
    images = got[0]
    normalize = dataset.normalize
    return [normalize(paddle.to_tensor(np.ascontiguousarray(images[i * b:(i + 1) * b]))) for i in range(k)]


class BNSnapshot:
    """Copies of the running statistics of some BN layers, to be written back later."""

    def __init__(self, layers):
        self.layers = list(layers)
        with paddle.no_grad():
            self.saved = [(layer._mean.clone(), layer._variance.clone()) for layer in self.layers]

    def restore(self, layers=None):
        """Write the saved statistics back (into `layers`, a subset of the snapshot's, or all)."""
        wanted = None if layers is None else {id(layer) for layer in layers}
        with paddle.no_grad():
            for layer, (mean, variance) in zip(self.layers, self.saved, strict=True):
                if wanted is None or id(layer) in wanted:
                    paddle.assign(mean, output=layer._mean)
                    paddle.assign(variance, output=layer._variance)


@contextlib.contextmanager
def _train_mode(model):
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        if not was_training:
            model.eval()


def recalibrate(model, batches, bn_layers, amp=None):
    """Set the running statistics of `bn_layers` to the cumulative average over `batches`.

    `model` runs its active subnet; `batches` are image tensors already on the device;
    `bn_layers` are the layers whose statistics move (the active subnet's). `amp` is a
    paddle.amp dtype name or None. Returns the number of batches used.
    """
    if not batches:
        raise ValueError("recalibrate needs at least one calibration batch")
    saved = [layer.momentum for layer in bn_layers]
    try:
        with paddle.no_grad(), _train_mode(model):
            for k, x in enumerate(batches, start=1):
                for layer in bn_layers:
                    layer.momentum = (k - 1) / k
                with autocast(amp):
                    model(x)
    finally:
        for layer, m in zip(bn_layers, saved, strict=True):
            layer.momentum = m
    return len(batches)


def autocast(amp):
    """paddle.amp.auto_cast for `amp` in ('bfloat16', 'float16'), a no-op context for None."""
    if not amp:
        return contextlib.nullcontext()
    return paddle.amp.auto_cast(enable=True, dtype=amp, level="O1")
