"""The convolution every layer of the kit's models calls: Paddle's own, unless an entry point installs
another (on the CPU, `runtime.cpu_speed` installs the oneDNN path of `runtime.onednn_conv`).

Nothing here imports a backend, so a GPU process runs plain Paddle layers and never loads oneDNN.
An installed function takes `(x, weight, stride, padding)` and decides per call whether it handles it
(it falls back to Paddle's kernel itself).
"""

import contextlib

import paddle.nn.functional as F
from paddle import nn

# What `cpu.conv` may name: auto (oneDNN when it loads and checks out), onednn, paddle.
BACKENDS = ("auto", "onednn", "paddle")
_installed = {"conv2d": None, "name": "paddle"}


def install(fn, name):
    """Route `conv2d` through `fn` (None: Paddle's kernel). Returns the name in force."""
    _installed["conv2d"], _installed["name"] = fn, (name if fn is not None else "paddle")
    return _installed["name"]


def installed():
    """The name of the convolution in force: 'paddle' or what `install` was given."""
    return _installed["name"]


@contextlib.contextmanager
def plain():
    """Paddle's own kernel inside the block, whatever is installed: a model traced for deployment
    (`supernet.export`, paddle.jit.save) must hold Paddle's conv op, not an installed path."""
    saved = dict(_installed)
    install(None, None)
    try:
        yield
    finally:
        _installed.update(saved)


def conv2d(x, weight, stride=1, padding=0, data_format="NCHW"):
    """`paddle.nn.functional.conv2d(x, weight, stride=, padding=, data_format=)` without bias, groups or
    dilation; `weight` is OIHW in both layouts. An installed backend sees NCHW calls only."""
    fn = _installed["conv2d"]
    if fn is None or data_format != "NCHW":
        return F.conv2d(x, weight, stride=stride, padding=padding, data_format=data_format)
    return fn(x, weight, stride, padding)


def _plain(layer):
    return (layer._groups == 1 and list(layer._dilation) == [1, 1] and layer._data_format == "NCHW"
            and layer._padding_mode == "zeros"
            and (isinstance(layer._padding, int) or (isinstance(layer._padding, list | tuple)
                                                     and len(layer._padding) == 2)))


class Conv2D(nn.Conv2D):
    """`paddle.nn.Conv2D` (same parameters, same state_dict keys, same forward while nothing is installed)
    whose plain convolutions (groups 1, dilation 1, NCHW, zero padding) go through `conv2d` once a
    backend is installed."""

    def forward(self, x):
        if _installed["conv2d"] is None or not _plain(self):
            return super().forward(x)
        out = conv2d(x, self.weight, stride=self._stride, padding=self._padding)
        if self.bias is not None:
            out = out + self.bias.reshape([1, -1, 1, 1])
        return out
