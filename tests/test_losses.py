import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from encoding import KitError
from supernet.losses import distillation_loss, smoothed_cross_entropy


def _t(a, stop_gradient=True):
    t = paddle.to_tensor(np.asarray(a, dtype="float32"))
    t.stop_gradient = stop_gradient
    return t


def test_cross_entropy_hand_value():
    # softmax([0, ln 3]) = [1/4, 3/4]; label 1.
    logits = _t([[0.0, math.log(3.0)]])
    labels = paddle.to_tensor([1], dtype="int64")
    assert smoothed_cross_entropy(logits, labels).item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    expected = 0.9 * math.log(4 / 3) + 0.1 * (math.log(4) + math.log(4 / 3)) / 2
    assert smoothed_cross_entropy(logits, labels, 0.1).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_matches_paddle_label_smoothing():
    rng = np.random.default_rng(0)
    logits = _t(rng.normal(size=(6, 10)) * 3)
    labels = paddle.to_tensor(rng.integers(0, 10, size=6), dtype="int64")
    ours = smoothed_cross_entropy(logits, labels, 0.1).item()
    theirs = F.cross_entropy(logits, labels, label_smoothing=0.1).item()
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_distillation_zero_when_student_equals_teacher():
    logits = _t(np.random.default_rng(1).normal(size=(4, 7)) * 4)
    assert abs(distillation_loss(logits, logits.clone()).item()) < 1e-6
    assert abs(distillation_loss(logits, logits.clone(), temperature=3.0).item()) < 1e-6


def test_distillation_is_soft_cross_entropy_minus_teacher_entropy():
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(5, 6)), rng.normal(size=(5, 6)) * 2

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    for temp in (1.0, 2.0):
        ps, pt = softmax(s / temp), softmax(t / temp)
        soft_ce = -(pt * np.log(ps)).sum(axis=1)
        entropy = -(pt * np.log(pt)).sum(axis=1)
        expected = temp * temp * (soft_ce - entropy).mean()
        assert distillation_loss(_t(s), _t(t), temp).item() == pytest.approx(expected, rel=1e-5)


def test_teacher_gets_no_gradient_and_student_gets_kl_gradient():
    paddle.seed(0)
    teacher_net = paddle.nn.Linear(3, 4)
    x = _t(np.random.default_rng(3).normal(size=(2, 3)))
    teacher_logits = teacher_net(x)
    assert not teacher_logits.stop_gradient
    student_logits = _t(np.random.default_rng(4).normal(size=(2, 4)), stop_gradient=False)
    distillation_loss(student_logits, teacher_logits).backward()
    assert teacher_net.weight.grad is None and teacher_net.bias.grad is None
    # d/ds of mean_batch KL(p_t || softmax(s)) = (softmax(s) - p_t) / N
    ps = F.softmax(student_logits, axis=-1).numpy()
    pt = F.softmax(teacher_logits, axis=-1).numpy()
    np.testing.assert_allclose(student_logits.grad.numpy(), (ps - pt) / 2, rtol=1e-5, atol=1e-7)


def test_bad_arguments_are_named():
    logits = _t([[0.0, 1.0]])
    labels = paddle.to_tensor([0], dtype="int64")
    with pytest.raises(KitError, match=r"label smoothing must be in \[0, 1\), got 1.0"):
        smoothed_cross_entropy(logits, labels, 1.0)
    with pytest.raises(KitError, match="temperature must be positive, got 0"):
        distillation_loss(logits, logits, 0)
