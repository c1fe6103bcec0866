"""submission.metrics: equal to scipy / to the definitions, exact by hand, clear errors instead of NaN."""

import math

import numpy as np
import pytest
from scipy import stats

from submission import metrics
from submission.errors import MetricError


def _tied_data(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, n).astype(float)
    y = x + rng.integers(0, 4, n)
    return x, y


# --- equality with scipy -------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_correlations_equal_scipy_on_continuous_data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=300)
    y = 0.5 * x + rng.normal(size=300)
    assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert metrics.pearson_abs(x, -y) == pytest.approx(abs(stats.pearsonr(x, -y).statistic), abs=1e-12)
    assert metrics.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert metrics.weighted_tau(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("seed,n", [(0, 2), (1, 7), (2, 64), (3, 1000), (4, 1025)])
def test_rank_correlations_equal_scipy_with_ties(seed, n):
    x, y = _tied_data(seed, n)
    assert x.min() < x.max() and y.min() < y.max(), "a constant draw would test nothing"
    assert metrics.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)
    assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert metrics.weighted_tau(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)


def test_average_ranks_equal_scipy_rankdata():
    x, _ = _tied_data(7, 50)
    np.testing.assert_array_equal(metrics.average_ranks(x), stats.rankdata(x))


def _weighted_tau_by_definition(x, y):
    """Vigna's additive hyperbolic weighted tau, O(n^2): rank = position in decreasing lexicographic
    order, pair weight 1/(r_i+1) + 1/(r_j+1), tau-b-style denominator; averaged over ranking by (x, y)
    and by (y, x)."""
    n = len(x)

    def one(a, b):
        r = np.empty(n, dtype=int)
        r[np.lexsort((-b, -a))] = np.arange(n)
        num = den_x = den_y = 0.0
        for i in range(n):
            for j in range(i + 1, n):
                w = 1 / (r[i] + 1) + 1 / (r[j] + 1)
                sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
                num += w * sx * sy
                den_x += w * (sx != 0)
                den_y += w * (sy != 0)
        return num / math.sqrt(den_x * den_y)

    return (one(x, y) + one(y, x)) / 2


@pytest.mark.parametrize("seed", range(3))
def test_weighted_tau_matches_its_definition(seed):
    x, y = _tied_data(seed, 40)
    assert metrics.weighted_tau(x, y) == pytest.approx(_weighted_tau_by_definition(x, y), abs=1e-12)


# --- by hand -------------------------------------------------------------------------
def test_kendall_tau_by_hand_without_ties():
    pred = [0.1, 0.4, 0.3, 0.5, 0.2]
    truth = [1, 2, 3, 4, 5]  # increasing, so pair (i<j) is concordant iff pred[j] > pred[i]
    # (0,1) .4>.1 C   (0,2) .3>.1 C   (0,3) .5>.1 C   (0,4) .2>.1 C
    # (1,2) .3<.4 D   (1,3) .5>.4 C   (1,4) .2<.4 D
    # (2,3) .5>.3 C   (2,4) .2<.3 D
    # (3,4) .2<.5 D
    # C = 6, D = 4, 10 pairs: tau = (6 - 4) / 10
    assert metrics.kendall_tau_b(pred, truth) == pytest.approx(0.2, abs=1e-15)


def test_kendall_tau_b_by_hand_with_ties():
    pred = [1, 1, 3, 2, 3]
    truth = [1, 2, 2, 3, 4]
    # (0,1) pred tie            -> tied in pred
    # (0,2) 1<3, 1<2 C   (0,3) 1<2, 1<3 C   (0,4) 1<3, 1<4 C
    # (1,2) 1<3, truth tie      -> tied in truth
    # (1,3) 1<2, 2<3 C   (1,4) 1<3, 2<4 C
    # (2,3) 3>2, 2<3 D
    # (2,4) pred tie            -> tied in pred
    # (3,4) 2<3, 3<4 C
    # C = 6, D = 1, n0 = 10, pred ties n1 = 2, truth ties n2 = 1
    # tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = 5 / sqrt(8 * 9)
    assert metrics.kendall_tau_b(pred, truth) == pytest.approx(5 / math.sqrt(72), abs=1e-15)


def test_precision_at_k_by_hand():
    pred = [0.1, 0.4, 0.3, 0.5, 0.2]
    truth = [1, 2, 3, 4, 5]
    # predicted order: idx 3 (.5), 1 (.4), 2 (.3), 4 (.2), 0 (.1); true order: 4, 3, 2, 1, 0
    # K=2: {3, 1} vs {4, 3} -> {3}: 1/2
    assert metrics.precision_at_k(pred, truth, k=2) == 0.5
    assert metrics.precision_at_k(pred, truth, frac=0.4) == 0.5  # K = round(0.4 * 5) = 2
    # K = round(0.5 * 5) = round(2.5) = 3 (halves round up): {3, 1, 2} vs {4, 3, 2} -> {3, 2}: 2/3
    assert metrics.precision_at_k(pred, truth, frac=0.5) == pytest.approx(2 / 3)
    # K = max(1, round(0.05 * 5)) = 1: {3} vs {4}
    assert metrics.precision_at_k(pred, truth, frac=0.05) == 0.0


def test_top_k_size_rounds_halves_up_and_is_at_least_one():
    assert [metrics.top_k_size(n, 0.05) for n in (1, 10, 30, 50, 45000)] == [1, 1, 2, 3, 2250]
    with pytest.raises(MetricError, match="top fraction"):
        metrics.top_k_size(10, 0)


def test_topk_kendall_uses_the_true_top_only():
    truth = np.arange(10.0)
    pred = np.array([6, 5, 4, 3, 2, 1, 0, 10, 12, 11], dtype=float)
    # all 45 pairs: bottom 7 among themselves 21 D; bottom vs top 21 C; top 3: (7,8) C (7,9) C (8,9) D
    assert metrics.kendall_tau_b(pred, truth) == pytest.approx((23 - 22) / 45)
    # true top 20% (K=2): truth 8, 9 with pred 12, 11 -> one discordant pair
    assert metrics.topk_kendall(pred, truth, frac=0.2) == -1.0
    # true top 30% (K=3): truth 7, 8, 9 -> 2 C, 1 D
    assert metrics.topk_kendall(pred, truth, frac=0.3) == pytest.approx(1 / 3)


# --- errors instead of NaN -----------------------------------------------------------
@pytest.mark.parametrize("fn", [metrics.pearson_abs, metrics.kendall_tau_b, metrics.spearman, metrics.weighted_tau])
def test_constant_predictions_raise_a_clear_error(fn):
    with pytest.raises(MetricError, match=r"predictions are all equal \(0.5 for all 4 entries\).*undefined"):
        fn([0.5] * 4, [1, 2, 3, 4])
    with pytest.raises(MetricError, match="ground truth are all equal"):
        fn([1, 2, 3, 4], [7] * 4)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(MetricError, match="differ in length"):
        metrics.kendall_tau_b([1, 2, 3], [1, 2])
    with pytest.raises(MetricError, match="non-finite values.*index 1"):
        metrics.pearson([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(MetricError, match="at least 2 entries"):
        metrics.spearman([1], [1])
    with pytest.raises(MetricError, match="exactly one of frac and k"):
        metrics.precision_at_k([1, 2], [1, 2])
    with pytest.raises(MetricError, match="true top 20% of 4 entries is 1 entry"):
        metrics.topk_kendall([1, 2, 3, 4], [1, 2, 3, 4])


# --- bootstrap -----------------------------------------------------------------------
def test_bootstrap_equals_percentiles_of_scipy_on_the_same_resamples():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = np.round(x + rng.normal(size=60), 1)  # ties in truth, and resamples repeat entries
    got = metrics.bootstrap_cis(x, y, n_resamples=300, seed=11, level=0.9)
    idx = metrics.bootstrap_indices(60, 300, seed=11)
    tau = [stats.kendalltau(x[i], y[i]).statistic for i in idx]
    r = [abs(stats.pearsonr(x[i], y[i]).statistic) for i in idx]
    for name, values in (("kendall_tau_b", tau), ("pearson_abs", r)):
        lo, hi = np.quantile(values, [0.05, 0.95])
        assert got[name]["low"] == pytest.approx(lo, abs=1e-12)
        assert got[name]["high"] == pytest.approx(hi, abs=1e-12)
        assert got[name]["method"] == "bootstrap"
        assert got[name]["resample_size"] == 60


def test_bootstrap_m_out_of_n_rescales_around_the_full_estimate():
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    got = metrics.bootstrap_ci(x, y, "kendall_tau_b", n_resamples=200, seed=5, max_size=100)
    idx = metrics.bootstrap_indices(300, 200, seed=5, max_size=100)
    assert idx.shape == (200, 100)
    t = stats.kendalltau(x, y).statistic
    q = np.quantile([stats.kendalltau(x[i], y[i]).statistic for i in idx], [0.025, 0.975])
    scale = math.sqrt(100 / 300)
    assert got["low"] == pytest.approx(t + scale * (q[0] - t), abs=1e-12)
    assert got["high"] == pytest.approx(t + scale * (q[1] - t), abs=1e-12)
    assert got["resample_size"] == 100 and "m-out-of-n" in got["method"]


def test_bootstrap_drops_and_counts_resamples_where_the_metric_is_undefined():
    x, y = [0.1, 0.2, 0.3], [1.0, 3.0, 2.0]
    idx = metrics.bootstrap_indices(3, 500, seed=2)
    constant = int(sum(len(set(row)) == 1 for row in idx))  # distinct values: constant iff one index
    assert constant > 0
    got = metrics.bootstrap_ci(x, y, "kendall_tau_b", n_resamples=500, seed=2)
    assert got["undefined_resamples"] == constant


def test_bootstrap_is_seeded():
    x, y = _tied_data(9, 80)
    a = metrics.bootstrap_ci(x, y, n_resamples=100, seed=1)
    assert a == metrics.bootstrap_ci(x, y, n_resamples=100, seed=1)
    assert a != metrics.bootstrap_ci(x, y, n_resamples=100, seed=2)


def test_score_table_holds_every_metric():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    t = metrics.score_table(x, y, n_resamples=50)
    assert t["kendall_tau_b"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert t["pearson_abs"] == pytest.approx(abs(t["pearson"]))
    assert {k: v["k"] for k, v in t["precision_at_k"].items()} == {"5%": 3, "10%": 5, "20%": 10}
    assert t["precision_at_k"]["20%"]["value"] == metrics.precision_at_k(x, y, k=10)
    assert t["topk_kendall"]["k"] == 10 and t["topk_kendall"]["value"] == metrics.topk_kendall(x, y)
    assert set(t["bootstrap"]) == {"pearson_abs", "kendall_tau_b"}
    assert t["bootstrap"]["kendall_tau_b"]["low"] <= t["kendall_tau_b"] <= t["bootstrap"]["kendall_tau_b"]["high"]
    small = metrics.score_table([1, 2, 3, 4], [1, 3, 2, 4], n_resamples=0)
    assert small["topk_kendall"]["value"] is None and "need 2" in small["topk_kendall"]["note"]
    assert "bootstrap" not in small


def test_bootstrap_argument_errors():
    x, y = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]
    with pytest.raises(MetricError, match=r"bootstrap supports \['pearson_abs', 'kendall_tau_b'\], not \['spearman'\]"):
        metrics.bootstrap_ci(x, y, "spearman")
    with pytest.raises(MetricError, match="confidence level must be in"):
        metrics.bootstrap_ci(x, y, level=95)
    with pytest.raises(MetricError, match="at least 1 bootstrap resample"):
        metrics.bootstrap_ci(x, y, n_resamples=0)
