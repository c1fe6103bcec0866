"""The `supernet:` section read once: a frozen settings object, checked without Paddle when it is built
(so `train_supernet.sh --plan` refuses a bad run before the launcher starts), that the trainer takes
instead of the raw config. Sub-sections a builder consumes whole (`sampler`, `rank_check`, `optim`)
are kept as read-only mappings for that builder.
"""

import os
from dataclasses import dataclass
from types import MappingProxyType

from . import config as C

OPTIM_KEYS = ("lr", "base_lr", "warmup", "momentum", "nesterov", "weight_decay", "no_bn_decay", "grad_clip")
RANK_KEYS = ("weight", "schedule", "ramp_epochs", "max_weight", "margin", "cost")
# Integer settings under `supernet:` (each >= 1 or null) and their defaults.
INT_SETTINGS = {"epochs": None, "max_steps": None, "batch_size": None, "checkpoint.every_steps": None,
                "checkpoint.keep": 2, "log.every_steps": 10, "launch.cpu_procs": 1, "rank_check.max_archs": 50}
INITS = ("random", "official", "supernet")
RANK_SCHEDULES = ("constant", "linear")


def section(cfg):
    try:
        return C.get(cfg, "supernet")
    except C.ConfigError:
        raise C.ConfigError("config has no 'supernet:' section (see configs/demo.yaml)") from None


def _int_or_none(value, key, minimum=1):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise C.ConfigError(f"{key} must be an integer >= {minimum} or null, got {value!r}")
    return value


def rank_loss_weight(epoch, weight, schedule="constant", ramp_epochs=1.0, max_weight=None):
    """The rank loss's weight in `epoch` (0-based): `weight` (constant), or weight x epoch /
    ramp_epochs (linear), either capped at `max_weight`. 3rd place: min(2, epoch / 10) is
    weight 1, linear, ramp_epochs 10, max_weight 2."""
    if schedule not in RANK_SCHEDULES:
        raise C.ConfigError(f"rank loss schedule must be one of {', '.join(RANK_SCHEDULES)}, got {schedule!r}")
    if weight < 0 or (max_weight is not None and max_weight < 0):
        raise C.ConfigError(f"rank loss weights must be >= 0, got weight {weight}, max_weight {max_weight}")
    if schedule == "linear":
        if not ramp_epochs > 0:
            raise C.ConfigError(f"rank loss ramp_epochs must be positive, got {ramp_epochs}")
        value = float(weight) * float(epoch) / float(ramp_epochs)
    else:
        value = float(weight)
    return value if max_weight is None else min(value, float(max_weight))


def rank_loss_settings(rank):
    """`supernet.loss.rank` checked and completed; weight 0 (the default) turns the rank loss off."""
    rank = dict(rank or {})
    unknown = sorted(set(rank) - set(RANK_KEYS))
    if unknown:
        raise C.ConfigError(f"unknown supernet.loss.rank keys {unknown}; known: {list(RANK_KEYS)}")
    out = {"weight": float(rank.get("weight") or 0.0), "schedule": rank.get("schedule") or "constant",
           "ramp_epochs": float(rank.get("ramp_epochs") or 1.0), "max_weight": rank.get("max_weight"),
           "margin": float(rank.get("margin") or 0.0), "cost": rank.get("cost") or "macs"}
    if out["cost"] not in ("macs", "params"):
        raise C.ConfigError(f"supernet.loss.rank.cost must be macs or params, got {out['cost']!r}")
    if out["margin"] < 0:
        raise C.ConfigError(f"supernet.loss.rank.margin must be >= 0, got {out['margin']}")
    rank_loss_weight(0, out["weight"], out["schedule"], out["ramp_epochs"], out["max_weight"])  # refuses bad values
    return out


def optim_section(sn):
    """The `supernet.optim` keys in the form `supernet.optim.build_optimizer` reads."""
    optim = dict(sn.get("optim") or {})
    unknown = sorted(set(optim) - set(OPTIM_KEYS))
    if unknown:
        raise C.ConfigError(f"unknown supernet.optim keys {unknown}; known: {list(OPTIM_KEYS)}")
    optim["max_epoch"] = int(sn["epochs"])
    return optim


def _check_data(cfg):
    _int_or_none(C.get(cfg, "data.num_workers", 0), "data.num_workers", minimum=0)
    image_dir = C.get(cfg, "data.image_dir", None)
    if isinstance(image_dir, str) and not image_dir.strip():
        raise C.ConfigError("data.image_dir is empty: give the image directory (--image_dir DIR) or leave it out")
    if C.get(cfg, "data.name", "imagenet") == "imagenet":
        if image_dir is None:
            raise C.ConfigError("data.image_dir is not set (pass --image_dir DIR or data.image_dir=DIR)")
        if not os.path.isdir(str(image_dir)):
            raise C.ConfigError(f"image directory {image_dir} does not exist")


@dataclass(frozen=True)
class SupernetSettings:
    """The `supernet:` section, checked and frozen (what each key does: configs/imagenet.yaml)."""
    output_dir: str
    epochs: int
    max_steps: int | None
    batch_size: int           # the global batch over all ranks
    seed: int
    amp: str | None
    init: str
    pretrained: str | None
    reorder: bool
    zero_init_residual: bool
    resume: bool
    checkpoint_every_steps: int | None
    checkpoint_keep: int
    keep_epochs: bool
    log_every_steps: int
    progress: bool
    visualdl: bool
    launch_cpu_procs: int
    label_smoothing: float
    temperature: float
    inplace_distill: bool
    teacher: str | None
    teacher_arch: str | None
    rank_loss: MappingProxyType   # rank_loss_settings()
    optim: MappingProxyType       # optim_section()
    sampler: MappingProxyType     # for samplers.build_schedule
    rank_check: MappingProxyType  # for the rank check the entry point wires in

    @classmethod
    def from_config(cls, cfg):
        """Read and check the section (and the data keys training needs) without Paddle."""
        sn = section(cfg)
        ints = {key: _int_or_none(C.get(sn, key, default), f"supernet.{key}") for key, default in INT_SETTINGS.items()}
        for key in ("epochs", "batch_size"):
            if ints[key] is None:
                raise C.ConfigError(f"supernet.{key} must be set")
        seed = _int_or_none(sn.get("seed", 0), "supernet.seed", minimum=0)
        C.amp_dtype(sn.get("amp"), "cpu", "supernet.amp")
        optim = optim_section(sn)
        init = sn.get("init", "random")
        if init not in INITS:
            raise C.ConfigError(f"supernet.init must be 'random', 'official' or 'supernet', got {init!r}")
        if init != "random" and not sn.get("pretrained"):
            raise C.ConfigError(f"supernet.init={init} needs supernet.pretrained (path of "
                                f"{'resnet48.pdparams' if init == 'official' else 'supernet weights'})")
        _check_data(cfg)
        loss, log = sn.get("loss") or {}, sn.get("log") or {}
        return cls(
            output_dir=sn.get("output_dir") or "runs/supernet",
            epochs=ints["epochs"], max_steps=ints["max_steps"], batch_size=ints["batch_size"],
            seed=int(seed or 0), amp=sn.get("amp"), init=init, pretrained=sn.get("pretrained"),
            reorder=bool(sn.get("reorder", True)), zero_init_residual=bool(sn.get("zero_init_residual", False)),
            resume=bool(sn.get("resume", True)),
            checkpoint_every_steps=ints["checkpoint.every_steps"], checkpoint_keep=ints["checkpoint.keep"],
            keep_epochs=bool((sn.get("checkpoint") or {}).get("keep_epochs", False)),
            log_every_steps=ints["log.every_steps"], progress=bool(log.get("progress", True)),
            visualdl=bool(log.get("visualdl", True)), launch_cpu_procs=ints["launch.cpu_procs"] or 1,
            label_smoothing=float(loss.get("label_smoothing", 0.0) or 0.0),
            temperature=float(loss.get("temperature", 1.0)),
            inplace_distill=bool(loss.get("inplace_distill", True)),
            teacher=loss.get("teacher") or None, teacher_arch=loss.get("teacher_arch"),
            rank_loss=MappingProxyType(rank_loss_settings(loss.get("rank"))),
            optim=MappingProxyType(optim), sampler=MappingProxyType(dict(sn.get("sampler") or {})),
            rank_check=MappingProxyType(dict(sn.get("rank_check") or {})))
