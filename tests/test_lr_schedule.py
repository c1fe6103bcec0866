"""The official learning-rate schedule against Paddle's own objects, stepped the way paddle.Model.fit steps them,
and the per-rank batch arithmetic of `pretrain.py`."""

import math

import numpy as np
import paddle
import pytest
from fakedata import optim_settings, train_settings
from paddle import nn
from paddle.optimizer.lr import CosineAnnealingDecay, LinearWarmup

from infra.config import ConfigError
from supernet.optim import OptimConfigError, WarmupCosine, build_optimizer, official_lr_at, warmup_iterations
from supernet.standalone import TrainingError, batch_sizes


def paddle_official(peak, max_epoch, warmup_steps):
    """The challenge script's scheduler object, built as it builds it."""
    return LinearWarmup(CosineAnnealingDecay(peak, max_epoch), warmup_steps, 0.0, peak)


@pytest.mark.parametrize("peak,max_epoch,warmup", [(0.4, 5, 7), (1.6, 90, 10), (0.1, 3, 1)])
def test_official_schedule_equals_paddles_objects_over_hundreds_of_iterations(peak, max_epoch, warmup):
    theirs = paddle_official(peak, max_epoch, warmup)
    ours = WarmupCosine(peak, total_steps=400, warmup_steps=warmup, schedule="official", max_epoch=max_epoch)
    for i in range(400):
        assert ours() == pytest.approx(theirs(), rel=1e-12, abs=1e-15), i
        theirs.step()
        ours.step()


def test_official_schedule_by_hand():
    # 4 warmup iterations to 0.8, then the cosine with T_max = 6 counted in iterations: 0 after 6, back at 12.
    assert [official_lr_at(i, 4, 0.8, 6) for i in range(4)] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert official_lr_at(4, 4, 0.8, 6) == pytest.approx(0.8)
    assert official_lr_at(7, 4, 0.8, 6) == pytest.approx(0.4)
    assert official_lr_at(10, 4, 0.8, 6) == pytest.approx(0.0, abs=1e-15)
    assert official_lr_at(16, 4, 0.8, 6) == pytest.approx(0.8)
    assert official_lr_at(0, 0, 0.8, 6) == 0.8  # no warmup: the cosine alone (the official script cannot run it)


class _Records(paddle.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lrs = []

    def on_train_batch_begin(self, step, logs=None):
        self.lrs.append(self.model._optimizer.get_lr())


class _Tiny(paddle.io.Dataset):
    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, 3)).astype("float32")
        self.y = rng.integers(0, 2, (n, 1)).astype("int64")

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __len__(self):
        return len(self.x)


def test_official_schedule_equals_what_model_fit_uses_at_every_iteration():
    """The official script's route end to end: paddle.Model.fit with its default LRScheduler callback."""
    images, batch, max_epoch, warmup_epochs, peak = 42, 4, 25, 1, 0.3
    paddle.seed(0)
    net = nn.Linear(3, 2)
    model = paddle.Model(net)
    warmup = int(images / batch) * warmup_epochs  # the official formula (world size 1)
    model.prepare(paddle.optimizer.Momentum(learning_rate=paddle_official(peak, max_epoch, warmup), momentum=0.9,
                                            parameters=model.parameters(), weight_decay=1e-4),
                  nn.CrossEntropyLoss())
    seen = _Records()
    model.fit(_Tiny(images), epochs=max_epoch, batch_size=batch, shuffle=True, drop_last=True, verbose=0,
              callbacks=[seen])
    steps = images // batch
    assert len(seen.lrs) == steps * max_epoch == 250

    official = optim_settings({"max_epoch": max_epoch, "warmup": warmup_epochs, "lr": peak, "lr_schedule": "official"})
    opt, sched = build_optimizer(nn.Linear(3, 2), official, batch, steps, images)
    assert sched.warmup_steps == warmup == 10
    ours = []
    for _ in range(steps * max_epoch):  # pretrain.py: read the rate, optimizer step, then scheduler.step()
        ours.append(opt.get_lr())
        sched.step()
    np.testing.assert_allclose(ours, seen.lrs, rtol=1e-12, atol=1e-15)
    assert max(ours[warmup:]) == pytest.approx(peak) and min(ours[warmup:]) < 1e-3  # it swings, period 2 x 25


def test_cosine_stays_the_kits_single_decay():
    sched = WarmupCosine(1.0, total_steps=100, warmup_steps=10)
    values = []
    for _ in range(100):
        values.append(sched())
        sched.step()
    assert values[9] == 1.0 and all(b <= a for a, b in zip(values[10:], values[11:], strict=False))
    assert values[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_bad_schedule_names_are_refused():
    with pytest.raises(OptimConfigError, match="lr_schedule must be one of cosine, official, got 'step'"):
        build_optimizer(nn.Linear(3, 2), optim_settings({"max_epoch": 2, "lr_schedule": "step"}), 4, 5, 20)
    with pytest.raises(OptimConfigError, match="integer max_epoch"):
        WarmupCosine(0.1, 10, 1, schedule="official", max_epoch=None)


def test_warmup_iterations_follow_the_official_formula():
    # official: int(1281024 / (batch_size * world_size)) * warmup
    assert warmup_iterations(2, 1281024, 1024 * 4) == int(1281024 / 4096) * 2 == 624
    assert warmup_iterations(0.25, 30000, 256) == round(117 * 0.25) == 29  # the demo's 0.25 epoch


def test_batch_size_is_per_rank_unless_the_global_batch_is_given():
    assert batch_sizes(train_settings({"batch_size": 1024}), 4) == (1024, 4096)  # the README's official command: lr 1.6
    assert batch_sizes(train_settings({"batch_size": 1024, "global_batch_size": 1024}), 4) == (256, 1024)
    with pytest.raises(TrainingError, match="train.global_batch_size must be a positive multiple of the 3 ranks"):
        batch_sizes(train_settings({"batch_size": 8, "global_batch_size": 1024}), 3)
    with pytest.raises(ConfigError, match=r"train.batch_size \(images per rank\) must be a positive integer, got 0"):
        batch_sizes(train_settings({"batch_size": 0}), 1)
