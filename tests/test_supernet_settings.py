"""supernet.settings.SupernetSettings: the `supernet:` section read once, checked without Paddle, frozen."""

import dataclasses
import os
import subprocess
import sys

import pytest

from infra.config import ConfigError, get, resolve
from supernet.settings import SupernetSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.yaml")
THIRD = os.path.join(ROOT, "configs", "recipes", "third_place.yaml")


def test_demo_and_recipe_sections_read_key_by_key():
    cfg = resolve(DEMO)
    s = SupernetSettings.from_config(cfg)
    for attr, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed"), ("init", "init"),
                      ("checkpoint_every_steps", "checkpoint.every_steps"), ("log_every_steps", "log.every_steps"),
                      ("inplace_distill", "loss.inplace_distill"), ("label_smoothing", "loss.label_smoothing")):
        assert getattr(s, attr) == get(cfg, f"supernet.{key}"), attr
    assert dict(s.sampler) == get(cfg, "supernet.sampler")
    assert s.optim.max_epoch == s.epochs and s.rank_loss["weight"] == 0.0  # rank loss off by default
    third = SupernetSettings.from_config(resolve(THIRD, overrides=[f"base={DEMO}", "supernet.pretrained=w.pdparams"]))
    assert (third.init, third.pretrained, third.epochs, third.optim.lr) == ("official", "w.pdparams", 70, 0.001)
    assert dict(third.rank_loss) == {"weight": 1.0, "schedule": "linear", "ramp_epochs": 10.0, "max_weight": 2.0,
                                     "margin": 0.0, "cost": "macs"}


def test_settings_cannot_be_changed_after_reading():
    s = SupernetSettings.from_config(resolve(DEMO))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.optim.lr = 1.0
    with pytest.raises(TypeError):
        s.sampler["strategy"] = "large"


@pytest.mark.parametrize("override, message", [
    ("supernet.epochs=0", "supernet.epochs must be an integer >= 1 or null, got 0"),
    ("supernet.init=imagenet", "supernet.init must be 'random', 'official' or 'supernet', got 'imagenet'"),
    ("supernet.init=official", "supernet.init=official needs supernet.pretrained"),
    ("supernet.loss.rank.cost=flops", r"supernet.loss.rank.cost must be macs or params, a proxy computed per sampled "
                                      r"code \(zen, synflow, naswot, gradnorm\) or FIELD@RESULTS .*got 'flops'"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        SupernetSettings.from_config(resolve(DEMO, overrides=[override]))
    cfg = resolve(DEMO)
    cfg["supernet"]["optim"]["max_epoch"] = 3  # set by the epochs, never by hand (resolve refuses unknown keys)
    with pytest.raises(ConfigError, match=r"unknown supernet.optim keys \['max_epoch'\]"):
        SupernetSettings.from_config(cfg)


def test_reading_the_section_does_not_load_paddle():
    code = ("import sys\nfrom infra.config import resolve\nfrom supernet.settings import SupernetSettings\n"
            f"SupernetSettings.from_config(resolve({DEMO!r}))\nprint('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
