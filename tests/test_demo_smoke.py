"""The end-to-end demo at CI size: demo.py runs the user's commands (train_supernet.sh,
evaluate run, submission make/validate/score) on a generated Fashion-MNIST-format dataset, a
tiny config, 5 subnets and a 3-entry ground truth, then resumes without redoing any work."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from fakedata import write_fashion_like
from scipy import stats

from encoding import costs, net_spec, read_arch_list, write_arch_list
from infra.config import resolve
from submission.baselines import cost_setting_from_config
from submission.validate import validate_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "demo.py")
ARCHS = os.path.join(ROOT, "configs", "demo_archs.json")

TINY = """base: {base}
device: cpu
data:
  fashion_mnist_dir: {data}
  train_subset: null
  val_subset: null
  holdout: null
  resolution: 16
supernet:
  epochs: 1
  batch_size: 64
  sampler: {{num_random: 1}}
  log: {{every_steps: 1, progress: false, visualdl: false}}
evaluate:
  subset: 100
  batch_size: 100
  progress: false
  calibration: {{batches: 1, batch_size: 32}}
"""
# Per-seed accuracies of the fake ground truth. Seed 0 vs seed 1 by hand: of the 3 pairs,
# (0,1) is discordant and (0,2), (1,2) concordant, so Kendall tau = (2 - 1) / 3; both seeds put
# entry 2 on top, so precision@10% (K = 1) is 1.
SEED_ACCS = [(0.80, 0.83), (0.85, 0.81), (0.90, 0.86)]


def load_demo():
    spec = importlib.util.spec_from_file_location("bench_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baselines_count_costs_with_the_overridden_model(tmp_path):
    demo = load_demo()
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {os.path.join(ROOT, 'configs', 'demo.yaml')}\nmodel:\n  width_mult: 0.25\n")
    args = demo.parse_args(["--out", str(tmp_path / "out"), "--config", str(child)])
    assert demo.score_config_path(args) == str(child)  # submission score follows base: itself
    assert cost_setting_from_config(str(child))[0].width_mult == 0.25
    args = demo.parse_args(["--out", str(tmp_path / "out"), "--config", str(child), "data.resolution=56",
                            "model.stem=imagenet", "supernet.epochs=1"])
    path = demo.score_config_path(args)
    assert path == str(tmp_path / "out" / "model.yaml")
    spec, resolution = cost_setting_from_config(path)
    assert (spec.width_mult, spec.stem, resolution) == (0.25, "imagenet", 56)
    assert spec == net_spec(resolve(str(child), overrides=["model.stem=imagenet"]))


def test_missing_inputs_and_bad_overrides_are_named(tmp_path, capsys):
    demo = load_demo()
    assert demo.main(["--out", str(tmp_path), "--archs", str(tmp_path / "none.json")]) == 1
    assert f"--archs {tmp_path / 'none.json'}: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--out", str(tmp_path), "supernet.epochs"])
    assert "overrides must be key=value" in capsys.readouterr().err


def test_reused_results_must_hold_the_stages_code_list(tmp_path):
    """An evaluation's outputs are reused only for the list they were computed on: results of
    another --archs in the same --out are refused by name, not put in the table."""
    demo = load_demo()
    entries = read_arch_list(ARCHS)[:3]
    archs, results = tmp_path / "archs.json", tmp_path / "eval-x" / "results.json"
    write_arch_list(str(archs), entries)
    results.parent.mkdir()

    def stage(held):
        results.write_text(json.dumps([{"id": e.id, "code": e.code, "top1": 0.5} for e in held]))
        os.utime(results, (os.path.getmtime(archs) + 10,) * 2)  # newer than its input
        return demo.Stage("eval-x", ["true"], outputs=[str(results)], inputs=[str(archs)],
                          check=demo.check_results_list(str(results), str(archs)))

    with pytest.raises(demo.DemoError, match=r"eval-x holds results of another code list \(2 codes, not the 3 of"):
        stage(entries[:2]).up_to_date()
    assert stage(entries).up_to_date()
    results.write_text("{not json")
    with pytest.raises(demo.DemoError, match=r"results.json is not an evaluation's results"):
        demo.Stage("eval-x", ["true"], outputs=[str(results)], check=demo.check_results_list(str(results), str(archs))
                   ).up_to_date()
    os.utime(results, (os.path.getmtime(archs) - 10,) * 2)  # older than its input: rerun, nothing checked
    assert not demo.Stage("eval-x", ["true"], outputs=[str(results)], inputs=[str(archs)],
                          check=demo.check_results_list(str(results), str(tmp_path / "none"))).up_to_date()


def test_tables_line_up_whatever_the_labels():
    demo = load_demo()
    values = {"n": 40, "kendall_tau_b": 0.6, "pearson": 0.8, "precision_at_10": 0.5, "tau_vs_one_seed": 0.5}
    rows = [("ground truth 5-seed mean vs 5-seed mean (ceiling; mean of 126 splits)", values),
            ("recipe x", {**values, "shared_top1": 81.0, "tau_vs_macs": 0.7, "macs_codes": 500})]
    lines = demo.format_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1 and lines[3].index("81.00") > lines[2].index("0.500")
    lines = demo.format_times([demo.Stage("validate-recipe-fourth_place", ["true"]), demo.Stage("a", ["true"])])
    assert len({len(line) for line in lines.splitlines()}) == 1


def run_demo(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return subprocess.run([sys.executable, DEMO, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def step_codes(run_dir):
    with open(os.path.join(run_dir, "train_log.jsonl"), encoding="utf-8") as f:
        return [r["codes"] for r in map(json.loads, f) if r["type"] == "step"]


def tiny_inputs(tmp_path, extra=""):
    """A generated dataset, the tiny config (plus EXTRA yaml), 5 codes and a 2-seed GT of the first 3:
    (config, archs, gt_path, entries)."""
    write_fashion_like(tmp_path / "fm", n_train=320, n_val=200, learnable=True, seed=0)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(base=os.path.join(ROOT, "configs", "demo.yaml"), data=tmp_path / "fm") + extra)
    entries = read_arch_list(ARCHS)[:5]
    archs = tmp_path / "archs.json"
    write_arch_list(str(archs), entries)
    gt = {e.id: {"acc": sum(a) / 2, "arch": e.code, "seeds": [0, 1], "accs": list(a)}
          for e, a in zip(entries[:3], SEED_ACCS, strict=True)}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    return config, archs, gt_path, entries


# the baseline evaluates the ground-truth codes only, in a folder of its own (a results folder holds one list)
EVAL_DIRS = {"default": "eval-default", "uniform": "eval-uniform-gt"}


@pytest.mark.slow
def test_demo_end_to_end_then_resume(tmp_path):
    config, archs, gt_path, entries = tiny_inputs(tmp_path)
    gt_ids = {e.id for e in entries[:3]}
    out = tmp_path / "out"
    # neg_loss: after 5 steps several subnets may share a top-1 on 100 images; the loss always differs.
    args = ["--out", str(out), "--config", str(config), "--archs", str(archs), "--metric", "neg_loss"]
    proc = run_demo(args + ["--gt", str(gt_path)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "wall time per stage" in proc.stdout and "ranking vs ground truth" in proc.stdout

    # Strategy keys reached training: default = max + min + 1 random path, baseline = 1 path.
    assert [len(c) for c in step_codes(out / "supernet-default")] == [3] * 5  # 320 images / batch 64
    assert [len(c) for c in step_codes(out / "supernet-uniform")] == [1] * 5
    official = read_arch_list(str(archs))
    shared = {}
    for name in ("default", "uniform"):
        assert os.path.getsize(out / f"supernet-{name}" / "supernet.pdparams") > 0
        with open(out / EVAL_DIRS[name] / "results.json", encoding="utf-8") as f:
            results = json.load(f)
        records = results if isinstance(results, list) else list(results.values())
        # the baseline only needs its table row: it evaluates the ground-truth codes alone
        expected = entries if name == "default" else entries[:3]
        assert sorted(r["id"] for r in records) == sorted(e.id for e in expected)
        assert all(math.isfinite(r["loss"]) and 0 <= r["top1"] <= 1 for r in records)
        shared[name] = 100 * np.mean([r["top1"] for r in records if r["id"] in gt_ids])
        assert validate_file(str(out / f"submission-{name}.json"), official if name == "default" else
                             read_arch_list(str(gt_path))).ok
        with open(out / f"score-{name}.json", encoding="utf-8") as f:
            assert json.load(f)["n"] == 3
        assert (out / f"score-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with open(out / "demo_report.json", encoding="utf-8") as f:
        report = json.load(f)
    assert [s["name"] for s in report["stages"]] == [f"{k}-{n}" for n in ("default", "uniform")
                                                     for k in ("train", "eval", "make", "validate", "score")]
    assert all(s["status"] == "ran" for s in report["stages"])
    assert report["stages"][0]["command"].startswith(f"PYTHON={sys.executable} bash train_supernet.sh {config}")
    table = {row["predictor"]: row for row in report["table"]}
    ceiling = table["ground truth seed 0 vs seed 1 (ceiling)"]
    assert ceiling["kendall_tau_b"] == pytest.approx(1 / 3) == ceiling["tau_vs_one_seed"]
    assert ceiling["precision_at_10"] == 1.0
    # seed tau 1/3 -> r1 = 1/2 -> tau 0.6 needs 5 seeds per side (tests/test_submission_ceiling.py)
    assert report["gt_projection"]["seeds_needed"] == 5 and "needs 5 seeds per side" in proc.stdout
    # The MACs row, by a second route: the cost model and scipy against the mean accuracies.
    _, macs = costs([e.code for e in entries[:3]], net_spec(resolve(str(config))), resolution=16)
    mean = [sum(a) / 2 for a in SEED_ACCS]
    assert table["MACs only"]["kendall_tau_b"] == pytest.approx(stats.kendalltau(macs, mean).statistic)

    def per_seed(values):  # against each seed's accuracies, averaged over the 2 seeds
        return np.mean([stats.kendalltau(values, [a[s] for a in SEED_ACCS]).statistic for s in (0, 1)])

    assert table["MACs only"]["tau_vs_one_seed"] == pytest.approx(per_seed(macs))
    with open(out / "submission-default.json", encoding="utf-8") as f:
        submitted = json.load(f)
    default_scores = [submitted[e.id]["acc"] for e in entries[:3]]
    assert table["kit default supernet"]["tau_vs_one_seed"] == pytest.approx(per_seed(default_scores))
    assert table["kit default supernet"]["n"] == 3
    assert table["kit default supernet"]["shared_top1"] == pytest.approx(shared["default"])
    assert table["uniform-sampling supernet (baseline)"]["shared_top1"] == pytest.approx(shared["uniform"])
    assert "shared_top1" not in table["MACs only"]
    # tau vs MACs over every code each supernet evaluated (5 for the default, the 3 GT codes for the baseline),
    # by a second route: scipy on the results files and the cost model
    for name, label, n in (("default", "kit default supernet", 5),
                           ("uniform", "uniform-sampling supernet (baseline)", 3)):
        with open(out / EVAL_DIRS[name] / "results.json", encoding="utf-8") as f:
            results = json.load(f)
        records = results if isinstance(results, list) else list(results.values())
        _, all_macs = costs([r["code"] for r in records], net_spec(resolve(str(config))), resolution=16)
        expected = stats.kendalltau([r["top1"] for r in records], all_macs).statistic
        assert table[label]["macs_codes"] == n
        if np.isnan(expected):
            assert table[label]["tau_vs_macs"] is None
        else:
            assert table[label]["tau_vs_macs"] == pytest.approx(expected)

    # Rerun without ground truth: training and evaluation are reused, scoring and the baseline skipped.
    proc = run_demo(args + ["--gt", str(tmp_path / "no_gt.json")], tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with open(out / "demo_report.json", encoding="utf-8") as f:
        report = json.load(f)
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert status == {f"{k}-default": "reused" if k in ("train", "eval") else "ran"
                      for k in ("train", "eval", "make", "validate")}
    assert report["table"] is None and "no ground truth at" in proc.stdout and "pretrain.py gt" in proc.stdout


def test_benchmarks_set_the_defaults_and_glyphs_are_built_by_a_stage(tmp_path, monkeypatch):
    demo = load_demo()
    monkeypatch.chdir(tmp_path)  # defaults come from the repository wherever the demo runs
    args = demo.parse_args([])
    assert (args.benchmark, args.config, args.gt, args.archs, args.out) == (
        "glyphs", os.path.join(ROOT, "configs", "glyphs.yaml"), os.path.join(ROOT, "configs", "glyphs_gt.json"),
        ARCHS, str(tmp_path / "runs" / "demo-glyphs"))
    [stage] = demo.data_stages(args, "PY")
    out = os.path.join(ROOT, "runs", "glyphs")
    assert stage.argv == ["PY", "-m", "imagedata.glyphs", "--out", out, "--classes=100", "--train-per-class=600",
                          "--test-per-class=100", "--seed=0", "--size=28"]
    assert stage.outputs == [os.path.join(out, "manifest.json")]
    fm = demo.parse_args(["--benchmark", "fashion-mnist", "--gt", "mine.json"])
    assert (fm.config, fm.gt) == (os.path.join(ROOT, "configs", "demo.yaml"), str(tmp_path / "mine.json"))
    assert demo.data_stages(fm, "PY") == []
