"""Top-1, top-5 and loss of subnets of one loaded supernet on cached images.

One supernet, one evaluation set and one set of calibration batches serve the whole list: a
subnet is a `set_active` call, optional BN recalibration, a no-grad pass over the cached
images and a restore of the statistics it changed. Nothing is built or loaded per subnet.
"""

import time

import paddle

from encoding import KitError
from runtime.amp import autocast
from supernet.accuracy import batch_counts
from supernet.calibration import MODES, BNSnapshot, recalibrate


def amp_dtype(name, device, key="evaluate.amp"):
    """The evaluation's AMP dtype (runtime.amp.amp_dtype; a warning where it cannot apply)."""
    from runtime.amp import amp_dtype as parse

    return parse(name, device, key, warn=True)


def evaluate_model(model, eval_set, batch_size, amp=None):
    """(top1, top5, mean cross-entropy) of `model` in eval mode over `eval_set`.

    Counts stay on the device until the end, so there is one host sync per call.
    """
    was_training = model.training
    model.eval()
    sums = paddle.zeros([3], dtype="float64")
    try:
        with paddle.no_grad():
            for x, y in eval_set.batches(batch_size):
                with autocast(amp):
                    logits = model(x)
                sums += batch_counts(logits, y)
    finally:
        if was_training:
            model.train()
    n = len(eval_set)
    hit1, hit5, loss_sum = sums.numpy().tolist()
    return hit1 / n, hit5 / n, loss_sum / n


class SubnetEvaluator:
    """Evaluates subnets of `supernet` one at a time, each from the supernet's stored state.

    mode: 'none' (stored BN statistics) or 'recalibrate' (cumulative average over
    `calib_batches`, then restored, so results do not depend on list order).
    """

    def __init__(self, supernet, eval_set, batch_size, mode="none", calib_batches=None, amp=None):
        if mode not in MODES:
            raise KitError(f"unknown calibration mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "recalibrate" and not calib_batches:
            raise KitError("calibration mode 'recalibrate' needs calibration batches (calibration.batches >= 1)")
        if batch_size < 1:
            raise KitError(f"evaluation batch size must be >= 1, got {batch_size}")
        self.supernet = supernet
        self.eval_set = eval_set
        self.batch_size = int(batch_size)
        self.mode = mode
        self.calib_batches = list(calib_batches or [])
        self.amp = amp
        self.sync = paddle.device.get_device().startswith("gpu")
        self.snapshot = BNSnapshot(supernet.dynamic_bn_layers()) if mode == "recalibrate" else None
        self.calibration_seconds = 0.0
        self.eval_seconds = 0.0

    @property
    def images_per_subnet(self):
        calib = sum(int(b.shape[0]) for b in self.calib_batches) if self.mode == "recalibrate" else 0
        return calib + len(self.eval_set)

    def evaluate(self, arch):
        """{'top1', 'top5', 'loss', 'calibration', 'seconds'} of one code (or Arch)."""
        t0 = time.perf_counter()
        self.supernet.set_active(arch)
        layers = None
        try:
            if self.mode == "recalibrate":
                layers = self.supernet.dynamic_bn_layers(active_only=True)
                recalibrate(self.supernet, self.calib_batches, layers, amp=self.amp)
                if self.sync:  # only so the calibration/evaluation time split is right on a GPU
                    paddle.device.synchronize()
            t1 = time.perf_counter()
            top1, top5, loss = evaluate_model(self.supernet, self.eval_set, self.batch_size, amp=self.amp)
        finally:
            if layers is not None:
                self.snapshot.restore(layers)
        t2 = time.perf_counter()
        self.calibration_seconds += t1 - t0
        self.eval_seconds += t2 - t1
        return {"top1": top1, "top5": top5, "loss": loss, "calibration": self.mode, "seconds": t2 - t0}


def evaluator_of(model, eval_set, calib_batches, settings, device):
    """The SubnetEvaluator an `evaluate:` section (EvalSettings) describes, on `device`."""
    return SubnetEvaluator(model, eval_set, settings.batch_size, settings.calibration.mode, calib_batches,
                           amp_dtype(settings.amp, device))
