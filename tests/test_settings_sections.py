"""The `data:`, `train:`, `supernet.optim` and `supernet.sampler` sections read once into frozen settings:
every key read as configs/imagenet.yaml gives it, a bad key or value refused with one line naming it, and
the defaults held by the config file alone."""

import dataclasses
import os

import pytest

from encoding import KitError
from imagedata.settings import KEYS as DATA_KEYS
from imagedata.settings import DataSettings
from infra.config import default_config, get, load_yaml, resolve
from supernet.samplers import build_schedule, sampler_keys
from supernet.settings import TRAIN_KEYS, OptimSettings, SupernetSettings, TrainSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET, DEMO = default_config("imagenet"), default_config("demo")


def refused(overrides, path=DEMO, build=DataSettings.from_config):
    with pytest.raises(KitError) as e:
        build(resolve(path, overrides=overrides))
    return str(e.value)


def test_every_key_of_the_shipped_sections_is_read_and_no_other():
    shipped = load_yaml(IMAGENET)
    assert sorted(shipped["data"]) == sorted(DATA_KEYS)
    assert sorted(shipped["train"]) == sorted(TRAIN_KEYS)
    assert sorted(shipped["supernet"]["sampler"]) == sorted(sampler_keys())


def test_the_demo_data_and_train_sections_read_once_equal_the_config():
    cfg = resolve(DEMO)
    d = DataSettings.from_config(cfg)
    assert (d.name, d.resolution, d.holdout, d.augment, d.num_workers) == ("fashion_mnist", 56, 30000, "none", 0)
    assert d.crop_scale == (0.08, 1.0) and d.in_channels == 1 and d.num_classes == 10
    t = TrainSettings.from_config(cfg)
    assert (t.batch_size, t.max_epoch, t.optim.warmup, t.optim.lr_schedule) == (256, 4, 0.25, "cosine")
    assert (t.optim.momentum, t.optim.weight_decay, t.optim.lr, t.optim.base_lr) == (0.9, 1e-4, None, 0.1)
    assert t.output == "runs/demo-pretrain" and t.resume == "auto" and dict(t.gt)["repeat"] == 1
    s = SupernetSettings.from_config(cfg)
    assert isinstance(s.optim, OptimSettings) and (s.optim.max_epoch, s.optim.lr_schedule) == (4, "cosine")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.seed = 3


@pytest.mark.parametrize("override, message", [
    ("data.resolutoin=32", "unknown config key 'data.resolutoin'"),
    ("data.name=cifar", "data.name must be one of imagenet, fashion_mnist, glyphs, got 'cifar'"),
    ("data.resolution=0", "data.resolution must be an integer >= 1, got 0"),
    ("data.crop_scale=[1.0,0.08]", "data.crop_scale must be a pair [low, high] of numbers, got [1.0, 0.08]"),
    ("data.mean=0.5", "data.mean must be a list of numbers (one per channel) or null, got 0.5"),
    ("data.num_workers=-1", "data.num_workers must be an integer >= 0 or auto, got -1"),
    ("data.num_workers=many", "data.num_workers must be an integer >= 0 or auto, got 'many'"),
    ("data.jpeg_draft=1", "data.jpeg_draft must be true or false, got 1"),
    ("data.image_dir=/x", "data.image_dir is set but data.name is fashion_mnist"),
])
def test_a_bad_data_key_or_value_is_refused_naming_it(override, message):
    assert message in refused([override])


def test_a_data_section_without_a_key_names_it_and_the_file_that_holds_the_defaults():
    cfg = resolve(DEMO)
    del cfg["data"]["val_resize"]
    with pytest.raises(KitError, match=r"data.val_resize is not set: a config extends configs/imagenet.yaml"):
        DataSettings.from_config(cfg)
    cfg["data"]["val_resize"], cfg["data"]["mixup"] = None, 0.2
    with pytest.raises(KitError, match=r"unknown data keys \['mixup'\]"):
        DataSettings.from_config(cfg)


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "train.batch_size (images per rank) must be a positive integer, got 0"),
    ("train.lr_schedule=step", "lr_schedule must be one of cosine, official, got 'step'"),
    ("train.warmup=9", "warmup must be between 0 and max_epoch=4 epochs, got 9"),
    ("train.momentum=1.5", "need weight_decay >= 0 and 0 <= momentum < 1, got 0.0001, 1.5"),
    ("train.lr=0", "learning rate must be positive, got train.lr 0"),
    ("train.amp=fp8", "train.amp must be one of none, bf16, fp16, got 'fp8'"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints must be an integer >= 1"),
    ("train.gt.seeds=3", "unknown config key 'train.gt.seeds'"),
])
def test_a_bad_train_value_is_refused_naming_it(override, message):
    assert message in refused([override], build=TrainSettings.from_config)


def test_unknown_optimiser_and_sampler_keys_are_refused_by_name():
    cfg = resolve(DEMO)
    cfg["supernet"]["optim"]["betas"] = [0.9, 0.99]
    with pytest.raises(KitError, match=r"unknown supernet.optim keys \['betas'\]"):
        SupernetSettings.from_config(cfg)
    section = dict(get(resolve(DEMO), "supernet.sampler"), pool=10)
    with pytest.raises(KitError, match=r"unknown supernet.sampler keys \['pool'\]"):
        build_schedule(section, seed=0)
    del section["pool"], section["pool_keep"]
    with pytest.raises(KitError, match="supernet.sampler.pool_keep is not set: a config extends"):
        build_schedule(section, seed=0)


def test_the_pool_tops_old_pool_key_is_refused_with_the_new_name():
    section = dict(get(resolve(DEMO), "supernet.sampler"), strategy="pool_top", large_pool=400)
    with pytest.raises(KitError, match="pool's size is supernet.sampler.pool_size now"):
        build_schedule(section, seed=0)
    section["large_pool"], section["pool_size"] = 3, 12
    assert build_schedule(section, seed=0).sampler.pool == 12  # strategy large's default untouched: accepted


def test_the_search_and_proxy_sections_refuse_an_unknown_or_missing_key():
    from search.settings import SearchSettings
    from supernet.proxy_settings import proxy_settings

    cfg = resolve(DEMO, overrides=["search.out=x"])
    cfg["search"]["populaton"] = 8
    with pytest.raises(KitError, match=r"unknown search keys \['populaton'\]"):
        SearchSettings.from_config(cfg)
    cfg = resolve(DEMO, overrides=["search.out=x"])
    del cfg["search"]["latency"]["holdout"]
    with pytest.raises(KitError, match="search.latency.holdout is not set: a config extends configs/imagenet.yaml"):
        SearchSettings.from_config(cfg)
    cfg = resolve(DEMO)
    cfg["evaluate"]["proxies"]["batch"] = 8
    with pytest.raises(KitError, match=r"unknown evaluate.proxies keys \['batch'\]"):
        proxy_settings(cfg)
    cfg = resolve(DEMO, overrides=["evaluate.proxies.names=[]"])
    with pytest.raises(KitError, match=r"unknown proxy \(none given\)"):
        proxy_settings(cfg)


def test_a_weights_source_refuses_a_bad_kind_a_missing_file_and_a_split_without_a_group(tmp_path):
    from supernet.weights import WeightsSource

    with pytest.raises(KitError, match="weights kind must be one of checkpoint, official, fewshot, got 'pdparams'"):
        WeightsSource("pdparams", str(tmp_path))
    with pytest.raises(KitError, match=f"checkpoint weights {tmp_path / 'none.pdparams'} do not exist"):
        WeightsSource("checkpoint", str(tmp_path / "none.pdparams"))
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    with pytest.raises(KitError, match="a few-shot split holds one supernet per group: name the code or the group"):
        WeightsSource("fewshot", str(manifest)).load(None)
    cfg = resolve(DEMO, overrides=[f"evaluate.checkpoint={tmp_path / 'none.pdparams'}"])
    with pytest.raises(KitError, match=f"--checkpoint {tmp_path / 'none.pdparams'} does not exist"):
        WeightsSource.from_config(cfg)
