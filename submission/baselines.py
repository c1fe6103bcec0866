"""Zero-cost predictors from the codes alone: bigger nets are usually better.

A supernet ranking that does not beat MACs or parameter count is worthless, so every score
report carries them. The network family comes from a config's `model:` section, read by
`infra.config`, so the submission tools stay independent of the supernet package.
"""

from encoding import CodeError, KitError, NetSpec, costs
from infra.config import ConfigError, load_yaml

from .errors import SubmissionError


def net_spec_from_config(path):
    """NetSpec of a kit config's `model:` section (None path -> the ImageNet default)."""
    return cost_setting_from_config(path)[0]


def resolution_from_config(path):
    """The config's `data.resolution` (the input side the MACs baseline is counted at), or None:
    then each code's own size digit (224 px) counts, as for the challenge."""
    return cost_setting_from_config(path)[1]


def cost_setting_from_config(path):
    """(NetSpec, resolution) the MACs/params baselines are counted with, from one read of the config."""
    if path is None:
        return NetSpec(), None
    try:
        cfg = load_yaml(path)
    except ConfigError as e:
        raise SubmissionError(str(e)) from None
    if not isinstance(cfg.get("model"), dict):
        raise SubmissionError(f"{path}: no 'model:' section (needed for the MACs/params baselines)")
    try:
        spec = NetSpec.from_dict(cfg["model"])
    except (KitError, TypeError) as e:
        raise SubmissionError(f"{path}: bad 'model:' section: {e}") from None
    data = cfg.get("data") or {}
    value = data.get("resolution") if isinstance(data, dict) else None
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise SubmissionError(f"{path}: data.resolution must be a positive integer, got {value!r}")
    return spec, value


def cost_baselines(ids, codes, spec=None, resolution=None):
    """{"macs": int64 array, "params": int64 array} in the order of `codes`; a bad code names its id."""
    try:
        params, macs = costs(codes, spec or NetSpec(), resolution=resolution)
    except CodeError as e:
        culprit = next((i for i, c in zip(ids, codes, strict=True) if c == e.code), "?")
        raise SubmissionError(f"{culprit}: {e}") from None
    return {"macs": macs, "params": params}
