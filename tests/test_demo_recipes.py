"""demo.py --recipe: a recipe file of configs/recipes/ run at the demo config's size, scored beside the
default supernet (the recipes' table of the glyph benchmark comes from this)."""

import json
import os

import pytest
from test_demo_smoke import ROOT, load_demo, run_demo, step_codes, tiny_inputs

from encoding import RELEASED
from infra.config import get, load_yaml

RECIPES = os.path.join(ROOT, "configs", "recipes")
DEMO_YAML = os.path.join(ROOT, "configs", "demo.yaml")


def recipe(name):
    return os.path.join(RECIPES, f"{name}.yaml")


def test_recipe_schedules_are_scaled_to_the_configs_epochs():
    demo = load_demo()
    largest = "/w/largest/model.pdparams"
    # second place: 120 epochs -> the demo's 4; progressive epochs x 4/120, floored:
    # depth 10,20,30,40,50,60 -> 0.33,0.67,1,1.33,1.67,2 -> 0,0,1,1,1,2; width 70..115 -> 2,2,3,3,3,3
    keys, needs = demo.recipe_keys(recipe("second_place"), DEMO_YAML, largest)
    assert keys == [f"base={DEMO_YAML}", "supernet.epochs=4", "supernet.sampler.progressive.depth_epochs=[0,0,1,1,1,2]",
                    "supernet.sampler.progressive.width_epochs=[2,2,3,3,3,3]"] and not needs
    # third place: 70 epochs, the rank loss ramps over 10 -> 10 x 4 / 70; starts from the official weights
    keys, needs = demo.recipe_keys(recipe("third_place"), DEMO_YAML, largest)
    assert keys == [f"base={DEMO_YAML}", "supernet.epochs=4", "supernet.loss.rank.ramp_epochs=0.571429",
                    f"supernet.pretrained={largest}"] and needs
    # first place: the official weights are both the initialisation and the teacher
    keys, needs = demo.recipe_keys(recipe("first_place"), DEMO_YAML, largest)
    assert keys[-2:] == [f"supernet.pretrained={largest}", f"supernet.loss.teacher={largest}"] and needs
    keys, needs = demo.recipe_keys(recipe("fourth_place"), DEMO_YAML, largest)
    assert keys == [f"base={DEMO_YAML}", "supernet.epochs=4"] and not needs


def test_a_recipe_needs_a_ground_truth_and_must_exist(tmp_path, capsys):
    demo = load_demo()
    args = ["--out", str(tmp_path / "out"), "--gt", str(tmp_path / "none.json")]
    assert demo.main(args + ["--recipe", str(tmp_path / "nope.yaml")]) == 1
    assert f"--recipe {tmp_path / 'nope.yaml'}: no such file" in capsys.readouterr().err
    assert demo.main(args + ["--recipe", recipe("fourth_place")]) == 1  # refused before anything trains
    assert (f"--recipe rows are scored against the ground truth, and there is none at {tmp_path / 'none.json'}"
            in capsys.readouterr().err)
    assert not (tmp_path / "out" / "logs").exists()


@pytest.mark.slow
def test_demo_runs_recipes_after_the_default(tmp_path):
    config, archs, gt_path, entries = tiny_inputs(tmp_path, "train:\n  max_epoch: 1\n  batch_size: 64\n")
    gt = json.loads(gt_path.read_text())
    out = tmp_path / "out"
    proc = run_demo(["--out", str(out), "--config", str(config), "--archs", str(archs), "--gt", str(gt_path),
                     "--metric", "neg_loss", "--no-baseline", "--recipe", recipe("third_place"),
                     "--recipe", recipe("fourth_place"), "--all-codes"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with open(out / "demo_report.json", encoding="utf-8") as f:
        report = json.load(f)
    names = [s["name"] for s in report["stages"]]
    steps = ("train", "eval", "make", "validate", "score")
    assert names == ([f"{k}-default" for k in steps] + ["train-largest"]
                     + [f"{k}-recipe-third_place" for k in steps] + [f"{k}-recipe-fourth_place" for k in steps])

    # the largest code, trained standalone, is third place's starting point; its rank ramp is scaled
    largest = out / "largest"
    assert json.load(open(largest / "result.json", encoding="utf-8"))["arch"] == RELEASED.max_arch().code()
    third = load_yaml(str(out / "supernet-recipe-third_place" / "config.yaml"))
    assert get(third, "supernet.pretrained") == str(largest / "model.pdparams")
    assert get(third, "supernet.init") == "official" and get(third, "supernet.epochs") == 1
    assert get(third, "supernet.loss.rank.ramp_epochs") == pytest.approx(10 / 70, rel=1e-5)
    assert get(third, "data.resolution") == 16  # the demo config is its base
    # sandwich + 2 random paths per step (the recipe), 5 steps of 64 images
    assert [len(c) for c in step_codes(out / "supernet-recipe-third_place")] == [4] * 5

    # each recipe evaluated every code (--all-codes) with its own protocol
    for name, mode in (("third_place", "none"), ("fourth_place", "recalibrate")):
        with open(out / f"eval-recipe-{name}" / "manifest.json", encoding="utf-8") as f:
            assert json.load(f)["settings"]["calibration"]["mode"] == mode
        with open(out / f"eval-recipe-{name}" / "results.json", encoding="utf-8") as f:
            results = json.load(f)
        records = results if isinstance(results, list) else list(results.values())
        assert sorted(r["id"] for r in records) == sorted(e.id for e in entries) and len(entries) > len(gt)
    assert not (out / "eval-recipe-third_place-gt").exists()
    table = {row["predictor"]: row for row in report["table"]}
    # scored on the ground-truth codes, tau vs MACs over every code
    assert table["recipe third_place"]["n"] == table["recipe fourth_place"]["n"] == 3
    assert table["recipe third_place"]["macs_codes"] == table["recipe fourth_place"]["macs_codes"] == len(entries)
    assert "recipe third_place" in proc.stdout
