"""Ranking-quality metrics of predicted vs true accuracies, as a library for the whole kit.

The challenge scored A = |Pearson| and B = Kendall tau; the rest (Spearman, weighted tau,
precision@K, tau inside the true top) say whether a predictor finds the *best* nets, which
the two headline numbers can hide. Every function raises MetricError instead of returning
NaN, so an all-equal submission is reported, not scored as garbage.

Kendall tau-b is computed here (not via scipy) because the bootstrap needs it for a whole
batch of resamples at once: one sort per row plus a merge-sort inversion count done level by
level with numpy, all rows together.
"""

import math

import numpy as np
from scipy import stats

from .errors import MetricError

TOPK_FRACS = (0.05, 0.10, 0.20)
TOP_FRAC = 0.20
N_RESAMPLES = 1000
LEVEL = 0.95
# Above this many entries each bootstrap resample draws only this many (m-out-of-n bootstrap,
# interval rescaled by sqrt(m/n)): 1000 exact tau-b resamples of 45,000 cost ~10 s per predictor.
BOOTSTRAP_MAX_SIZE = 2000
_BATCH_ELEMENTS = 1 << 21  # rows x padded length per bootstrap chunk (bounds memory at ~tens of MB)


# --- input checks --------------------------------------------------------------------
def _values(a, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1:
        raise MetricError(f"{what}: expected a 1-D sequence, got shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise MetricError(f"{what}: {bad.size} non-finite values (first at index {bad[0]}: {a[bad[0]]})")
    return a


def _pair(pred, truth, min_n=2):
    x, y = _values(pred, "predictions"), _values(truth, "ground truth")
    if x.size != y.size:
        raise MetricError(f"predictions ({x.size}) and ground truth ({y.size}) differ in length")
    if x.size < min_n:
        raise MetricError(f"need at least {min_n} entries to compare rankings, got {x.size}")
    for a, what in ((x, "predictions"), (y, "ground truth")):
        if a.min() == a.max():
            raise MetricError(f"{what} are all equal ({float(a[0])!r} for all {a.size} entries): "
                              f"correlation is undefined")
    return x, y


# --- ranks ---------------------------------------------------------------------------
def average_ranks(a):
    """1-based ranks, ties get the mean of the ranks they span (the convention of Spearman's rho)."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    s = a[order]
    new = np.ones(a.size, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    group = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    counts = np.diff(np.append(first, a.size))
    ranks = np.empty(a.size)
    ranks[order] = (first + (counts + 1) / 2.0)[group]
    return ranks


def dense_ranks(a):
    """0-based ranks with equal values sharing one rank (integers for the batched tau)."""
    return np.unique(np.asarray(a), return_inverse=True)[1].reshape(-1).astype(np.int64)


def top_k_size(n, frac):
    """K = max(1, round(frac * n)), rounding halves up (so 2.5 -> 3, not banker's 2)."""
    if not 0 < frac <= 1:
        raise MetricError(f"top fraction must be in (0, 1], got {frac}")
    return max(1, int(math.floor(frac * n + 0.5)))


def _top_indices(a, k):
    """Indices of the k largest values; ties broken by position (earlier first) so results are reproducible."""
    return np.argsort(-a, kind="stable")[:k]


# --- correlations --------------------------------------------------------------------
def pearson(pred, truth):
    x, y = _pair(pred, truth)
    x = x - x.mean()
    y = y - y.mean()
    r = float(np.dot(x, y) / math.sqrt(np.dot(x, x) * np.dot(y, y)))
    return max(-1.0, min(1.0, r))


def pearson_abs(pred, truth):
    """Leaderboard A: sign-blind, as the challenge scored it."""
    return abs(pearson(pred, truth))


def spearman(pred, truth):
    x, y = _pair(pred, truth)
    return pearson(average_ranks(x), average_ranks(y))


def or_undefined(metric, pred, truth):
    """(value, None), or (None, why) where `metric` is undefined (e.g. all predictions equal): for
    monitors and reports that show a gap instead of stopping."""
    try:
        return float(metric(pred, truth)), None
    except MetricError as e:
        return None, str(e)


def kendall_tau_b(pred, truth):
    """Leaderboard B: Kendall's tau-b (ties in either list shrink the denominator), O(n log n)."""
    x, y = _pair(pred, truth)
    return float(_kendall_rows(dense_ranks(x)[None, :], dense_ranks(y)[None, :])[0])


def weighted_tau(pred, truth):
    """Vigna's weighted tau (hyperbolic weights on rank, averaged over both rankings): swaps near the top cost most.

    Delegates to scipy's O(n log n) implementation; the tests check it against the definition.
    """
    x, y = _pair(pred, truth)
    return float(stats.weightedtau(x, y).statistic)


def precision_at_k(pred, truth, frac=None, k=None):
    """|predicted top-K ∩ true top-K| / K; give `frac` (K = top_k_size(n, frac)) or `k`."""
    x, y = _pair(pred, truth, min_n=1)
    if (frac is None) == (k is None):
        raise MetricError("precision_at_k: give exactly one of frac and k")
    k = top_k_size(x.size, frac) if k is None else int(k)
    if not 1 <= k <= x.size:
        raise MetricError(f"precision_at_k: K={k} outside 1..{x.size}")
    hits = np.intersect1d(_top_indices(x, k), _top_indices(y, k)).size
    return hits / k


def topk_kendall(pred, truth, frac=TOP_FRAC):
    """Kendall tau-b among the truly best `frac` of entries: does the predictor order the winners?"""
    x, y = _pair(pred, truth)
    k = top_k_size(x.size, frac)
    if k < 2:
        raise MetricError(f"true top {frac:.0%} of {x.size} entries is {k} entry: need 2 to rank")
    top = _top_indices(y, k)
    try:
        return kendall_tau_b(x[top], y[top])
    except MetricError as e:
        raise MetricError(f"Kendall tau in the true top {frac:.0%} (K={k}): {e}") from None


# --- batched Kendall tau-b -----------------------------------------------------------
def _tied_pairs_rows(s):
    """Per row of a row-sorted int array: number of pairs with equal values."""
    rows, m = s.shape
    start = np.ones((rows, m), dtype=bool)
    np.not_equal(s[:, 1:], s[:, :-1], out=start[:, 1:])
    first = np.flatnonzero(start)
    runs = np.diff(np.append(first, rows * m)).astype(np.float64)
    return np.bincount(first // m, weights=runs * (runs - 1) / 2, minlength=rows)


def _inversions_rows(a):
    """Per row: pairs i < j with a[i] > a[j], by bottom-up merging of all rows and blocks together.

    At each level the two sorted halves of a block are merged by sorting (value, side) keys;
    a right-half element that lands at merged position p with j right elements before it has
    p - j left elements <= it, so s - (p - j) left elements above it (inversions).
    """
    rows, m = a.shape
    size = 1 << max(0, (m - 1).bit_length())
    pad = int(a.max()) + 1  # sorts last: no inversions
    buf = np.full((rows, size), pad, dtype=np.int32 if 2 * pad + 1 < 2**31 else np.int64)  # int32 sorts faster
    buf[:, :m] = a
    inversions = np.zeros(rows)
    s = 1
    while s < size:
        blocks = size // (2 * s)
        key = buf.reshape(rows, blocks, 2, s) * 2
        key[:, :, 1, :] += 1
        key = np.sort(key.reshape(rows, blocks, 2 * s), axis=-1)
        right_positions = ((key & 1) * np.arange(2 * s)).reshape(rows, -1).sum(axis=1)
        inversions += blocks * (s * s + s * (s - 1) / 2) - right_positions
        buf = (key >> 1).reshape(rows, size)
        s *= 2
    return inversions


def _kendall_rows(rx, ry):
    """Tau-b of each row pair of dense-rank arrays (rows, m); NaN where a row is constant."""
    rows, m = rx.shape
    base = int(max(rx.max(), ry.max())) + 1
    key = np.sort(rx * base + ry, axis=1)  # lexicographic by (x, y)
    sy = key % base
    pairs = m * (m - 1) / 2
    tied_x = _tied_pairs_rows(key // base)
    tied_y = _tied_pairs_rows(np.sort(sy, axis=1))
    tied_xy = _tied_pairs_rows(key)
    discordant = _inversions_rows(sy)  # x ties are sorted by y, so they add no inversions
    concordant = pairs - tied_x - tied_y + tied_xy - discordant
    with np.errstate(invalid="ignore", divide="ignore"):
        return (concordant - discordant) / np.sqrt((pairs - tied_x) * (pairs - tied_y))


def _pearson_rows(x, y):
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1)), -1, 1)


# --- bootstrap -----------------------------------------------------------------------
BOOTSTRAP_METRICS = ("pearson_abs", "kendall_tau_b")


def bootstrap_indices(n, n_resamples=N_RESAMPLES, seed=0, max_size=BOOTSTRAP_MAX_SIZE):
    """The resamples bootstrap_cis uses: (n_resamples, m) indices drawn with replacement, m = min(n, max_size)."""
    m = n if max_size is None else min(n, int(max_size))
    return np.random.default_rng(seed).integers(0, n, size=(int(n_resamples), m))


def bootstrap_cis(pred, truth, metrics=BOOTSTRAP_METRICS, n_resamples=N_RESAMPLES, seed=0, level=LEVEL,
                  max_size=BOOTSTRAP_MAX_SIZE):
    """Percentile bootstrap intervals of several metrics on the same seeded resamples.

    With n <= max_size this is the ordinary bootstrap. Above it each resample holds m = max_size
    entries and the interval is t + sqrt(m/n) * (quantiles of t*_m - t) (m-out-of-n bootstrap),
    which keeps 1000 resamples of 45,000 entries within a second. Resamples on which a metric is
    undefined (all values equal) are dropped and counted.
    """
    x, y = _pair(pred, truth)
    unknown = sorted(set(metrics) - set(BOOTSTRAP_METRICS))
    if unknown:
        raise MetricError(f"bootstrap supports {list(BOOTSTRAP_METRICS)}, not {unknown}")
    if not 0 < level < 1:
        raise MetricError(f"confidence level must be in (0, 1), got {level}")
    if int(n_resamples) < 1:
        raise MetricError(f"need at least 1 bootstrap resample, got {n_resamples}")
    n = x.size
    idx = bootstrap_indices(n, n_resamples, seed, max_size)
    m = idx.shape[1]
    rx, ry = dense_ranks(x), dense_ranks(y)
    zx, zy = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    full = {"pearson_abs": pearson_abs(x, y), "kendall_tau_b": kendall_tau_b(x, y)}
    values = {name: [] for name in metrics}
    step = max(1, _BATCH_ELEMENTS // (1 << max(0, (m - 1).bit_length())))
    for start in range(0, idx.shape[0], step):
        chunk = idx[start:start + step]
        crx, cry = rx[chunk], ry[chunk]
        constant = (crx.min(axis=1) == crx.max(axis=1)) | (cry.min(axis=1) == cry.max(axis=1))
        if "pearson_abs" in values:
            v = np.abs(_pearson_rows(zx[chunk], zy[chunk]))
            values["pearson_abs"].append(np.where(constant, np.nan, v))
        if "kendall_tau_b" in values:
            values["kendall_tau_b"].append(_kendall_rows(crx, cry))
    scale = math.sqrt(m / n)
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        defined = v[np.isfinite(v)]
        if defined.size == 0:
            raise MetricError(f"bootstrap of {name}: every resample had all-equal values")
        lo_q, hi_q = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2])
        t = full[name]
        lo, hi = t + scale * (lo_q - t), t + scale * (hi_q - t)
        floor = 0.0 if name == "pearson_abs" else -1.0
        out[name] = {
            "low": float(max(floor, lo)), "high": float(min(1.0, hi)), "level": level,
            "n_resamples": int(idx.shape[0]), "undefined_resamples": int(v.size - defined.size),
            "resample_size": m, "n": n, "seed": seed,
            "method": "bootstrap" if m == n else "m-out-of-n bootstrap, interval scaled by sqrt(m/n)",
        }
    return out


def bootstrap_ci(pred, truth, metric="kendall_tau_b", **kwargs):
    """One metric's interval; see bootstrap_cis for the method and keyword arguments."""
    return bootstrap_cis(pred, truth, metrics=(metric,), **kwargs)[metric]


# --- the whole table -----------------------------------------------------------------
def _pct(frac):
    return f"{frac * 100:g}%"


def score_table(pred, truth, topk_fracs=TOPK_FRACS, top_frac=TOP_FRAC, n_resamples=N_RESAMPLES, seed=0,
                level=LEVEL, max_size=BOOTSTRAP_MAX_SIZE):
    """Every metric above as one JSON-ready dict; n_resamples=0 skips the bootstrap.

    The headline numbers raise MetricError when undefined; the top-K tau, which can be
    undefined on small lists, is None with a `note` instead so the rest still prints.
    """
    x, y = _pair(pred, truth)
    table = {
        "n": int(x.size),
        "pearson": pearson(x, y),
        "pearson_abs": pearson_abs(x, y),
        "kendall_tau_b": kendall_tau_b(x, y),
        "spearman": spearman(x, y),
        "weighted_tau": weighted_tau(x, y),
        "precision_at_k": {},
    }
    for frac in topk_fracs:
        k = top_k_size(x.size, frac)
        table["precision_at_k"][_pct(frac)] = {"frac": frac, "k": k, "value": precision_at_k(x, y, k=k)}
    top = {"frac": top_frac, "k": top_k_size(x.size, top_frac), "value": None}
    try:
        top["value"] = topk_kendall(x, y, top_frac)
    except MetricError as e:
        top["note"] = str(e)
    table["topk_kendall"] = top
    if n_resamples:
        table["bootstrap"] = bootstrap_cis(x, y, n_resamples=n_resamples, seed=seed, level=level, max_size=max_size)
    return table
