"""The ResNet48 weight-sharing supernet, its plain exported subnets and checkpoint loaders.

Names are resolved lazily (PEP 562) so `import supernet` (e.g. for `supernet.settings`) does not
import PaddlePaddle; touching `supernet.ResNet48Supernet` and friends does.
"""

from infra.lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
