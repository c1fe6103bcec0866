"""Training checkpoints that survive SIGKILL and can be resumed bit for bit.

A checkpoint is one `paddle.save` file holding a dict: model, optimizer and scheduler state,
epoch, step, RNG state and any picklable extras. It is written to a temporary file in the
same directory, fsynced and renamed over the target, so a killed process leaves either the
old file or the new one, never half of one.

Optimizer state is stored under the model's structured parameter names
(`blocks.0.conv.weight/velocity`) rather than Paddle's process-global unique names
(`conv2d_17.w_0_velocity_0`), which depend on how many layers were built before: a resumed
process, or a second model trained in the same process, would otherwise not find them.
"""

import glob
import os
import pickle
import re

import paddle

from encoding import KitError
from infra.atomic import atomic_replace

from .device import broadcast_from_main, gather_from_all, unwrap

_SPECIAL_KEYS = ("LR_Scheduler", "master_weights")


class CheckpointError(KitError):
    """A checkpoint is missing, unreadable or does not fit the model it is loaded into."""


def save_checkpoint(path, state: dict):
    """Atomically write `state` (a dict of tensors, state dicts and picklable values) to `path`."""
    atomic_replace(path, lambda tmp: paddle.save(state, tmp))


def load_checkpoint(path) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = paddle.load(path)
    except (pickle.UnpicklingError, EOFError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict (got {type(state).__name__})")
    return state


def _number(path):
    found = re.findall(r"\d+", os.path.basename(path))
    return int(found[-1]) if found else -1


def list_checkpoints(directory, pattern="epoch_*.pdckpt"):
    """Checkpoints in `directory` matching `pattern`, ordered by the last number in the name."""
    paths = [p for p in glob.glob(os.path.join(os.fspath(directory), pattern)) if os.path.isfile(p)]
    return sorted(paths, key=lambda p: (_number(p), p))


def latest_checkpoint(directory, pattern="epoch_*.pdckpt"):
    """The highest-numbered checkpoint (by name, not mtime), or None when there is none."""
    paths = list_checkpoints(directory, pattern)
    return paths[-1] if paths else None


def prune_checkpoints(directory, pattern="epoch_*.pdckpt", keep=2):
    """Delete all but the `keep` highest-numbered checkpoints; return the deleted paths."""
    paths = list_checkpoints(directory, pattern)
    doomed = paths[:-keep] if keep > 0 else paths
    for p in doomed:
        os.unlink(p)
    return doomed


# --- every rank resumes the same state ---------------------------------------------------------

def agree_on_checkpoint(path):
    """Rank 0's choice of checkpoint to resume (a path or None) on every rank: each rank's own look at
    the folder (node-local storage, or a shared one that lags) may find another newest file. Every rank
    must then see that file, or all stop with one line (instead of one failing and the rest hanging)."""
    path = broadcast_from_main(path)
    if path is not None:
        blind = [r for r, seen in enumerate(gather_from_all(os.path.isfile(path))) if not seen]
        if blind:
            raise CheckpointError(f"rank 0 resumes from {path}, which rank(s) {', '.join(map(str, blind))} cannot "
                                  f"see: the run folder must be one shared directory for all ranks")
    return path


def confirm_same_step(global_step, path):
    """Every rank checks that all loaded the same point of the run from `path` (`global_step`; None
    where this rank failed to load it: its own error follows, the others stop with this one)."""
    steps = gather_from_all(None if global_step is None else int(global_step))
    failed = [r for r, s in enumerate(steps) if s is None]
    if failed and global_step is not None:
        raise CheckpointError(f"rank(s) {', '.join(map(str, failed))} could not load {path} (their logs say why)")
    if not failed and len(set(steps)) > 1:
        raise CheckpointError(f"ranks loaded different states from {path}: global steps {steps} (by rank); "
                              f"the run folder must be one shared directory for all ranks")


def check_world_change(path, saved, now, mid_epoch, hint):
    """Refuse, in one line, a resume on another number of ranks that would not continue the same run.

    `saved`/`now`: {'world', 'global_batch', 'steps_per_epoch', 'epoch_samples'} of the checkpoint's
    run and of this one (a checkpoint from before these were stored passes). The optimizer, LR schedule
    and data order follow the global batch, so another world size works when the global batch and the
    steps per epoch stay the same; mid-epoch it also needs the same padded epoch (the sampler pads the
    shuffled indices to a multiple of the ranks: the same padded length gives the same global batches,
    so the batches already trained are the ones skipped). `hint` says how to keep the global batch."""
    old_world, world = saved.get("world"), now["world"]
    if old_world is None or old_world == world:
        return
    where = f"checkpoint {path} was written on {old_world} rank(s), this run has {world}"
    for key, what in (("global_batch", "the global batch"), ("steps_per_epoch", "the steps per epoch")):
        if saved.get(key) is not None and saved[key] != now[key]:
            raise CheckpointError(f"{where} and {what} changed ({saved[key]} -> {now[key]}): resume on "
                                  f"{old_world} rank(s), or {hint}")
    if mid_epoch and saved.get("epoch_samples") != now["epoch_samples"]:
        raise CheckpointError(f"{where}, and it stopped mid-epoch: padded to a multiple of {world} ranks the epoch "
                              f"holds {now['epoch_samples']} samples, not {saved.get('epoch_samples')}, so its "
                              f"remaining batches would hold other images; resume on {old_world} rank(s) or from an "
                              f"epoch-end checkpoint")


# --- optimizer state under structured names ---------------------------------------------------

def _param_names(model):
    """Paddle unique name -> structured name, for every parameter of the (unwrapped) model."""
    return {p.name: n for n, p in unwrap(model).named_parameters()}


def _split_accumulator(key, by_length):
    """'conv2d_3.w_0_velocity_0' -> ('conv2d_3.w_0', 'velocity'), given names longest first."""
    for pname in by_length:
        if key.startswith(pname + "_"):
            rest = key[len(pname) + 1:]
            acc = re.sub(r"_\d+$", "", rest)
            return pname, acc
    return None, None


def optimizer_state(optimizer, model) -> dict:
    """The optimizer's state dict with accumulators keyed `structured_name/accumulator`."""
    names = _param_names(model)
    by_length = sorted(names, key=len, reverse=True)
    out = {}
    for key, value in optimizer.state_dict().items():
        if key in _SPECIAL_KEYS:
            out[key] = value
            continue
        pname, acc = _split_accumulator(key, by_length)
        if pname is None:
            raise CheckpointError(f"optimizer state {key!r} belongs to no parameter of the model")
        out[f"{names[pname]}/{acc}"] = value
    return out


def load_optimizer_state(optimizer, model, state: dict):
    """Inverse of `optimizer_state` for an optimizer over `model`'s parameters in this process."""
    structured = {n: p.name for n, p in unwrap(model).named_parameters()}
    current = {}
    existing = optimizer.state_dict()
    by_length = sorted(_param_names(model), key=len, reverse=True)
    for key in existing:  # accumulators already created keep the names they have
        if key not in _SPECIAL_KEYS:
            pname, acc = _split_accumulator(key, by_length)
            if pname is not None:
                current[(pname, acc)] = key
    translated = {}
    for key, value in state.items():
        if key in _SPECIAL_KEYS:
            translated[key] = value
            continue
        sname, _, acc = key.rpartition("/")
        if sname not in structured:
            raise CheckpointError(f"optimizer state for {sname!r}, which the model does not have")
        pname = structured[sname]
        # accumulators not created yet get the first name Paddle will generate for them
        translated[current.get((pname, acc), f"{pname}_{acc}_0")] = value
    optimizer.set_state_dict(translated)


# --- whole training state ---------------------------------------------------------------------

def training_state(model, optimizer=None, scheduler=None, epoch=0, step=0, rng=None, **extras) -> dict:
    """The dict `save_checkpoint` stores for a training run (model unwrapped from DataParallel)."""
    state = {"model": unwrap(model).state_dict(), "epoch": int(epoch), "step": int(step)}
    if optimizer is not None:
        state["optimizer"] = optimizer_state(optimizer, model)
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if rng is not None:
        state["rng"] = rng
    state["extras"] = extras
    return state


def load_model_state(model, state_dict, source="checkpoint"):
    """Load weights, refusing missing, unexpected or mis-shaped tensors (Paddle only warns)."""
    layer = unwrap(model)
    own = layer.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit the model: missing {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                              f"{'...' if len(unexpected) > 5 else ''}")
    for k, v in own.items():
        if list(v.shape) != list(state_dict[k].shape):
            raise CheckpointError(f"{source}: {k} has shape {list(state_dict[k].shape)}, "
                                  f"the model expects {list(v.shape)}")
    layer.set_state_dict(state_dict)


def restore_training_state(path, model, optimizer=None, scheduler=None) -> dict:
    """Load a `training_state` checkpoint into the given objects; return the whole dict
    (epoch, step, rng, extras) so the caller can restore the rest."""
    state = load_checkpoint(path)
    if "model" not in state:
        raise CheckpointError(f"checkpoint {path} holds no model state")
    load_model_state(model, state["model"], source=f"checkpoint {path}")
    if optimizer is not None:
        if "optimizer" not in state:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state")
        load_optimizer_state(optimizer, model, state["optimizer"])
    if scheduler is not None:
        if "scheduler" not in state:
            raise CheckpointError(f"checkpoint {path} holds no LR scheduler state")
        scheduler.set_state_dict(state["scheduler"])
    return state
