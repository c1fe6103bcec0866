"""The kit's YAML config files as plain mappings: one reader for every package.

Here, below the supernet package, so the submission tools read a config's `model:` and `data:`
sections without importing it (or Paddle). A config may extend another with `base: PATH`
(relative to its own folder); sections merge key by key, the extending file winning.
"""

import copy
import os

from .errors import KitError


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
