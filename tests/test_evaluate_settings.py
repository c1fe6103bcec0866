"""evaluate.settings.EvalSettings: the `evaluate:` section read once, checked, frozen."""

import dataclasses
import os

import pytest

from encoding import KitError
from evaluate.settings import EvalSettings, apply_protocol
from infra.config import get, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.yaml")


def test_the_demo_section_read_once_equals_the_config_key_by_key():
    cfg = apply_protocol(resolve(DEMO))  # the keys as the settings read them: the protocol's preset filled
    s = EvalSettings.from_config(cfg)
    for attr, key in (("split", "split"), ("subset", "subset"), ("subset_seed", "subset_seed"),
                      ("batch_size", "batch_size"), ("cache", "cache"), ("cache_dtype", "cache_dtype"),
                      ("ledger_chunk", "ledger_chunk")):
        assert getattr(s, attr) == get(cfg, f"evaluate.{key}"), attr
    for attr in ("mode", "batches", "batch_size", "seed", "augment"):
        assert getattr(s.calibration, attr) == get(cfg, f"evaluate.calibration.{attr}"), attr
    assert s.calibration.mode == "recalibrate" and s.subset == 5000  # the demo's kit protocol
    # what a results manifest pins: the data section minus file locations and loader speed
    # (jpeg_draft only when on: manifests from before the key, all of full decodes, still match)
    data = {k: v for k, v in cfg["data"].items() if k not in ("image_dir", "fashion_mnist_dir", "layout",
                                                               "num_workers", "jpeg_draft")}
    assert cfg["data"]["jpeg_draft"] is False
    drafted = EvalSettings.from_config(resolve(DEMO, overrides=["data.jpeg_draft=true"]))
    assert drafted.images()["data"] == {**data, "jpeg_draft": True}
    assert s.images() == {"data": data, "split": "val", "subset": 5000, "subset_seed": get(cfg, "evaluate.subset_seed")}
    assert s.calibration_batches() == {"mode": "recalibrate", "data": data, "batches": s.calibration.batches,
                                       "batch_size": s.calibration.batch_size, "seed": s.calibration.seed,
                                       "augment": s.calibration.augment}
    none = EvalSettings.from_config(resolve(DEMO, overrides=["evaluate.protocol=official"]))
    assert none.calibration.mode == "none" and none.calibration_batches() == {"mode": "none"} and none.subset == 0


def test_settings_are_frozen_and_compare_by_value():
    a, b = EvalSettings.from_config(resolve(DEMO)), EvalSettings.from_config(resolve(DEMO))
    assert a == b and hash(a) == hash(b)
    assert a != EvalSettings.from_config(resolve(DEMO, overrides=["evaluate.subset=100"]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.batch_size = 1


@pytest.mark.parametrize("override, message", [
    ("evaluate.cache=disk", "evaluate.cache must be one of auto, device, host, got 'disk'"),
    ("evaluate.calibration.mode=always", "evaluate.calibration.mode must be one of none, recalibrate, got 'always'"),
    ("evaluate.calibration.batches=0", "evaluate.calibration.batches must be an integer >= 1, got 0"),
    ("evaluate.batch_size=-3", "evaluate.batch_size must be an integer >= 1, got -3"),
    ("evaluate.subset=-1", "evaluate.subset must be an integer >= 0, got -1"),
    ("evaluate.amp=fp8", "evaluate.amp must be one of none, bf16, fp16, got 'fp8'"),
    ("evaluate.split=test", "evaluate.split must be one of train, val, got 'test'"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(KitError) as e:
        EvalSettings.from_config(resolve(DEMO, overrides=[override]))
    assert str(e.value) == message


def test_weights_exactly_one_source(tmp_path):
    s = EvalSettings.from_config(resolve(DEMO))
    with pytest.raises(KitError, match="give exactly one of --checkpoint"):
        s.weights  # noqa: B018 (none given: asked for only when something is to be loaded)
    path = tmp_path / "w.pdparams"
    path.write_bytes(b"x")
    s = EvalSettings.from_config(resolve(DEMO, overrides=[f"evaluate.checkpoint={path}"]))
    assert s.weights == ("checkpoint", str(path))
    with pytest.raises(KitError, match="not several"):
        EvalSettings.from_config(resolve(DEMO, overrides=[f"evaluate.checkpoint={path}", f"evaluate.official={path}"]))
    with pytest.raises(KitError, match=f"--official {tmp_path / 'none'} does not exist"):
        EvalSettings.from_config(resolve(DEMO, overrides=[f"evaluate.official={tmp_path / 'none'}"]))
