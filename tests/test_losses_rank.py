"""The FLOPs-guided pairwise rank loss and its weight schedule, against hand computations."""

import numpy as np
import paddle
import pytest

from encoding import KitError
from supernet.losses import pairwise_rank_loss
from supernet.settings import rank_loss_weight


def test_rank_loss_by_hand():
    # costs 3 > 2 > 1 with losses 0.5, 0.9, 0.7: pairs (big, small) = (0,1), (0,2), (1,2)
    losses = [paddle.to_tensor(v, stop_gradient=False) for v in (0.5, 0.9, 0.7)]
    value = pairwise_rank_loss(losses, [3, 2, 1], margin=0.1)
    # max(0, .1 + .5 - .9) = 0, max(0, .1 + .5 - .7) = 0, max(0, .1 + .9 - .7) = 0.3 -> mean 0.1
    assert value.item() == pytest.approx(0.1)
    value.backward()
    # only the violated pair (1, 2) has a gradient: +1/3 on loss 1, -1/3 on loss 2
    np.testing.assert_allclose([t.grad.item() for t in losses], [0.0, 1 / 3, -1 / 3], atol=1e-7)


def test_rank_loss_ignores_equal_costs_and_is_zero_without_pairs():
    losses = [paddle.to_tensor(v) for v in (2.0, 1.0)]
    assert pairwise_rank_loss(losses, [5, 5]).item() == 0.0
    assert pairwise_rank_loss(losses, [5, 4]).item() == pytest.approx(1.0)  # big one's loss higher by 1
    assert pairwise_rank_loss(losses, [4, 5]).item() == 0.0


def test_rank_loss_bad_input():
    with pytest.raises(KitError, match="2 losses for 3 costs"):
        pairwise_rank_loss([paddle.to_tensor(1.0)] * 2, [1, 2, 3])
    with pytest.raises(KitError, match="margin must be >= 0"):
        pairwise_rank_loss([paddle.to_tensor(1.0)], [1], margin=-1)


def test_weight_schedules():
    third_place = [rank_loss_weight(e, 1.0, "linear", ramp_epochs=10, max_weight=2.0) for e in (0, 5, 10, 20, 69)]
    assert third_place == [0.0, 0.5, 1.0, 2.0, 2.0]  # min(2, epoch / 10)
    assert rank_loss_weight(7, 0.3) == 0.3
    assert rank_loss_weight(7, 0.3, max_weight=0.1) == 0.1
    with pytest.raises(KitError, match="schedule must be one of constant, linear, got 'cosine'"):
        rank_loss_weight(0, 1.0, "cosine")
    with pytest.raises(KitError, match="ramp_epochs must be positive"):
        rank_loss_weight(0, 1.0, "linear", ramp_epochs=0)
