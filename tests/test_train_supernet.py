"""Supernet training: exact resume after SIGKILL, NaN stop, config errors, the rank-check hook.

Runs train on a generated ImageNet-style folder of 16 px grey images (no dataset needed), with a
width-0.125 small-stem supernet, so each run takes seconds on CPU.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from faults import SUPERNET_FAULT, python_with
from PIL import Image

from encoding import RELEASED, ArchEntry, net_spec, write_arch_list

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.yaml")
CLASSES = 4


def make_image_folder(root, per_class_train=16, per_class_val=4, size=16, seed=0):
    """train/ and val/ class folders of PNGs whose class is a bright band at a class-specific row."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class_train), ("val", per_class_val)):
        for c in range(CLASSES):
            folder = os.path.join(root, split, f"class{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
                row = c * size // CLASSES
                a[row:row + size // CLASSES] += 150
                Image.fromarray(a, mode="L").save(os.path.join(folder, f"{i:03d}.png"))
    return str(root)


def tiny_overrides(image_dir, out, *extra):
    return [
        "device=cpu", "data.name=imagenet", f"data.image_dir={image_dir}", "data.resolution=16",
        "data.val_resize=16", "data.num_workers=0", "data.holdout=null", "model.num_classes=4",
        "model.in_channels=1", "model.stem=small",
        "supernet.batch_size=16", "supernet.sampler.num_random=1", "supernet.log.progress=false",
        "supernet.log.every_steps=1", "supernet.log.visualdl=false", f"supernet.output_dir={out}", *extra,
    ]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


def run_train(args, timeout=120, fault=None):
    """train_supernet.py DEMO ARGS in a subprocess; with `fault` (tests/faults.py), that fault injected."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    argv = ([sys.executable, os.path.join(ROOT, "train_supernet.py"), DEMO, *args] if fault is None
            else python_with(fault, "train_supernet", [DEMO, *args]))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def load_state(path):
    import paddle

    return {k: v.numpy() for k, v in paddle.load(path).items()}


def log_records(out):
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_kill_and_resume_gives_the_weights_of_a_straight_run(image_dir, tmp_path):
    # 64 images / 16 = 4 steps per epoch, 2 epochs. Checkpoints every 3 steps and at epoch ends:
    # 3, 4, 6, 8. The killed run dies after step 7, so it resumes from step 6 (epoch 2, batch 3)
    # and must skip two batches of epoch 2 and redo step 7.
    common = ["supernet.epochs=2", "supernet.checkpoint.every_steps=3", "supernet.checkpoint.keep=10"]
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    a = run_train(tiny_overrides(image_dir, straight, *common))
    assert a.returncode == 0, a.stderr[-3000:]
    b = run_train(tiny_overrides(image_dir, killed, *common), fault=SUPERNET_FAULT.format(kind="kill", step=7))
    assert b.returncode == -9, b.stderr[-3000:]
    assert not os.path.exists(os.path.join(killed, "supernet.pdparams"))
    assert sorted(os.listdir(os.path.join(killed, "checkpoints"))) == [
        "step_000000003.pdckpt", "step_000000004.pdckpt", "step_000000006.pdckpt"]
    c = run_train(tiny_overrides(image_dir, killed, *common))
    assert c.returncode == 0, c.stderr[-3000:]
    assert "resuming from" in c.stdout and "step_000000006.pdckpt: epoch 2, batch 3, global step 7" in c.stdout

    final_a = load_state(os.path.join(straight, "supernet.pdparams"))
    final_c = load_state(os.path.join(killed, "supernet.pdparams"))
    assert final_a.keys() == final_c.keys()
    for k in final_a:
        np.testing.assert_array_equal(final_a[k], final_c[k], err_msg=k)
    import paddle

    opt_a = paddle.load(os.path.join(straight, "checkpoints", "step_000000008.pdckpt"))["optimizer"]
    opt_c = paddle.load(os.path.join(killed, "checkpoints", "step_000000008.pdckpt"))["optimizer"]
    velocity = [k for k in opt_a if k.endswith("/velocity")]
    assert velocity and sorted(opt_a) == sorted(opt_c)
    for k in velocity:
        np.testing.assert_array_equal(opt_a[k].numpy(), opt_c[k].numpy(), err_msg=k)
    # training moved the weights between checkpoints, and the same codes trained at the same steps
    early = paddle.load(os.path.join(straight, "checkpoints", "step_000000003.pdckpt"))["model"]
    assert any(not np.array_equal(early[k].numpy(), final_a[k]) for k in final_a)
    # The resumed log holds each step once: step 7 of the killed sitting is dropped with the resume,
    # and a marker says where it resumed; otherwise it is the straight run's log, losses included.
    def stable(records):
        volatile = ("time", "images_per_s", "path")
        return [{k: v for k, v in r.items() if k not in volatile} for r in records if r["type"] != "resume"]

    log_a, log_c = log_records(straight), log_records(killed)
    assert [r["global_step"] for r in log_a if r["type"] == "step"] == list(range(1, 9))
    assert stable(log_c) == stable(log_a)
    markers = [(i, r) for i, r in enumerate(log_c) if r["type"] == "resume"]
    assert len(markers) == 1 and markers[0][1]["global_step"] == 6 and markers[0][1]["dropped_records"] == 1
    assert markers[0][1]["checkpoint"].endswith("step_000000006.pdckpt")
    assert log_c[markers[0][0] - 1] == {**log_c[markers[0][0] - 1], "type": "checkpoint", "global_step": 6}


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(image_dir, tmp_path):
    out = str(tmp_path / "nan")
    proc = run_train(tiny_overrides(image_dir, out, "supernet.epochs=2", "supernet.checkpoint.every_steps=2"),
                     fault=SUPERNET_FAULT.format(kind="nan", step=3))
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    max_code = RELEASED.max_arch().code()
    assert message.startswith("error: training diverged: non-finite loss nan at global step 3 (epoch 1, batch 3/4) "
                              f"on the max path {max_code}; stopped before the update.")
    assert message.endswith(f"Last good checkpoint: {out}/checkpoints/step_000000002.pdckpt")
    assert os.listdir(os.path.join(out, "checkpoints")) == ["step_000000002.pdckpt"]
    assert not os.path.exists(os.path.join(out, "train_summary.json"))
    import paddle

    state = paddle.load(os.path.join(out, "checkpoints", "step_000000002.pdckpt"))
    assert state["extras"]["global_step"] == 2 and (state["epoch"], state["step"]) == (0, 2)
    assert all(np.isfinite(v.numpy()).all() for v in state["model"].values())
    # a huge learning rate diverges by itself and is caught the same way
    out2 = str(tmp_path / "huge-lr")
    proc = run_train(tiny_overrides(image_dir, out2, "supernet.epochs=2", "supernet.optim.lr=1e12",
                                    "supernet.optim.warmup=0", "supernet.checkpoint.every_steps=1"))
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.match(r"error: training diverged: (non-finite loss|parameters are not finite)", last), last
    good = last.rsplit("Last good checkpoint: ", 1)[1]
    assert os.path.dirname(good) == os.path.join(out2, "checkpoints")
    assert all(np.isfinite(v.numpy()).all() for v in paddle.load(good)["model"].values())


def _trainer(image_dir, tmp_path, *extra):
    from supernet.train import Trainer
    from train_supernet import load_config

    cfg, _ = load_config([DEMO, *tiny_overrides(image_dir, str(tmp_path / "run"), *extra)])
    return Trainer(cfg)


def test_bad_settings_are_reported_before_training(image_dir, tmp_path):
    from encoding import KitError
    from infra.config import ConfigError

    cases = [
        (("supernet.batch_size=0",), ConfigError, "supernet.batch_size must be an integer >= 1 or null, got 0"),
        (("supernet.sampler.sandwich=false", "supernet.loss.inplace_distill=true"), KitError,
         "in-place distillation needs the max path"),
        (("supernet.sampler.strategy=sandwich",), KitError, "unknown sampler strategy 'sandwich'"),
        (("supernet.init=imagenet",), ConfigError, "supernet.init must be 'random', 'official' or 'supernet'"),
        (("supernet.init=official",), ConfigError, "needs supernet.pretrained"),
        (("supernet.amp=fp8",), ConfigError, "supernet.amp must be one of none, bf16, fp16, got 'fp8'"),
        (("supernet.batch_size=1000",), KitError, r"training split \(64 images\) is smaller than one global batch"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            _trainer(image_dir, tmp_path, *extra)
    from supernet.settings import optim_section

    with pytest.raises(ConfigError, match=r"unknown supernet.optim keys \['max_epoch'\]"):
        optim_section({"epochs": 2, "optim": {"max_epoch": 3}})


def test_existing_run_is_refused_when_resume_is_off(image_dir, tmp_path):
    out = str(tmp_path / "once")
    ok = run_train(tiny_overrides(image_dir, out, "supernet.epochs=1", "supernet.max_steps=1"))
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "stopped at global step 1 (max_steps)" in ok.stdout
    assert "supernet.train: device cpu, 1 rank | Paddle " in ok.stderr
    again = run_train(tiny_overrides(image_dir, out, "supernet.epochs=1", "supernet.resume=false"))
    assert again.returncode == 2
    assert "already holds checkpoints (step_000000001.pdckpt) and supernet.resume is false" in again.stderr
    bigger = run_train(tiny_overrides(image_dir, out, "supernet.epochs=1", "supernet.batch_size=32"))
    assert bigger.returncode == 2
    # only the settings that differ, each with both values
    assert ("was written with other settings (global_batch: was 16, now 32; steps_per_epoch: was 4, now 2)"
            in bigger.stderr)


def test_rank_check_logs_tau_and_pearson_of_the_ground_truth(image_dir, tmp_path):
    from scipy import stats

    codes = [a.code() for a in RELEASED.sample_many(4, seed=2)]
    gt = tmp_path / "gt.json"
    write_arch_list(gt, [ArchEntry(f"arch{i + 1}", c, acc) for i, (c, acc) in
                         enumerate(zip(codes, [0.7, 0.6, 0.75, 0.65], strict=True))])
    out = str(tmp_path / "rank")
    proc = run_train(tiny_overrides(image_dir, out, "supernet.epochs=1", f"supernet.rank_check.gt={gt}",
                                    "evaluate.subset=0", "evaluate.batch_size=8",
                                    "evaluate.calibration.batches=1", "evaluate.calibration.batch_size=8"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = [r for r in log_records(out) if r["type"] == "rank_check"]
    assert len(checks) == 1 and checks[0]["epoch"] == 1 and checks[0]["archs"] == 4
    top1 = checks[0]["top1"]
    assert sorted(top1) == ["arch1", "arch2", "arch3", "arch4"]
    assert all(v * 16 == round(v * 16) for v in top1.values())  # 16 validation images
    pred = [top1[f"arch{i + 1}"] for i in range(4)]
    truth = [0.7, 0.6, 0.75, 0.65]
    if len(set(pred)) > 1:
        assert checks[0]["kendall_tau"] == pytest.approx(stats.kendalltau(pred, truth).statistic)
        assert checks[0]["pearson"] == pytest.approx(stats.pearsonr(pred, truth).statistic)
    else:
        assert checks[0]["kendall_tau"] is None and "all equal" in checks[0]["note"]
    assert "rank check after epoch 1: Kendall tau" in proc.stdout
    # the evaluate package, reading the final weights file, measures the same accuracies
    from evaluate.evaluator import SubnetEvaluator
    from evaluate.oracle import build_calibration_batches, build_eval_set
    from evaluate.settings import EvalSettings
    from train_supernet import load_config

    cfg, _ = load_config([DEMO, *tiny_overrides(image_dir, out, "evaluate.subset=0", "evaluate.batch_size=8",
                                                "evaluate.calibration.batches=1", "evaluate.calibration.batch_size=8",
                                                f"evaluate.checkpoint={out}/supernet.pdparams")])
    settings = EvalSettings.from_config(cfg)
    evaluator = SubnetEvaluator(settings.source().load(net_spec(cfg)), build_eval_set(cfg, settings, on_gpu=False), 8,
                                "recalibrate", build_calibration_batches(cfg, settings))
    assert {f"arch{i + 1}": evaluator.evaluate(c)["top1"] for i, c in enumerate(codes)} == top1


def test_command_line_pieces():
    from infra.config import default_config
    from supernet.samplers import Path
    from supernet.train import mean_by_kind
    from train_supernet import launch_plan, load_config, split_positionals

    assert split_positionals([]) == (default_config("demo"), [])
    assert split_positionals(["a.yaml", "x.y=1"]) == ("a.yaml", ["x.y=1"])
    assert split_positionals(["x.y=1"]) == (default_config("demo"), ["x.y=1"])
    cfg, _ = load_config([DEMO, "--epochs", "7", "--strategy", "large", "supernet.launch.cpu_procs=3",
                          "--output_dir", "/tmp/o dir"])
    assert cfg["supernet"]["epochs"] == 7 and cfg["supernet"]["sampler"]["strategy"] == "large"
    assert launch_plan(cfg) == "OUTPUT_DIR='/tmp/o dir'\nCPU_PROCS=3\nDEVICE=auto"
    arch = RELEASED.max_arch()
    paths = [Path("max", arch), Path("min", arch), Path("random", arch), Path("random", arch)]
    assert mean_by_kind(paths, [1.0, 2.0, 3.0, 5.0]) == {"max": 1.0, "min": 2.0, "random": 4.0}


def test_zero_init_residual_zeroes_every_blocks_last_bn_scale(image_dir, tmp_path):
    plain = _trainer(image_dir, tmp_path / "a", "supernet.zero_init_residual=false")
    zeroed = _trainer(image_dir, tmp_path / "b", "supernet.zero_init_residual=true")
    for model, value in ((plain.model, 1.0), (zeroed.model, 0.0)):
        blocks = list(model.blocks)[1:-1]
        assert len(blocks) == 23
        for block in blocks:
            assert (block.bn2.weight.numpy() == value).all()
            assert (block.bn1.weight.numpy() == 1.0).all()
