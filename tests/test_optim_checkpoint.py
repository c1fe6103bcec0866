"""The LR schedule at hand-computed points, the optimizer recipe, checkpoints and RNG state."""

import math
import os
import random

import numpy as np
import paddle
import pytest
from fakedata import optim_settings
from paddle import nn

from runtime.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from runtime.device import DeviceError, rng_state, seed_everything, select_device, set_rng_state
from supernet.optim import OptimConfigError, WarmupCosine, build_optimizer, lr_at, peak_lr

# --- schedule -----------------------------------------------------------------------------------

def test_lr_at_hand_computed_points():
    # 100 iterations, 10 warmup, peak 0.4
    assert lr_at(0, 100, 10, 0.4) == pytest.approx(0.04)
    assert lr_at(4, 100, 10, 0.4) == pytest.approx(0.2)
    assert lr_at(9, 100, 10, 0.4) == pytest.approx(0.4)  # end of warmup reaches the peak
    assert lr_at(10, 100, 10, 0.4) == pytest.approx(0.4)  # cosine starts at the peak
    assert lr_at(55, 100, 10, 0.4) == pytest.approx(0.2)  # half-way through 90 cosine steps
    # last iteration: 0.2 * (1 + cos(89/90 pi)) = 0.2 * (1 - cos(pi/90))
    assert lr_at(99, 100, 10, 0.4) == pytest.approx(0.2 * (1 - math.cos(math.pi / 90)))
    assert lr_at(100, 100, 10, 0.4) == pytest.approx(0.0, abs=1e-15)


def test_lr_at_without_warmup_and_monotone_decay():
    assert lr_at(0, 8, 0, 1.0) == 1.0
    assert lr_at(4, 8, 0, 1.0) == pytest.approx(0.5)
    values = [lr_at(s, 50, 5, 1.0) for s in range(50)]
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert np.all(np.diff(values[5:]) <= 0)  # one cosine, no restarts


def test_scheduler_follows_lr_at_and_state_round_trips():
    s = WarmupCosine(0.4, 100, 10)
    seen = []
    for _ in range(37):
        seen.append(s.get_lr())
        s.step()
    assert seen == pytest.approx([lr_at(i, 100, 10, 0.4) for i in range(37)])
    fresh = WarmupCosine(0.4, 100, 10)
    fresh.set_state_dict(s.state_dict())
    assert fresh.last_epoch == 37
    assert fresh() == pytest.approx(lr_at(37, 100, 10, 0.4))


def test_peak_lr_linear_scaling_rule():
    assert peak_lr(optim_settings({}), 1024) == pytest.approx(0.4)
    assert peak_lr(optim_settings({"base_lr": 0.2}), 128) == pytest.approx(0.1)
    assert peak_lr(optim_settings({"lr": 0.05}), 1024) == 0.05
    with pytest.raises(OptimConfigError, match="must be positive"):
        peak_lr(optim_settings({"lr": 0.0}), 256)


def _tiny_model():
    return nn.Sequential(nn.Conv2D(1, 4, 3, bias_attr=False), nn.BatchNorm2D(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_build_optimizer_steps_and_warmup_in_iterations():
    model = _tiny_model()
    opt, sched = build_optimizer(model, optim_settings({"max_epoch": 10, "warmup": 2, "lr_schedule": "cosine"}),
                                 global_batch=512, steps_per_epoch=7, train_images=512 * 7 + 100)
    assert sched.total_steps == 70 and sched.warmup_steps == 14 and sched.peak_lr == pytest.approx(0.2)
    assert opt.get_lr() == pytest.approx(0.2 / 14)
    with pytest.raises(OptimConfigError, match="warmup must be between 0 and max_epoch=3"):
        build_optimizer(model, optim_settings({"max_epoch": 3, "warmup": 4}), 256, 5, 256 * 5)


def _one_decay_step(no_bn_decay):
    paddle.seed(0)
    model = _tiny_model()
    opt, _ = build_optimizer(model, optim_settings({"max_epoch": 1, "warmup": 0, "lr": 1.0, "weight_decay": 0.1,
                                     "momentum": 0.0, "no_bn_decay": no_bn_decay}), 256, 1, 256)
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]  # not BN statistics
    for _, p in trainable:  # biases start at 0, which decay would not move: make them non-zero
        p.set_value(paddle.uniform(p.shape, min=0.5, max=1.5))
    before = {n: p.numpy().copy() for n, p in trainable}
    for _, p in trainable:  # zero gradient: only weight decay moves parameters
        p.grad = paddle.zeros_like(p)
    opt.step()
    return before, {n: p.numpy() for n, p in trainable}


def test_weight_decay_hits_bn_and_bias_unless_excluded():
    before, after = _one_decay_step(no_bn_decay=False)
    assert sorted(before) == ["0.weight", "1.bias", "1.weight", "3.bias", "3.weight"]
    for n in before:  # p <- p - lr * wd * p
        np.testing.assert_allclose(after[n], before[n] * 0.9, rtol=1e-6, err_msg=n)
    before, after = _one_decay_step(no_bn_decay=True)
    for n in before:
        expected = before[n] * 0.9 if before[n].ndim >= 2 else before[n]
        np.testing.assert_allclose(after[n], expected, rtol=1e-6, err_msg=n)


def test_gradient_clipping_by_global_norm():
    lin = nn.Linear(2, 1, bias_attr=False)
    w0 = lin.weight.numpy().copy()
    opt, _ = build_optimizer(lin, optim_settings({"max_epoch": 1, "warmup": 0, "lr": 1.0, "weight_decay": 0.0,
                                   "momentum": 0.0, "grad_clip": 1.0}), 256, 1, 256)
    lin.weight.grad = paddle.to_tensor([[3.0], [4.0]])  # norm 5 -> scaled to norm 1
    opt.step()
    np.testing.assert_allclose(w0 - lin.weight.numpy(), [[0.6], [0.8]], rtol=1e-6)


# --- checkpoints --------------------------------------------------------------------------------

def _train(model, opt, sched, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = paddle.to_tensor(rng.standard_normal((4, 1, 6, 6)).astype("float32"))
        y = paddle.to_tensor(rng.integers(0, 3, 4).astype("int64"))
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()


def test_resume_in_a_model_with_other_unique_names_continues_identically(tmp_path):
    cfg = optim_settings({"max_epoch": 2, "warmup": 1, "lr": 0.5})
    paddle.seed(3)
    a = _tiny_model()
    opt_a, sched_a = build_optimizer(a, cfg, 256, 5, 256 * 5)
    _train(a, opt_a, sched_a, 5, seed=1)
    path = tmp_path / "ck" / "epoch_0001.pdckpt"
    save_checkpoint(path, training_state(a, opt_a, sched_a, epoch=1, step=5, note="x"))
    _train(a, opt_a, sched_a, 5, seed=2)

    _tiny_model()  # shifts Paddle's global layer counter: b's parameter names differ from a's
    b = _tiny_model()
    assert [p.name for p in b.parameters()] != [p.name for p in a.parameters()]
    opt_b, sched_b = build_optimizer(b, cfg, 256, 5, 256 * 5)
    state = restore_training_state(path, b, opt_b, sched_b)
    assert state["epoch"] == 1 and state["step"] == 5 and state["extras"] == {"note": "x"}
    assert sched_b.last_epoch == 5
    _train(b, opt_b, sched_b, 5, seed=2)
    for (n, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=n)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "epoch_0003.pdckpt"
    save_checkpoint(path, {"epoch": 3, "w": paddle.ones([2])})
    save_checkpoint(path, {"epoch": 4, "w": paddle.zeros([2])})
    assert os.listdir(tmp_path) == ["epoch_0003.pdckpt"]
    state = load_checkpoint(path)
    assert state["epoch"] == 4 and state["w"].numpy().tolist() == [0.0, 0.0]


def test_latest_checkpoint_orders_by_number_not_text(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for e in (2, 10, 9):
        save_checkpoint(tmp_path / f"epoch_{e}.pdckpt", {"epoch": e})
    assert os.path.basename(latest_checkpoint(tmp_path)) == "epoch_10.pdckpt"
    removed = prune_checkpoints(tmp_path, keep=1)
    assert sorted(os.path.basename(p) for p in removed) == ["epoch_2.pdckpt", "epoch_9.pdckpt"]
    assert os.listdir(tmp_path) == ["epoch_10.pdckpt"]


def test_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path}/none.pdckpt does not exist"):
        load_checkpoint(tmp_path / "none.pdckpt")
    bad = tmp_path / "bad.pdckpt"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="bad.pdckpt is unreadable"):
        load_checkpoint(bad)
    good = tmp_path / "epoch_1.pdckpt"
    save_checkpoint(good, training_state(_tiny_model()))
    other = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match="does not fit the model: missing"):
        restore_training_state(good, other)


# --- runtime ------------------------------------------------------------------------------------

def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    seed_everything(5)
    save_checkpoint(tmp_path / "r.pdckpt", {"rng": rng_state()})
    first = (random.random(), np.random.rand(), paddle.rand([3]).numpy().tolist())
    seed_everything(99)
    set_rng_state(load_checkpoint(tmp_path / "r.pdckpt")["rng"])
    assert (random.random(), np.random.rand(), paddle.rand([3]).numpy().tolist()) == first


def test_select_device():
    assert select_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_device("tpu")
    if not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        assert select_device("auto") == "cpu"
        with pytest.raises(DeviceError, match="device 'gpu' was requested but"):
            select_device("gpu")
    select_device("auto")
