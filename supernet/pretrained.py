"""Loading the challenge's official `resnet48.pdparams` into the supernet or a plain model.

The official checkpoint is the largest subnet saved with the standalone layout: keys
`blocks.0.conv/bn` (stem), `blocks.1..23.conv1/bn1/conv2/bn2` (stages of 5/5/8/5 blocks),
`blocks.{6,11,19}.downsample.{0,1}` (first block of stages 2-4) and `blocks.24.fc`
(weight [512, 1000]). The supernet and a max-arch StaticResNet use the same names, so
loading is a full check of names and shapes followed by a copy.

Reordering (on by default, as the official demo's `resnet48(pretrained, reorder=True)` and the
teams that used it): per BasicBlock, importance = sum |conv2.weight| over axes (0, 2, 3), one
value per conv1 output channel; its descending order permutes conv1's output channels, bn1's
weight, bias, mean and variance, and conv2's input channels. The full network computes the same
function; a narrower conv1 (first-k slicing) then keeps the most important channels.

    python -m supernet.pretrained reorder resnet48.pdparams resnet48_reordered.pdparams
"""

import argparse
import os
import re
import sys

import numpy as np
import paddle

from encoding import KitError, NetSpec

from .model import ResNet48Supernet
from .static import StaticResNet


def official_keys(spec: NetSpec = None):
    """{key: shape} the official checkpoint must hold for a model under `spec` (default full size)."""
    return {k: tuple(v.shape) for k, v in StaticResNet(ResNet48Supernet.max_arch(), spec).state_dict().items()}


def _as_state(state_dict_or_path):
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        path = os.fspath(state_dict_or_path)
        if not os.path.isfile(path):
            raise KitError(f"checkpoint {path} does not exist")
        try:
            state = paddle.load(path)
        except Exception as e:  # paddle raises assorted types for non-checkpoint files
            raise KitError(f"checkpoint {path} could not be read by paddle.load: {e}") from None
    else:
        state = state_dict_or_path
    if not isinstance(state, dict):
        raise KitError(f"checkpoint must be a dict of tensors, got {type(state).__name__}")
    return state


def _shape(value):
    return tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))


def check_official_state(expected, state, what="official ResNet48 checkpoint"):
    """Raise one KitError listing every missing key, unexpected key and wrong shape."""
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(f"{k}: checkpoint {list(_shape(state[k]))}, model {list(expected[k])}"
                   for k in expected if k in state and _shape(state[k]) != tuple(expected[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): {'; '.join(wrong)}")
        raise KitError(f"{what} does not match the model: " + " | ".join(parts))


def _copy_in(model, state):
    targets = model.state_dict()
    with paddle.no_grad():
        for key, target in targets.items():
            value = state[key]
            if not isinstance(value, paddle.Tensor):
                value = paddle.to_tensor(np.asarray(value))
            target.set_value(value.astype(target.dtype))


_BLOCK = re.compile(r"^(blocks\.\d+)\.conv2\.weight$")


def _numpy(value):
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def channel_order(conv2_weight):
    """conv1's output channels by importance, most important first: argsort of sum |conv2.weight|
    over axes (0, 2, 3), descending. Computed with the official kit's own Paddle ops, so channels
    whose float32 sums tie or nearly tie come out in the same order as there."""
    w = conv2_weight if isinstance(conv2_weight, paddle.Tensor) else paddle.to_tensor(np.asarray(conv2_weight))
    return paddle.argsort(paddle.sum(paddle.abs(w), axis=[0, 2, 3]), axis=0, descending=True).numpy()


def reorder_channels(state):
    """A new state dict (numpy arrays, same keys and shapes) with every BasicBlock's inner channels
    sorted by importance (see the module docstring); other tensors unchanged. `state` may hold
    numpy arrays or Paddle tensors, under the official names (a supernet's state dict has them too)."""
    out = {k: _numpy(v) for k, v in state.items()}
    blocks = sorted(m.group(1) for k in out if (m := _BLOCK.match(k)))
    if not blocks:
        raise KitError("no BasicBlock found to reorder: expected keys like blocks.1.conv2.weight")
    for b in blocks:
        keys = [f"{b}.conv1.weight"] + [f"{b}.bn1.{n}" for n in ("weight", "bias", "_mean", "_variance")]
        missing = [k for k in keys if k not in out]
        if missing:
            raise KitError(f"cannot reorder {b}: missing {', '.join(missing)}")
        idx = channel_order(out[f"{b}.conv2.weight"])
        out[f"{b}.conv2.weight"] = out[f"{b}.conv2.weight"][:, idx]
        for k in keys:
            out[k] = out[k][idx]
    return out


def load_official_resnet48(supernet: ResNet48Supernet, state_dict_or_path, reorder=True):
    """Copy the official checkpoint (dict or .pdparams path) into `supernet`, all keys checked first,
    with each block's channels reordered by importance unless `reorder` is false.

    The supernet must be full size (its max widths must equal the checkpoint's shapes).
    """
    state = _as_state(state_dict_or_path)
    expected = {k: tuple(v.shape) for k, v in supernet.state_dict().items()}
    check_official_state(expected, state)
    _copy_in(supernet, reorder_channels(state) if reorder else state)
    return supernet


def load_official_static(state_dict_or_path, spec: NetSpec = None, reorder=True) -> StaticResNet:
    """A max-arch StaticResNet holding the official checkpoint (e.g. as an external teacher),
    reordered like `load_official_resnet48` (the full network's function does not change)."""
    state = _as_state(state_dict_or_path)
    model = StaticResNet(ResNet48Supernet.max_arch(), spec)
    check_official_state({k: tuple(v.shape) for k, v in model.state_dict().items()}, state)
    _copy_in(model, reorder_channels(state) if reorder else state)
    return model


def write_reordered(src, dst):
    """`python -m supernet.pretrained reorder SRC DST`: SRC's tensors with the channels reordered,
    under the same names and shapes, written atomically to DST."""
    from infra.atomic import atomic_replace

    state = _as_state(src)
    reordered = reorder_channels(state)
    atomic_replace(dst, lambda tmp: paddle.save({k: paddle.to_tensor(v) for k, v in reordered.items()}, tmp))
    return reordered


def main(argv=None):
    from encoding import run_reporting_errors

    parser = argparse.ArgumentParser(prog="python -m supernet.pretrained", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reorder", help="write a checkpoint with every block's channels sorted by importance")
    p.add_argument("src", help="official-layout checkpoint, e.g. resnet48.pdparams")
    p.add_argument("dst", help="where to write the reordered checkpoint (same names and shapes)")
    args = parser.parse_args(argv)

    def run():
        state = write_reordered(args.src, args.dst)
        blocks = len({k.rsplit(".", 2)[0] for k in state if _BLOCK.match(k)})
        print(f"{args.dst}: {len(state)} tensors, channels of {blocks} blocks reordered by importance")
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
