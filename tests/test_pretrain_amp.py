"""pretrain.py's AMP switch (train.amp / --amp), parsed by the kit's one AMP parser (runtime.amp): fp32 by
default, GPU only (Paddle 3.3's autocast does nothing on a CPU place), and both autocast branches
(bf16; fp16 with a loss scaler whose state goes into the checkpoint) run when forced on CPU."""

import json
import math

import pytest
from test_pretrain_run import images, official  # noqa: F401 - `images` is a fixture

import runtime.amp
from runtime.checkpoint import load_checkpoint
from supernet import standalone as pretrain


def test_amp_bf16_on_cpu_trains_in_fp32_with_a_finite_loss(images, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "bf16"
    assert pretrain.main(official(images, out, "--amp", "bf16")) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["train"]["amp"] == "bf16" and result["amp"] == "none"
    assert math.isfinite(result["loss"]) and math.isfinite(result["history"][0]["loss"])
    assert "| AMP none (fp32; bf16 asked for, GPU only) |" in capsys.readouterr().err


@pytest.mark.parametrize("amp, dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_forced_autocast_branches_train_with_finite_losses(images, tmp_path, monkeypatch, amp, dtype):  # noqa: F811
    chosen = []

    def forced(name, device, key="amp", warn=False):
        chosen.append((name, key))
        return runtime.amp.AMP_DTYPES[str(name)]

    monkeypatch.setattr(runtime.amp, "amp_dtype", forced)
    out = tmp_path / amp
    assert pretrain.main(official(images, out, "--amp", amp)) == 0
    assert chosen == [(amp, "train.amp")]
    result = json.loads((out / "result.json").read_text())
    assert result["amp"] == dtype and math.isfinite(result["loss"]) and math.isfinite(result["history"][0]["loss"])
    extras = load_checkpoint(str(out / "checkpoints" / "epoch_0001.pdckpt"))["extras"]
    assert (extras.get("scaler") is not None) == (amp == "fp16")


def test_amp_setting_errors_and_old_recipes(images, tmp_path, capsys):  # noqa: F811
    assert pretrain.main(official(images, tmp_path / "x", "--amp", "fp8")) == 1
    assert "train.amp must be one of none, bf16, fp16, got 'fp8'" in capsys.readouterr().err
    # ground truth written before the switch existed was fp32: the same recipe
    assert pretrain.recipe_changes({"train.max_epoch": 4}, {"train.max_epoch": 4, "train.amp": "none"}) == []
    assert pretrain.recipe_changes({}, {"train.amp": "bf16"}) == ["train.amp: 'none' -> 'bf16'"]
