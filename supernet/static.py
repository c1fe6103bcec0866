"""A plain ResNet48 subnet built from a code: ordinary Paddle layers, no slicing.

This is what a standalone-trained subnet looks like (and what `ResNet48Supernet.export`
returns), so its parameter names follow the official demo model and its pretrained
checkpoint: `blocks.0` stem, `blocks.1..N` the active BasicBlocks in order, `blocks.N+1` head.
"""

import paddle
from paddle import nn

from encoding import Arch, KitError, NetSpec, parse, widths
from encoding.netspec import STEMS
from runtime import conv
from runtime.amp import full_precision, head_input
from runtime.layout import check_format, from_nchw


def resolve_spec(spec):
    """`None` means the challenge's full-size ImageNet net; anything else must be a NetSpec."""
    if spec is None:
        return NetSpec()
    if not isinstance(spec, NetSpec):
        raise KitError(f"spec must be an encoding.NetSpec (see encoding.net_spec), got {type(spec).__name__}")
    return spec


class Stem(nn.Layer):
    def __init__(self, spec: NetSpec, out_channels, data_format="NCHW"):
        super().__init__()
        kernel, stride, padding, pool = STEMS[spec.stem]
        self.conv = conv.Conv2D(spec.in_channels, out_channels, kernel, stride=stride, padding=padding,
                                bias_attr=False, data_format=data_format)
        self.bn = nn.BatchNorm2D(out_channels, data_format=data_format)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2D(3, stride=2, padding=1, data_format=data_format) if pool else None

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        return self.pool(x) if self.pool is not None else x


class BasicBlock(nn.Layer):
    def __init__(self, in_channels, mid_channels, out_channels, stride, data_format="NCHW"):
        super().__init__()
        f = data_format
        self.conv1 = conv.Conv2D(in_channels, mid_channels, 3, stride=stride, padding=1, bias_attr=False,
                                 data_format=f)
        self.bn1 = nn.BatchNorm2D(mid_channels, data_format=f)
        self.conv2 = conv.Conv2D(mid_channels, out_channels, 3, stride=1, padding=1, bias_attr=False,
                                 data_format=f)
        self.bn2 = nn.BatchNorm2D(out_channels, data_format=f)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                conv.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=False, data_format=f),
                nn.BatchNorm2D(out_channels, data_format=f),
            )
        else:
            self.downsample = None

    def forward(self, x):
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Head(nn.Layer):
    def __init__(self, in_channels, num_classes, data_format="NCHW"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1, data_format=data_format)  # flattened to [N, C] in both layouts
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        with full_precision():  # pooling and classifier in float32 under AMP too (runtime.amp.full_precision)
            return self.fc(paddle.flatten(self.pool(head_input(x)), 1))


def zero_last_bn_scales(blocks):
    """Zero bn2's scale in every residual block of `blocks` (stem first, head last): the one
    zero-init rule of the supernet and the standalone model."""
    for block in blocks[1:-1]:
        block.bn2.weight.set_value(paddle.zeros_like(block.bn2.weight))


class StaticResNet(nn.Layer):
    """One subnet as ordinary layers; `arch` and `spec` say which one. `data_format` is the activations'
    layout inside the net (runtime.layout): the input is NCHW either way, the state_dict the same."""

    def __init__(self, arch, spec: NetSpec = None, data_format="NCHW"):
        super().__init__()
        self.arch = arch if isinstance(arch, Arch) else parse(arch)
        self.spec = spec = resolve_spec(spec)
        self.data_format = f = check_format(data_format)
        w = widths(self.arch, spec)
        layers = [Stem(spec, w.stem, f)]
        cur = w.stem
        for s, stage in enumerate(w.stages):
            for b, (c1, c2) in enumerate(stage):
                stride = spec.stage_strides[s] if b == 0 else 1
                layers.append(BasicBlock(cur, c1, c2, stride, f))
                cur = c2
        layers.append(Head(cur, spec.num_classes, f))
        self.blocks = nn.LayerList(layers)

    def forward(self, x):
        x = from_nchw(x, self.data_format)
        for block in self.blocks:
            x = block(x)
        return x

    def zero_init_residual(self):
        """Every block starts as its shortcut, so a deep code trains from the start as fast as a
        shallow one (Goyal et al. 2017): the supernet's rule, for standalone training."""
        zero_last_bn_scales(self.blocks)


def build_static(arch, spec: NetSpec = None, data_format="NCHW") -> StaticResNet:
    """A freshly initialised standalone model of `arch` (code string or Arch) under `spec`."""
    return StaticResNet(arch, spec, data_format)
