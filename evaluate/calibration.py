"""BatchNorm statistics for one subnet of a shared-weight supernet.

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
"""

import contextlib

import paddle

MODES = ("none", "recalibrate")


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
