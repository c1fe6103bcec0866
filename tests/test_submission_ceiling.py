"""submission.ceiling: the ground truth against itself (measured by hand) and what more seeds would buy
(hand-calculated, and checked against measured split halves of simulated seeds), plus its CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from submission import ceiling
from submission.errors import MetricError, SubmissionError

ROOT = Path(__file__).resolve().parent.parent
SEED_ACCS = [(0.80, 0.83), (0.85, 0.81), (0.90, 0.86)]  # seed 0 vs seed 1: one of 3 pairs discordant


def gt_of(accs):
    return {k: {"acc": sum(a) / len(a), "arch": "x", "accs": list(a)} for k, a in accs.items()}


def three_codes():
    return gt_of({f"a{i}": a for i, a in enumerate(SEED_ACCS)})


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "submission", "ceiling", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_noise_ceiling_by_hand():
    gt = three_codes()
    gt["single"] = {"acc": 0.5, "arch": "y", "accs": [0.5]}  # one seed only: not in the ceiling
    [(label, c)] = ceiling.noise_ceiling(gt)
    assert label == "ground truth seed 0 vs seed 1 (ceiling)" and c["n"] == 3
    assert c["kendall_tau_b"] == pytest.approx(1 / 3) == c["tau_vs_one_seed"]
    assert c["pearson"] == pytest.approx(np.corrcoef([a for a, _ in SEED_ACCS], [b for _, b in SEED_ACCS])[0, 1])
    assert c["precision_at_10"] == 1.0
    assert ceiling.noise_ceiling(gt_of({"a": [0.5, 0.6]})) == []


def test_tau_vs_one_seed_by_hand():
    gt = three_codes()
    gt["single"] = {"acc": 0.5, "arch": "y", "accs": [0.5]}  # one seed only: left out
    # scores 1 < 2 < 3 against seed 0 (0.80 < 0.85 < 0.90): tau 1; against seed 1 (0.83, 0.81, 0.86):
    # pair (a0, a1) discordant, the other two concordant, tau 1/3; mean 2/3
    scores = {"a0": 1.0, "a1": 2.0, "a2": 3.0, "single": 9.0}
    assert ceiling.tau_vs_one_seed(gt, scores) == pytest.approx(2 / 3)
    assert ceiling.tau_vs_one_seed(gt, {"a0": 1.0}) is None  # fewer than 2 codes with a score
    assert ceiling.tau_vs_one_seed(gt, {"a0": 1.0, "a1": 1.0, "a2": 1.0}) is None  # constant: undefined


def test_noise_ceiling_with_four_seeds_is_split_half():
    accs = {"a0": [0.1, 0.2, 0.3, 0.3], "a1": [0.2, 0.4, 0.2, 0.2], "a2": [0.5, 0.5, 0.6, 0.4],
            "a3": [0.9, 0.7, 0.8, 0.8], "two": [0.5, 0.6]}  # two seeds only: left out
    (half_label, half), (pair_label, pairs) = ceiling.noise_ceiling(gt_of(accs))
    # seeds {0,1} vs {2,3}: means 0.15, 0.3, 0.5, 0.8 vs 0.3, 0.2, 0.5, 0.8, one of 6 pairs discordant: 4/6.
    # {0,2} vs {1,3}: 0.2, 0.2, 0.55, 0.85 vs 0.25, 0.3, 0.45, 0.75, one tie in x, 5 concordant: 5/sqrt(5*6);
    # {0,3} vs {1,2}: 0.2, 0.2, 0.45, 0.85 vs 0.25, 0.3, 0.55, 0.75: the same 5/sqrt(30)
    assert half_label == "ground truth 2-seed mean vs 2-seed mean (ceiling; mean of 3 splits)" and half["n"] == 4
    assert half["kendall_tau_b"] == pytest.approx((4 / 6 + 2 * 5 / math.sqrt(30)) / 3) and half["splits"] == 3
    assert half["precision_at_10"] == 1.0
    first = np.corrcoef([0.15, 0.3, 0.5, 0.8], [0.3, 0.2, 0.5, 0.8])[0, 1]
    others = np.corrcoef([0.2, 0.2, 0.55, 0.85], [0.25, 0.3, 0.45, 0.75])[0, 1] + np.corrcoef(
        [0.2, 0.2, 0.45, 0.85], [0.25, 0.3, 0.55, 0.75])[0, 1]
    assert half["pearson"] == pytest.approx((first + others) / 3)
    seeds = np.array([accs[f"a{i}"] for i in range(4)])
    taus = [stats.kendalltau(seeds[:, i], seeds[:, j]).statistic for i in range(4) for j in range(i + 1, 4)]
    assert pair_label == "ground truth one seed vs another (mean)" and pairs["n"] == 4
    assert pairs["kendall_tau_b"] == pytest.approx(np.mean(taus)) == pairs["tau_vs_one_seed"]
    assert "tau_vs_one_seed" not in half
    assert ceiling.one_seed_tau(seeds) == pytest.approx(np.mean(taus))


def test_seed_accs_keeps_the_most_common_seed_count():
    gt = gt_of({"a": [1, 2, 3], "b": [2, 3, 4], "c": [1, 2], "d": [5, 6, 7, 8]})
    gt["e"] = {"acc": 1, "arch": "x"}
    gt["f"] = "not an entry"
    # 3 seeds is the common count: c (2 seeds) is left out, d is cut to its first 3
    assert ceiling.seed_accs(gt) == {"a": [1, 2, 3], "b": [2, 3, 4], "d": [5, 6, 7]}
    # a tie between counts keeps the larger one
    assert ceiling.seed_accs(gt_of({"a": [1, 2], "b": [1, 2, 3, 4]})) == {"b": [1, 2, 3, 4]}
    assert ceiling.seed_accs(gt_of({"a": [1]})) == {}
    for bad in ([0.5, "0.6"], [0.5, float("nan")], "0.5", [0.5, True]):
        with pytest.raises(SubmissionError, match="'accs' must be a list of finite numbers.*: b$"):
            ceiling.seed_accs({"a": {"accs": [0.1, 0.2]}, "b": {"accs": bad}})


def test_projection_by_hand():
    # seed 0 vs seed 1 tau 1/3 -> r1 = sin(pi/6) = 1/2; two 2-seed means: r2 = 2 r1 / (1 + r1) = 2/3
    p = ceiling.projection(three_codes(), ks=(1, 2, 3), n_resamples=0)
    assert p["codes"] == 3 and p["seeds"] == 2
    assert p["one_seed_tau"] == pytest.approx(1 / 3) and p["one_seed_r"] == pytest.approx(0.5)
    one, two, three = p["projected"]
    assert one["mean_vs_mean_tau"] == pytest.approx(1 / 3)
    assert one["best_predictor_tau"] == pytest.approx(0.5)  # 2/pi asin(sqrt(1/2)) = 2/pi * pi/4
    assert two["mean_vs_mean_tau"] == pytest.approx(2 / math.pi * math.asin(2 / 3))
    assert three["mean_vs_mean_tau"] == pytest.approx(2 / math.pi * math.asin(0.75))  # 3 r1 / (1 + 2 r1)
    assert p["committed_mean_best_tau"] == pytest.approx(2 / math.pi * math.asin(math.sqrt(2 / 3)))
    # tau 0.6 needs r = sin(0.3 pi) = 0.809017; k = r (1 - r1) / (r1 (1 - r)) = 4.236 -> 5 seeds per side
    assert p["seeds_needed"] == 5 and p["target_tau"] == 0.6
    assert p["seeds_needed_interval"] == [None, None]
    # seed sd: within-code variances 0.03^2/2, 0.04^2/2, 0.04^2/2; code means 0.815, 0.83, 0.88
    assert p["seed_sd"] == pytest.approx(math.sqrt((0.0009 + 0.0016 + 0.0016) / 2 / 3))
    assert p["code_mean_sd"] == pytest.approx(np.std([0.815, 0.83, 0.88], ddof=1))
    assert ceiling.projection(gt_of({"a": [0.5, 0.6]})) is None


def test_seeds_needed_edges_and_round_trips():
    assert ceiling.seeds_needed(0.0, 0.6) is None and ceiling.seeds_needed(-0.2, 0.6) is None
    assert ceiling.seeds_needed(1.0, 0.6) == 1
    r = ceiling.correlation_of_tau(0.6)
    assert ceiling.seeds_needed(r, 0.6) == 1  # one seed already there
    assert ceiling.seeds_needed(r - 1e-6, 0.6) == 2
    for tau in (-0.5, 0.0, 0.257, 0.9):
        assert ceiling.tau_of_correlation(ceiling.correlation_of_tau(tau)) == pytest.approx(tau)
    assert ceiling.mean_reliability(0.4, 1) == pytest.approx(0.4)
    k = ceiling.seeds_needed(0.4, 0.6)
    assert ceiling.tau_of_correlation(ceiling.mean_reliability(0.4, k)) >= 0.6
    assert ceiling.tau_of_correlation(ceiling.mean_reliability(0.4, k - 1)) < 0.6
    with pytest.raises(MetricError, match="2 codes x >= 2 seeds"):
        ceiling.one_seed_tau([[0.1, 0.2]])


def test_projection_from_two_seeds_predicts_measured_split_halves():
    """A second route: simulate codes whose seeds are independent noise around their means, project
    from seeds 0-1 only, and measure the 4-seed vs 4-seed and 1-seed means on the other seeds."""
    rng = np.random.default_rng(7)
    codes, true_r = 3000, 0.35
    mu = rng.normal(0, math.sqrt(true_r), codes)
    acc = mu[:, None] + rng.normal(0, math.sqrt(1 - true_r), (codes, 10))
    p = ceiling.projection(gt_of({f"c{i}": acc[i, :2] for i in range(codes)}), ks=(1, 4), n_resamples=0)
    assert p["one_seed_r"] == pytest.approx(true_r, abs=0.03)
    measured_4 = stats.kendalltau(acc[:, 2:6].mean(1), acc[:, 6:10].mean(1)).statistic
    assert p["projected"][1]["mean_vs_mean_tau"] == pytest.approx(measured_4, abs=0.03)
    # the best predictor (the true means) against one 2-seed mean
    best = stats.kendalltau(mu, acc[:, 2:4].mean(1)).statistic
    assert p["committed_mean_best_tau"] == pytest.approx(best, abs=0.03)


def test_projection_interval_brackets_the_estimate():
    rng = np.random.default_rng(3)
    mu = rng.normal(0, 1, 40)
    acc = mu[:, None] + rng.normal(0, 1, (40, 2))
    p = ceiling.projection(gt_of({f"c{i}": acc[i] for i in range(40)}), n_resamples=200, seed=1)
    lo, hi = p["seeds_needed_interval"]
    assert lo <= p["seeds_needed"] and (hi is None or p["seeds_needed"] <= hi)
    again = ceiling.projection(gt_of({f"c{i}": acc[i] for i in range(40)}), n_resamples=200, seed=1)
    assert again == p  # seeded


def test_cli_prints_measures_projects_and_writes_json(tmp_path):
    gt = three_codes()
    gt["single"] = {"acc": 0.5, "arch": "y", "accs": [0.5]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    out = tmp_path / "ceiling.json"
    proc = run_cli("--gt", path, "--seeds", "1,2", "--resamples", "0", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "3 codes x 2 seeds (1 entries with another seed count left out)" in proc.stdout
    assert "seed 0 vs seed 1 (ceiling): Kendall tau 0.333" in proc.stdout
    assert "needs 5 seeds per side" in proc.stdout and "30 trainings of these 3 codes" in proc.stdout
    report = json.loads(out.read_text())
    assert report["measured"][0]["kendall_tau_b"] == pytest.approx(1 / 3)
    assert [r["seeds"] for r in report["model"]["projected"]] == [1, 2]
    assert report["model"]["seeds_needed"] == 5


def test_cli_errors_are_clear(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"a": {"acc": 0.5, "arch": "x"}, "b": {"acc": 0.6, "arch": "y"}}))
    proc = run_cli("--gt", path)
    assert proc.returncode == 1 and "0 codes with per-seed accuracies" in proc.stderr
    path.write_text("[1, 2]")
    proc = run_cli("--gt", path)
    assert proc.returncode == 1 and "expected a JSON object" in proc.stderr
    path.write_text("{")
    proc = run_cli("--gt", path)
    assert proc.returncode == 1 and "malformed JSON" in proc.stderr
    path.write_text(json.dumps({"a": {"acc": 0.5, "arch": "x", "accs": [0.5, None]}}))
    proc = run_cli("--gt", path)
    assert proc.returncode == 1 and "'accs' must be a list of finite numbers" in proc.stderr and ": a" in proc.stderr
    proc = run_cli("--gt", tmp_path / "missing.json")
    assert proc.returncode == 1 and "missing.json" in proc.stderr
    proc = run_cli("--gt", path, "--target", "1.5")
    assert proc.returncode == 2 and "target Kendall tau must be in (0, 1)" in proc.stderr
    proc = run_cli("--gt", path, "--seeds", "0,2")
    assert proc.returncode == 2 and "seed counts >= 1" in proc.stderr
