"""YAML configs with command-line overrides: one file per scenario, every flag a config key.

A config is a nested mapping (sections `model`, `data`, `train`, `supernet`, `evaluate`, ...).
Entry points declare their flags as `Flag(option, key, type, help)`; a flag given on the command
line overrides the key, and `key=value` overrides reach any key. Paddle is not imported here.
"""

import argparse
import copy
import os
from dataclasses import dataclass

import yaml

from encoding import NetSpec
from infra.config_file import ConfigError, load_yaml, merge  # noqa: F401 (re-exported)

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass(frozen=True)
class Flag:
    option: str  # e.g. "--batch_size"
    key: str  # dotted config key, e.g. "train.batch_size"
    type: object = str
    help: str = ""
    action: str = None  # "store_true" for switches


def get(cfg, key, default=KeyError):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise ConfigError(f"config has no key {key!r}")
            return default
        node = node[part]
    return node


def set_key(cfg, key, value, must_exist=True):
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            if must_exist:
                raise ConfigError(f"unknown config key {key!r} (no section {part!r})")
            node[part] = {}
        node = node[part]
    if must_exist and parts[-1] not in node:
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"unknown config key {key!r}; keys here: {known}")
    node[parts[-1]] = value


def apply_overrides(cfg, overrides):
    """Apply `a.b=value` strings; the value is parsed as YAML (so `3`, `0.1`, `[1,2]`, `null` work)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        set_key(cfg, key.strip(), value)
    return cfg


def add_flags(parser: argparse.ArgumentParser, flags):
    """Add each flag with default None, so 'not given' is distinguishable from a value."""
    for f in flags:
        dest = "cfg__" + f.key.replace(".", "__")
        if f.action == "store_true":
            parser.add_argument(f.option, dest=dest, action="store_const", const=True, default=None, help=f.help)
        else:
            parser.add_argument(f.option, dest=dest, type=f.type, default=None,
                                metavar=f.option.lstrip("-").upper(), help=f"{f.help} [config: {f.key}]")


def apply_flags(cfg, args, flags):
    cfg = copy.deepcopy(cfg)
    for f in flags:
        value = getattr(args, "cfg__" + f.key.replace(".", "__"))
        if value is not None:
            set_key(cfg, f.key, value)
    return cfg


def resolve(path, args=None, flags=(), overrides=()):
    """Load `path` (over `base=PATH` when an override gives one: e.g. a recipe at demo size), then
    apply flags, then `key=value` overrides (last wins), then fill the evaluation keys left null
    from `evaluate.protocol` (see `apply_protocol`)."""
    bases = [o.split("=", 1)[1] for o in overrides or () if o.startswith("base=")]
    cfg = load_yaml(path, base=bases[-1] if bases else None)  # base=PATH: lay the file over another config
    if args is not None:
        cfg = apply_flags(cfg, args, flags)
    return apply_protocol(apply_overrides(cfg, [o for o in overrides or () if not o.startswith("base=")]))


def apply_protocol(cfg, force=()):
    """Fill `evaluate.*` keys from the named evaluation protocol: `evaluate.protocols[NAME]` maps
    keys under `evaluate.` (e.g. `calibration.mode`) to values, and each one whose config value is
    null takes the protocol's value (so any key given explicitly still wins). Keys in `force` take
    the protocol's value whatever they hold (a fidelity setting that names a protocol). Returns `cfg`
    (changed in place); configs without `evaluate.protocol` pass unchanged."""
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


def default_config(name):
    return os.path.join(CONFIG_DIR, f"{name}.yaml")


def net_spec(cfg) -> NetSpec:
    return NetSpec.from_dict(get(cfg, "model"))


def dump(cfg):
    return yaml.safe_dump(cfg, sort_keys=False)


# Mixed-precision names of every `amp` key (supernet.amp, train.amp, evaluate.amp) and Paddle's dtypes.
AMP_DTYPES = {"none": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def amp_dtype(name, device, key="amp", warn=False):
    """Paddle's autocast dtype for the config value `name` of `key` on `device`, or None. None on CPU
    too, where Paddle's autocast does nothing (3.3: 'amp_guard can only be enabled on CUDAPlace ...'),
    with a warning when `warn` (evaluation, where a user may expect the speed-up)."""
    label = "none" if name in (None, False) else str(name).lower()
    if label not in AMP_DTYPES:
        raise ConfigError(f"{key} must be one of none, bf16, fp16, got {name!r}")
    dtype = AMP_DTYPES[label]
    if dtype is not None and not str(device).startswith("gpu"):
        if warn:
            import warnings

            warnings.warn(f"{key}={name} ignored on {device}: mixed precision is used on GPU only", stacklevel=2)
        return None
    return dtype
