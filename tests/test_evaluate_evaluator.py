"""Metric arithmetic by hand, the supernet against its exported plain model, and bad settings."""

import os

import numpy as np
import paddle
import pytest

from encoding import DOCUMENTED, KitError, NetSpec, net_spec
from evaluate.evaluator import SubnetEvaluator, amp_dtype, evaluate_model
from evaluate.image_cache import TensorSet, choose_place, make_tensor_set
from supernet import ResNet48Supernet, StaticResNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)


class Logits(paddle.nn.Layer):
    """Returns its input as logits, so the expected metrics follow from the data alone."""

    def forward(self, x):
        return paddle.flatten(x, 1)


def test_top1_top5_and_loss_match_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (23, 10)).astype("float32")
    labels = rng.integers(0, 10, 23).astype("int64")
    data = TensorSet(logits.reshape(23, 10, 1, 1), labels, on_device=True)
    top1, top5, loss = evaluate_model(Logits(), data, batch_size=7)  # 7 does not divide 23
    order = np.argsort(-logits, axis=1)
    assert top1 == np.mean(order[:, 0] == labels)
    assert top5 == np.mean([labels[i] in order[i, :5] for i in range(23)])
    z = logits.astype(np.float64)
    want_loss = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(23), labels])
    assert abs(loss - want_loss) < 1e-5


def test_small_hand_example():
    # three samples, 6 classes: label ranks 1st, 3rd and 6th
    logits = np.array([[5, 1, 0, 0, 0, 0], [3, 2, 1, 0, 0, -1], [6, 5, 4, 3, 2, 1]], dtype="float32")
    labels = np.array([0, 2, 5], dtype="int64")
    top1, top5, _ = evaluate_model(Logits(), TensorSet(logits[:, :, None, None], labels, on_device=False), 2)
    assert (top1, top5) == (1 / 3, 2 / 3)


@pytest.fixture(scope="module")
def net():
    paddle.seed(0)
    model = ResNet48Supernet(SMALL)
    rng = np.random.default_rng(1)
    for bn in model.dynamic_bn_layers():  # trained-looking statistics, not the 0/1 defaults
        bn._mean.set_value(rng.normal(0, 0.3, bn.num_features).astype("float32"))
        bn._variance.set_value(rng.uniform(0.5, 2.0, bn.num_features).astype("float32"))
    model.eval()
    return model


@pytest.fixture(scope="module")
def eval_set():
    rng = np.random.default_rng(2)
    return TensorSet(rng.normal(0, 1, (24, 1, 16, 16)).astype("float32"), rng.integers(0, 10, 24), on_device=True)


@pytest.mark.parametrize("seed", [4, 5])
def test_stored_statistics_result_equals_exported_static_model(net, eval_set, seed):
    code = DOCUMENTED.sample_many(1, seed=seed)[0].code()
    result = SubnetEvaluator(net, eval_set, batch_size=10, mode="none").evaluate(code)
    top1, top5, loss = evaluate_model(net.export(code), eval_set, batch_size=24)
    assert abs(loss - result["loss"]) < 1e-5
    assert (top1, top5) == (result["top1"], result["top5"])
    assert result["calibration"] == "none" and result["seconds"] > 0


def test_host_and_device_caches_give_the_same_numbers(net, eval_set):
    host = TensorSet(eval_set.images, eval_set.labels, on_device=False)
    assert isinstance(host.images, np.ndarray)
    code = DOCUMENTED.min_arch().code()
    a = SubnetEvaluator(net, eval_set, 8, "none").evaluate(code)
    b = SubnetEvaluator(net, host, 8, "none").evaluate(code)
    assert (a["top1"], a["top5"], a["loss"]) == (b["top1"], b["top5"], b["loss"])


def test_float16_cache_is_cast_back_for_the_model(net):
    rng = np.random.default_rng(3)
    images = rng.normal(0, 1, (8, 1, 16, 16)).astype("float32")
    data = make_tensor_set(images, np.zeros(8, "int64"), place="device", dtype="float16")
    assert data.images.dtype == paddle.float16
    x, _ = next(data.batches(8))
    assert x.dtype == paddle.float32
    np.testing.assert_allclose(x.numpy(), images, atol=2e-3)


def test_bad_settings_have_clear_errors(net, eval_set):
    with pytest.raises(KitError, match="unknown calibration mode 'sometimes': expected one of none, recalibrate"):
        SubnetEvaluator(net, eval_set, 8, "sometimes")
    with pytest.raises(KitError, match="'recalibrate' needs calibration batches"):
        SubnetEvaluator(net, eval_set, 8, "recalibrate", calib_batches=[])
    with pytest.raises(KitError, match="evaluation batch size must be >= 1, got 0"):
        SubnetEvaluator(net, eval_set, 0, "none")
    with pytest.raises(KitError, match="evaluate.amp must be one of none, bf16, fp16, got 'fp8'"):
        amp_dtype("fp8", "gpu:0")


def test_amp_is_used_on_gpu_and_ignored_with_a_warning_on_cpu():
    assert amp_dtype("bf16", "gpu:0") == "bfloat16"
    assert amp_dtype("fp16", "gpu:1") == "float16"
    assert amp_dtype("none", "gpu:0") is None
    with pytest.warns(UserWarning, match="amp=bf16 ignored on cpu"):
        assert amp_dtype("bf16", "cpu") is None


def test_cache_place_follows_the_size_limit():
    gib = 2**30
    assert choose_place(gib, "auto", 2, on_gpu=True) == "device"
    assert choose_place(3 * gib, "auto", 2, on_gpu=True) == "host"
    assert choose_place(3 * gib, "auto", 2, on_gpu=False) == "device"  # CPU: the device is host memory
    assert choose_place(gib, "host", 2, on_gpu=True) == "host"
    with pytest.raises(KitError, match=r"needs 3.00 GiB but evaluate.cache_device_gb is 2"):
        choose_place(3 * gib, "device", 2, on_gpu=True)
    with pytest.raises(KitError, match="unknown cache place 'disk'"):
        choose_place(gib, "disk", 2, on_gpu=True)


def test_official_layout_checkpoint_loads_and_scores_like_the_plain_model(tmp_path, eval_set):
    """--official: a largest-subnet checkpoint in the standalone layout, here under a small spec."""
    from evaluate.settings import EvalSettings
    from infra.config import resolve

    paddle.seed(3)
    static = StaticResNet(ResNet48Supernet.max_arch(), SMALL)
    rng = np.random.default_rng(4)
    for layer in static.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._mean.set_value(rng.normal(0, 0.3, layer._mean.shape[0]).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, layer._mean.shape[0]).astype("float32"))
    static.eval()
    path = tmp_path / "resnet48.pdparams"
    paddle.save(static.state_dict(), str(path))
    cfg = resolve(os.path.join(ROOT, "configs", "demo.yaml"))
    cfg["model"]["stem"] = SMALL.stem
    cfg["evaluate"]["official"] = str(path)
    net = EvalSettings.from_config(cfg).source().load(net_spec(cfg))
    assert not net.training
    result = SubnetEvaluator(net, eval_set, 8, "none").evaluate(ResNet48Supernet.max_arch())
    top1, top5, loss = evaluate_model(static, eval_set, 24)
    assert abs(loss - result["loss"]) < 1e-5 and (top1, top5) == (result["top1"], result["top5"])


def test_official_checkpoint_of_another_size_is_refused(tmp_path):
    from evaluate.settings import EvalSettings
    from infra.config import resolve

    path = tmp_path / "wrong.pdparams"
    paddle.save({"blocks.0.conv.weight": paddle.zeros([3, 3])}, str(path))
    cfg = resolve(os.path.join(ROOT, "configs", "demo.yaml"))
    cfg["evaluate"]["official"] = str(path)
    with pytest.raises(KitError, match="official ResNet48 checkpoint does not match the model"):
        EvalSettings.from_config(cfg).source().load(net_spec(cfg))


def test_official_weights_are_reordered_unless_switched_off(tmp_path):
    from evaluate.settings import EvalSettings
    from infra.config import resolve
    from supernet.pretrained import reorder_channels

    paddle.seed(5)
    static = StaticResNet(ResNet48Supernet.max_arch(), SMALL)
    path = tmp_path / "resnet48.pdparams"
    paddle.save(static.state_dict(), str(path))
    cfg = resolve(os.path.join(ROOT, "configs", "demo.yaml"))
    cfg["model"]["stem"] = SMALL.stem
    cfg["evaluate"]["official"] = str(path)
    expected = reorder_channels(static.state_dict())
    assert not np.array_equal(expected["blocks.9.conv1.weight"], static.state_dict()["blocks.9.conv1.weight"].numpy())
    for reorder, want in ((True, expected), (False, {k: v.numpy() for k, v in static.state_dict().items()})):
        cfg["evaluate"]["reorder"] = reorder
        got = EvalSettings.from_config(cfg).source().load(net_spec(cfg)).state_dict()
        for k in ("blocks.9.conv1.weight", "blocks.9.bn1._variance", "blocks.9.conv2.weight"):
            np.testing.assert_array_equal(got[k].numpy(), want[k], err_msg=k)
