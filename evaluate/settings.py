"""The `evaluate:` section read once: a frozen settings object, checked when it is built, that the
evaluation code takes instead of the raw config (the `model:` section becomes a NetSpec the same way).

    settings = EvalSettings.from_config(cfg)      # refuses bad values before anything is loaded
    settings.calibration.mode, settings.batch_size, settings.images(), settings.weights
"""

import copy
import json
from dataclasses import dataclass

from encoding import KitError
from imagedata.settings import worker_count
from infra.config import get
from runtime.amp import AMP_DTYPES
from supernet.calibration import Calibration, apply_protocol
from supernet.weights import ONE_SOURCE, WEIGHT_FLAGS, weights_source

from .image_cache import CACHE_DTYPES, CACHE_PLACES

# Data keys that say where the files are or how fast they load, not what the images are.
DATA_LOCATION_KEYS = ("image_dir", "fashion_mnist_dir", "layout", "num_workers")
def _int(cfg, key, minimum=1, optional=False):
    value = get(cfg, key, None)
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KitError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(cfg, key, allowed):
    value = get(cfg, key, None)
    if value not in allowed:
        raise KitError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def data_settings(cfg):
    """The data section minus file locations and loader speed: what the images are (`jpeg_draft` only when
    on, so manifests written before the key existed, all of full decodes, still match)."""
    data = get(cfg, "data", None) or {}
    return {k: v for k, v in sorted(data.items())
            if k not in DATA_LOCATION_KEYS and not (k == "jpeg_draft" and v is False)}


@dataclass(frozen=True)
class EvalSettings:
    """The `evaluate:` section (and what the images are, from `data:`), checked and frozen."""
    split: str
    subset: int | None
    subset_seed: int | None
    batch_size: int
    amp: str | None
    cache: str
    cache_device_gb: float | None
    cache_dtype: str
    progress: bool
    ledger_chunk: int
    reorder: bool
    calibration: Calibration
    data: str            # data_settings(cfg) as sorted JSON (frozen)
    num_workers: int
    out: str | None
    given_weights: tuple | None  # (kind, path) of --checkpoint / --official / --fewshot; None: none given

    @classmethod
    def from_config(cls, cfg):
        """Read and check the section (the keys left null filled from `evaluate.protocol`'s preset);
        bad values are refused before anything is loaded or written."""
        cfg = apply_protocol(copy.deepcopy(cfg))
        amp = get(cfg, "evaluate.amp", None)
        if str(amp).lower() not in AMP_DTYPES and amp not in (None, False):
            raise KitError(f"evaluate.amp must be one of none, bf16, fp16, got {amp!r}")
        calibration = Calibration.from_config(cfg)
        return cls(
            split=_choice(cfg, "evaluate.split", ("train", "val")),
            subset=_int(cfg, "evaluate.subset", 0, optional=True),
            subset_seed=get(cfg, "evaluate.subset_seed", None),
            batch_size=_int(cfg, "evaluate.batch_size"),
            amp=amp,
            cache=_choice(cfg, "evaluate.cache", CACHE_PLACES),
            cache_device_gb=get(cfg, "evaluate.cache_device_gb", None),
            cache_dtype=_choice(cfg, "evaluate.cache_dtype", CACHE_DTYPES),
            progress=bool(get(cfg, "evaluate.progress", True)),
            ledger_chunk=max(1, int(get(cfg, "evaluate.ledger_chunk", 100) or 100)),
            reorder=bool(get(cfg, "evaluate.reorder", True)),
            calibration=calibration,
            data=json.dumps(data_settings(cfg), sort_keys=True),
            num_workers=worker_count(get(cfg, "data.num_workers")),
            out=get(cfg, "evaluate.out", None),
            given_weights=(weights_source(cfg) if any(get(cfg, f"evaluate.{k}", None) for k in WEIGHT_FLAGS)
                           else None))

    @property
    def weights(self):
        """(kind, path) of the weights to evaluate; an error naming the flags when none were given."""
        if self.given_weights is None:
            raise KitError(ONE_SOURCE)
        return self.given_weights

    def source(self):
        """The weights source (supernet.weights.WeightsSource) of --checkpoint / --official / --fewshot."""
        from supernet.weights import WeightsSource

        kind, path = self.weights
        return WeightsSource(kind, path, reorder=self.reorder)

    def pinned(self, spec, source, device=None):
        """What decides the numbers of an evaluation (a results manifest pins it): the weights' digest,
        the model spec, the images, the calibration batches and the precision; with `device` (the one the
        run computes on) also the device kind and its float32 math (runtime.device.precision_facts: TF32)."""
        from infra.atomic import file_digest

        device_facts = {}
        if device is not None:
            from runtime.device import precision_facts

            device_facts = {"device": precision_facts(device)}
        return {
            "weights": {"kind": source.kind, "sha256": "+".join(file_digest(p) for p in source.files()),
                        **({"reorder": source.reorder} if source.kind == "official" else {})},
            "model": spec.to_dict(),
            "eval": self.images(),
            "calibration": self.calibration_batches(),
            "amp": str(self.amp),
            **device_facts,
        }

    def images(self):
        """What decides which images (and pixels) every subnet is evaluated on (pinned in a manifest)."""
        return {"data": json.loads(self.data), "split": self.split, "subset": self.subset,
                "subset_seed": self.subset_seed}

    def calibration_batches(self):
        """What decides the calibration batches (all but `mode` are moot for mode 'none')."""
        return self.calibration.pinned(json.loads(self.data))
