"""How reproducible a ground truth is, and so how well any ranking of it can score.

Standalone accuracies carry seed noise, so a predictor is judged against the ground truth's
agreement with itself: seed vs seed on the same codes (the noise ceiling). Treating seeds as
independent noise around each code's true mean, the agreement of single seeds also says what more
seeds would buy: how well two k-seed means would agree, the best tau any predictor can reach against
the committed mean, and how many seeds a target ceiling needs. `noise_ceiling` measures, `projection`
projects.
"""

import itertools
import math

import numpy as np

from . import metrics
from .errors import MetricError, SubmissionError
from .jsonfile import is_number

TOP_FRACTION = 0.1  # precision@K of the demo table: K = 10 % of the codes
TARGET_TAU = 0.6    # issue 8: a ground truth whose two seeds agree less than this cannot rank architectures
PROJECTED_SEEDS = (1, 2, 4, 8, 16)


def seed_accs(gt):
    """{id: per-seed accuracies} of the codes a ceiling can use: those with the seed count most codes
    have (ties: the larger), cut to that count. Codes with fewer seeds are left out; {} when no count
    is >= 2. `gt`: a loaded challenge-format file whose entries may carry "accs"."""
    accs = {i: e["accs"] for i, e in gt.items() if isinstance(e, dict) and e.get("accs") is not None}
    bad = [i for i, a in accs.items()
           if not isinstance(a, list) or not all(is_number(x) and math.isfinite(x) for x in a)]
    if bad:
        raise SubmissionError(f"'accs' must be a list of finite numbers (per-seed accuracies); it is not for "
                              f"{len(bad)} entries: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    accs = {i: a for i, a in accs.items() if len(a) >= 2}
    counts = [len(a) for a in accs.values()]
    if not counts:
        return {}
    s = max(counts, key=lambda n: (counts.count(n), n))
    return {i: list(a[:s]) for i, a in accs.items() if len(a) >= s}


def _agreement(a, b):
    k = metrics.top_k_size(len(a), TOP_FRACTION)
    return {"n": len(a), "kendall_tau_b": metrics.kendall_tau_b(a, b), "pearson": metrics.pearson(a, b),
            "precision_at_10": metrics.precision_at_k(a, b, k=k)}


def noise_ceiling(gt):
    """How well the ground truth agrees with itself, as (label, values) rows; the first is the ceiling.

    With 2 seeds per code: seed 0 vs seed 1. With 2h seeds (h > 1): the mean of h seeds vs the mean
    of the other h, averaged over every split into two halves (the committed GT averages all 2h, so
    it is at least this reliable), then one seed vs another, averaged over every pair of seeds. An
    odd count s uses the first s - 1 seeds. No rows when fewer than 2 codes qualify (`seed_accs`)."""
    accs = list(seed_accs(gt).values())
    if len(accs) < 2:
        return []
    h = len(accs[0]) // 2
    if h == 1:
        row = _agreement([a[0] for a in accs], [a[1] for a in accs])
        return [("ground truth seed 0 vs seed 1 (ceiling)", {**row, "tau_vs_one_seed": row["kendall_tau_b"]})]
    splits = [half for half in itertools.combinations(range(2 * h), h) if 0 in half]
    halves = [_agreement([sum(a[i] for i in half) / h for a in accs],
                         [sum(a[i] for i in range(2 * h) if i not in half) / h for a in accs]) for half in splits]
    pairs = [_agreement([a[i] for a in accs], [a[j] for a in accs])
             for i in range(2 * h) for j in range(i + 1, 2 * h)]
    return [(f"ground truth {h}-seed mean vs {h}-seed mean (ceiling; mean of {len(splits)} splits)",
             {**_mean(halves), "splits": len(splits)}),
            ("ground truth one seed vs another (mean)", {**_mean(pairs), "tau_vs_one_seed": _mean(pairs)["kendall_tau_b"]})]


def _mean(rows):
    return {"n": rows[0]["n"], **{key: sum(r[key] for r in rows) / len(rows)
                                  for key in ("kendall_tau_b", "pearson", "precision_at_10")}}


def tau_vs_one_seed(gt, scores):
    """Kendall tau-b of `scores` (id -> value) against each seed's accuracies, averaged over the seeds.

    This, not the tau against the mean, is what compares with one seed vs another: the mean of
    several seeds is less noisy than any one, so a predictor can agree with it better than two
    seeds agree with each other. None when fewer than 2 ceiling codes have a score, or undefined."""
    accs = {i: a for i, a in seed_accs(gt).items() if i in scores}
    if len(accs) < 2:
        return None
    ids = list(accs)
    pred = [scores[i] for i in ids]
    seeds = len(accs[ids[0]])
    try:
        return sum(metrics.kendall_tau_b(pred, [accs[i][s] for i in ids]) for s in range(seeds)) / seeds
    except MetricError:
        return None


# --- projecting more seeds -----------------------------------------------------------------

def one_seed_tau(matrix):
    """Mean Kendall tau-b of one seed's column against another's, over every pair of seeds."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 2:
        raise MetricError(f"seed agreement needs >= 2 codes x >= 2 seeds, got shape {a.shape}")
    pairs = [metrics.kendall_tau_b(a[:, i], a[:, j]) for i in range(a.shape[1]) for j in range(i + 1, a.shape[1])]
    return sum(pairs) / len(pairs)


def correlation_of_tau(tau):
    """The Pearson correlation a bivariate normal pair with Kendall tau `tau` has (Greiner): sin(pi/2 tau).
    Ranks shrug off the rare failed training that inflates a variance, so reliability is read from tau."""
    return math.sin(math.pi * tau / 2.0)


def tau_of_correlation(r):
    """Inverse of `correlation_of_tau`: 2/pi * asin(r)."""
    return 2.0 / math.pi * math.asin(max(-1.0, min(1.0, r)))


def mean_reliability(r1, k):
    """Correlation of two independent k-seed means when single seeds correlate r1 (Spearman-Brown)."""
    return k * r1 / (1.0 + (k - 1) * r1) if r1 > 0 else 0.0


def seeds_needed(r1, target_tau):
    """Smallest k whose two k-seed means reach Kendall tau `target_tau`; None when single seeds do
    not agree at all (r1 <= 0: no number of seeds gets there)."""
    if r1 <= 0:
        return None
    if r1 >= 1:
        return 1
    r = correlation_of_tau(target_tau)
    return max(1, math.ceil(r * (1.0 - r1) / (r1 * (1.0 - r)) - 1e-9))


def projection(gt, ks=PROJECTED_SEEDS, target_tau=TARGET_TAU, n_resamples=1000, seed=0, level=0.9):
    """What more seeds would buy, from the seeds a ground truth has (None when `seed_accs` finds fewer
    than 2 codes). Single seeds' mean pairwise tau gives their correlation r1 (`correlation_of_tau`);
    a k-seed mean then correlates r_k = k r1 / (1 + (k - 1) r1) with another k-seed mean, and sqrt(r_k)
    with the codes' true means, the best any predictor can do against a k-seed mean ground truth. The
    seeds per side for `target_tau` come with a bootstrap interval over codes (resampled with
    replacement): 40 codes pin r1 loosely. Also the seed sd and the sd of the code means, for scale."""
    accs = seed_accs(gt)
    if len(accs) < 2:
        return None
    a = np.array(list(accs.values()), dtype=np.float64)
    tau1 = one_seed_tau(a)
    r1 = correlation_of_tau(tau1)
    rows = []
    for k in ks:
        r = mean_reliability(r1, k)
        rows.append({"seeds": k, "mean_vs_mean_tau": tau_of_correlation(r),
                     "best_predictor_tau": tau_of_correlation(math.sqrt(r))})
    rng = np.random.default_rng(seed)
    needed = []
    for _ in range(n_resamples):
        try:
            k = seeds_needed(correlation_of_tau(one_seed_tau(a[rng.integers(0, a.shape[0], a.shape[0])])), target_tau)
        except MetricError:  # a resample of one code's copies: no ranking at all
            k = None
        needed.append(math.inf if k is None else k)
    lo = hi = None
    if needed:
        lo = np.quantile(needed, (1 - level) / 2, method="lower")
        hi = np.quantile(needed, (1 + level) / 2, method="higher")
    return {"codes": a.shape[0], "seeds": a.shape[1], "seed_sd": float(np.sqrt(a.var(axis=1, ddof=1).mean())),
            "code_mean_sd": float(a.mean(axis=1).std(ddof=1)), "one_seed_tau": tau1, "one_seed_r": r1,
            "projected": rows, "committed_mean_best_tau": tau_of_correlation(math.sqrt(mean_reliability(r1, a.shape[1]))),
            "target_tau": target_tau, "seeds_needed": seeds_needed(r1, target_tau),
            "seeds_needed_interval": [_finite(lo), _finite(hi)], "interval_level": level, "resamples": n_resamples}


def _finite(v):
    return None if v is None or not math.isfinite(v) else int(v)


def format_projection(p, unit=100.0, unit_name="%"):
    """The projection as text; accuracies shown x `unit` (fractions as %)."""
    if p is None:
        return "seed projection: needs >= 2 codes with >= 2 seeds each"
    lines = [f"seed projection over {p['codes']} codes x {p['seeds']} seeds: seed sd {p['seed_sd'] * unit:.3f}"
             f"{unit_name}, sd of the code means {p['code_mean_sd'] * unit:.3f}{unit_name}",
             f"  one seed vs another: Kendall tau {p['one_seed_tau']:.3f}, as a normal correlation r1 "
             f"{p['one_seed_r']:.3f}",
             f"  best tau of any predictor against this file's {p['seeds']}-seed mean: "
             f"{p['committed_mean_best_tau']:.3f}",
             f"  {'seeds per side':>15}{'k-seed mean vs k-seed mean tau':>33}{'best predictor vs k-seed mean':>32}"]
    for row in p["projected"]:
        lines.append(f"  {row['seeds']:>15}{row['mean_vs_mean_tau']:>33.3f}{row['best_predictor_tau']:>32.3f}")
    k, (lo, hi) = p["seeds_needed"], p["seeds_needed_interval"]
    if k is None:
        lines.append(f"  tau {p['target_tau']:g} between two seed means: unreachable (seeds do not agree at all)")
    else:
        span = f"{lo if lo is not None else '?'}-{hi if hi is not None else 'unbounded'}"
        lines.append(f"  tau {p['target_tau']:g} between two seed means needs {k} seeds per side "
                     f"({int(p['interval_level'] * 100)}% interval over codes {span}): "
                     f"{2 * k * p['codes']} trainings of these {p['codes']} codes")
    return "\n".join(lines)
