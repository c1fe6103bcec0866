"""Standalone training of ResNet48 subnets with the official recipe, and ground-truth building.

    python pretrain.py run --arch CODE --image_dir DIR --batch_size 1024 --max_epoch 90 --warmup 2
    python -m paddle.distributed.launch --gpus 0,1,2,3 pretrain.py run --arch CODE --image_dir DIR ...
    python pretrain.py gt --archs ARCHS.json --ids arch1,arch7 --config configs/demo.yaml --out GT.json

Config: `--config PATH`; without it, configs/imagenet.yaml when --image_dir is given (so the
official command trains on ImageNet at DIR), else configs/demo.yaml (Fashion-MNIST). Every
flag sets a config key; trailing `key=value` arguments set any other key.

Recipe (official): SGD, momentum 0.9, weight decay 1e-4. `--batch_size` is PER RANK, as in the
official script (paddle.Model.fit batches per process): N ranks train on a global batch of
N x batch_size (1024 on 4 GPUs = 4096 images per step) at peak lr = 0.1 x global batch / 256
(1.6), and gradients are averaged by paddle.DataParallel; `train.global_batch_size` gives the
global batch instead (split evenly over the ranks). Warmup: int(training images / global batch)
x `--warmup` iterations, then `train.lr_schedule`: `official` (imagenet.yaml: the official
LinearWarmup(CosineAnnealingDecay(lr, max_epoch)) stepped per iteration) or `cosine` (demo.yaml:
one cosine to 0 at `--max_epoch`); see supernet/optim.py.

Run directory (`--output`): checkpoints/epoch_NNNN.pdckpt after every epoch (atomic; model,
optimizer, scheduler, epoch, RNG and sampler state), model.pdparams (final weights),
result.json (accuracy, speed, config), train.log. `--resume auto` (default) continues from the
newest checkpoint there, `--resume never` deletes them and starts over, `--resume PATH` loads
that file. A resumed run ends with the same weights as an uninterrupted one (on the same device
and thread count: OMP_NUM_THREADS defaults to the cores / processes on this machine).

`gt` trains each selected arch of an architecture list with the same recipe, once per seed
(train.seed .. train.seed + repeat - 1), in `<output>/<id>_seed<S>/`, and writes the GT file
(challenge format plus details) after each finished arch. Finished runs (result.json present)
and archs already in the GT file are skipped, an interrupted run resumes from its last epoch.
More seeds for an entry of the GT file (a larger --repeat) train only the seeds it lacks: the
seeds it holds come from their run directories or, where those are gone (a clean checkout),
from the file itself. An entry trained with another recipe is refused, whatever its seeds.
`--sample N` picks N codes spread over the MACs range: codes sorted by MACs (ties in a seeded
random order), then those at N evenly spaced ranks from the cheapest to the most expensive.
Under paddle.distributed.launch, `gt` trains the archs one after another, each one
data-parallel over all ranks exactly like `run` (the output directory must be visible to all
ranks; rank 0 writes).
"""

import argparse
import copy
import json
import logging
import math
import os
import sys
import time

import numpy as np

from encoding import DOCUMENTED, ArchListError, KitError, costs, net_spec, read_arch_list, run_reporting_errors
from imagedata.settings import workers_flag
from infra.atomic import atomic_write_json
from infra.config import Flag, add_flags, default_config, get, resolve, set_key
from infra.runlock import release
from runtime import cpu_speed

log = logging.getLogger("pretrain")

CHECKPOINT_PATTERN = "epoch_*.pdckpt"
# Settings that may change between an interrupted run and its resumption (channels_last: the activations'
# layout, same weights and the same maths up to rounding; sync_every: when the loss is read; multi_tensor:
# the same update in one kernel).
RESUME_FREE = ("data.num_workers", "data.image_dir", "data.fashion_mnist_dir", "train.output", "train.resume",
               "train.keep_checkpoints", "train.eval_every", "train.eval_batch_size", "train.gt",
               "train.channels_last", "train.sync_every", "train.multi_tensor")

COMMON_FLAGS = [
    Flag("--image_dir", "data.image_dir", str, "ImageNet-style root (class folders or list files)"),
    Flag("--batch_size", "train.batch_size", int, "batch size PER RANK (as the official script)"),
    Flag("--max_epoch", "train.max_epoch", int, "epochs"),
    Flag("--warmup", "train.warmup", float, "epochs of linear LR warmup"),
    Flag("--lr", "train.lr", float, "peak learning rate (default 0.1 x batch_size / 256)"),
    Flag("--seed", "train.seed", int, "seed of initialisation, data order and augmentation"),
    Flag("--output", "train.output", str, "run directory"),
    Flag("--resume", "train.resume", str, "auto | never | PATH of a checkpoint"),
    Flag("--num_workers", "data.num_workers", workers_flag, "data loader workers per rank (or auto)"),
    Flag("--device", "device", str, "auto | cpu | gpu"),
    Flag("--amp", "train.amp", str, "mixed precision on GPU: none (fp32) | bf16 | fp16 (with loss scaling)"),
]
RUN_FLAGS = [Flag("--arch", "train.arch", str, "subnet code (52 digits, or 51 without the size code)")] + COMMON_FLAGS
GT_FLAGS = COMMON_FLAGS + [
    Flag("--archs", "train.gt.archs", str, "architecture list JSON (challenge format)"),
    Flag("--ids", "train.gt.ids", str, "comma-separated ids of the list to train"),
    Flag("--sample", "train.gt.sample", int, "train this many codes spread over the MACs range"),
    Flag("--repeat", "train.gt.repeat", int, "seeds per arch"),
    Flag("--out", "train.gt.out", str, "GT file to write (default <output>/GT.json)"),
]


class TrainingError(KitError):
    """Training cannot start or went wrong (bad settings, diverged loss)."""


# --- config --------------------------------------------------------------------------------------

def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def recipe(cfg):
    """The settings a checkpoint or result depends on: model, data and train minus RESUME_FREE."""
    flat = _flatten({k: cfg.get(k, {}) for k in ("model", "data", "train")})
    return {k: v for k, v in flat.items() if not any(k == f or k.startswith(f + ".") for f in RESUME_FREE)}


# Keys added after ground-truth files were written, with the value those files were trained with.
LATER_KEYS = {"train.amp": "none", "train.zero_init_residual": False, "train.global_batch_size": None,
              "train.lr_schedule": "cosine", "data.jpeg_draft": False}


def recipe_changes(old, new):
    old, new = {**LATER_KEYS, **old}, {**LATER_KEYS, **new}
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


# --- one standalone training ---------------------------------------------------------------------

def _setup_logging():
    """INFO from the main rank, warnings only from the others (each rank has its own log under the launcher)."""
    from runtime.device import is_main
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for name in ("pretrain", "imagedata"):
        logging.getLogger(name).setLevel(logging.INFO if is_main() else logging.WARNING)


class _FileLog:
    """Copy this module's and the data package's log records into `path` (main rank only)."""

    def __init__(self, path):
        self.path = path
        self.handler = None

    def __enter__(self):
        from runtime.device import is_main
        if is_main():
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.handler = logging.FileHandler(self.path)
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            for name in ("pretrain", "imagedata"):
                logging.getLogger(name).addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        if self.handler is not None:
            for name in ("pretrain", "imagedata"):
                logging.getLogger(name).removeHandler(self.handler)
            self.handler.close()


def _all_reduce_sum(values):
    """Sum a list of floats over ranks (float64)."""
    import paddle
    import paddle.distributed as dist

    from runtime.device import world_size
    if world_size() == 1:
        return list(values)
    t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
    dist.all_reduce(t)
    return t.numpy().tolist()


def evaluate_classifier(model, loader):
    """Top-1, top-5 (top-k for k = min(5, classes)) and mean cross-entropy over the loader's
    dataset, summed over ranks (each rank holds an exact, unpadded shard)."""
    import paddle

    from runtime.device import unwrap

    from .accuracy import batch_counts
    net = unwrap(model)
    net.eval()
    sums, count = None, 0  # correct1, correct5, loss sum: kept on the device until the end
    with paddle.no_grad():
        for images, labels in loader:
            batch = batch_counts(net(images), labels)
            sums = batch if sums is None else sums + batch
            count += int(labels.shape[0])
    sums = sums.numpy().tolist() if sums is not None else [0.0] * 3
    c1, c5, loss_sum, n = _all_reduce_sum([*sums, float(count)])
    if n == 0:
        raise TrainingError("the validation split is empty")
    return {"top1": c1 / n, "top5": c5 / n, "loss": loss_sum / n, "count": int(n), "bad_images": loader.bad_count}


def standalone_step(model, optimizer, scheduler, amp=None, scaler=None):
    """The standalone step for `supernet.loop.Loop`: cross-entropy of one net, `amp` a paddle autocast
    dtype (None: fp32), `scaler` a GradScaler for float16. It returns the loss on the device and the
    update as a `Pending`: the loop reads the loss (averaged over ranks) every `train.sync_every` steps
    and before the update of the step it reads (the NaN rule), so every rank stops together and the
    last checkpoint stays good."""
    import paddle.nn.functional as F

    from runtime.amp import autocast

    from .loop import Pending

    def update():
        if scaler is not None:
            scaler.step(optimizer)  # unscales; skips the update when a gradient overflowed (reads the flag)
            scaler.update()
        else:
            optimizer.step()
        optimizer.clear_grad()
        scheduler.step()

    def step(epoch, index, images, labels, global_step):
        with autocast(amp):
            logits = model(images)
        loss = F.cross_entropy(logits.astype("float32"), labels)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        where = f"epoch {epoch + 1}, step {index + 1} (lower the learning rate with --lr, or check the data)"
        return Pending(loss.detach().reshape([1]), update, report=lambda floats: ({"loss": floats[0]}, {}),
                       where=lambda i: where, discard=optimizer.clear_grad)

    return step


def _resume_source(mode, ckpt_dir):
    """The checkpoint to resume: rank 0's choice on every rank (runtime.checkpoint.agree_on_checkpoint)."""
    from runtime.checkpoint import CheckpointError, agree_on_checkpoint, latest_checkpoint
    mode = "auto" if mode in (None, "") else str(mode)
    if mode == "auto":
        return agree_on_checkpoint(latest_checkpoint(ckpt_dir, CHECKPOINT_PATTERN))
    if mode == "never":
        return None
    if not os.path.isfile(mode):
        raise CheckpointError(f"--resume {mode}: no such checkpoint file (expected auto, never or a path)")
    return mode


def _clean_run_dir(out_dir, ckpt_dir, fresh):
    """With a fresh start, remove old checkpoints and results (the temporary files a killed run
    left went when the run folder was claimed)."""
    from runtime.checkpoint import list_checkpoints
    if not os.path.isdir(ckpt_dir):
        return
    if fresh:
        old = list_checkpoints(ckpt_dir, CHECKPOINT_PATTERN)
        for p in old:
            os.unlink(p)
        for name in ("result.json", "model.pdparams"):
            if os.path.exists(os.path.join(out_dir, name)):
                os.unlink(os.path.join(out_dir, name))
        if old:
            log.info("resume=never: removed %d old checkpoints from %s", len(old), ckpt_dir)


def batch_sizes(train, world):
    """(per-rank batch, global batch) of TrainSettings `train`: `train.batch_size` per rank as in the
    official script, or `train.global_batch_size` split evenly over the ranks when that is set instead."""
    per_rank, total = train.batch_size, train.global_batch_size
    if total is not None:
        if total % world:
            raise TrainingError(f"train.global_batch_size must be a positive multiple of the {world} ranks, "
                                f"got {total!r}")
        return total // world, total
    return per_rank, per_rank * world


def train_standalone(cfg, arch_id=None):
    """Train `train.arch` from scratch (or resume it) in `train.output`; return the result dict
    that is also written to `<output>/result.json`."""
    import paddle

    from imagedata import DataSettings, build_dataset, build_loader
    from infra.ledger import Ledger, ledger_path, read_records, summarize, summary_line
    from runtime.amp import amp_dtype
    from runtime.checkpoint import (
        CheckpointError,
        check_world_change,
        confirm_same_step,
        prune_checkpoints,
        restore_training_state,
        save_checkpoint,
        training_state,
    )
    from runtime.device import (
        barrier,
        claim_run_folder,
        init_distributed,
        is_main,
        rng_state,
        seed_everything,
        set_rng_state,
        setup_device,
        sync_from_main,
    )
    from runtime.layout import data_format

    from .loop import Loop, Position, sync_interval
    from .optim import build_optimizer
    from .settings import TrainSettings
    from .static import build_static

    wall_start = time.perf_counter()
    device = setup_device(cfg)
    _, world = init_distributed()
    train, data = TrainSettings.from_config(cfg), DataSettings.from_config(cfg)
    code = train.arch
    if not code:
        raise TrainingError("no subnet code given: pass --arch CODE (or train.arch=CODE)")
    arch = DOCUMENTED.validate(str(code))
    code = arch.code()
    spec = net_spec(cfg)
    per_rank, global_batch = batch_sizes(train, world)
    seed, max_epoch, out_dir = train.seed, train.max_epoch, train.output
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    claim_run_folder(out_dir, sweep=("checkpoints",))  # one writer per run folder until it is done

    with _FileLog(os.path.join(out_dir, "train.log")):
        seed_everything(seed)
        train_set = build_dataset(data, "train", augment=True)
        val_set = build_dataset(data, "val", augment=False)
        workers = data.num_workers
        train_loader = build_loader(train_set, per_rank, shuffle=True, drop_last=True,
                                    num_workers=workers, seed=seed)
        val_loader = build_loader(val_set, train.eval_batch_size, shuffle=False,
                                  drop_last=False, num_workers=workers, seed=seed, exact_shards=True)
        steps = len(train_loader)
        if steps == 0:
            raise TrainingError(f"the training split has {len(train_set)} images, fewer than one global batch "
                                f"of {global_batch}: lower --batch_size")
        amp = amp_dtype(train.amp, device, "train.amp")
        model = build_static(arch, spec, data_format(train.channels_last, amp))  # NCHW input either way
        if train.zero_init_residual:
            model.zero_init_residual()
        if train.sync_bn and world > 1:
            model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        optimizer, scheduler = build_optimizer(model, train.optim, global_batch, steps, len(train_set))
        batching = {"ranks": world, "per_rank_batch": per_rank, "global_batch": global_batch,
                    "peak_lr": scheduler.peak_lr, "warmup_iterations": scheduler.warmup_steps,
                    "lr_schedule": scheduler.schedule}
        log.info("%d rank(s) x %d images per rank = global batch %d, peak lr %.6g, %d warmup iterations, "
                 "lr schedule %s, %d steps per epoch", world, per_rank, global_batch, scheduler.peak_lr,
                 scheduler.warmup_steps, scheduler.schedule, steps)

        source = _resume_source(train.resume, ckpt_dir)
        barrier()  # every rank has decided before rank 0 touches the directory
        if is_main():
            _clean_run_dir(out_dir, ckpt_dir, fresh=source is None and train.resume == "never")
        scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16) if amp == "float16" else None
        start_epoch, history, prior_wall = 0, [], 0.0
        layout = {"world": world, "global_batch": global_batch, "steps_per_epoch": steps,
                  "epoch_samples": int(train_loader.sampler.total_size)}
        if source is not None:
            try:
                state = restore_training_state(source, model, optimizer, scheduler)
            except CheckpointError:
                confirm_same_step(None, source)
                raise
            extras = state.get("extras", {})
            confirm_same_step(state.get("step"), source)  # the scheduler's step count: the run's global step
            sync_from_main(model)  # DataParallel (built below) syncs too; a SyncBatchNorm model is built already
            check_world_change(source, extras, layout, False,
                               "start runs with train.global_batch_size (then any number of ranks dividing it resumes)")
            if extras.get("arch") != code:
                raise CheckpointError(f"checkpoint {source} is of arch {extras.get('arch')}, not {code}")
            changes = recipe_changes(extras.get("recipe", {}), recipe(cfg))
            if changes:
                raise CheckpointError(f"checkpoint {source} was written with other settings ({'; '.join(changes)}); "
                                      f"give the same settings, or --resume never to start over")
            set_rng_state(state["rng"])
            if scaler is not None and extras.get("scaler"):
                scaler.load_state_dict(extras["scaler"])
            start_epoch, history, prior_wall = state["epoch"], list(extras.get("history", [])), extras.get("wall_s", 0)
            log.info("resumed %s from %s (epoch %d of %d)", code, source, start_epoch, max_epoch)
        else:
            log.info("training %s from scratch: %d epochs, device %s", code, max_epoch, device)
        net = paddle.DataParallel(model) if world > 1 else model

        eval_every = train.eval_every
        rank = paddle.distributed.get_rank() if world > 1 else 0
        ledger_file = ledger_path(out_dir, "standalone", rank, world)
        ledger = Ledger(ledger_file, "standalone", rank=rank)
        def end_epoch(done):
            bad = int(_all_reduce_sum([train_loader.bad_count])[0])
            record = {"epoch": done.epoch, "loss": done.loss, "lr_last": done.lr_last, "seconds": done.seconds,
                      "images_per_s": done.images_per_s, "bad_images": bad}
            if eval_every and done.epoch % eval_every == 0 and done.epoch < max_epoch:
                sync_from_main(model, parameters=False)  # rank 0's BN statistics: those its checkpoint saves
                record["val"] = evaluate_classifier(model, val_loader)
            history.append(record)
            msg = (f"epoch {done.epoch}/{max_epoch} loss {record['loss']:.4f} lr {record['lr_last']:.4g} "
                   f"{record['images_per_s']:.0f} img/s {record['seconds']:.1f} s")
            if "val" in record:
                msg += f" val top1 {record['val']['top1']:.4f}"
            if bad:
                msg += f"; {bad} unreadable images replaced"
            log.info(msg)

        last = {"checkpoint": source}

        def save(epoch, step, global_step, epoch_end):
            # BN running statistics are never all-reduced: every rank takes rank 0's (the saved ones), so
            # a rank's validation shard is scored with the statistics of the model that is saved
            sync_from_main(model, parameters=False)
            last["checkpoint"] = os.path.join(ckpt_dir, f"epoch_{epoch:04d}.pdckpt")
            if is_main():  # only at epoch ends: standalone runs resume from an epoch's start
                save_checkpoint(last["checkpoint"], training_state(
                    model, optimizer, scheduler, epoch=epoch, step=scheduler.last_epoch, rng=rng_state(),
                    arch=code, recipe=recipe(cfg), history=history, sampler_epoch=epoch, **layout,
                    wall_s=prior_wall + time.perf_counter() - wall_start,
                    scaler=scaler.state_dict() if scaler is not None else None))
                prune_checkpoints(ckpt_dir, CHECKPOINT_PATTERN, keep=train.keep_checkpoints)
            barrier()

        loop = Loop(train_loader, max_epoch, steps, lr=optimizer.get_lr, world=world, ledger=ledger,
                    progress=is_main(), sync_every=sync_interval(train.sync_every, device))
        loop.run(standalone_step(net, optimizer, scheduler, amp, scaler), Position(start_epoch, 0, 0),
                 end_epoch=end_epoch, save=save, last_checkpoint=lambda: last["checkpoint"])

        with ledger.phase("final_eval") as phase:
            sync_from_main(model, parameters=False)  # model.pdparams holds rank 0's BN statistics: score those
            metrics = evaluate_classifier(model, val_loader)
            phase.images = metrics["count"] if rank == 0 else 0  # a global count: ranks' ledgers add up
        ledger.close()
        # The whole run, earlier sittings included: the file keeps every phase across resumes.
        ledger_summary = summarize(read_records(ledger_file), "standalone")
        params, macs = costs([arch], spec, resolution=data.resolution)
        train_seconds = sum(r["seconds"] for r in history)
        result = {
            "id": arch_id, "arch": code, "seed": seed,
            "top1": metrics["top1"], "top5": metrics["top5"], "loss": metrics["loss"],
            "val_images": metrics["count"], "epochs": max_epoch, "steps_per_epoch": steps,
            "images_per_s": steps * global_batch * len(history) / train_seconds if train_seconds else None,
            "train_time_s": train_seconds,
            "wall_time_s": prior_wall + time.perf_counter() - wall_start,
            "device": device, "world_size": world, **batching, "amp": amp or "none",
            "params": int(params[0]), "macs": int(macs[0]),
            "bad_images": sum(r["bad_images"] for r in history) + metrics["bad_images"],
            "history": history, "recipe": recipe(cfg), "config": cfg,
            "ledger": ledger_summary,
        }
        if is_main():
            save_checkpoint(os.path.join(out_dir, "model.pdparams"), model.state_dict())
            atomic_write_json(os.path.join(out_dir, "result.json"), result, indent=1)
            log.info("%s: top1 %.4f top5 %.4f loss %.4f; %s", code, result["top1"], result["top5"], result["loss"],
                     os.path.join(out_dir, "result.json"))
            log.info(summary_line(ledger_summary))
        barrier()
    release(out_dir)  # `gt` trains its runs one after another
    return result


# --- ground truth --------------------------------------------------------------------------------

def spread_by_macs(codes, n, spec, resolution, seed):
    """Indices of `n` codes at evenly spaced ranks of MACs, cheapest and dearest included."""
    m = len(codes)
    if not 0 < n <= m:
        raise TrainingError(f"--sample {n}: the list has {m} codes (need 1 <= N <= {m})")
    _, macs = costs(codes, spec, resolution=resolution)
    tie = np.random.default_rng(seed).random(m)
    order = np.lexsort((tie, macs))
    ranks = [0] if n == 1 else [int(math.floor(k * (m - 1) / (n - 1) + 0.5)) for k in range(n)]
    return [int(order[r]) for r in ranks]


def select_entries(cfg, entries):
    from .settings import TrainSettings

    train = TrainSettings.from_config(cfg)
    gt = train.gt
    ids, sample = gt.get("ids"), gt.get("sample")
    if ids and sample:
        raise TrainingError("give either --ids or --sample, not both")
    if ids:
        wanted = [s.strip() for s in ids.split(",") if s.strip()] if isinstance(ids, str) else [str(s) for s in ids]
        by_id = {e.id: e for e in entries}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise ArchListError(f"{gt['archs']}: no entries with ids {missing[:10]}")
        return [by_id[i] for i in dict.fromkeys(wanted)]
    if sample:
        chosen = spread_by_macs([e.code for e in entries], int(sample), net_spec(cfg),
                                int(get(cfg, "data.resolution")), train.seed)
        return [entries[i] for i in chosen]
    return list(entries)


def _read_result(path, code, seed, cfg):
    """A finished run's result, or None when there is none yet; an error when it is stale."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    if result.get("arch") != code or result.get("seed") != seed:
        raise TrainingError(f"{path} holds arch {result.get('arch')} seed {result.get('seed')}, "
                            f"expected {code} seed {seed}: use another --output")
    changes = recipe_changes(result.get("recipe", {}), recipe(cfg))
    if changes:
        raise TrainingError(f"{path} was trained with other settings ({'; '.join(changes)}): use another --output")
    return result


def gt_recipe(cfg):
    """What a ground-truth entry depends on besides its code and seeds (stored with it, checked on skip)."""
    return {k: v for k, v in recipe(cfg).items() if k not in ("train.arch", "train.seed")}


def seeds_in_file(entry, where):
    """Per-seed results an existing GT entry (of this recipe) already holds: run directories are
    not committed, so a clean checkout extends a GT file (more seeds) from the file itself
    instead of retraining the seeds it has."""
    if entry is None:
        return {}
    seeds = entry.get("seeds") or []
    fields = {k: entry.get(k) for k in ("accs", "top5", "loss")}
    if any(not isinstance(v, list) or len(v) != len(seeds) for v in fields.values()):
        raise TrainingError(f"{where}: seeds {seeds} but accs/top5/loss of other lengths; "
                            "repair or delete the entry")
    return {seed: {"top1": fields["accs"][i], "top5": fields["top5"][i], "loss": fields["loss"][i],
                   "params": entry["params"], "macs": entry["macs"], "epochs": entry["epochs"]}
            for i, seed in enumerate(seeds)}


def build_ground_truth(cfg):
    from runtime.device import barrier, claim_run_folder, is_main, setup_device

    from .settings import TrainSettings

    train = TrainSettings.from_config(cfg)
    gt_cfg = train.gt
    if not gt_cfg.get("archs"):
        raise TrainingError("gt needs --archs ARCHS.json (an architecture list in the challenge format)")
    entries = read_arch_list(gt_cfg["archs"])
    for e in entries:
        DOCUMENTED.validate(e.code)
    selected = select_entries(cfg, entries)
    base_out = train.output
    gt_path = gt_cfg.get("out") or os.path.join(base_out, "GT.json")
    repeat = int(gt_cfg.get("repeat") or 1)
    if repeat < 1:
        raise TrainingError(f"--repeat must be at least 1, got {repeat}")
    seed0 = train.seed
    seeds = list(range(seed0, seed0 + repeat))
    setup_device(cfg)
    # one writer per GT file (its runs are claimed one by one, so two seeds can train side by side)
    name = os.path.basename(gt_path)
    claim_run_folder(os.path.dirname(os.path.abspath(gt_path)), lock_name=f".{name}.lock", what=gt_path,
                     temp_of=name)

    this_recipe = gt_recipe(cfg)
    ground = {}
    if os.path.isfile(gt_path):
        with open(gt_path, encoding="utf-8") as f:
            ground = json.load(f)
    with _FileLog(os.path.join(base_out, "gt.log")):
        log.info("ground truth: %d archs x %d seeds -> %s", len(selected), len(seeds), gt_path)
        for entry in selected:
            code = DOCUMENTED.validate(entry.code).code()
            old = ground.get(entry.id)
            if old is not None and old.get("arch") != code:
                raise TrainingError(f"{gt_path}: {entry.id} is {old.get('arch')} there but {code} in {gt_cfg['archs']}")
            if old is not None:
                changes = recipe_changes(old.get("recipe", {}), this_recipe)
                if changes:
                    raise TrainingError(f"{gt_path}: {entry.id} was trained with other settings "
                                        f"({'; '.join(changes[:5])}): give another --out, or delete the file to "
                                        f"retrain")
                if old.get("seeds") == seeds:
                    log.info("%s: finished, skipped", entry.id)
                    continue
            in_file = seeds_in_file(old, f"{gt_path}: {entry.id}")
            results = []
            for seed in seeds:
                run_cfg = copy.deepcopy(cfg)
                run_dir = os.path.join(base_out, f"{entry.id}_seed{seed}")
                for key, value in (("train.arch", code), ("train.seed", seed), ("train.output", run_dir)):
                    set_key(run_cfg, key, value)
                result = _read_result(os.path.join(run_dir, "result.json"), code, seed, run_cfg)
                if result is not None:
                    log.info("%s seed %d: finished earlier (%s)", entry.id, seed, run_dir)
                elif seed in in_file:
                    result = in_file[seed]
                    log.info("%s seed %d: taken from %s (no run in %s)", entry.id, seed, gt_path, run_dir)
                else:
                    result = train_standalone(run_cfg, arch_id=entry.id)
                results.append(result)
            accs = [r["top1"] for r in results]
            ground[entry.id] = {
                "acc": float(np.mean(accs)), "arch": code, "seeds": seeds, "accs": accs,
                "top5": [r["top5"] for r in results], "loss": [r["loss"] for r in results],
                "params": results[0]["params"], "macs": results[0]["macs"], "epochs": results[0]["epochs"],
                "recipe": this_recipe,
                "runs": [os.path.relpath(os.path.join(base_out, f"{entry.id}_seed{s}"),
                                         os.path.dirname(os.path.abspath(gt_path))) for s in seeds],
            }
            if is_main():
                atomic_write_json(gt_path, ground, indent=1)
                log.info("%s: acc %.4f over seeds %s -> %s", entry.id, ground[entry.id]["acc"], seeds, gt_path)
            barrier()
        if repeat >= 2 and is_main():
            log.info("how far its seeds agree, and how many a ranking needs: python -m submission ceiling --gt %s",
                     gt_path)
    return ground


# --- command line --------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="pretrain.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, flags, help_text in (("run", RUN_FLAGS, "train one subnet standalone"),
                                   ("gt", GT_FLAGS, "train listed subnets and write ground-truth accuracies")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=None,
                       help="YAML config (default: configs/imagenet.yaml with --image_dir, else configs/demo.yaml)")
        add_flags(p, flags)
        p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. data.train_subset=5000")
        p.set_defaults(flags=flags)
    return parser.parse_args(argv)


def load_config(args):
    path = args.config
    if path is None:
        path = default_config("imagenet" if getattr(args, "cfg__data__image_dir", None) else "demo")
    return resolve(path, args, args.flags, args.overrides)


def main(argv=None):
    cpu_speed.default_threads()  # before Paddle is imported (lazily, below)
    return run_reporting_errors(_run_command, parse_args(argv))


def _run_command(args):
    from runtime.device import init_distributed, is_main, print_start_line, setup_device

    cfg = load_config(args)
    device = setup_device(cfg)  # before joining the group: NCCL binds to this card
    _, world = init_distributed()
    _setup_logging()
    print_start_line(f"pretrain.py {args.command}", device, world, get(cfg, "train.amp", None))
    if args.command == "run":
        result = train_standalone(cfg)
        if is_main():
            print(json.dumps({k: result[k] for k in ("arch", "top1", "top5", "loss", "images_per_s")}))
    else:
        build_ground_truth(cfg)
    return 0


if __name__ == "__main__":
    sys.exit("python -m supernet.standalone is not an entry point: run python pretrain.py run|gt ... from the "
             "repository root")
