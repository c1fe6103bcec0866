"""Parameter and multiply-accumulate counts computed from codes alone, vectorised over lists.

Counting convention (that of a Paddle model built from the code):
  params: conv weights (no bias), BN weight + bias (running statistics are buffers, not
          counted), FC weight + bias; a downsample 1x1 conv + BN where stride != 1 or the
          block's input width differs from its output width.
  MACs:   convolutions and the FC layer; BN, ReLU, pooling and residual adds are not counted.
"""

import numpy as np

from .arch import MAX_DEPTHS, SIZE_CODES, block_positions, digit_matrix
from .netspec import STEMS, NetSpec


def _conv_out(h, kernel, stride, padding):
    return (h + 2 * padding - kernel) // stride + 1


def spatial_sizes(spec: NetSpec, resolution):
    """Feature-map side after the stem and after each stage."""
    kernel, stride, padding, pool = STEMS[spec.stem]
    h = _conv_out(resolution, kernel, stride, padding)
    stem_out = h
    if pool:
        h = _conv_out(h, 3, 2, 1)
    stages = []
    for s in spec.stage_strides:
        h = _conv_out(h, 3, s, 1)
        stages.append(h)
    return stem_out, stages


def costs(archs, spec: NetSpec = NetSpec(), resolution=None):
    """(params, macs) as int64 arrays, one entry per arch (codes or Arch values).

    `resolution` overrides the size code's resolution (e.g. 28 for Fashion-MNIST).
    """
    digits = digit_matrix(archs)
    n = len(digits)
    params = np.zeros(n, dtype=np.int64)
    macs = np.zeros(n, dtype=np.int64)
    if n == 0:
        return params, macs
    if resolution is None:
        res = np.array([SIZE_CODES[chr(ord("0") + int(c))] for c in digits[:, 0]])
    else:
        res = np.full(n, int(resolution))
    for r in np.unique(res):
        rows = res == r
        p, m = _costs_at(digits[rows], spec, int(r))
        params[rows], macs[rows] = p, m
    return params, macs


def _costs_at(digits, spec, resolution):
    kernel, _, _, _ = STEMS[spec.stem]
    stem_hw, stage_hw = spatial_sizes(spec, resolution)
    stem_table = np.array(spec.width_table(spec.stem_width))
    stem = stem_table[digits[:, 5]]
    params = kernel * kernel * spec.in_channels * stem + 2 * stem
    macs = kernel * kernel * spec.in_channels * stem * stem_hw * stem_hw
    cur = stem
    for s, max_depth in enumerate(MAX_DEPTHS):
        table = np.array(spec.width_table(spec.stage_widths[s]))
        area = stage_hw[s] * stage_hw[s]
        for b in range(max_depth):
            p1, p2 = block_positions(s, b)
            c1, c2 = table[digits[:, p1]], table[digits[:, p2]]
            active = c1 > 0
            block_params = 9 * cur * c1 + 2 * c1 + 9 * c1 * c2 + 2 * c2
            block_macs = (9 * cur * c1 + 9 * c1 * c2) * area
            if b == 0:
                downsample = active & ((spec.stage_strides[s] != 1) | (cur != c2))
                block_params = block_params + np.where(downsample, cur * c2 + 2 * c2, 0)
                block_macs = block_macs + np.where(downsample, cur * c2 * area, 0)
            params = params + np.where(active, block_params, 0)
            macs = macs + np.where(active, block_macs, 0)
            cur = np.where(active, c2, cur)
    params = params + cur * spec.num_classes + spec.num_classes
    macs = macs + cur * spec.num_classes
    return params, macs


def params_of(arch, spec: NetSpec = NetSpec()) -> int:
    return int(costs([arch], spec)[0][0])


def macs_of(arch, spec: NetSpec = NetSpec(), resolution=None) -> int:
    return int(costs([arch], spec, resolution)[1][0])
