"""Loading the challenge's official `resnet48.pdparams` into the supernet or a plain model.

The official checkpoint is the largest subnet saved with the standalone layout: keys
`blocks.0.conv/bn` (stem), `blocks.1..23.conv1/bn1/conv2/bn2` (stages of 5/5/8/5 blocks),
`blocks.{6,11,19}.downsample.{0,1}` (first block of stages 2-4) and `blocks.24.fc`
(weight [512, 1000]). The supernet and a max-arch StaticResNet use the same names, so
loading is a full check of names and shapes followed by a copy.
"""

import os

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


def load_official_resnet48(supernet: ResNet48Supernet, state_dict_or_path):
    """Copy the official checkpoint (dict or .pdparams path) into `supernet`, all keys checked first.

    The supernet must be full size (its max widths must equal the checkpoint's shapes).
    """
    state = _as_state(state_dict_or_path)
    expected = {k: tuple(v.shape) for k, v in supernet.state_dict().items()}
    check_official_state(expected, state)
    _copy_in(supernet, state)
    return supernet


def load_official_static(state_dict_or_path, spec: NetSpec = None) -> StaticResNet:
    """A max-arch StaticResNet holding the official checkpoint (e.g. as an external teacher)."""
    state = _as_state(state_dict_or_path)
    model = StaticResNet(ResNet48Supernet.max_arch(), spec)
    check_official_state({k: tuple(v.shape) for k, v in model.state_dict().items()}, state)
    _copy_in(model, state)
    return model
