"""The ResNet48 weight-sharing supernet: every subnet of the 52-character code space in one net.

Layout mirrors the standalone model (`static.StaticResNet`) at its largest: `blocks.0` stem,
`blocks.1..23` the 5/5/8/5 BasicBlock slots, `blocks.24` head, so the official pretrained
checkpoint's keys name supernet parameters directly. Residual-tied widths hold by
construction: each stage has one output width (conv2 and downsample), chosen by the stage's
conv2 digit, and stage 1's equals the stem's.
"""

import paddle
from paddle import nn

from encoding import MAX_DEPTHS, Arch, KitError, NetSpec, parse, widths
from encoding.netspec import STEMS
from encoding.space import check_ties
from runtime.amp import full_precision, head_input
from runtime.layout import check_format, from_nchw

from .ops import DynamicBatchNorm2D, DynamicConv2D, DynamicLinear
from .static import StaticResNet, resolve_spec, zero_last_bn_scales

NUM_SLOTS = sum(MAX_DEPTHS)


def slot_index(stage, block):
    """Index in `blocks` of block `block` (0-based) of stage `stage` (0-based); the stem is 0."""
    return 1 + sum(MAX_DEPTHS[:stage]) + block


class DynamicStem(nn.Layer):
    def __init__(self, spec: NetSpec, data_format="NCHW"):
        super().__init__()
        kernel, stride, padding, pool = STEMS[spec.stem]
        self.conv = DynamicConv2D(spec.in_channels, spec.max_stem(), kernel, stride=stride, padding=padding,
                                  data_format=data_format)
        self.bn = DynamicBatchNorm2D(spec.max_stem(), data_format=data_format)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2D(3, stride=2, padding=1, data_format=data_format) if pool else None

    def forward(self, x, out_channels):
        x = self.relu(self.bn(self.conv(x, out_channels)))
        return self.pool(x) if self.pool is not None else x


class DynamicBasicBlock(nn.Layer):
    """A BasicBlock slot at its largest; `with_downsample` only for slots that may need one."""

    def __init__(self, in_max, mid_max, out_max, stride, with_downsample, data_format="NCHW"):
        super().__init__()
        self.stride = stride
        f = data_format
        self.conv1 = DynamicConv2D(in_max, mid_max, 3, stride=stride, padding=1, data_format=f)
        self.bn1 = DynamicBatchNorm2D(mid_max, data_format=f)
        self.conv2 = DynamicConv2D(mid_max, out_max, 3, stride=1, padding=1, data_format=f)
        self.bn2 = DynamicBatchNorm2D(out_max, data_format=f)
        self.relu = nn.ReLU()
        if with_downsample:
            self.downsample = nn.Sequential(DynamicConv2D(in_max, out_max, 1, stride=stride, data_format=f),
                                            DynamicBatchNorm2D(out_max, data_format=f))
        else:
            self.downsample = None

    def forward(self, x, mid_channels, out_channels, use_downsample):
        if use_downsample:
            identity = self.downsample[1](self.downsample[0](x, out_channels))
        else:
            identity = x
        out = self.relu(self.bn1(self.conv1(x, mid_channels)))
        out = self.bn2(self.conv2(out, out_channels))
        return self.relu(out + identity)


class DynamicHead(nn.Layer):
    def __init__(self, in_max, num_classes, data_format="NCHW"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1, data_format=data_format)  # [N, C, 1, 1] or [N, 1, 1, C]: flat [N, C]
        self.fc = DynamicLinear(in_max, num_classes)

    def forward(self, x):
        with full_precision():  # pooling and classifier in float32 under AMP too (runtime.amp.full_precision)
            return self.fc(paddle.flatten(self.pool(head_input(x)), 1))


class ResNet48Supernet(nn.Layer):
    """All subnets of the ResNet48 space under one NetSpec; `set_active` picks the one `forward` runs.

    Sampling policy is not here (see the samplers): the model only runs what it is told. `data_format`
    is the activations' layout inside the net (runtime.layout): the input is NCHW either way, and the
    parameters and state_dict do not depend on it.
    """

    def __init__(self, spec: NetSpec = None, data_format="NCHW"):
        super().__init__()
        self.spec = spec = resolve_spec(spec)
        self.data_format = f = check_format(data_format)
        layers = [DynamicStem(spec, f)]
        in_max = spec.max_stem()
        for s, depth in enumerate(MAX_DEPTHS):
            out_max = spec.max_stage(s)
            for b in range(depth):
                stride = spec.stage_strides[s] if b == 0 else 1
                with_ds = b == 0 and self._may_need_downsample(s)
                layers.append(DynamicBasicBlock(in_max, out_max, out_max, stride, with_ds, f))
                in_max = out_max
        layers.append(DynamicHead(in_max, spec.num_classes, f))
        self.blocks = nn.LayerList(layers)
        self._arch = None
        self._plan = None
        self.set_active(self.max_arch())

    def _may_need_downsample(self, stage):
        """Whether some tied code gives the stage's first block a stride or a width change."""
        spec = self.spec
        if spec.stage_strides[stage] != 1:
            return True
        if stage == 0:  # input = stem width at the stem digit, output = stage width at the same digit
            return spec.width_table(spec.stem_width) != spec.width_table(spec.stage_widths[0])
        return True  # previous stage's width is chosen independently of this one's

    def zero_init_residual(self):
        """Zero the scale of each block's last BN, so every block starts as its shortcut.

        Then all depths and widths compute nearly the same function at initialisation (the
        deepest path's logits are no larger than the shallowest's), which keeps in-place
        distillation from pulling the shared weights apart in the first steps (Goyal et al.
        2017; BigNAS). Only for training from scratch: it overwrites the weights.
        """
        zero_last_bn_scales(self.blocks)

    # --- which subnet ---------------------------------------------------------------
    @staticmethod
    def max_arch() -> Arch:
        """The largest subnet: all slots active, ratio 1.0 everywhere."""
        return Arch(size_code="1", stem=1, blocks=tuple(((1, 1),) * d for d in MAX_DEPTHS))

    @property
    def active_arch(self) -> Arch:
        return self._arch

    def set_active(self, arch):
        """Make `arch` (code string or Arch) the subnet `forward` runs; nothing is allocated."""
        code_arg = arch
        arch = parse(arch)
        check_ties(arch, code_arg)
        w = widths(arch, self.spec)
        plan, cur = [], w.stem
        for s, stage in enumerate(w.stages):
            for b, (c1, c2) in enumerate(stage):
                block = self.blocks[slot_index(s, b)]
                use_ds = block.stride != 1 or cur != c2
                if use_ds and block.downsample is None:  # unreachable for tied codes; guards the layout
                    raise KitError(f"stage {s + 1} block {b + 1} needs a downsample the supernet does not have")
                plan.append((slot_index(s, b), c1, c2, use_ds))
                cur = c2
        self._arch = arch
        self._plan = (w.stem, tuple(plan))
        return arch

    # --- running --------------------------------------------------------------------
    def forward(self, x):
        stem_channels, plan = self._plan
        x = self.blocks[0](from_nchw(x, self.data_format), stem_channels)
        for index, mid, out, use_ds in plan:
            x = self.blocks[index](x, mid, out, use_ds)
        return self.blocks[NUM_SLOTS + 1](x)

    def dynamic_bn_layers(self, active_only=False):
        """The supernet's DynamicBatchNorm2D layers (all of them, or those the active subnet uses)."""
        if not active_only:
            return [m for m in self.sublayers() if isinstance(m, DynamicBatchNorm2D)]
        out = [self.blocks[0].bn]
        for index, _, _, use_ds in self._plan[1]:
            block = self.blocks[index]
            out += [block.bn1, block.bn2] + ([block.downsample[1]] if use_ds else [])
        return out

    # --- export ---------------------------------------------------------------------
    def export(self, arch=None) -> StaticResNet:
        """A plain StaticResNet of `arch` (default: the active one) holding copies of its weight
        slices and BN statistics, in NCHW whatever the supernet's layout (what deployment and the
        evaluators take). The supernet's active subnet is left unchanged."""
        arch = self._arch if arch is None else parse(arch)
        check_ties(arch, arch)
        static = StaticResNet(arch, self.spec)
        if not self.training:
            static.eval()
        source = self.state_dict()
        slot_of = [0] + [slot_index(s, b) for s, d in enumerate(arch.depths) for b in range(d)] + [NUM_SLOTS + 1]
        with paddle.no_grad():
            for name, target in static.state_dict().items():
                _, index, rest = name.split(".", 2)
                full = source[f"blocks.{slot_of[int(index)]}.{rest}"]
                piece = full[tuple(slice(0, n) for n in target.shape)]
                if piece.shape != target.shape:
                    raise KitError(f"export: {name} needs shape {target.shape}, supernet has {full.shape}")
                target.set_value(piece)
        return static
