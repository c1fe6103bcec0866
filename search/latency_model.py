"""Latency as OneProxy does it: a cheap predictor fitted on one proxy device's latency table.

Features of a code (per stage: active blocks, channels of its convs, MACs; and a constant) are fitted
to one column of the table, its `target` (TARGETS): the median milliseconds (`latency_ms`) or, where
the table measured it, the energy per image (`energy_mj`), by non-negative least squares
(scipy.optimize.nnls). Every feature grows with depth and width and no weight is negative, so the
prediction never drops when a code grows: the space's smallest code is the fastest (and the most
frugal), which the budget check and the repair rely on. The fit is scored by Spearman's rank
correlation (submission.metrics) on a seeded held-out part of the table (beside MACs' SRCC on the
same codes). `transfer` refits on a few dozen codes of a
second table (another device or runtime) with the first predictor's output as one more feature, and
is scored on that table's other codes.
Tables come from `python -m evaluate latency` (evaluate.latency.load_table reads them).
"""

import numpy as np

from encoding import MAX_DEPTHS, costs, digit_matrix
from encoding.arch import block_positions
from encoding.cost import spatial_sizes
from evaluate.latency import spearman as srcc
from infra.config import differences
from infra.errors import KitError


class LatencyModelError(KitError):
    """A latency table that does not fit this search (another config, too few codes, no such batch size,
    no energy measured)."""


# target -> (the rows' field, the field of a batch size's cell): the columns a predictor is fitted on
TARGETS = {"latency_ms": ("latency", "median_ms"), "energy_mj": ("energy", "mj_per_image")}


def feature_names():
    names = ["constant"]
    for s in range(len(MAX_DEPTHS)):
        names += [f"stage{s + 1}_blocks", f"stage{s + 1}_channels", f"stage{s + 1}_macs"]
    return names


def features(archs, spec, resolution):
    """(N, 13) float array: a constant, then per stage active blocks, conv channels and MACs."""
    digits = digit_matrix(archs)
    n = len(digits)
    _, stage_hw = spatial_sizes(spec, resolution)
    cur = np.array(spec.width_table(spec.stem_width))[digits[:, 5]]
    cols = [np.ones(n)]
    for s, max_depth in enumerate(MAX_DEPTHS):
        table = np.array(spec.width_table(spec.stage_widths[s]))
        blocks = digits[:, 1 + s].astype(np.float64)
        channels = np.zeros(n)
        macs = np.zeros(n)
        for b in range(max_depth):
            p1, p2 = block_positions(s, b)
            c1, c2 = table[digits[:, p1]], table[digits[:, p2]]
            active = c1 > 0
            channels += np.where(active, c1 + c2, 0)
            macs += np.where(active, 9.0 * (cur * c1 + c1 * c2) * stage_hw[s] ** 2, 0)
            cur = np.where(active, c2, cur)
        cols += [blocks, channels, macs]
    return np.stack(cols, axis=1).astype(np.float64)


def _nnls(A, y):
    from scipy.optimize import nnls

    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    w, _ = nnls(A / scale, y)
    return w / scale


def _macs(codes, spec, resolution):
    return costs(codes, spec, resolution)[1]


class LatencyPredictor:
    """A latency table's column (milliseconds, or mJ per image) of codes from their features: weights >= 0
    over `features` (and over the source predictor's output, for a transferred one)."""

    def __init__(self, spec, resolution, weights, source=None):
        self.spec, self.resolution = spec, resolution
        self.weights = np.asarray(weights, dtype=np.float64)
        self.source = source  # transferred: the predictor whose output is the last feature

    def design(self, archs):
        A = features(archs, self.spec, self.resolution)
        if self.source is not None:
            A = np.concatenate([A, self.source.predict(archs)[:, None]], axis=1)
        return A

    def predict(self, archs):
        archs = list(archs)
        if not archs:
            return np.zeros(0)
        return self.design(archs) @ self.weights

    @classmethod
    def fit(cls, archs, ms, spec, resolution, source=None):
        model = cls(spec, resolution, np.zeros(0), source)
        model.weights = _nnls(model.design(archs), np.asarray(ms, dtype=np.float64))
        return model


def table_rows(table, batch_size, path="table", target="latency_ms"):
    """(codes, values) of a latency table's `target` column at one batch size (codes without it left out)."""
    if target not in TARGETS:
        raise LatencyModelError(f"unknown predictor target {target!r}; known: {', '.join(TARGETS)}")
    if int(batch_size) not in [int(b) for b in table.get("batch_sizes", [])]:
        raise LatencyModelError(f"{path}: no batch size {batch_size} (it has {table.get('batch_sizes')}); "
                                f"set search.latency.batch_size")
    field, cell = TARGETS[target]
    if field == "energy":
        energy = table.get("energy") or {"reason": "the table predates energy measurement"}
        if not energy.get("measured"):
            raise LatencyModelError(f"{path} has no energy measurements: {energy.get('reason')}; an energy_mj budget "
                                    f"needs a table from `python -m evaluate latency` where RAPL or NVML reads energy")
    rows = [r for r in table["codes"] if (r.get(field) or {}).get(str(batch_size))]
    return [r["code"] for r in rows], np.array([r[field][str(batch_size)][cell] for r in rows], dtype=np.float64)


def check_table(table, spec, resolution, path):
    """Refuse a table measured for another model or input size than the search's config."""
    theirs = table.get("model")
    if theirs is not None and theirs != spec.to_dict():
        diff = "; ".join(differences({"model": theirs}, {"model": spec.to_dict()})[:3])
        raise LatencyModelError(f"{path} is a latency table of another config (model {diff})")
    if table.get("resolution") is not None and int(table["resolution"]) != int(resolution):
        raise LatencyModelError(f"{path} is a latency table of another config: measured at {table['resolution']} px, "
                                f"this search's input is {resolution} px")


def split(n, holdout, seed):
    """(fit indices, held-out indices) of n rows: a seeded `holdout` fraction held out (at least 3)."""
    order = np.random.default_rng(int(seed)).permutation(n)
    k = max(3, int(round(n * float(holdout)))) if holdout else 0
    return np.sort(order[k:]), np.sort(order[:k])


def fit_table(table, spec, resolution, batch_size, holdout=0.25, seed=0, path="table", target="latency_ms"):
    """(predictor of the table's `target` column fitted on its non-held-out codes, report {'fit', 'held_out',
    'srcc', ...})."""
    check_table(table, spec, resolution, path)
    codes, y = table_rows(table, batch_size, path, target)
    fit_idx, test_idx = split(len(codes), holdout, seed)
    if len(fit_idx) < 3:
        raise LatencyModelError(f"{path}: {len(codes)} codes at batch {batch_size} are too few to fit and hold out "
                                f"(search.latency.holdout={holdout}); measure more with --sample")
    model = LatencyPredictor.fit([codes[i] for i in fit_idx], y[fit_idx], spec, resolution)
    test_codes = [codes[i] for i in test_idx]
    scored = len(test_idx) >= 3
    return model, {"table": path, "device": table.get("device"), "target": target, "batch_size": int(batch_size),
                   "fit": len(fit_idx), "held_out": len(test_idx),
                   "srcc": srcc(model.predict(test_codes), y[test_idx]) if scored else None,
                   "srcc_macs": srcc(_macs(test_codes, spec, resolution), y[test_idx]) if scored else None}


def transfer(source, table, batch_size, n_codes, seed=0, path="table", target="latency_ms"):
    """(predictor refitted on `n_codes` codes of a second table's `target` column, report with the SRCC on its
    other codes of both the source predictor as it is and the transferred one)."""
    check_table(table, source.spec, source.resolution, path)
    codes, y = table_rows(table, batch_size, path, target)
    if len(codes) < int(n_codes) + 3:
        raise LatencyModelError(f"{path}: {len(codes)} codes; transfer fits on search.latency.transfer_codes="
                                f"{n_codes} and needs at least 3 more to score")
    order = np.random.default_rng(int(seed)).permutation(len(codes))
    fit_idx, test_idx = np.sort(order[:int(n_codes)]), np.sort(order[int(n_codes):])
    model = LatencyPredictor.fit([codes[i] for i in fit_idx], y[fit_idx], source.spec, source.resolution,
                                 source=source)
    test_codes = [codes[i] for i in test_idx]
    return model, {"table": path, "device": table.get("device"), "target": target, "batch_size": int(batch_size),
                   "fit": len(fit_idx), "held_out": len(test_idx),
                   "srcc_source": srcc(source.predict(test_codes), y[test_idx]),
                   "srcc_macs": srcc(_macs(test_codes, source.spec, source.resolution), y[test_idx]),
                   "srcc": srcc(model.predict(test_codes), y[test_idx])}
