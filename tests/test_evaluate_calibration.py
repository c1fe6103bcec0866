"""BN recalibration against numpy batch statistics; the restore that makes results order-free."""

import numpy as np
import paddle
import pytest

from encoding import DOCUMENTED, NetSpec
from evaluate.evaluator import SubnetEvaluator, evaluate_model
from evaluate.image_cache import TensorSet
from supernet import ResNet48Supernet
from supernet.calibration import BNSnapshot, calibration_indices, recalibrate

SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)
RES = 16


def randomise_bn_stats(net, seed):
    rng = np.random.default_rng(seed)
    for bn in net.dynamic_bn_layers():
        n = bn.num_features
        bn._mean.set_value(rng.normal(0, 0.5, n).astype("float32"))
        bn._variance.set_value(rng.uniform(0.5, 2.0, n).astype("float32"))


def bn_state(net):
    return [(bn._mean.numpy().copy(), bn._variance.numpy().copy()) for bn in net.dynamic_bn_layers()]


@pytest.fixture(scope="module")
def net():
    paddle.seed(0)
    model = ResNet48Supernet(SMALL)
    randomise_bn_stats(model, 1)
    model.eval()
    return model


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(5)
    return [paddle.to_tensor(rng.normal(0.3, 1.2, (6, 1, RES, RES)).astype("float32")) for _ in range(3)]


@pytest.fixture(scope="module")
def eval_set():
    rng = np.random.default_rng(6)
    images = rng.normal(0, 1, (20, 1, RES, RES)).astype("float32")
    labels = rng.integers(0, 10, 20).astype("int64")
    return TensorSet(images, labels, on_device=True)


CODES = [a.code() for a in DOCUMENTED.sample_many(3, seed=11)]


def test_recalibrate_gives_cumulative_average_of_numpy_batch_statistics(net, batches):
    net.set_active(CODES[0])
    before = bn_state(net)
    active = net.dynamic_bn_layers(active_only=True)
    captured = {id(bn): [] for bn in active}
    hooks = [bn.register_forward_pre_hook(lambda layer, inputs: captured[id(layer)].append(inputs[0].numpy()))
             for bn in active]
    try:
        recalibrate(net, batches, active)
    finally:
        for h in hooks:
            h.remove()
    assert not net.training
    assert all(bn.momentum == 0.9 for bn in active)  # per-batch momenta are put back
    active_ids = {id(bn) for bn in active}
    for bn, (mean0, var0) in zip(net.dynamic_bn_layers(), before, strict=True):
        if id(bn) not in active_ids:  # layers the subnet does not use are untouched
            np.testing.assert_array_equal(bn._mean.numpy(), mean0)
            np.testing.assert_array_equal(bn._variance.numpy(), var0)
            continue
        inputs = captured[id(bn)]
        assert len(inputs) == len(batches)
        c = inputs[0].shape[1]
        # Paddle's running variance uses the biased (divide by N) batch variance
        want_mean = np.mean([x.astype(np.float64).mean(axis=(0, 2, 3)) for x in inputs], axis=0)
        want_var = np.mean([x.astype(np.float64).var(axis=(0, 2, 3)) for x in inputs], axis=0)
        np.testing.assert_allclose(bn._mean.numpy()[:c], want_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn._variance.numpy()[:c], want_var, rtol=1e-4, atol=1e-5)
        # channels beyond the active slice keep their stored values
        np.testing.assert_array_equal(bn._mean.numpy()[c:], mean0[c:])
        np.testing.assert_array_equal(bn._variance.numpy()[c:], var0[c:])
    for bn, (mean0, var0) in zip(net.dynamic_bn_layers(), before, strict=True):
        bn._mean.set_value(mean0)
        bn._variance.set_value(var0)


def active_channels(net):
    """{id(bn): channels it normalises in the current subnet}, seen by forward pre-hooks."""
    seen = {}

    def hook(layer, inputs):  # a pre-hook's return value would replace the input: return None
        seen[id(layer)] = inputs[0].shape[1]

    hooks = [bn.register_forward_pre_hook(hook) for bn in net.dynamic_bn_layers(active_only=True)]
    try:
        with paddle.no_grad():
            net(paddle.zeros([1, 1, RES, RES]))
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_first_batch_overwrites_previous_statistics(net, batches):
    net.set_active(CODES[1])
    active = net.dynamic_bn_layers(active_only=True)
    channels = active_channels(net)
    snap = BNSnapshot(net.dynamic_bn_layers())
    recalibrate(net, batches[:2], active)
    first = [(bn._mean.numpy()[: channels[id(bn)]], bn._variance.numpy()[: channels[id(bn)]]) for bn in active]
    randomise_bn_stats(net, 99)  # other stored statistics, same calibration: same result
    recalibrate(net, batches[:2], active)
    for bn, (mean, var) in zip(active, first, strict=True):
        c = channels[id(bn)]
        np.testing.assert_allclose(bn._mean.numpy()[:c], mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bn._variance.numpy()[:c], var, rtol=1e-6, atol=1e-7)
    snap.restore()


def test_snapshot_restores_exact_statistics(net, batches):
    before = bn_state(net)
    snap = BNSnapshot(net.dynamic_bn_layers())
    net.set_active(CODES[2])
    recalibrate(net, batches, net.dynamic_bn_layers(active_only=True))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(bn_state(net), before, strict=True))
    snap.restore()
    for (m, v), (m0, v0) in zip(bn_state(net), before, strict=True):
        np.testing.assert_array_equal(m, m0)
        np.testing.assert_array_equal(v, v0)


def test_evaluator_leaves_supernet_statistics_unchanged(net, batches, eval_set):
    before = bn_state(net)
    ev = SubnetEvaluator(net, eval_set, batch_size=8, mode="recalibrate", calib_batches=batches)
    ev.evaluate(CODES[0])
    for (m, v), (m0, v0) in zip(bn_state(net), before, strict=True):
        np.testing.assert_array_equal(m, m0)
        np.testing.assert_array_equal(v, v0)


def test_result_of_b_does_not_depend_on_evaluating_a_first(net, batches, eval_set):
    a, b = CODES[0], CODES[1]
    alone = SubnetEvaluator(net, eval_set, 8, "recalibrate", batches).evaluate(b)
    ev = SubnetEvaluator(net, eval_set, 8, "recalibrate", batches)
    ev.evaluate(a)
    after_a = ev.evaluate(b)
    for key in ("top1", "top5", "loss"):
        assert after_a[key] == alone[key]
    # and recalibration matters: stored statistics give a different loss
    stored = SubnetEvaluator(net, eval_set, 8, "none").evaluate(b)
    assert stored["loss"] != alone["loss"]
    assert alone["calibration"] == "recalibrate" and stored["calibration"] == "none"


def test_recalibrated_subnet_equals_its_export_with_the_same_statistics(net, batches, eval_set):
    """Independent route: the exported plain model, holding the recalibrated slice, scores the same."""
    code = CODES[2]
    result = SubnetEvaluator(net, eval_set, 7, "recalibrate", batches).evaluate(code)
    snap = BNSnapshot(net.dynamic_bn_layers())
    net.set_active(code)
    recalibrate(net, batches, net.dynamic_bn_layers(active_only=True))
    static = net.export(code)
    snap.restore()
    top1, top5, loss = evaluate_model(static, eval_set, batch_size=20)
    assert abs(loss - result["loss"]) < 1e-5
    assert (top1, top5) == (result["top1"], result["top5"])


def test_calibration_indices_are_seeded_and_distinct():
    a = calibration_indices(1000, 4, 25, seed=3)
    assert a.shape == (4, 25)
    assert len(np.unique(a)) == 100
    np.testing.assert_array_equal(a, calibration_indices(1000, 4, 25, seed=3))
    assert not np.array_equal(a, calibration_indices(1000, 4, 25, seed=4))
