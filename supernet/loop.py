"""The training loop of both trainers: standalone (`pretrain.py`) and supernet (`supernet.train.Trainer`).

What differs between them is the step (one net, or the sampled paths of the supernet with their
losses) and what they log; what they share is here: epochs of batches from the seeded loader,
starting an epoch at its first untrained batch without loading the ones before it, the RNG state
an epoch began with, the NaN rule, checkpoints at a step cadence and at each epoch's end,
`max_steps`, the progress bar and one ledger phase per epoch.

The NaN rule without a host sync per step: a step hands back its figures (losses) as a tensor on
the device and its update as a function (`Pending`); the loop reads the figures of the steps since
the last read to the host every `sync_every` steps, and always before a checkpoint, at an epoch's
end and at `max_steps`, in ONE transfer (and, with several ranks, one all-reduce: a NaN on any rank
makes the sum NaN, so the figures are their own non-finite flag and every rank stops at the same
read). The read comes before the current step's update, so with sync_every 1 a non-finite loss
stops the run before its update (as it always did); with N > 1 the run stops within N steps of the
first non-finite loss, before the update of the step whose read found it and before any checkpoint
after it: the last checkpoint stays good. The figures the bar, `after_step` and the epoch's mean
loss get are the read ones, step by step, so they are those of sync_every 1.
"""

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.errors import KitError


class TrainingDiverged(KitError):
    """A loss or a parameter became NaN/inf, or ranks disagree on the parameters: the run stops
    without applying the step or writing a checkpoint, so the last checkpoint stays good."""

    def __str__(self):
        return f"training diverged: {super().__str__()}"


def check_finite(values, where, last_checkpoint=None, stopped="stopped before the update"):
    """The NaN rule: `values` {name: float} (already reduced over ranks, so every rank stops together);
    `where` says which step and path; `stopped` what the run did (a later read: how late)."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"non-finite loss {value} at {where}{'' if name == 'loss' else f' ({name})'}; "
                                   f"{stopped}. Last good checkpoint: {last_checkpoint or 'none'}")


def sync_interval(setting, device):
    """Steps between host reads of the losses, of a checked `sync_every` setting (supernet.settings:
    an integer >= 1 or `auto`). `auto`: 1 on a CPU (its ops run synchronously, so a read waits for
    nothing and the strongest rule costs nothing), AUTO_SYNC_GPU on a GPU (one drain of its queue per
    AUTO_SYNC_GPU steps)."""
    if setting == "auto":
        return AUTO_SYNC_GPU if str(device).startswith("gpu") else 1
    return int(setting)


AUTO_SYNC_GPU = 20  # `auto` on a GPU: a diverged run trains at most 19 steps more, never checkpointed


def read_figures(pendings, world=1):
    """The figures of `pendings` on the host, each averaged over the `world` ranks: ONE device-to-host
    transfer and (world > 1) one all-reduce for them all, in float64 (the sum of float32 losses is
    exact enough; a NaN or inf on any rank makes the sum non-finite)."""
    lengths = [len(p.figures) for p in pendings]
    if all(isinstance(p.figures, list | tuple) for p in pendings) and world == 1:
        flat = [float(v) for p in pendings for v in p.figures]
    else:
        import paddle

        flat = paddle.concat([paddle.to_tensor(p.figures, dtype="float64") if isinstance(p.figures, list | tuple)
                              else p.figures.astype("float64").reshape([-1]) for p in pendings])
        if world > 1:
            paddle.distributed.all_reduce(flat)
            flat = flat / world
        flat = flat.numpy().tolist()
    out, start = [], 0
    for n in lengths:
        out.append(flat[start:start + n])
        start += n
    return out


def check_read(pendings, read, current, last_checkpoint=None, stopped_late=None):
    """The NaN rule over `read` (the figures of `pendings`): TrainingDiverged at the first non-finite one,
    after dropping the gradients of `current` (the last pending, not applied yet; None: all are applied).
    `stopped_late(k)` says what the run did when the non-finite figure is pending k's, not current's."""
    for k, (pending, floats) in enumerate(zip(pendings, read, strict=True)):
        for i, v in enumerate(floats):
            if math.isfinite(v):
                continue
            if current is not None and current.discard is not None:
                current.discard()
            stopped = "stopped before the update" if pending is current else stopped_late(k)
            check_finite({"loss": v}, pending.where(i), last_checkpoint, stopped)


def settle(pending, world=1, last_checkpoint=None):
    """Read, check and apply one step at once (sync_every 1): the report's values and extra."""
    read = read_figures([pending], world)
    check_read([pending], read, pending, last_checkpoint)
    pending.update()
    return pending.report(read[0])


@dataclass
class Pending:
    """A trained step whose update is not applied yet (what a Loop step returns).

    `figures`: this rank's figures of the step (losses) as a 1-D float tensor on the device, or a list
    of floats; `update()` applies the step; `report(floats)` turns the read figures (averaged over
    ranks) into `(values, extra)`: values {name: float} for the bar, the epoch's mean loss and
    `after_step`, extra {name: anything} for `after_step` only; `where(i)` names the step and what
    figure i is (the NaN rule's message); `discard()` drops the gradients of a step not applied."""
    figures: object
    update: Callable
    report: Callable
    where: Callable
    discard: Callable | None = None


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
    extra: dict = field(default_factory=dict)  # the step's Pending.report extra
    clock: float = 0.0  # time.perf_counter() when its update was issued (on a GPU: queued, at most
                        # sync_every steps ahead of the device), for rates over steps reported late


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
    """Runs `step(epoch, step, x, y, global_step) -> Pending` over the loader's epochs.

    Hooks, all optional: `after_step(StepDone)` (for each step once its figures are read, so up to
    `sync_every` steps late, the current one after its update); `end_epoch(EpochDone)` when an
    epoch's batches are done (inside its ledger phase, before its checkpoint); `save(epoch, step,
    global_step, epoch_end)` every `every_steps` global steps, at `max_steps` and at each epoch's end
    (epoch, step: the next batch to train, so an epoch's end saves (epoch + 1, 0)); `after_epoch(epoch,
    global_step)` after that checkpoint (1-based epoch); `last_checkpoint()` names the newest
    checkpoint for the NaN rule's message. `rng` is the state to restore before the first batch
    trained (resuming): applied before the loader is set up when the epoch starts at its first batch,
    else after (the state a mid-epoch checkpoint holds). `sync_every` (>= 1): steps between reads of
    the figures (see the module's docstring for what the NaN rule then guarantees).
    """

    def __init__(self, loader, epochs, steps_per_epoch, *, lr, world=1, ledger=None, progress=True,
                 every_steps=0, max_steps=None, set_rng=None, sync_every=1):
        self.loader, self.epochs, self.steps_per_epoch = loader, int(epochs), int(steps_per_epoch)
        self.lr, self.world, self.ledger, self.progress = lr, int(world), ledger, bool(progress)
        self.every_steps, self.max_steps, self.set_rng = int(every_steps or 0), max_steps, set_rng
        self.sync_every = int(sync_every)
        if self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")

    def _restore(self):
        if self._rng is not None and self.set_rng is not None:
            self.set_rng(self._rng)
        self._rng = None

    def run(self, step, position=None, *, rng=None, after_step=None, end_epoch=None, save=None, after_epoch=None,
            last_checkpoint=None):
        """Train from `position` until the last epoch or `max_steps`; returns the Position reached."""
        pos = position or Position()
        self._rng = rng
        self._last_checkpoint = last_checkpoint or (lambda: None)
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

    def _check(self, window, current):
        """Read the window's figures; raise TrainingDiverged (dropping the current step's gradients) at
        the first non-finite one. `current`: the window's last step, not applied yet (None: all are)."""
        pendings = [w["pending"] for w in window]
        read = read_figures(pendings, self.world)
        last = window[-1]["global_step"]

        def stopped_late(k):
            late = last - window[k]["global_step"]
            return (f"read {late} step{'s' if late != 1 else ''} later (losses are read every {self.sync_every} "
                    f"steps): stopped before global step {last}'s update, no checkpoint written since")

        check_read(pendings, read, current, self._last_checkpoint(), stopped_late)
        return read

    def _epoch(self, step, pos, bar, after_step, end_epoch, save):
        """The rest of epoch `pos.epoch` from batch `pos.step`: (Position reached, this rank's images)."""
        epoch, global_step, images, loss_sum = pos.epoch, pos.global_step, 0, 0.0
        start = time.perf_counter()
        batches = iter(self.loader)
        self._restore()  # a mid-epoch checkpoint's state: after the loader is set up
        window = []  # steps whose figures are not read yet

        def report(read):
            nonlocal loss_sum
            values = None
            for w, floats in zip(window, read, strict=True):
                values, extra = w["pending"].report(floats)
                loss_sum += sum(values.values()) / max(1, len(values))
                if after_step is not None:
                    after_step(StepDone(epoch, w["index"] + 1, w["global_step"], w["lr"], values, w["images"],
                                        w["end_of_epoch"], extra, w["clock"]))
            if self.progress and values is not None:
                rate = images * self.world / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in values.items()}, "lr": f"{window[-1]['lr']:.4g}",
                                 "img/s": f"{rate:.0f}"}, refresh=False)
            window.clear()

        for index, (x, y) in enumerate(batches, start=pos.step):
            lr = self.lr()
            pending = step(epoch, index, x, y, global_step)
            global_step += 1
            images += int(x.shape[0])  # this rank's: the ledger adds ranks up
            end_of_epoch = index + 1 == self.steps_per_epoch
            at_max = self.max_steps is not None and global_step >= self.max_steps
            saving = save is not None and (end_of_epoch or at_max or
                                           (self.every_steps and global_step % self.every_steps == 0))
            window.append({"pending": pending, "index": index, "global_step": global_step, "lr": lr,
                           "images": int(x.shape[0]), "end_of_epoch": end_of_epoch})
            read = None
            if end_of_epoch or at_max or saving or global_step % self.sync_every == 0:
                read = self._check(window, pending)  # before the update, so sync_every 1 stops before it
            pending.update()
            window[-1]["clock"] = time.perf_counter()
            bar.update(1)
            if read is not None:
                report(read)
            if end_of_epoch:
                seconds, steps = time.perf_counter() - start, index + 1 - pos.step
                if end_epoch is not None:
                    end_epoch(EpochDone(epoch + 1, global_step, steps, seconds, lr, loss_sum / steps,
                                        images * self.world / max(seconds, 1e-9)))
                if save is not None:
                    save(epoch + 1, 0, global_step, True)
                return Position(epoch + 1, 0, global_step), images
            if saving:
                save(epoch, index + 1, global_step, False)
            if at_max:
                return Position(epoch, index + 1, global_step), images
        if window:  # the loader ran dry before the epoch's end: every step is applied, read what is left
            report(self._check(window, None))
        return Position(epoch, pos.step + (global_step - pos.global_step), global_step), images
