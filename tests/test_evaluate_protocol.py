"""Named evaluation protocols: `evaluate.protocol` fills the keys left null when the evaluation settings read
the section (`evaluate.settings.apply_protocol`), explicit keys win, and a fidelity setting can name a protocol."""

import os

import pytest

from evaluate.fidelity import setting_configs
from evaluate.settings import EvalSettings, apply_protocol
from infra.config import ConfigError, get
from infra.config import resolve as plain_resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = os.path.join(ROOT, "configs", "imagenet.yaml")
DEMO = os.path.join(ROOT, "configs", "demo.yaml")
KEYS = ("evaluate.calibration.mode", "evaluate.subset", "evaluate.amp")


def values(cfg):
    return tuple(get(cfg, k) for k in KEYS)


def resolve(path, overrides=()):
    """The config as the evaluation settings read it: the protocol's preset filled in."""
    return apply_protocol(plain_resolve(path, overrides=overrides))


def test_a_resolved_config_leaves_the_protocols_keys_to_the_evaluation_settings():
    cfg = plain_resolve(IMAGENET)
    assert values(cfg) == (None, None, None)
    s = EvalSettings.from_config(cfg)
    assert (s.calibration.mode, s.subset, s.amp) == ("recalibrate", 10000, "none")
    assert values(cfg) == (None, None, None)  # read from a copy: the caller's config is left as it was


def test_the_kits_protocol_is_the_default_and_fp32():
    assert values(resolve(IMAGENET)) == ("recalibrate", 10000, "none")
    assert values(resolve(DEMO)) == ("recalibrate", 5000, "none")


def test_the_official_protocol_stored_statistics_whole_split_fp32():
    for path in (IMAGENET, DEMO):
        assert values(resolve(path, overrides=["evaluate.protocol=official"])) == ("none", 0, "none")


def test_an_explicit_key_wins_over_the_protocol():
    cfg = resolve(IMAGENET, overrides=["evaluate.protocol=official", "evaluate.subset=2000", "evaluate.amp=bf16"])
    assert values(cfg) == ("none", 2000, "bf16")


def test_unknown_protocol_is_named(tmp_path):
    with pytest.raises(ConfigError, match="evaluate.protocol 'fast' is not one of evaluate.protocols: kit, official"):
        resolve(IMAGENET, overrides=["evaluate.protocol=fast"])


def test_fidelity_settings_cover_precision_and_the_official_protocol():
    settings = {name: apply_protocol(c) for name, c in setting_configs(resolve(IMAGENET,
                                                                                overrides=["evaluate.subset=3000"]))}
    assert values(settings["full"]) == ("recalibrate", 3000, "none")
    assert values(settings["bf16"]) == ("recalibrate", 3000, "bf16")
    assert values(settings["fp16"]) == ("recalibrate", 3000, "fp16")
    # the official preset replaces what the full setting set explicitly (here the subset)
    assert values(settings["official"]) == ("none", 0, "none")
