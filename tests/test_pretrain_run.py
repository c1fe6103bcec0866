"""`pretrain.py run`: the official command line, results, and SIGKILL + resume = uninterrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from faults import STANDALONE_NAN, python_with
from test_data_images import BAD, write_image_tree

from supernet import standalone as pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = "1252233313000000223212122253130000000000006515000000"
TINY = ["data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_tree(str(tmp_path_factory.mktemp("imgs")), per_class=8, val_per_class=2)


def official(image_dir, output, *extra, epochs=1, batch=8, overrides=()):
    return ["run", "--arch", CODE, "--image_dir", image_dir, "--batch_size", str(batch), "--max_epoch", str(epochs),
            "--warmup", "1", "--output", str(output), "--num_workers", "0", "--device", "cpu", *extra, *TINY,
            *overrides]


def run_script(args, timeout=120):
    return subprocess.run([sys.executable, "pretrain.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_official_command_trains_on_the_image_dir_and_writes_a_result(images, tmp_path):
    proc = run_script(official(images, tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["arch"] == CODE and result["epochs"] == 1 and result["device"] == "cpu"
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0 and np.isfinite(result["loss"])
    assert result["val_images"] == 6 and result["steps_per_epoch"] == 25 // 8
    assert result["images_per_s"] > 0 and result["wall_time_s"] > 0
    # no --config and an --image_dir: the ImageNet config, with the flags applied
    assert result["config"]["data"]["name"] == "imagenet" and result["config"]["data"]["image_dir"] == images
    assert result["config"]["train"]["batch_size"] == 8 and result["config"]["model"]["width_mult"] == 0.125
    assert result["bad_images"] >= 1
    log = (tmp_path / "out" / "train.log").read_text()
    assert f"unreadable image {os.path.join(images, BAD)}" in log
    assert json.loads(proc.stdout.strip().splitlines()[-1])["top1"] == result["top1"]
    assert f"pretrain.py run: device cpu, 1 rank | Paddle {paddle.__version__} (" in proc.stderr
    assert sorted(os.listdir(tmp_path / "out" / "checkpoints")) == ["epoch_0001.pdckpt"]
    # the time/energy ledger: one epoch of 3 steps x 8 images, then the 6 validation images
    records = [json.loads(line) for line in (tmp_path / "out" / "ledger-standalone.jsonl").read_text().splitlines()]
    phases = [r for r in records if r["type"] == "phase"]
    assert [(p["phase"], p["images"]) for p in phases] == [("epoch_1", 24), ("final_eval", 6)]
    assert result["ledger"]["images"] == 30 and result["ledger"]["phases"] == 2
    assert result["ledger"]["seconds"] == pytest.approx(sum(p["seconds"] for p in phases))
    log = (tmp_path / "out" / "train.log").read_text()
    assert "standalone training: " in log and "30 images, 2 phases" in log


def _weights(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(images, tmp_path):
    args = dict(epochs=4, batch=4)
    ref = run_script(official(images, tmp_path / "ref", **args))
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / "killed"
    first = out / "checkpoints" / "epoch_0001.pdckpt"
    proc = subprocess.Popen([sys.executable, "pretrain.py", *official(images, out, **args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (out / "result.json").exists(), "killed too late: nothing left to resume"
    done = sorted(os.listdir(out / "checkpoints"))
    assert "epoch_0004.pdckpt" not in done

    resumed = run_script(official(images, out, **args))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in (out / "train.log").read_text()
    a, b = _weights(tmp_path / "ref" / "model.pdparams"), _weights(out / "model.pdparams")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "ref", out))
    assert (ra["top1"], ra["loss"]) == (rb["top1"], rb["loss"])
    assert [h["loss"] for h in ra["history"]] == [h["loss"] for h in rb["history"]]


def test_resume_refuses_other_settings_and_never_starts_over(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert pretrain.main(official(images, out)) == 0
    assert pretrain.main(official(images, out, "--lr", "0.5")) == 1
    err = capsys.readouterr().err
    assert "was written with other settings (train.lr: None -> 0.5)" in err and "--resume never" in err
    assert pretrain.main(official(images, out, "--lr", "0.5", "--resume", "never")) == 0
    assert json.loads((out / "result.json").read_text())["config"]["train"]["lr"] == 0.5
    assert pretrain.main(official(images, out, "--resume", str(tmp_path / "none.pdckpt"))) == 1
    assert f"--resume {tmp_path}/none.pdckpt: no such checkpoint file" in capsys.readouterr().err


def test_zero_init_residual_starts_every_blocks_last_bn_scale_at_zero(images, tmp_path):
    # lr 1e-12: the saved weights are the initial ones to 1e-9
    for on in (False, True):
        out = tmp_path / str(on)
        assert pretrain.main(official(images, out, overrides=["train.lr=1e-12", f"train.zero_init_residual={on}"])) == 0
        scales = {k: v for k, v in _weights(out / "model.pdparams").items() if k.endswith("bn2.weight")}
        assert len(scales) == sum(int(d) for d in CODE[1:5])
        for k, v in scales.items():
            np.testing.assert_allclose(v, 0.0 if on else 1.0, atol=1e-9, err_msg=k)


def test_recipe_of_a_result_written_before_zero_init_residual_existed_is_the_same():
    old = {"train.max_epoch": 4}
    assert pretrain.recipe_changes(old, {"train.max_epoch": 4, "train.zero_init_residual": False}) == []
    assert pretrain.recipe_changes(old, {"train.max_epoch": 4, "train.zero_init_residual": True}) == [
        "train.zero_init_residual: False -> True"]


def test_nan_loss_stops_before_the_update_and_keeps_the_last_epoch(images, tmp_path):
    # batch 8 of 25 images: 3 steps per epoch; the 5th loss (epoch 2, step 2) is NaN
    out = tmp_path / "nan"
    proc = subprocess.run(python_with(STANDALONE_NAN.format(call=5), "pretrain", official(images, out, epochs=3)),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: non-finite loss nan at epoch 2, step 2 (lower the learning rate")
    assert last.endswith(f"stopped before the update. Last good checkpoint: {out}/checkpoints/epoch_0001.pdckpt")
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch_0001.pdckpt"]
    assert not (out / "result.json").exists() and not (out / "model.pdparams").exists()
    state = paddle.load(str(out / "checkpoints" / "epoch_0001.pdckpt"))
    assert state["epoch"] == 1 and all(np.isfinite(v.numpy()).all() for v in state["model"].values())


def test_bad_settings_are_clear_errors(images, tmp_path, capsys):
    assert pretrain.main(official(images, tmp_path / "a", batch=64)) == 1
    assert "the training split has 25 images, fewer than one global batch of 64" in capsys.readouterr().err
    bad_code = CODE[:6] + "9" + CODE[7:]
    assert pretrain.main(["run", "--arch", bad_code, "--image_dir", images, *TINY]) == 1
    assert f"invalid subnet code '{bad_code}' at position 6" in capsys.readouterr().err
    assert pretrain.main(["run", "--image_dir", images, *TINY]) == 1
    assert "no subnet code given: pass --arch CODE" in capsys.readouterr().err
    assert pretrain.main(official(images, tmp_path / "b", overrides=["model.num_classes=2"])) == 1
    err = capsys.readouterr().err
    assert "the train split has labels up to 2 but model.num_classes is 2: set model.num_classes" in err
    assert pretrain.main(official(images, tmp_path / "c", overrides=["train.no_such_key=1"])) == 1
    assert "unknown config key 'train.no_such_key'" in capsys.readouterr().err


def test_evaluate_classifier_against_numpy():
    from paddle import nn

    from imagedata import ArrayImages, build_loader

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((23, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 23)
    ds = ArrayImages(logits.reshape(23, 7, 1), labels, lambda raw, _: raw.reshape(7, 1, 1).copy(), range(7))
    model = nn.Flatten()  # the "images" are the logits
    result = pretrain.evaluate_classifier(model, build_loader(ds, 5, shuffle=False, drop_last=False,
                                                              exact_shards=True))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = -(shifted[np.arange(23), labels] - np.log(np.exp(shifted).sum(axis=1)))
    assert result["count"] == 23
    assert result["top1"] == pytest.approx(np.mean(top5[:, 0] == labels))
    assert result["top5"] == pytest.approx(np.mean((top5 == labels[:, None]).any(axis=1)))
    assert result["loss"] == pytest.approx(ce.mean(), rel=1e-5)
