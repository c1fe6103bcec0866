"""The ResNet48 weight-sharing supernet, its plain exported subnets and checkpoint loaders.

Names are resolved lazily (PEP 562) so `import supernet` (e.g. for `supernet.config`) does not
import PaddlePaddle; touching `supernet.ResNet48Supernet` and friends does.
"""

import importlib

_EXPORTS = {
    "StaticResNet": "static",
    "build_static": "static",
    "DynamicConv2D": "ops",
    "DynamicBatchNorm2D": "ops",
    "DynamicLinear": "ops",
    "ResNet48Supernet": "model",
    "load_official_resnet48": "pretrained",
    "load_official_static": "pretrained",
    "check_official_state": "pretrained",
    "official_keys": "pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'supernet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
