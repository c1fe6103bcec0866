"""The training sections read once: `supernet:` (SupernetSettings, the supernet trainer's), `train:`
(TrainSettings, standalone training's) and their optimiser keys (OptimSettings, what
`supernet.optim.build_optimizer` takes). Frozen, checked without Paddle when built (so
`train_supernet.sh --plan` refuses a bad run before the launcher starts): a bad key or value is refused
with one line naming it. Defaults live in configs/imagenet.yaml only. Sub-sections a builder consumes
whole (`sampler`, `rank_check`) are kept as read-only mappings for that builder, which checks them.
A rank loss whose cost is a proxy takes that proxy's settings from `evaluate.proxies` (supernet.proxy_settings).
"""

import os
from dataclasses import dataclass
from types import MappingProxyType

from imagedata.settings import DataSettings
from infra import config as C
from runtime.amp import amp_dtype
from runtime.layout import check_channels_last

from .proxy_settings import PROXIES, ProxySettings, proxy_settings

OPTIM_KEYS = ("lr", "base_lr", "warmup", "momentum", "nesterov", "weight_decay", "no_bn_decay", "grad_clip",
              "multi_tensor")
SCHEDULES = ("cosine", "official")  # lr schedules (supernet.optim.WarmupCosine)
TRAIN_KEYS = ("arch", "batch_size", "global_batch_size", "max_epoch", "warmup", "lr_schedule", "lr", "base_lr",
              "momentum", "nesterov", "weight_decay", "no_bn_decay", "grad_clip", "sync_bn", "amp", "channels_last",
              "zero_init_residual", "eval_batch_size", "eval_every", "seed", "output", "resume", "keep_checkpoints",
              "gt", "multi_tensor", "sync_every")
GT_KEYS = ("archs", "ids", "sample", "repeat", "out")
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


def _int(value, key, minimum=1):
    """A required integer >= minimum."""
    if value is None:
        raise C.ConfigError(f"{key} must be an integer >= {minimum}, got null")
    return _int_or_none(value, key, minimum)


def sync_every_setting(value, key):
    """`train.sync_every` / `supernet.sync_every`: steps between host reads of the losses (an integer
    >= 1), or `auto` (supernet.loop.sync_interval: 1 on a CPU, more on a GPU)."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise C.ConfigError(f"{key} must be an integer >= 1 or auto, got {value!r}")
    return value


def multi_tensor_setting(value, key):
    """`multi_tensor` of the optimiser keys: true, false or auto (supernet.optim.use_multi_tensor)."""
    if value not in ("auto", True, False):
        raise C.ConfigError(f"{key} must be true, false or auto, got {value!r}")
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
    if out["cost"] not in ("macs", "params", *PROXIES):
        field, _, path = str(out["cost"]).partition("@")
        if not (field and path):
            raise C.ConfigError(f"supernet.loss.rank.cost must be macs or params, a proxy computed per sampled code "
                                f"({', '.join(PROXIES)}) or FIELD@RESULTS (a proxy's results file, e.g. "
                                f"zen@runs/proxies/results.json), got {out['cost']!r}")
        if not os.path.isfile(path):
            raise C.ConfigError(f"supernet.loss.rank.cost {out['cost']!r}: {path} is not a file")
    if out["margin"] < 0:
        raise C.ConfigError(f"supernet.loss.rank.margin must be >= 0, got {out['margin']}")
    rank_loss_weight(0, out["weight"], out["schedule"], out["ramp_epochs"], out["max_weight"])  # refuses bad values
    return out


def optim_section(sn):
    """`supernet.optim` as OptimSettings: one cosine over supernet.epochs after the warmup."""
    return OptimSettings.from_section(sn.get("optim") or {}, "supernet.optim", int(sn["epochs"]), "cosine")


class OptimConfigError(C.ConfigError):
    """An optimiser or learning-rate schedule setting is invalid."""


def _number(value, key, optional=False):
    """A float from a number, or from a string YAML 1.1 leaves unparsed ('1e-12': PyYAML reads only 1.0e-12
    as a float)."""
    if value is None and optional:
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptimConfigError(f"{key} must be a number{' or null' if optional else ''}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class OptimSettings:
    """SGD with momentum, linear warmup, then a cosine (supernet.optim.build_optimizer), checked and frozen."""
    max_epoch: int
    warmup: float          # epochs (may be fractional)
    lr_schedule: str       # cosine | official
    lr: float | None       # peak lr; None: base_lr x global batch / 256
    base_lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    no_bn_decay: bool
    grad_clip: float | None
    multi_tensor: object   # true | false | auto (on GPU): paddle's merged Momentum update

    @classmethod
    def from_section(cls, section, where, max_epoch, lr_schedule):
        """From a mapping with exactly OPTIM_KEYS (`where` names it in errors: 'train', 'supernet.optim')."""
        o = C.exact_keys(section, OPTIM_KEYS, where)
        if isinstance(max_epoch, bool) or not isinstance(max_epoch, int):
            raise OptimConfigError(f"need an integer max_epoch, got {max_epoch!r}")
        if max_epoch <= 0:
            raise OptimConfigError(f"max_epoch must be positive, got {max_epoch}")
        if lr_schedule not in SCHEDULES:
            raise OptimConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {lr_schedule!r}")
        warmup = _number(o["warmup"] or 0, f"{where}.warmup")
        if warmup < 0 or warmup > max_epoch:
            raise OptimConfigError(f"warmup must be between 0 and max_epoch={max_epoch} epochs, got {warmup:g}")
        weight_decay = _number(o["weight_decay"] or 0.0, f"{where}.weight_decay")
        momentum = _number(o["momentum"], f"{where}.momentum")
        if weight_decay < 0 or not 0 <= momentum < 1:
            raise OptimConfigError(f"need weight_decay >= 0 and 0 <= momentum < 1, got {weight_decay:g}, {momentum:g}")
        lr, base_lr = _number(o["lr"], f"{where}.lr", optional=True), _number(o["base_lr"], f"{where}.base_lr")
        for name, value in (("lr", lr), ("base_lr", base_lr)):
            if value is not None and not value > 0:
                raise OptimConfigError(f"learning rate must be positive, got {where}.{name} {value:g}")
        clip = _number(o["grad_clip"], f"{where}.grad_clip", optional=True)
        if clip is not None and not clip > 0:
            raise OptimConfigError(f"{where}.grad_clip must be positive or null, got {clip:g}")
        return cls(max_epoch=max_epoch, warmup=warmup, lr_schedule=lr_schedule, lr=lr, base_lr=base_lr,
                   momentum=momentum, nesterov=bool(o["nesterov"]), weight_decay=weight_decay,
                   no_bn_decay=bool(o["no_bn_decay"]), grad_clip=clip,
                   multi_tensor=multi_tensor_setting(o["multi_tensor"], f"{where}.multi_tensor"))


@dataclass(frozen=True)
class TrainSettings:
    """The `train:` section (pretrain.py's standalone training), checked and frozen (what each key does:
    configs/imagenet.yaml). `batch_size` is per rank, as the official script; `global_batch_size`, when set,
    is split evenly over the ranks instead."""
    arch: str | None
    batch_size: int | None
    global_batch_size: int | None
    optim: OptimSettings
    sync_bn: bool
    amp: str | None
    channels_last: bool    # NHWC inside the net while AMP is in effect (runtime.layout)
    zero_init_residual: bool
    eval_batch_size: int
    eval_every: int
    seed: int
    output: str
    resume: str
    keep_checkpoints: int
    sync_every: object     # int >= 1 | auto: steps between host reads of the loss (supernet.loop)
    gt: MappingProxyType   # archs, ids, sample, repeat, out (pretrain.py gt)

    @classmethod
    def from_config(cls, cfg):
        t = C.exact_keys(C.get(cfg, "train", None), TRAIN_KEYS, "train")
        gt = C.exact_keys(t["gt"], GT_KEYS, "train.gt")
        amp_dtype(t["amp"], "cpu", "train.amp")  # refuses an unknown name
        for key in ("batch_size", "global_batch_size"):
            if t[key] is not None and (isinstance(t[key], bool) or not isinstance(t[key], int) or t[key] <= 0):
                what = "images per rank" if key == "batch_size" else "the global batch"
                raise C.ConfigError(f"train.{key} ({what}) must be a positive integer, got {t[key]!r}")
        if t["batch_size"] is None and t["global_batch_size"] is None:
            raise C.ConfigError("set train.batch_size (images per rank) or train.global_batch_size")
        resume = "auto" if t["resume"] in (None, "") else str(t["resume"])
        optim = OptimSettings.from_section({k: t[k] for k in OPTIM_KEYS}, "train", t["max_epoch"], t["lr_schedule"])
        return cls(
            arch=None if t["arch"] in (None, "") else str(t["arch"]), batch_size=t["batch_size"],
            global_batch_size=t["global_batch_size"], optim=optim, sync_bn=bool(t["sync_bn"]), amp=t["amp"],
            channels_last=check_channels_last(t["channels_last"], t["amp"], "train"),
            zero_init_residual=bool(t["zero_init_residual"]),
            eval_batch_size=_int(t["eval_batch_size"], "train.eval_batch_size"),
            eval_every=_int(t["eval_every"], "train.eval_every", minimum=0),
            seed=_int(t["seed"], "train.seed", minimum=0),
            output=str(t["output"]), resume=resume,
            keep_checkpoints=_int(t["keep_checkpoints"], "train.keep_checkpoints"),
            sync_every=sync_every_setting(t["sync_every"], "train.sync_every"),
            gt=MappingProxyType(gt))

    @property
    def max_epoch(self):
        return self.optim.max_epoch


@dataclass(frozen=True)
class SupernetSettings:
    """The `supernet:` section, checked and frozen (what each key does: configs/imagenet.yaml)."""
    output_dir: str
    epochs: int
    max_steps: int | None
    batch_size: int           # the global batch over all ranks
    seed: int
    amp: str | None
    channels_last: bool       # NHWC inside the net while AMP is in effect (runtime.layout)
    init: str
    pretrained: str | None
    reorder: bool
    zero_init_residual: bool
    resume: bool
    sync_every: object        # int >= 1 | auto: steps between host reads of the losses (supernet.loop)
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
    rank_proxy: ProxySettings | None  # rank.cost a proxy: its settings (evaluate.proxies'), else None
    optim: OptimSettings          # optim_section()
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
        amp_dtype(sn.get("amp"), "cpu", "supernet.amp")
        optim = optim_section(sn)
        init = sn.get("init", "random")
        if init not in INITS:
            raise C.ConfigError(f"supernet.init must be 'random', 'official' or 'supernet', got {init!r}")
        if init != "random" and not sn.get("pretrained"):
            raise C.ConfigError(f"supernet.init={init} needs supernet.pretrained (path of "
                                f"{'resnet48.pdparams' if init == 'official' else 'supernet weights'})")
        DataSettings.from_config(cfg).check_images_exist()
        loss, log = sn.get("loss") or {}, sn.get("log") or {}
        rank_loss = rank_loss_settings(loss.get("rank"))
        rank_proxy = proxy_settings(cfg, names=(rank_loss["cost"],)) if rank_loss["cost"] in PROXIES else None
        return cls(
            output_dir=sn.get("output_dir") or "runs/supernet",
            epochs=ints["epochs"], max_steps=ints["max_steps"], batch_size=ints["batch_size"],
            seed=int(seed or 0), amp=sn.get("amp"),
            channels_last=check_channels_last(C.get(sn, "channels_last"), sn.get("amp"), "supernet"),
            init=init, pretrained=sn.get("pretrained"),
            reorder=bool(sn.get("reorder", True)), zero_init_residual=bool(sn.get("zero_init_residual", False)),
            resume=bool(sn.get("resume", True)),
            sync_every=sync_every_setting(sn.get("sync_every"), "supernet.sync_every"),
            checkpoint_every_steps=ints["checkpoint.every_steps"], checkpoint_keep=ints["checkpoint.keep"],
            keep_epochs=bool((sn.get("checkpoint") or {}).get("keep_epochs", False)),
            log_every_steps=ints["log.every_steps"], progress=bool(log.get("progress", True)),
            visualdl=bool(log.get("visualdl", True)), launch_cpu_procs=ints["launch.cpu_procs"] or 1,
            label_smoothing=float(loss.get("label_smoothing", 0.0) or 0.0),
            temperature=float(loss.get("temperature", 1.0)),
            inplace_distill=bool(loss.get("inplace_distill", True)),
            teacher=loss.get("teacher") or None, teacher_arch=loss.get("teacher_arch"),
            rank_loss=MappingProxyType(rank_loss), rank_proxy=rank_proxy,
            optim=optim, sampler=MappingProxyType(dict(sn.get("sampler") or {})),
            rank_check=MappingProxyType(dict(sn.get("rank_check") or {})))
