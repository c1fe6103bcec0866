"""The kit's YAML configs: files, `base:`, command-line flags, `key=value` overrides and lookup.

One service for every layer: a config is a nested mapping (sections `model`, `data`, `train`,
`supernet`, `evaluate`, ...). A file may extend another with `base: PATH` (relative to its own
folder); sections merge key by key, the extending file winning. Entry points declare their flags as
`Flag(option, key, type, help)`; a flag given on the command line overrides the key, and
`key=value` overrides reach any key. Each section is then read once into a frozen settings object by
the layer that owns it (`imagedata.settings`, `supernet.settings`, `evaluate.settings`).
Standard library and PyYAML only.
"""

import argparse
import copy
import os
from dataclasses import dataclass

from .errors import KitError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")




class ConfigError(KitError):
    """A config file or override is malformed or names an unknown key."""


def load_yaml(path, base=None):
    """The config at `path` merged over its `base:` (itself loaded the same way); `base` given here
    replaces the file's own (a path as the caller sees it, e.g. a recipe laid over the demo)."""
    import yaml  # here, so `import encoding` stays numpy-only

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    own = data.pop("base", None)
    if base:
        data = merge(load_yaml(base), data)
    elif own:
        data = merge(load_yaml(os.path.join(os.path.dirname(os.path.abspath(path)), own)), data)
    return data


def merge(base, override):
    """`override` laid over `base`, nested mappings merged key by key (inputs left unchanged)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def flatten(mapping, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}: a nested mapping's leaves under dotted keys."""
    out = {}
    for k, v in mapping.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(old, new):
    """The leaves where two nested mappings differ, as 'key: was OLD, now NEW' (None where absent),
    so a refusal names the settings that changed instead of printing whole sections."""
    a, b = flatten(old or {}), flatten(new or {})
    return [f"{k}: was {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


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
    import yaml

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
    apply flags, then `key=value` overrides (last wins). The evaluation keys a protocol fills are
    filled by `evaluate.settings` when it reads the section."""
    bases = [o.split("=", 1)[1] for o in overrides or () if o.startswith("base=")]
    cfg = load_yaml(path, base=bases[-1] if bases else None)  # base=PATH: lay the file over another config
    if args is not None:
        cfg = apply_flags(cfg, args, flags)
    return apply_overrides(cfg, [o for o in overrides or () if not o.startswith("base=")])


def exact_keys(section, known, where):
    """`section` (a mapping or None) as a dict holding exactly the `known` keys: an unknown key is refused by
    name, and so is a missing one, since configs/imagenet.yaml holds every key's default (a config
    extends it with `base:`). `where` names the section in errors ('data', 'supernet.sampler')."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where} keys {unknown}; known: {list(known)}")
    missing = [k for k in known if k not in section]
    if missing:
        raise ConfigError(f"{where}.{missing[0]} is not set: a config extends configs/imagenet.yaml "
                          f"(base: imagenet.yaml), which holds every key's default")
    return section


def default_config(name):
    return os.path.join(CONFIG_DIR, f"{name}.yaml")


def dump(cfg):
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)
