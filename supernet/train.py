"""Train the ResNet48 supernet: sampled paths per batch, in-place distillation, exact resume.

    bash train_supernet.sh [CONFIG.yaml] [key=value ...]       (all devices; train_supernet.py is one process)

One optimizer step per batch: each sampled path (see `samplers`) runs forward and backward on
its own, so only one path's activations are alive at a time, and the gradients add up. Under
`paddle.distributed.launch` every rank draws the same codes (seeded by seed, epoch, step) and
accumulates its paths without gradient sync; one fused all-reduce then averages the summed
gradients, so parameters that only some paths touched are reduced like all others.

The run directory (`supernet.output_dir`) is the unit of resumption: rerunning the same
command after a crash loads the newest checkpoint there, starts that epoch at its first
untrained batch without loading the ones before (the data order is a function of seed and
epoch) and continues with bit-identical results on CPU. It holds
checkpoints/step_NNNNNNNNN.pdckpt, train_log.jsonl (step, checkpoint and rank-check records;
epoch and step are 1-based), ledger-supernet*.jsonl (time and energy per epoch), config.yaml,
train_summary.json and, once all epochs are done, supernet.pdparams (the state dict
`python -m evaluate run --checkpoint` reads).
"""

import contextlib
import glob
import json
import math
import os
import time

from encoding import KitError, atomic_write_text, costs, net_spec
from infra import config as C
from infra.atomic import atomic_write_bytes
from infra.config import differences
from infra.jsonl import JsonLines
from runtime.amp import amp_dtype, autocast
from runtime.layout import data_format

from .loop import Loop, Pending, Position, TrainingDiverged, settle, sync_interval
from .settings import SupernetSettings, rank_loss_weight

PATH_KINDS = ("max", "min", "random")
CKPT_PATTERN = "step_*.pdckpt"


# --- small helpers ---------------------------------------------------------------------------

def digest(fingerprint):
    import hashlib

    return hashlib.sha256(fingerprint.tobytes()).hexdigest()[:16]


def check_fingerprints(fingerprints, global_step, last_checkpoint):
    """Raise TrainingDiverged unless all ranks' parameter fingerprints are finite and equal."""
    import numpy as np

    last = f"Last good checkpoint: {last_checkpoint or 'none'}"
    for rank, fp in enumerate(fingerprints):
        if not np.isfinite(fp).all():
            raise TrainingDiverged(f"parameters are not finite after global step {global_step} (rank {rank}); "
                                   f"not checkpointing. {last}")
    for rank, fp in enumerate(fingerprints[1:], start=1):
        if not np.array_equal(fp, fingerprints[0]):
            raise TrainingDiverged(f"rank {rank} holds different parameters than rank 0 after global step "
                                   f"{global_step} (gradients were not reduced alike); not checkpointing. {last}")


def mean_by_kind(paths, values):
    """{'max': loss, 'min': loss, 'random': mean loss} over the kinds present."""
    grouped = {}
    for path, v in zip(paths, values, strict=True):
        grouped.setdefault(path.kind, []).append(v)
    return {k: sum(grouped[k]) / len(grouped[k]) for k in PATH_KINDS if k in grouped}


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def trim_log(path, global_step):
    """Drop the records a killed sitting wrote after `global_step` (that of the checkpoint the
    run resumes from) and a torn last line, so the log holds each step once; return how many."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0
    kept, dropped = [], 0
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(record, dict) and (record.get("global_step") or 0) > global_step:
            dropped += 1
            continue
        kept.append(line + b"\n")
    if dropped or (data and not data.endswith(b"\n")):
        atomic_write_bytes(path, b"".join(kept))
    return dropped


class Scalars:
    """VisualDL scalars when `visualdl` is importable; otherwise nothing (it is never required)."""

    def __init__(self, logdir, enabled):
        self.writer = None
        if enabled:
            try:
                from visualdl import LogWriter
            except ImportError:
                return
            self.writer = LogWriter(logdir=logdir)

    def add(self, tag, value, step):
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def close(self):
        if self.writer is not None:
            self.writer.close()


# --- the trainer -----------------------------------------------------------------------------

class Trainer:
    """Everything one rank needs for a run; `run()` trains until done, max_steps or an error."""

    def __init__(self, cfg, rank_check=None):
        """`rank_check(cfg, section, rank, world)` builds the per-epoch monitor of `supernet.rank_check`
        (the entry point passes evaluate.rank_check.RankCheck: this package does not evaluate)."""
        self.rank_check_factory = rank_check
        import paddle

        import runtime.device as runtime
        from imagedata import DataSettings, build_dataset, build_loader

        from .model import ResNet48Supernet
        from .optim import build_optimizer
        from .samplers import build_schedule

        self.paddle = paddle
        self.runtime = runtime
        self.cfg = cfg
        s = self.settings = SupernetSettings.from_config(cfg)  # the section, read and checked once
        self.device = runtime.setup_device(cfg)
        self.rank, self.world = runtime.init_distributed()
        self.main = self.rank == 0
        runtime.print_start_line("supernet.train", self.device, self.world, s.amp)
        self.out = s.output_dir
        self.ckpt_dir = os.path.join(self.out, "checkpoints")
        runtime.claim_run_folder(self.out, sweep=("checkpoints",))  # one writer per run folder, from here on
        self.seed = s.seed
        self.epochs, self.max_steps = s.epochs, s.max_steps
        self.global_batch = s.batch_size
        if self.global_batch % self.world:
            raise C.ConfigError(f"supernet.batch_size (the global batch) must be a multiple of the "
                                f"{self.world} ranks, got {self.global_batch}")
        self.batch_size = self.global_batch // self.world
        self.every_steps, self.keep = s.checkpoint_every_steps, s.checkpoint_keep
        self.keep_epochs = s.keep_epochs
        self.log_every = s.log_every_steps

        runtime.seed_everything(self.seed)
        self.spec = net_spec(cfg)
        self.amp = amp_dtype(s.amp, self.device, "supernet.amp")
        self.model = ResNet48Supernet(self.spec, data_format(s.channels_last, self.amp))
        self._init_weights(s)
        self.teacher = self._build_teacher(s)
        self.smoothing, self.temperature = s.label_smoothing, s.temperature
        self.inplace = s.inplace_distill and self.teacher is None
        self.rank_loss = s.rank_loss
        self.rank_prior = None  # {code: score}: a proxy's results file (cost FIELD@RESULTS) or the proxy's memo
        self.proxy_prior = None  # cost PROXY: the proxy computed on the fly for the sampled codes (proxy_prior)
        if s.rank_proxy is not None:
            from .proxy_prior import ProxyPrior

            self.proxy_prior = ProxyPrior(s.rank_proxy, self.spec, self.rank, self.world)
            self.rank_prior = self.proxy_prior.table
        elif s.rank_loss["cost"] not in ("macs", "params"):
            from .losses import read_cost_table

            field, _, path = s.rank_loss["cost"].partition("@")
            self.rank_prior = read_cost_table(path, field)
        self.rank_log = {}  # the last step's rank-loss weight and value, logged with the step

        data = DataSettings.from_config(cfg)
        self.resolution = data.resolution
        self.schedule = build_schedule(dict(s.sampler), self.seed, self.spec, resolution=self.resolution)
        if self.inplace and not self.schedule.sandwich:
            raise KitError("in-place distillation needs the max path as teacher: set supernet.sampler.sandwich=true "
                           "or supernet.loss.inplace_distill=false")
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16) if self.amp == "float16" else None

        self.dataset = build_dataset(data, "train", augment=True)
        self.loader = build_loader(self.dataset, self.batch_size, shuffle=True, drop_last=True,
                                   num_workers=data.num_workers, seed=self.seed)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch < 1:
            raise KitError(f"the training split ({len(self.dataset)} images) is smaller than one global batch "
                           f"({self.global_batch}): nothing to train on")
        self.optimizer, self.scheduler = build_optimizer(self.model, s.optim, self.global_batch,
                                                         self.steps_per_epoch, len(self.dataset),
                                                         self.schedule.sandwich, "supernet.optim")
        self.dp = None
        if self.world > 1:
            self.dp = paddle.DataParallel(self.model, find_unused_parameters=True)

    # --- construction pieces ------------------------------------------------------------------
    def _init_weights(self, s):
        if s.init == "random":
            if s.zero_init_residual:
                self.model.zero_init_residual()
            return
        if s.init == "supernet":  # a trained supernet's weights, e.g. a few-shot group's copy
            from runtime.checkpoint import load_checkpoint, load_model_state

            state = load_checkpoint(s.pretrained)
            load_model_state(self.model, state.get("model", state), source=f"supernet.pretrained {s.pretrained}")
            return
        from .pretrained import load_official_resnet48

        load_official_resnet48(self.model, s.pretrained, reorder=s.reorder)

    def _build_teacher(self, s):
        path = s.teacher
        if not path:
            return None
        from runtime.checkpoint import load_checkpoint, load_model_state

        from .pretrained import load_official_static
        from .static import build_static

        arch = s.teacher_arch
        if arch is None:
            teacher = load_official_static(path, self.spec, reorder=s.reorder)
        else:
            teacher = build_static(arch, self.spec)
            state = load_checkpoint(path)
            load_model_state(teacher, state.get("model", state), source=f"teacher checkpoint {path}")
        teacher.eval()
        for p in teacher.parameters():
            p.stop_gradient = True
        return teacher

    # --- one optimizer step -------------------------------------------------------------------
    def _forward(self, x):
        return self.dp(x) if self.dp is not None else self.model(x)

    def _teacher_logits(self, x):
        """The external teacher's logits (None without one), under the student's autocast: in fp32 it
        would cost a full-precision forward per step beside half-precision students (its head stays
        float32 either way, as every net's does)."""
        if self.teacher is None:
            return None
        with self.paddle.no_grad(), autocast(self.amp):
            return self.teacher(x)

    def train_step(self, x, y, paths, global_step):
        """One whole step at once (`backward_step`, then its losses read, checked and applied, as with
        sync_every 1). Returns the per-path losses (floats, averaged over ranks)."""
        _, extra = settle(self.backward_step(x, y, paths, global_step), self.world, self.last_checkpoint)
        return extra["path_losses"]

    def backward_step(self, x, y, paths, global_step):
        """Forward/backward every path and reduce the gradients; the update is left to the Loop
        (`supernet.loop.Pending`): the per-path losses (and the rank loss) stay on the device until the
        loop reads them, before the update of the step that reads them."""
        from .losses import distillation_loss, pairwise_rank_loss, smoothed_cross_entropy

        paddle = self.paddle
        r = self.rank_loss
        weight = rank_loss_weight(self.epoch, r["weight"], r["schedule"], r["ramp_epochs"], r["max_weight"])
        joint, ces = weight > 0, []  # with the rank loss, one backward of the sum over paths
        if joint and self.proxy_prior is not None:  # before any forward: no graph is alive while it scores
            new_codes = self.proxy_prior.update([p.arch for p in paths])
        teacher_logits = self._teacher_logits(x)
        losses, max_logits = [], None
        no_sync = self.dp.no_sync if self.dp is not None else contextlib.nullcontext
        for path in paths:
            self.model.set_active(path.arch)
            with no_sync():
                with autocast(self.amp):
                    logits = self._forward(x)
                if teacher_logits is not None:
                    loss = distillation_loss(logits, teacher_logits, self.temperature)
                elif path.kind == "max" or not self.inplace:
                    loss = smoothed_cross_entropy(logits, y, self.smoothing)
                else:
                    loss = distillation_loss(logits, max_logits, self.temperature)
                if path.kind == "max":
                    max_logits = logits.detach()  # the teacher of the paths after it
                if joint:
                    ces.append(smoothed_cross_entropy(logits, y, 0.0))
                    losses.append(loss)
                    continue
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            losses.append(loss.detach())
        if joint:
            if self.rank_prior is None:
                params, macs = costs([p.arch for p in paths], self.spec, self.resolution)
                rank_loss = pairwise_rank_loss(ces, (macs if r["cost"] == "macs" else params).tolist(), r["margin"])
            else:  # the paths the prior scores, ordered by it
                from .losses import prior_costs

                keep, prior = prior_costs(self.rank_prior, [p.arch.code() for p in paths])
                rank_loss = pairwise_rank_loss([ces[i] for i in keep], prior, r["margin"])
            with no_sync():
                total = paddle.add_n(losses) + weight * rank_loss
                (self.scaler.scale(total) if self.scaler is not None else total).backward()
            losses = [v.detach() for v in losses]
            self.rank_log = {"rank_weight": weight, "rank_loss": rank_loss.detach()}  # read with the losses
            if self.rank_prior is not None:
                self.rank_log["rank_paths"] = len(keep)  # paths the prior scored this step
            if self.proxy_prior is not None:  # codes the proxy scored this step (all ranks), and its wall time here
                self.rank_log.update(prior_codes=new_codes, prior_seconds=self.proxy_prior.seconds)
        log = dict(self.rank_log) if joint else {}  # this step's: the loop reports it up to sync_every steps late
        figures = paddle.stack(losses + ([log["rank_loss"].reshape([])] if joint else [])).astype("float32")
        if self.world > 1:
            from paddle.distributed.fleet.utils.hybrid_parallel_util import fused_allreduce_gradients

            fused_allreduce_gradients(list(self.model.parameters()), None)
        where_step = (f"global step {global_step + 1} (epoch {self.epoch + 1}, batch {self.step + 1}/"
                      f"{self.steps_per_epoch})")
        codes = [p.arch.code() for p in paths]

        def where(i):
            return (f"{where_step} on the {paths[i].kind} path {codes[i]}" if i < len(paths)
                    else f"{where_step} in the rank loss")

        def report(floats):
            per_path = floats[:len(paths)]
            rank_log = {**log, "rank_loss": floats[len(paths)]} if joint else log
            self.rank_log = rank_log
            return mean_by_kind(paths, per_path), {"path_losses": per_path, "rank_log": rank_log, "codes": codes}

        def update():
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # unscales; skips the update when a gradient overflowed
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.clear_grad(set_to_zero=False)
            self.scheduler.step()

        return Pending(figures, update, report, where, discard=lambda: self.optimizer.clear_grad(set_to_zero=False))

    # --- checkpoints --------------------------------------------------------------------------
    def _ckpt_path(self, global_step):
        return os.path.join(self.ckpt_dir, f"step_{global_step:09d}.pdckpt")

    def save(self, epoch, step, global_step, epoch_end=False):
        """Write the state after `global_step` steps; position (epoch, step) = next batch to train.

        Every rank first compares parameter fingerprints: a checkpoint is only written from
        finite parameters that all ranks agree on, and every rank stops together otherwise.
        """
        from runtime.checkpoint import prune_checkpoints, save_checkpoint, training_state

        fingerprint = self._fingerprint()
        every = self.runtime.gather_from_all(fingerprint)
        check_fingerprints(every, global_step, self.last_checkpoint)
        path = self._ckpt_path(global_step)
        if self.main:
            state = training_state(self.model, self.optimizer, self.scheduler, epoch=epoch, step=step,
                                   rng=self.runtime.rng_state(), global_step=global_step,
                                   **self._layout(),
                                   scaler=self.scaler.state_dict() if self.scaler is not None else None)
            save_checkpoint(path, state)
            if epoch_end and self.keep_epochs:
                link = os.path.join(self.ckpt_dir, f"epoch_{epoch:04d}.pdckpt")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)
                os.link(path, link)
            prune_checkpoints(self.ckpt_dir, CKPT_PATTERN, keep=self.keep)
            if self.log is not None:
                self.log.write({"type": "checkpoint", "time": time.time(), "global_step": global_step,
                                "path": path, "ranks": len(every), "params_digest": digest(fingerprint)})
        self.last_checkpoint = path

    def _fingerprint(self):
        """Per parameter, float64 sum and sum of squares: equal on all ranks iff they are in sync."""
        paddle = self.paddle
        with paddle.no_grad():
            parts = []
            for p in self.model.parameters():
                q = p.astype("float64")
                parts += [q.sum(), (q * q).sum()]
            return paddle.stack(parts).numpy()

    def _layout(self):
        """What a resume on another number of ranks must keep (runtime.checkpoint.check_world_change)."""
        return {"world": self.world, "global_batch": self.global_batch, "steps_per_epoch": self.steps_per_epoch,
                "epoch_samples": int(self.loader.sampler.total_size)}

    def resume(self):
        """Load the newest checkpoint of the run directory; return (epoch, step, global_step).

        Rank 0 chooses the checkpoint and every rank loads that one, confirms the global step with the
        others and then takes rank 0's parameters and buffers, so no rank can continue another state."""
        from runtime.checkpoint import (
            CheckpointError,
            agree_on_checkpoint,
            check_world_change,
            confirm_same_step,
            latest_checkpoint,
            restore_training_state,
        )

        path = agree_on_checkpoint(latest_checkpoint(self.ckpt_dir, CKPT_PATTERN))
        if path is None:
            return 0, 0, 0
        if not self.settings.resume:
            raise KitError(f"{self.ckpt_dir} already holds checkpoints ({os.path.basename(path)}) and "
                           f"supernet.resume is false: choose another supernet.output_dir or set resume=true")
        try:
            state = restore_training_state(path, self.model, self.optimizer, self.scheduler)
        except CheckpointError:
            confirm_same_step(None, path)
            raise
        extras = state.get("extras", {})
        confirm_same_step(extras.get("global_step"), path)
        self.runtime.sync_from_main(self.model)
        epoch, step = int(state["epoch"]), int(state["step"])
        check_world_change(path, extras, self._layout(), 0 < step < self.steps_per_epoch,
                           "keep supernet.batch_size (the global batch) and the data")
        ours = {"steps_per_epoch": self.steps_per_epoch, "global_batch": self.global_batch}
        changed = differences({k: extras.get(k) for k in ours}, ours)
        if changed:
            raise CheckpointError(
                f"checkpoint {path} was written with other settings ({'; '.join(changed)}): resuming needs "
                f"the same data and global batch size (or a new output_dir)")
        if self.scaler is not None and extras.get("scaler"):
            self.scaler.load_state_dict(extras["scaler"])
        self.rng_to_restore = state.get("rng")
        self.last_checkpoint = path
        if step >= self.steps_per_epoch:
            epoch, step = epoch + 1, 0
        return epoch, step, int(extras["global_step"])

    # --- monitoring ---------------------------------------------------------------------------
    def rank_check(self):
        if self._rank_check is None:
            if self.rank_check_factory is None:
                raise KitError("supernet.rank_check.gt is set but this Trainer has no rank check: train through "
                               "train_supernet.py (or train_supernet.sh), which wires evaluate's in")
            self._rank_check = self.rank_check_factory(self.cfg, dict(self.settings.rank_check), self.rank,
                                                       self.world)
        return self._rank_check.run(self.model)

    # --- the loop -----------------------------------------------------------------------------
    def run(self):
        from encoding import atomic_write_json

        from .samplers import PathsAhead

        self.last_checkpoint = None
        self.log = None
        self.rng_to_restore = None
        self._rank_check = None
        self.epoch, self.step = 0, 0
        epoch, start_step, global_step = self.resume()
        if self.main:
            os.makedirs(self.out, exist_ok=True)
            atomic_write_text(os.path.join(self.out, "config.yaml"), C.dump(self.cfg))
        log_path = os.path.join(self.out, "train_log.jsonl")
        dropped = trim_log(log_path, global_step) if self.main else 0
        log = self.log = JsonLines(log_path) if self.main else None
        if log is not None and (self.last_checkpoint is not None or dropped):
            log.write({"type": "resume", "time": time.time(), "global_step": global_step,
                       "checkpoint": self.last_checkpoint, "dropped_records": dropped})
        scalars = Scalars(os.path.join(self.out, "visualdl"), self.main and self.settings.visualdl)
        ledger = self._ledger()
        rank_cfg = self.settings.rank_check
        progress = self.settings.progress and self.main
        if self.main and (epoch, start_step) != (0, 0):
            print(f"resuming from {self.last_checkpoint}: epoch {epoch + 1}, batch {start_step + 1}, "
                  f"global step {global_step + 1}", flush=True)
        rate = {"t": time.perf_counter(), "n": 0}
        paths_source = (PathsAhead(self.schedule, self.steps_per_epoch) if str(self.device).startswith("gpu")
                        else self.schedule)

        def step(epoch, step, x, y, global_step):
            self.epoch, self.step = epoch, step
            return self.backward_step(x, y, paths_source.paths(epoch, step), global_step)

        def after_step(done):
            rate["n"] += done.images * self.world
            if not self.main or not (done.global_step % self.log_every == 0 or done.end_of_epoch):
                return
            now = done.clock  # the step's own time: its record may come up to sync_every steps late
            ips = rate["n"] / max(now - rate["t"], 1e-9)
            rate["t"], rate["n"] = now, 0
            log.write({"type": "step", "time": time.time(), "epoch": done.epoch + 1, "step": done.step,
                       "global_step": done.global_step, "lr": done.lr, "loss": done.values,
                       **done.extra["rank_log"], "images_per_s": ips, "codes": done.extra["codes"]})
            for k, v in done.values.items():
                scalars.add(f"loss/{k}", v, done.global_step)
            scalars.add("lr", done.lr, done.global_step)
            scalars.add("images_per_s", ips, done.global_step)

        def after_epoch(epoch, global_step):
            if not (rank_cfg.get("gt") and epoch % int(rank_cfg.get("every_epochs", 1)) == 0):
                return
            with ledger.phase("rank_check", epoch=epoch) if ledger else contextlib.nullcontext():
                self.runtime.sync_from_main(self.model, parameters=False)  # rank 0's BN statistics: the saved ones
                result = self.rank_check()
            if self.main and result is not None:
                log.write({"type": "rank_check", "time": time.time(), "epoch": epoch,
                           "global_step": global_step, **result})
                for key in ("kendall_tau", "pearson"):
                    scalars.add(f"rank_check/{key}", result.get(key), epoch)
                print(f"rank check after epoch {epoch}: Kendall tau {_fmt(result['kendall_tau'])}, "
                      f"Pearson {_fmt(result['pearson'])} over {result['archs']} codes", flush=True)

        loop = Loop(self.loader, self.epochs, self.steps_per_epoch, lr=self.optimizer.get_lr, world=self.world,
                    ledger=ledger, progress=progress, every_steps=self.every_steps, max_steps=self.max_steps,
                    set_rng=self.runtime.set_rng_state, sync_every=sync_interval(self.settings.sync_every, self.device))
        try:
            reached = loop.run(step, Position(epoch, start_step, global_step), rng=self.rng_to_restore,
                               after_step=after_step, save=self.save, after_epoch=after_epoch,
                               last_checkpoint=lambda: self.last_checkpoint)
            epoch, global_step = reached.epoch, reached.global_step
        finally:
            if paths_source is not self.schedule:
                paths_source.close()
            if log is not None:
                log.close()
            scalars.close()
            if ledger is not None:
                ledger.close()
        done = epoch >= self.epochs
        if done and self.main:
            from runtime.checkpoint import save_checkpoint

            save_checkpoint(os.path.join(self.out, "supernet.pdparams"), self.model.state_dict())
        summary = {"epochs_done": epoch, "global_step": global_step, "finished": done,
                   "last_checkpoint": self.last_checkpoint, "output_dir": self.out,
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
        if self.world > 1:
            self.runtime.barrier()  # every rank's ledger file is closed before rank 0 reads them
        if self.main:
            from infra.ledger import summarize_files, summary_line

            # every rank's file, earlier sittings included: the files keep all phases across resumes
            ledgers = sorted(glob.glob(os.path.join(self.out, "ledger-supernet*.jsonl")))
            summary["ledger"] = summarize_files(ledgers, "supernet")
            print(summary_line(summary["ledger"]), flush=True)
            atomic_write_json(os.path.join(self.out, "train_summary.json"), summary)
        return summary

    def _ledger(self):
        from infra.ledger import Ledger, ledger_path

        return Ledger(ledger_path(self.out, "supernet", self.rank, self.world), "supernet", rank=self.rank)


if __name__ == "__main__":
    import sys

    sys.exit("python -m supernet.train is not an entry point: train a supernet with bash train_supernet.sh CONFIG "
             "[key=value ...] (or python train_supernet.py --config CONFIG)")
