"""The shared-weight oracle: one object that scores codes (top-1, top-5, loss) from a supernet's weights.

Built once from a config's `evaluate:` section and a weights source (checkpoint, official weights or
a few-shot split), it holds the cached evaluation images and calibration batches and loads each
supernet (one, or one per few-shot group, when its first code comes). Scoring a code is then a
`set_active` call, optional BN recalibration and one no-grad pass: scoring 1,000 codes in several
calls costs what one call of 1,000 costs. `evaluate run`, `fidelity`, the rank check, the benches and
a search all score through it.

    oracle = Oracle.from_config(cfg)                       # evaluate.checkpoint / official / fewshot
    for record in oracle.score(["...", "..."]): record["top1"]
"""

import numpy as np

from encoding import KitError, net_spec
from imagedata.loaders import gather

from .evaluator import evaluator_of
from .image_cache import make_tensor_set
from .settings import EvalSettings


def _split_dataset(cfg, split, augment):
    from imagedata import DataSettings, build_dataset

    return build_dataset(DataSettings.from_config(cfg), split=split, augment=augment)


def eval_indices(labels, subset, seed):
    """Indices of the evaluation images: all of the split, or a seeded class-stratified subset."""
    n = len(labels)
    if not subset or int(subset) >= n:
        return np.arange(n)
    from imagedata import stratified_subset

    return np.asarray(stratified_subset(np.asarray(labels), int(subset), int(seed)))


def build_eval_set(cfg, settings, on_gpu, across_ranks=False, keep=True):
    """The cached evaluation images (TensorSet) of the settings (the dataset from the config's `data:`).

    `across_ranks`: decoded once in the job, each rank its share, all-gathered (imagedata.loaders.gather:
    collective, every rank calls it at the same point); keep=False only contributes this rank's share
    (returns None)."""
    dataset = _split_dataset(cfg, settings.split, augment=False)
    idx = eval_indices(dataset.labels, settings.subset, settings.subset_seed)
    got = gather(dataset, idx, num_workers=settings.num_workers, across_ranks=across_ranks, keep=keep)
    if got is None:
        return None
    images, labels = got
    return make_tensor_set(images, labels, place=settings.cache, device_gb=settings.cache_device_gb,
                           dtype=settings.cache_dtype, on_gpu=on_gpu, normalize=dataset.normalize)


def build_calibration_batches(cfg, settings, across_ranks=False, keep=True):
    """K calibration batches (float32 device tensors, normalised on the device) from the training
    split; [] for mode 'none' (`supernet.calibration.calibration_batches`, which export shares).

    The indices and, with train transforms, the augmentation both follow calibration.seed.
    `across_ranks` and `keep` as in `build_eval_set`.
    """
    from supernet.calibration import calibration_batches

    return calibration_batches(cfg, settings.calibration, num_workers=settings.num_workers,
                               across_ranks=across_ranks, keep=keep)


def contribute_images(cfg, settings):
    """What a rank with no codes to score does while the others build `Oracle(..., across_ranks=True)`:
    the same decodes in the same order (the evaluation images, then the calibration batches), its share
    of each sent and nothing kept."""
    build_eval_set(cfg, settings, on_gpu=False, across_ranks=True, keep=False)
    build_calibration_batches(cfg, settings, across_ranks=True, keep=False)


class Oracle:
    """Scores codes from shared weights under one evaluation setting.

    `model` (a loaded ResNet48Supernet) is scored as it is (the rank check's training model, or the
    one model `fidelity` shares between settings); otherwise the settings' weights source loads the
    supernet(s) on first use. `eval_set` and `calib_batches` may be given to share cached images
    between oracles; by default they are built from the config (`across_ranks`: decoded once in the job,
    each rank its share; every rank builds its oracle at the same point, or calls `contribute_images`).
    """

    def __init__(self, cfg, settings=None, device=None, model=None, eval_set=None, calib_batches=None,
                 across_ranks=False):
        import paddle

        self.settings = settings if settings is not None else EvalSettings.from_config(cfg)
        self.spec = net_spec(cfg)
        self.device = device or paddle.device.get_device()
        self.source = None if model is not None else self.settings.source()
        on_gpu = str(self.device).startswith("gpu")
        # this order is contribute_images' too: the collectives of a decode across ranks must pair up
        self.eval_set = (eval_set if eval_set is not None
                         else build_eval_set(cfg, self.settings, on_gpu, across_ranks=across_ranks))
        self.calib_batches = (calib_batches if calib_batches is not None
                              else build_calibration_batches(cfg, self.settings, across_ranks=across_ranks))
        self.decoded_by = paddle.distributed.get_world_size() if across_ranks else 1
        self._groups = self.source.groups() if self.source is not None else []
        self._evaluators = {}  # group name (None: the one supernet) -> SubnetEvaluator
        if model is not None:
            self._evaluators[None] = evaluator_of(model, self.eval_set, self.calib_batches, self.settings,
                                                  self.device)

    @classmethod
    def from_config(cls, cfg, device=None):
        """The oracle a config's `evaluate:` section describes (weights from evaluate.checkpoint,
        .official or .fewshot)."""
        return cls(cfg, device=device)

    def group_of(self, code):
        """The few-shot group that scores `code` (None for one supernet)."""
        if self.source is None or not self._groups:
            return None
        return self.source.group_of(code, self._groups)

    def _evaluator(self, code):
        group = self.group_of(code)
        if group not in self._evaluators:
            model = self.source.load(self.spec, group=group)
            self._evaluators[group] = evaluator_of(model, self.eval_set, self.calib_batches, self.settings,
                                                   self.device)
        return self._evaluators[group]

    def score_one(self, code):
        """{'top1', 'top5', 'loss', 'calibration', 'seconds'} of one code (or Arch)."""
        return self._evaluator(code).evaluate(code)

    def score(self, codes):
        """One record per code, in order (see `score_one`)."""
        return [self.score_one(code) for code in codes]

    @property
    def images_per_subnet(self):
        """Images one code's score passes through (calibration batches and the evaluation set)."""
        calib = sum(int(b.shape[0]) for b in self.calib_batches) if self.settings.calibration.mode == "recalibrate"\
            else 0
        return calib + len(self.eval_set)

    def seconds(self):
        """(calibration seconds, evaluation seconds) spent so far, over every supernet."""
        return (sum(e.calibration_seconds for e in self._evaluators.values()),
                sum(e.eval_seconds for e in self._evaluators.values()))

    def describe(self):
        """One line: the images, their cache and the calibration (for a setup message)."""
        mode = self.settings.calibration.mode
        return (f"{len(self.eval_set)} evaluation images {list(self.eval_set.shape[1:])} "
                f"({'device' if self.eval_set.on_device else 'host'} cache), calibration '{mode}' with "
                f"{len(self.calib_batches)} batches"
                + (f" (decoded once over {self.decoded_by} ranks)" if self.decoded_by > 1 else ""))

    def pinned(self):
        """What decides the numbers this oracle gives (a results manifest pins it): the weights' digest,
        the model spec, the images, the calibration batches, the precision and the device's float32 math."""
        if self.source is None:
            raise KitError("an oracle over a model given in memory has no weights to pin")
        return self.settings.pinned(self.spec, self.source, self.device)

