"""The training loop of both trainers: standalone (`pretrain.py`) and supernet (`supernet.train.Trainer`).

What differs between them is the step (one net, or the sampled paths of the supernet with their
losses) and what they log; what they share is here: epochs of batches from the seeded loader,
starting an epoch at its first untrained batch without loading the ones before it, the RNG state
an epoch began with, the NaN rule, checkpoints at a step cadence and at each epoch's end,
`max_steps`, the progress bar and one ledger phase per epoch.
"""

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field

from infra.errors import KitError


class TrainingDiverged(KitError):
    """A loss or a parameter became NaN/inf, or ranks disagree on the parameters: the run stops
    without applying the step or writing a checkpoint, so the last checkpoint stays good."""

    def __str__(self):
        return f"training diverged: {super().__str__()}"


def check_finite(values, where, last_checkpoint=None):
    """The NaN rule, applied by every step before its update: `values` {name: float} (already
    reduced over ranks, so every rank stops together); `where` says which step and path."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"non-finite loss {value} at {where}{'' if name == 'loss' else f' ({name})'}; "
                                   f"stopped before the update. Last good checkpoint: {last_checkpoint or 'none'}")


@dataclass
class Position:
    """Where a run stands: the next batch to train is `step` (0-based) of `epoch` (0-based);
    `global_step` steps are done."""
    epoch: int = 0
    step: int = 0
    global_step: int = 0


@dataclass
class StepDone:
    """What `after_step` sees: the step just trained (1-based `step` within `epoch`, 0-based)."""
    epoch: int
    step: int
    global_step: int
    lr: float
    values: dict
    images: int
    end_of_epoch: bool


@dataclass
class EpochDone:
    """What `end_epoch` sees: `epoch` (1-based) and this sitting's figures for it."""
    epoch: int
    global_step: int
    steps: int
    seconds: float
    lr_last: float
    loss: float             # mean over this sitting's steps of the mean of each step's values
    images_per_s: float     # global images (all ranks) per second
    extra: dict = field(default_factory=dict)


def progress_bar(total, initial, desc, enabled):
    """tqdm on stderr: live on a terminal, a line a minute in a log file."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=interactive,
                mininterval=0.5 if interactive else 60, dynamic_ncols=True, file=sys.stderr)


class Loop:
    """Runs `step(epoch, step, x, y, global_step) -> {name: float}` over the loader's epochs.

    Hooks, all optional: `after_step(StepDone)`; `end_epoch(EpochDone)` when an epoch's batches are
    done (inside its ledger phase, before its checkpoint); `save(epoch, step, global_step, epoch_end)`
    every `every_steps` global steps, at `max_steps` and at each epoch's end (epoch, step: the next
    batch to train, so an epoch's end saves (epoch + 1, 0)); `after_epoch(epoch, global_step)` after
    that checkpoint (1-based epoch). `rng` is the state to restore before the first batch trained
    (resuming): applied before the loader is set up when the epoch starts at its first batch, else
    after (the state a mid-epoch checkpoint holds).
    """

    def __init__(self, loader, epochs, steps_per_epoch, *, lr, world=1, ledger=None, progress=True,
                 every_steps=0, max_steps=None, set_rng=None):
        self.loader, self.epochs, self.steps_per_epoch = loader, int(epochs), int(steps_per_epoch)
        self.lr, self.world, self.ledger, self.progress = lr, int(world), ledger, bool(progress)
        self.every_steps, self.max_steps, self.set_rng = int(every_steps or 0), max_steps, set_rng

    def _restore(self):
        if self._rng is not None and self.set_rng is not None:
            self.set_rng(self._rng)
        self._rng = None

    def run(self, step, position=None, *, rng=None, after_step=None, end_epoch=None, save=None, after_epoch=None):
        """Train from `position` until the last epoch or `max_steps`; returns the Position reached."""
        pos = position or Position()
        self._rng = rng
        while pos.epoch < self.epochs:
            if pos.step == 0:
                self._restore()  # the state the epoch began with
            self.loader.set_epoch(pos.epoch, start_batch=pos.step)  # trained batches are not loaded again
            phase = (self.ledger.phase(f"epoch_{pos.epoch + 1}", epoch=pos.epoch + 1) if self.ledger is not None
                     else contextlib.nullcontext())
            with phase as ph:
                bar = progress_bar(self.steps_per_epoch, pos.step, f"epoch {pos.epoch + 1}/{self.epochs}",
                                   self.progress)
                try:
                    reached, images = self._epoch(step, pos, bar, after_step, end_epoch, save)
                finally:
                    bar.close()  # also on an error, so its message starts a line of its own
                if ph is not None:
                    ph.images = images
                    ph.extra.update(steps=reached.global_step - pos.global_step, global_step=reached.global_step)
            if reached.step or reached.global_step == pos.global_step:
                return reached  # stopped by max_steps inside the epoch (or the loader ran dry)
            pos = reached
            if after_epoch is not None:
                after_epoch(pos.epoch, pos.global_step)
            if self.max_steps is not None and pos.global_step >= self.max_steps:
                break
        return pos

    def _epoch(self, step, pos, bar, after_step, end_epoch, save):
        """The rest of epoch `pos.epoch` from batch `pos.step`: (Position reached, this rank's images)."""
        epoch, global_step, images, loss_sum = pos.epoch, pos.global_step, 0, 0.0
        start = time.perf_counter()
        batches = iter(self.loader)
        self._restore()  # a mid-epoch checkpoint's state: after the loader is set up
        for index, (x, y) in enumerate(batches, start=pos.step):
            lr = self.lr()
            values = step(epoch, index, x, y, global_step)
            global_step += 1
            images += int(x.shape[0])  # this rank's: the ledger adds ranks up
            loss_sum += sum(values.values()) / max(1, len(values))
            end_of_epoch = index + 1 == self.steps_per_epoch
            bar.update(1)
            if self.progress:
                rate = images * self.world / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in values.items()}, "lr": f"{lr:.4g}",
                                 "img/s": f"{rate:.0f}"}, refresh=False)
            if after_step is not None:
                after_step(StepDone(epoch, index + 1, global_step, lr, values, int(x.shape[0]), end_of_epoch))
            at_max = self.max_steps is not None and global_step >= self.max_steps
            if end_of_epoch:
                seconds, steps = time.perf_counter() - start, index + 1 - pos.step
                if end_epoch is not None:
                    end_epoch(EpochDone(epoch + 1, global_step, steps, seconds, lr, loss_sum / steps,
                                        images * self.world / max(seconds, 1e-9)))
                if save is not None:
                    save(epoch + 1, 0, global_step, True)
                return Position(epoch + 1, 0, global_step), images
            if save is not None and (at_max or (self.every_steps and global_step % self.every_steps == 0)):
                save(epoch, index + 1, global_step, False)
            if at_max:
                return Position(epoch, index + 1, global_step), images
        return Position(epoch, pos.step + (global_step - pos.global_step), global_step), images
