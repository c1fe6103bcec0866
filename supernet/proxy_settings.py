"""What a zero-cost proxy computes, without Paddle: the proxies' names, ProxySettings and the reader of the
`evaluate.proxies` section (read by `python -m evaluate proxies` and by the supernet trainer when
`supernet.loss.rank.cost` names a proxy: one source of the settings, so a prior computed on the fly equals
a results file's). The proxies themselves: supernet/proxies.py; the choices: docs/proxies.md.
"""

from dataclasses import dataclass

from encoding import KitError
from infra.config import exact_keys, get

PROXIES = ("zen", "synflow", "naswot", "gradnorm")
INITS = ("gaussian", "kaiming")
PROXY_KEYS = ("names", "out", "batch_size", "resolution", "repeats", "seed", "zen_alpha", "zen_init", "init",
              "synflow_dtype")


class ProxyError(KitError):
    """A proxy is unknown, badly configured, or undefined for a network (e.g. a singular NASWOT kernel)."""


@dataclass(frozen=True)
class ProxySettings:
    """What a proxy run computes; every field is pinned in the results manifest (the defaults:
    configs/imagenet.yaml's `evaluate.proxies`)."""
    names: tuple
    batch_size: int      # Gaussian images per forward pass (zen, naswot, gradnorm)
    resolution: int      # input side, px
    repeats: int         # initialisations averaged
    seed: int
    zen_alpha: float
    zen_init: str
    init: str            # synflow, naswot, gradnorm
    synflow_dtype: str
    def __post_init__(self):
        unknown = [n for n in self.names if n not in PROXIES]
        if unknown or not self.names:
            raise ProxyError(f"unknown proxy {', '.join(map(repr, unknown)) or '(none given)'}: "
                             f"expected some of {', '.join(PROXIES)}")
        if len(set(self.names)) != len(self.names):
            raise ProxyError(f"proxies repeat: {', '.join(self.names)}")
        for key in ("batch_size", "resolution", "repeats"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ProxyError(f"evaluate.proxies.{key} must be an integer >= 1, got {value!r}")
        if "naswot" in self.names and self.batch_size < 2:
            raise ProxyError("naswot needs evaluate.proxies.batch_size >= 2 (a kernel over a batch)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ProxyError(f"evaluate.proxies.seed must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.zen_alpha, int | float) and self.zen_alpha > 0):
            raise ProxyError(f"evaluate.proxies.zen_alpha must be positive, got {self.zen_alpha!r}")
        for key in ("zen_init", "init"):
            if getattr(self, key) not in INITS:
                raise ProxyError(f"evaluate.proxies.{key} must be one of {', '.join(INITS)}, "
                                 f"got {getattr(self, key)!r}")
        if self.synflow_dtype not in ("float32", "float64"):
            raise ProxyError(f"evaluate.proxies.synflow_dtype must be float32 or float64, got {self.synflow_dtype!r}")

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def name_list(text):
    """'zen,synflow' -> ['zen', 'synflow'] (argparse type of --proxies)."""
    return [n.strip() for n in str(text).split(",") if n.strip()]


def proxy_settings(cfg, names=None):
    """ProxySettings from the `evaluate.proxies` keys (resolution null: data.resolution); `names` (the rank
    loss's one proxy) instead of the section's `names`."""
    section = exact_keys(get(cfg, "evaluate.proxies", None), PROXY_KEYS, "evaluate.proxies")
    if names is None:
        names = section["names"] or ()
    if isinstance(names, str):
        names = name_list(names)
    resolution = section["resolution"] if section["resolution"] is not None else get(cfg, "data.resolution")
    fields = {k: section[k] for k in ("batch_size", "repeats", "seed", "zen_alpha", "zen_init", "init",
                                      "synflow_dtype")}
    return ProxySettings(names=tuple(names), resolution=resolution, **fields)
