"""Layers that hold the largest weight of their kind and run on its leading slice.

Every subnet of the supernet uses the first `c` output channels / input channels of each
max-size tensor, so all subnets share one set of parameters and switching subnets never
allocates anything. When the requested size is the full size the tensor is used as is
(no slice, no copy), so the largest subnet costs what a plain model costs.
"""

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from encoding import KitError
from runtime import conv
from runtime.layout import channel_axis, check_format


def _prefix(tensor, sizes):
    """The leading block of `tensor` with the given sizes (the tensor itself when full)."""
    if tuple(sizes) == tuple(tensor.shape[: len(sizes)]):
        return tensor
    return tensor[tuple(slice(0, n) for n in sizes)]


def _check(name, requested, maximum):
    if not 0 < requested <= maximum:
        raise KitError(f"{name}: asked for {requested} channels but the layer holds at most {maximum}")


class DynamicConv2D(nn.Layer):
    """A bias-free conv holding a [out_max, in_max, k, k] weight; runs on weight[:out, :in]. The weight is
    OIHW whatever `data_format` the activations have (runtime.layout)."""

    def __init__(self, in_max, out_max, kernel_size, stride=1, padding=0, data_format="NCHW"):
        super().__init__()
        self.in_max, self.out_max = in_max, out_max
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.data_format = check_format(data_format)
        # Paddle's own Conv2D default: normal with std sqrt(2 / fan_in).
        std = math.sqrt(2.0 / (in_max * kernel_size * kernel_size))
        self.weight = self.create_parameter(
            [out_max, in_max, kernel_size, kernel_size],
            default_initializer=nn.initializer.Normal(0.0, std))

    def forward(self, x, out_channels=None):
        out_channels = self.out_max if out_channels is None else out_channels
        in_channels = x.shape[channel_axis(self.data_format)]
        _check("DynamicConv2D output", out_channels, self.out_max)
        _check("DynamicConv2D input", in_channels, self.in_max)
        weight = _prefix(self.weight, (out_channels, in_channels))
        return conv.conv2d(x, weight, stride=self.stride, padding=self.padding, data_format=self.data_format)

    def extra_repr(self):
        return (f"in_max={self.in_max}, out_max={self.out_max}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, data_format={self.data_format}")


class DynamicBatchNorm2D(nn.Layer):
    """BatchNorm over the leading channels of a max-size set of affine params and statistics.

    Running statistics follow Paddle's convention, running = momentum * running +
    (1 - momentum) * batch, and only the active slice moves. `momentum` and `epsilon` are
    plain attributes read at every forward, so BN recalibration can change `momentum` per
    batch to accumulate an exact cumulative average.
    """

    def __init__(self, num_features, momentum=0.9, epsilon=1e-5, data_format="NCHW"):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.data_format = check_format(data_format)
        self.weight = self.create_parameter([num_features], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([num_features], is_bias=True,
                                          default_initializer=nn.initializer.Constant(0.0))
        self.register_buffer("_mean", paddle.zeros([num_features], dtype="float32"))
        self.register_buffer("_variance", paddle.ones([num_features], dtype="float32"))

    def forward(self, x):
        c = x.shape[channel_axis(self.data_format)]
        _check("DynamicBatchNorm2D", c, self.num_features)
        if c == self.num_features:
            return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias, training=self.training,
                                momentum=self.momentum, epsilon=self.epsilon, data_format=self.data_format)
        mean, variance = self._mean[:c], self._variance[:c]
        out = F.batch_norm(x, mean, variance, self.weight[:c], self.bias[:c], training=self.training,
                           momentum=self.momentum, epsilon=self.epsilon, data_format=self.data_format)
        if self.training:
            # batch_norm updated `mean`/`variance` in place. With Paddle's stride kernels a
            # leading slice is a view of the buffer and that is already the update; otherwise
            # the slice is a copy and has to be written back (the tail stays untouched).
            with paddle.no_grad():
                if mean.data_ptr() != self._mean.data_ptr():
                    self._mean[:c] = mean
                if variance.data_ptr() != self._variance.data_ptr():
                    self._variance[:c] = variance
        return out

    def extra_repr(self):
        return f"num_features={self.num_features}, momentum={self.momentum}, epsilon={self.epsilon}"


class DynamicLinear(nn.Layer):
    """A Linear holding a [in_max, out] weight (Paddle layout); runs on its first `in` rows."""

    def __init__(self, in_max, out_features):
        super().__init__()
        self.in_max, self.out_features = in_max, out_features
        # Paddle's own Linear default: Xavier-uniform weight, zero bias.
        self.weight = self.create_parameter([in_max, out_features],
                                            default_initializer=nn.initializer.XavierUniform())
        self.bias = self.create_parameter([out_features], is_bias=True,
                                          default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x):
        in_features = x.shape[-1]
        _check("DynamicLinear input", in_features, self.in_max)
        return F.linear(x, _prefix(self.weight, (in_features,)), self.bias)

    def extra_repr(self):
        return f"in_max={self.in_max}, out_features={self.out_features}"
