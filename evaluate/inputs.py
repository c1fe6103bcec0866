"""What an evaluation reads, built from a config: the supernet with its weights, the cached
evaluation images and the cached calibration batches.

Kept apart from the command line so `run`, `fidelity` and the benchmark build them the same
way, and so a cheaper setting (another subset, resolution or K) is only another config.
"""

import os

import numpy as np

from encoding import KitError
from supernet.config import net_spec

from .image_cache import calibration_indices, gather, make_tensor_set
from .settings import EvalSettings, weights_source  # noqa: F401 (the settings every builder here takes)


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


def weight_files(settings):
    """Every file the configured weights are read from (hashed into a results manifest)."""
    kind, path = settings.weights
    return [path] + (list(fewshot_weights(path)[1].values()) if kind == "fewshot" else [])


def load_supernet(cfg, settings, checkpoint=None):
    """A ResNet48Supernet under the config's model spec, holding the configured weights, in eval mode.

    --checkpoint takes a training checkpoint (a dict whose 'model' entry is the state dict, as
    supernet/checkpoint.py saves it) or a plain supernet state dict (.pdparams); --official
    takes the challenge's largest-subnet checkpoint, whose keys name the supernet's tensors.
    `checkpoint` (a path) overrides the config: a few-shot group's copy.
    """
    from supernet import ResNet48Supernet
    from supernet.checkpoint import load_checkpoint, load_model_state
    from supernet.pretrained import load_official_resnet48

    kind, path = ("checkpoint", checkpoint) if checkpoint else settings.weights
    if kind == "fewshot":
        raise KitError("a few-shot split holds one supernet per group: load each with "
                       "load_supernet(cfg, settings, PATH)")
    model = ResNet48Supernet(net_spec(cfg))
    if kind == "official":
        load_official_resnet48(model, path, reorder=settings.reorder)
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


def build_eval_set(cfg, settings, on_gpu):
    """The cached evaluation images (TensorSet) of the settings (the dataset from the config's `data:`)."""
    dataset = _split_dataset(cfg, settings.split, augment=False)
    idx = eval_indices(dataset.labels, settings.subset, settings.subset_seed)
    images, labels = gather(dataset, idx, num_workers=settings.num_workers)
    return make_tensor_set(images, labels, place=settings.cache, device_gb=settings.cache_device_gb,
                           dtype=settings.cache_dtype, on_gpu=on_gpu, normalize=dataset.normalize)


def build_calibration_batches(cfg, settings):
    """K calibration batches (float32 device tensors, normalised on the device) from the training
    split; [] for mode 'none'.

    The indices and, with train transforms, the augmentation both follow calibration.seed.
    """
    import paddle

    c = settings.calibration
    if c.mode == "none":
        return []
    dataset = _split_dataset(cfg, "train", augment=bool(c.augment))
    k, b = int(c.batches), int(c.batch_size)
    idx = calibration_indices(len(dataset), k, b, int(c.seed))
    images, _ = gather(dataset, idx.reshape(-1), num_workers=settings.num_workers, seed=int(c.seed))
    normalize = dataset.normalize
    return [normalize(paddle.to_tensor(np.ascontiguousarray(images[i * b:(i + 1) * b]))) for i in range(k)]
