"""Dynamic layers against plain Paddle layers fed the same sliced tensors."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from encoding import KitError
from supernet import DynamicBatchNorm2D, DynamicConv2D, DynamicLinear


@pytest.fixture(params=[True, False], ids=["stride-kernels", "copying-slices"])
def slice_mode(request):
    """Run under both Paddle slicing behaviours: leading slices as views, or as copies."""
    old = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
    paddle.set_flags({"FLAGS_use_stride_kernel": request.param})
    yield request.param
    paddle.set_flags({"FLAGS_use_stride_kernel": old})


def test_conv_uses_leading_slice(slice_mode):
    paddle.seed(0)
    conv = DynamicConv2D(8, 16, 3, stride=2, padding=1)
    x = paddle.randn([2, 5, 9, 9])
    ref = paddle.nn.Conv2D(5, 6, 3, stride=2, padding=1, bias_attr=False)
    ref.weight.set_value(conv.weight.numpy()[:6, :5])
    np.testing.assert_allclose(conv(x, 6).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-6)
    full = paddle.randn([2, 8, 9, 9])
    ref_full = F.conv2d(full, paddle.to_tensor(conv.weight.numpy()), stride=2, padding=1)
    np.testing.assert_allclose(conv(full).numpy(), ref_full.numpy(), rtol=1e-5, atol=1e-6)


def test_linear_uses_leading_rows():
    paddle.seed(0)
    fc = DynamicLinear(12, 4)
    fc.bias.set_value(np.arange(4, dtype="float32"))
    x = paddle.randn([3, 7])
    expected = x.numpy() @ fc.weight.numpy()[:7] + np.arange(4)
    np.testing.assert_allclose(fc(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_bn_training_matches_plain_bn_and_moves_only_its_slice(slice_mode):
    paddle.seed(0)
    bn = DynamicBatchNorm2D(8, momentum=0.7)
    init_mean = np.linspace(-1, 1, 8).astype("float32")
    init_var = np.linspace(0.5, 2, 8).astype("float32")
    bn._mean.set_value(init_mean)
    bn._variance.set_value(init_var)
    bn.weight.set_value(np.linspace(0.5, 1.5, 8).astype("float32"))
    bn.bias.set_value(np.linspace(-0.2, 0.2, 8).astype("float32"))
    ref = paddle.nn.BatchNorm2D(5, momentum=0.7)
    for name in ("weight", "bias"):
        getattr(ref, name).set_value(getattr(bn, name).numpy()[:5])
    ref._mean.set_value(init_mean[:5])
    ref._variance.set_value(init_var[:5])
    for _ in range(3):
        x = paddle.randn([4, 5, 6, 6]) * 2 + 1
        np.testing.assert_allclose(bn(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn._mean.numpy()[:5], ref._mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bn._variance.numpy()[:5], ref._variance.numpy(), rtol=1e-6)
    assert not np.allclose(bn._mean.numpy()[:5], init_mean[:5])
    np.testing.assert_array_equal(bn._mean.numpy()[5:], init_mean[5:])
    np.testing.assert_array_equal(bn._variance.numpy()[5:], init_var[5:])


def test_bn_momentum_per_batch_gives_cumulative_average(slice_mode):
    """Recalibration sets momentum = n/(n+1) before batch n: the result is the plain average
    of the batch means and of the (biased) batch variances, Paddle's convention."""
    bn = DynamicBatchNorm2D(6)
    means, variances = [], []
    for n in range(4):
        x = paddle.randn([3, 4, 5, 5]) * (n + 1) + n
        bn.momentum = n / (n + 1)
        bn(x)
        means.append(x.numpy().mean(axis=(0, 2, 3)))
        variances.append(x.numpy().var(axis=(0, 2, 3)))
    np.testing.assert_allclose(bn._mean.numpy()[:4], np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn._variance.numpy()[:4], np.mean(variances, axis=0), rtol=1e-4)
    np.testing.assert_array_equal(bn._mean.numpy()[4:], 0.0)
    np.testing.assert_array_equal(bn._variance.numpy()[4:], 1.0)


def test_bn_eval_uses_and_keeps_running_stats():
    bn = DynamicBatchNorm2D(6, epsilon=1e-3)
    bn._mean.set_value(np.arange(6, dtype="float32"))
    bn._variance.set_value(np.arange(1, 7, dtype="float32"))
    bn.eval()
    x = paddle.randn([2, 3, 4, 4])
    expected = (x.numpy() - np.arange(3).reshape(1, 3, 1, 1)) / np.sqrt(np.arange(1, 4).reshape(1, 3, 1, 1) + 1e-3)
    np.testing.assert_allclose(bn(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn._mean.numpy(), np.arange(6))


def test_too_many_channels_is_a_clear_error():
    with pytest.raises(KitError, match="DynamicConv2D output: asked for 9 channels but the layer holds at most 8"):
        DynamicConv2D(4, 8, 3)(paddle.randn([1, 4, 5, 5]), 9)
    with pytest.raises(KitError, match="DynamicConv2D input: asked for 5 channels but the layer holds at most 4"):
        DynamicConv2D(4, 8, 3)(paddle.randn([1, 5, 5, 5]), 8)
    with pytest.raises(KitError, match="DynamicBatchNorm2D: asked for 7 channels but the layer holds at most 6"):
        DynamicBatchNorm2D(6)(paddle.randn([1, 7, 2, 2]))
    with pytest.raises(KitError, match="DynamicLinear input: asked for 13 channels but the layer holds at most 12"):
        DynamicLinear(12, 3)(paddle.randn([1, 13]))
