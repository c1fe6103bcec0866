"""The winning recipes: every file resolves at ImageNet scale and laid over the demo (`base=`), and trains
two steps at toy size with the switches it names."""

import json
import os

import numpy as np
import paddle
import pytest
from test_train_supernet import image_dir, tiny_overrides  # noqa: F401 (fixture)

from infra.config import get, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "configs", "recipes")
NAMES = sorted(f[:-5] for f in os.listdir(RECIPES) if f.endswith(".yaml"))


def test_one_recipe_per_top_solution():
    assert NAMES == ["first_place", "fourth_place", "second_place", "third_place"]


@pytest.mark.parametrize("name", NAMES)
def test_recipe_at_imagenet_scale_and_laid_over_the_demo(name):
    path = os.path.join(RECIPES, f"{name}.yaml")
    big = resolve(path)
    assert get(big, "data.name") == "imagenet" and get(big, "model.width_mult") == 1.0
    demo = resolve(path, overrides=["base=configs/demo.yaml"])
    assert get(demo, "data.name") == "fashion_mnist" and get(demo, "model.width_mult") == 0.125
    assert get(demo, "supernet.sampler") == get(big, "supernet.sampler")  # the recipe's own keys win in both
    assert get(demo, "evaluate.protocol") == get(big, "evaluate.protocol")


def test_third_place_ramps_its_rank_loss_as_min_2_epoch_over_10():
    from supernet.settings import rank_loss_weight

    r = get(resolve(os.path.join(RECIPES, "third_place.yaml")), "supernet.loss.rank")
    weights = [rank_loss_weight(e, r["weight"], r["schedule"], r["ramp_epochs"], r["max_weight"]) for e in range(70)]
    assert weights == [min(2, e / 10) for e in range(70)]


@pytest.mark.parametrize("name", NAMES)
def test_recipe_trains_two_steps_at_toy_size(name, image_dir, tmp_path):  # noqa: F811
    from supernet.model import ResNet48Supernet
    from supernet.static import build_static
    from supernet.train import Trainer

    base = resolve(os.path.join(ROOT, "configs", "demo.yaml"), overrides=tiny_overrides(image_dir, str(tmp_path)))
    paddle.seed(0)
    weights = str(tmp_path / "largest.pdparams")  # the recipes' "official" weights at toy size
    paddle.save(build_static(ResNet48Supernet.max_arch(), paddle_spec(base)).state_dict(), weights)
    cfg = resolve(os.path.join(RECIPES, f"{name}.yaml"), overrides=[
        "base=configs/demo.yaml", *tiny_overrides(image_dir, str(tmp_path / "run")), "supernet.max_steps=2",
        *(["supernet.sampler.pool_size=8"] if name == "first_place" else []), f"supernet.pretrained={weights}",
        *([f"supernet.loss.teacher={weights}"] if name == "first_place" else [])])
    summary = Trainer(cfg).run()
    assert summary["global_step"] == 2 and os.path.isfile(summary["last_checkpoint"])
    with open(tmp_path / "run" / "train_log.jsonl", encoding="utf-8") as f:
        steps = [r for r in map(json.loads, f) if r["type"] == "step"]
    assert [s["global_step"] for s in steps] == [1, 2]
    assert all(np.isfinite(v) for s in steps for v in s["loss"].values())


def paddle_spec(cfg):
    from encoding import net_spec

    return net_spec(cfg)
