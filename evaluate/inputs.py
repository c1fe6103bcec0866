"""What an evaluation reads, built from a config: the supernet with its weights, the cached
evaluation images and the cached calibration batches.

Kept apart from the command line so `run`, `fidelity` and the benchmark build them the same
way, and so a cheaper setting (another subset, resolution or K) is only another config.
"""

import os

import numpy as np

from encoding import KitError
from supernet.config import get, net_spec

from .image_cache import CACHE_DTYPES, CACHE_PLACES, calibration_indices, gather, make_tensor_set

# Data keys that say where the files are or how fast they load, not what the images are.
DATA_LOCATION_KEYS = ("image_dir", "fashion_mnist_dir", "layout", "num_workers")


def check_settings(cfg):
    """Refuse bad evaluate.* values before anything is loaded or written."""
    from supernet.config import AMP_DTYPES

    from .calibration import MODES

    def positive_int(key, minimum=1):
        value = get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise KitError(f"{key} must be an integer >= {minimum}, got {value!r}")

    choices = (("evaluate.calibration.mode", MODES), ("evaluate.cache", CACHE_PLACES),
               ("evaluate.cache_dtype", CACHE_DTYPES), ("evaluate.split", ("train", "val")))
    for key, allowed in choices:
        if get(cfg, key) not in allowed:
            raise KitError(f"{key} must be one of {', '.join(allowed)}, got {get(cfg, key)!r}")
    amp = get(cfg, "evaluate.amp")
    if str(amp).lower() not in AMP_DTYPES and amp not in (None, False):
        raise KitError(f"evaluate.amp must be one of none, bf16, fp16, got {amp!r}")
    positive_int("evaluate.batch_size")
    if get(cfg, "evaluate.subset") is not None:
        positive_int("evaluate.subset", 0)
    if get(cfg, "evaluate.calibration.mode") == "recalibrate":
        positive_int("evaluate.calibration.batches")
        positive_int("evaluate.calibration.batch_size")


WEIGHT_FLAGS = {"checkpoint": "--checkpoint", "official": "--official", "fewshot": "--fewshot"}


def weights_source(cfg):
    """('checkpoint' | 'official' | 'fewshot', path) from evaluate.checkpoint / .official / .fewshot
    (exactly one)."""
    given = [(kind, get(cfg, f"evaluate.{kind}", None)) for kind in WEIGHT_FLAGS]
    given = [(kind, path) for kind, path in given if path]
    if len(given) != 1:
        raise KitError("give exactly one of --checkpoint (a supernet training checkpoint or state dict), "
                       "--official (the challenge's resnet48.pdparams) and --fewshot (a few-shot split's "
                       "manifest.json)" + (", not several" if given else ""))
    kind, path = given[0]
    if not os.path.isfile(path):
        raise KitError(f"{WEIGHT_FLAGS[kind]} {path} does not exist")
    return kind, path


def fewshot_weights(manifest):
    """(groups, {group: weights path}) of a few-shot split whose every copy has been fine-tuned."""
    from supernet.fewshot import finetune_command, read_manifest

    groups, weights = read_manifest(manifest)
    missing = [g for g in groups if not os.path.isfile(weights[g.name])]
    if missing:
        root = os.path.dirname(os.path.abspath(manifest))
        raise KitError(f"few-shot groups without fine-tuned weights ({', '.join(g.name for g in missing)}): "
                       f"expected {weights[missing[0].name]}; fine-tune with e.g. "
                       f"{finetune_command('CONFIG', root, missing[0])}")
    return groups, weights


def weight_files(cfg):
    """Every file the configured weights are read from (hashed into a results manifest)."""
    kind, path = weights_source(cfg)
    return [path] + (list(fewshot_weights(path)[1].values()) if kind == "fewshot" else [])


def load_supernet(cfg, checkpoint=None):
    """A ResNet48Supernet under the config's model spec, holding the configured weights, in eval mode.

    --checkpoint takes a training checkpoint (a dict whose 'model' entry is the state dict, as
    supernet/checkpoint.py saves it) or a plain supernet state dict (.pdparams); --official
    takes the challenge's largest-subnet checkpoint, whose keys name the supernet's tensors.
    `checkpoint` (a path) overrides the config: a few-shot group's copy.
    """
    from supernet import ResNet48Supernet
    from supernet.checkpoint import load_checkpoint, load_model_state
    from supernet.pretrained import load_official_resnet48

    kind, path = ("checkpoint", checkpoint) if checkpoint else weights_source(cfg)
    if kind == "fewshot":
        raise KitError("a few-shot split holds one supernet per group: load each with load_supernet(cfg, PATH)")
    model = ResNet48Supernet(net_spec(cfg))
    if kind == "official":
        load_official_resnet48(model, path, reorder=bool(get(cfg, "evaluate.reorder", True)))
    else:
        state = load_checkpoint(path)
        if isinstance(state.get("model"), dict):
            state = state["model"]
        load_model_state(model, state, source=f"checkpoint {path}")
    model.eval()
    return model


def _split_dataset(cfg, split, augment):
    from supernet.data import build_dataset

    return build_dataset(cfg, split=split, augment=augment)


def eval_indices(labels, subset, seed):
    """Indices of the evaluation images: all of the split, or a seeded class-stratified subset."""
    n = len(labels)
    if not subset or int(subset) >= n:
        return np.arange(n)
    from supernet.data import stratified_subset

    return np.asarray(stratified_subset(np.asarray(labels), int(subset), int(seed)))


def data_settings(cfg):
    """The data section minus file locations and loader speed: what the images are."""
    data = get(cfg, "data", None) or {}
    return {k: v for k, v in sorted(data.items()) if k not in DATA_LOCATION_KEYS}


def eval_settings(cfg):
    """The keys that decide which images (and pixels) every subnet is evaluated on."""
    return {
        "data": data_settings(cfg),
        "split": get(cfg, "evaluate.split"),
        "subset": get(cfg, "evaluate.subset"),
        "subset_seed": get(cfg, "evaluate.subset_seed"),
    }


def calibration_settings(cfg):
    """The keys that decide the calibration batches (all but `mode` are moot for mode 'none')."""
    mode = get(cfg, "evaluate.calibration.mode")
    if mode == "none":
        return {"mode": "none"}
    return {
        "mode": mode,
        "data": data_settings(cfg),
        "batches": get(cfg, "evaluate.calibration.batches"),
        "batch_size": get(cfg, "evaluate.calibration.batch_size"),
        "seed": get(cfg, "evaluate.calibration.seed"),
        "augment": get(cfg, "evaluate.calibration.augment"),
    }


def _workers(cfg):
    return int(get(cfg, "data.num_workers", 0) or 0)


def build_eval_set(cfg, on_gpu):
    """The cached evaluation images (TensorSet) of the config."""
    s = eval_settings(cfg)
    dataset = _split_dataset(cfg, s["split"], augment=False)
    idx = eval_indices(dataset.labels, s["subset"], s["subset_seed"])
    images, labels = gather(dataset, idx, num_workers=_workers(cfg))
    return make_tensor_set(images, labels, place=get(cfg, "evaluate.cache"),
                           device_gb=get(cfg, "evaluate.cache_device_gb"),
                           dtype=get(cfg, "evaluate.cache_dtype"), on_gpu=on_gpu, normalize=dataset.normalize)


def build_calibration_batches(cfg):
    """K calibration batches (float32 device tensors, normalised on the device) from the training
    split; [] for mode 'none'.

    The indices and, with train transforms, the augmentation both follow calibration.seed.
    """
    import paddle

    c = calibration_settings(cfg)
    if c["mode"] == "none":
        return []
    dataset = _split_dataset(cfg, "train", augment=bool(c["augment"]))
    k, b = int(c["batches"]), int(c["batch_size"])
    idx = calibration_indices(len(dataset), k, b, int(c["seed"]))
    images, _ = gather(dataset, idx.reshape(-1), num_workers=_workers(cfg), seed=int(c["seed"]))
    normalize = dataset.normalize
    return [normalize(paddle.to_tensor(np.ascontiguousarray(images[i * b:(i + 1) * b]))) for i in range(k)]
