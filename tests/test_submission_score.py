"""`python -m submission score`: numbers equal to independent routes, clear errors, the plot, and 45,000 entries."""

import json
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy import stats

from encoding import DOCUMENTED, RELEASED, ArchEntry, NetSpec, costs, read_arch_list, write_arch_list
from submission import metrics
from submission.errors import SubmissionError
from submission.score import format_report, score
from submission.validate import validate_file

ROOT = Path(__file__).resolve().parent.parent
N_SUB, N_GT = 40, 30
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "submission", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    """A 40-entry submission and a 30-entry ground truth (with extra per-entry keys) over the same codes."""
    codes = [a.code() for a in DOCUMENTED.sample_many(N_SUB, seed=1)]
    _, macs = costs(codes)
    rng = np.random.default_rng(0)
    truth = 0.5 + 0.2 * macs / macs.max() + rng.normal(0, 0.02, N_SUB)
    pred = truth + rng.normal(0, 0.01, N_SUB)
    sub = tmp_path / "submit.json"
    write_arch_list(sub, [ArchEntry(f"arch{i + 1}", c, float(p))
                          for i, (c, p) in enumerate(zip(codes, pred, strict=True))])
    gt_ids = sorted(rng.choice(N_SUB, N_GT, replace=False))
    gt = {f"arch{i + 1}": {"acc": float(truth[i]), "arch": codes[i], "seeds": [float(truth[i]), 0.1]} for i in gt_ids}
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    return {"sub": sub, "gt": gt_path, "gt_data": gt, "codes": codes, "pred": pred, "truth": truth, "gt_idx": gt_ids}


def test_score_cli_report_equals_independent_computation(tmp_path, files):
    out = tmp_path / "report.json"
    r = run_cli("score", files["sub"], "--gt", files["gt"], "--out", out, "--resamples", 200)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    idx = files["gt_idx"]
    pred, truth = files["pred"][idx], files["truth"][idx]
    params, macs = costs([files["codes"][i] for i in idx])
    assert report["n"] == N_GT
    sub = report["predictors"]["submission"]
    assert sub["kendall_tau_b"] == pytest.approx(stats.kendalltau(pred, truth).statistic, abs=1e-12)
    assert sub["pearson_abs"] == pytest.approx(abs(stats.pearsonr(pred, truth).statistic), abs=1e-12)
    assert sub["spearman"] == pytest.approx(stats.spearmanr(pred, truth).statistic, abs=1e-12)
    assert sub["weighted_tau"] == pytest.approx(stats.weightedtau(pred, truth).statistic, abs=1e-12)
    for name, base in (("macs", macs), ("params", params)):
        assert report["predictors"][name]["kendall_tau_b"] == pytest.approx(
            stats.kendalltau(base, truth).statistic, abs=1e-12)
    assert sub["bootstrap"]["kendall_tau_b"]["n_resamples"] == 200
    assert sub["precision_at_k"]["10%"]["k"] == 3
    for line in ("A  |Pearson|", "B  Kendall tau-b", "A 95% bootstrap interval", "Spearman rho",
                 "weighted Kendall tau", "precision@5% (K=2)", "precision@20% (K=6)",
                 "Kendall tau in true top 20% (K=6)", "bootstrap: 200 resamples of all 30 entries, seed 0"):
        assert line in r.stdout
    assert f"{sub['kendall_tau_b']:.4f}" in r.stdout
    assert report["seed_noise"] is None and "against one seed" not in r.stdout  # no per-seed "accs"


def test_per_seed_ground_truth_adds_the_ceiling_and_tau_against_one_seed(tmp_path, files):
    idx = files["gt_idx"]
    rng = np.random.default_rng(5)
    seeds = files["truth"][idx, None] + rng.normal(0, 0.02, (len(idx), 2))
    gt = {f"arch{i + 1}": {"acc": float(a.mean()), "arch": files["codes"][i], "accs": a.tolist()}
          for i, a in zip(idx, seeds, strict=True)}
    gt_path = tmp_path / "gt_seeds.json"
    gt_path.write_text(json.dumps(gt))
    out = tmp_path / "report.json"
    r = run_cli("score", files["sub"], "--gt", gt_path, "--out", out, "--resamples", 50)
    assert r.returncode == 0, r.stderr
    noise = json.loads(out.read_text())["seed_noise"]
    [ceiling] = noise["ceiling"]
    assert ceiling["label"] == "ground truth seed 0 vs seed 1 (ceiling)" and noise["seeds"] == 2
    assert ceiling["kendall_tau_b"] == pytest.approx(stats.kendalltau(seeds[:, 0], seeds[:, 1]).statistic)
    params, macs = costs([files["codes"][i] for i in idx])
    for name, values in (("submission", files["pred"][idx]), ("macs", macs), ("params", params)):
        expected = np.mean([stats.kendalltau(values, seeds[:, s]).statistic for s in (0, 1)])
        assert noise["tau_vs_one_seed"][name] == pytest.approx(expected)
    assert noise["projection"]["one_seed_tau"] == pytest.approx(ceiling["kendall_tau_b"])
    assert "B against one seed (mean of 2)" in r.stdout
    assert f"{noise['tau_vs_one_seed']['macs']:.4f}" in r.stdout
    assert f"seed 0 vs seed 1 (ceiling): Kendall tau {ceiling['kendall_tau_b']:.3f}" in r.stdout
    assert f"against this 2-seed mean: {noise['projection']['committed_mean_best_tau']:.3f}" in r.stdout


def test_split_reports_a_and_b_on_seeded_halves(files):
    report, _ = score(files["sub"], files["gt"], split_seed=3, n_resamples=0)
    split = report["split"]
    assert (split["n_a"], split["n_b"]) == (15, 15)
    perm = np.random.default_rng(3).permutation(N_GT)
    idx = np.array(files["gt_idx"])
    half_a, half_b = idx[np.sort(perm[:15])], idx[np.sort(perm[15:])]
    truth, pred = files["truth"], files["pred"]
    assert split["submission"]["A"] == pytest.approx(abs(stats.pearsonr(pred[half_a], truth[half_a]).statistic))
    assert split["submission"]["B"] == pytest.approx(stats.kendalltau(pred[half_b], truth[half_b]).statistic)
    assert "A/B split (seed 3): A on 15 ids, B on the other 15" in format_report(report)


def test_missing_ids_are_listed(tmp_path, files):
    gt = dict(files["gt_data"])
    gt["arch77"] = {"acc": 0.7, "arch": files["codes"][0]}
    gt["arch78"] = {"acc": 0.6, "arch": files["codes"][1]}
    path = tmp_path / "gt2.json"
    path.write_text(json.dumps(gt))
    r = run_cli("score", files["sub"], "--gt", path)
    assert r.returncode == 1
    assert "arch77: in the ground truth but missing" in r.stderr and "arch78" in r.stderr


def test_changed_code_is_an_error(tmp_path, files):
    gt = json.loads(json.dumps(files["gt_data"]))
    ident = next(iter(gt))
    other = next(c for c in files["codes"] if c != gt[ident]["arch"])
    gt[ident]["arch"] = other
    path = tmp_path / "gt2.json"
    path.write_text(json.dumps(gt))
    r = run_cli("score", files["sub"], "--gt", path)
    assert r.returncode == 1 and f"{ident}: ground-truth code {other!r} differs" in r.stderr


def test_bad_ground_truth_names_the_entry(tmp_path, files):
    gt = json.loads(json.dumps(files["gt_data"]))
    ident = list(gt)[2]
    gt[ident]["acc"] = None
    path = tmp_path / "gt2.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(SubmissionError, match=f"{ident}: acc None is not a number \\(ground truth\\)"):
        score(files["sub"], path)


def test_constant_submission_gets_a_clear_message_from_score_and_validate(tmp_path, files):
    entries = read_arch_list(files["sub"])
    const = tmp_path / "const.json"
    write_arch_list(const, [ArchEntry(e.id, e.code, 0.5) for e in entries])
    r = run_cli("score", const, "--gt", files["gt"])
    assert r.returncode == 1
    assert f"submission acc values are all equal (0.5 on all {N_GT} scored ids" in r.stderr
    assert "correlation is undefined" in r.stderr and "nan" not in (r.stdout + r.stderr).lower()
    archs = tmp_path / "archs.json"
    write_arch_list(archs, [ArchEntry(e.id, e.code) for e in entries])
    r = run_cli("validate", const, "--archs", archs)
    assert r.returncode == 1 and f"all {N_SUB} acc values are equal (0.5; ids arch1 .. arch{N_SUB})" in r.stdout


def test_plot_is_a_readable_png(tmp_path, files):
    png = tmp_path / "scatter.png"
    r = run_cli("score", files["sub"], "--gt", files["gt"], "--plot", png, "--resamples", 0)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(png)
    assert image.shape[2] in (3, 4) and image.shape[1] > image.shape[0] > 100  # two panels side by side


def test_config_model_section_sets_the_baseline_netspec(tmp_path, files):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("device: cpu\nmodel:\n  width_mult: 0.25\n  stem: small\n  in_channels: 1\n  num_classes: 10\n")
    out = tmp_path / "report.json"
    r = run_cli("score", files["sub"], "--gt", files["gt"], "--config", cfg, "--out", out, "--resamples", 0)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    spec = NetSpec(width_mult=0.25, stem="small", in_channels=1, num_classes=10)
    assert report["net_spec"] == spec.to_dict()
    params, _ = costs([files["codes"][i] for i in files["gt_idx"]], spec)
    truth = files["truth"][files["gt_idx"]]
    assert report["predictors"]["params"]["kendall_tau_b"] == pytest.approx(
        stats.kendalltau(params, truth).statistic, abs=1e-12)
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: cpu\n")
    r = run_cli("score", files["sub"], "--gt", files["gt"], "--config", bad)
    assert r.returncode == 1 and "no 'model:' section" in r.stderr


def test_a_submission_worse_than_macs_is_flagged(tmp_path, files):
    entries = read_arch_list(files["sub"])
    rng = np.random.default_rng(5)
    noise = tmp_path / "noise.json"
    write_arch_list(noise, [ArchEntry(e.id, e.code, float(rng.random())) for e in entries])
    report, _ = score(noise, files["gt"], n_resamples=0)
    assert "warning: the submission does not beat the macs" in format_report(report)


def test_45000_entries(tmp_path, challenge_list_path):
    entries = read_arch_list(challenge_list_path)
    _, macs = costs([e.code for e in entries])
    rng = np.random.default_rng(0)
    acc = 0.6 + 0.1 * macs / macs.max() + rng.normal(0, 0.01, len(entries))
    sub = tmp_path / "submit.json"
    write_arch_list(sub, [ArchEntry(e.id, e.code, float(a)) for e, a in zip(entries, acc, strict=True)])
    truth = acc + rng.normal(0, 0.01, len(entries))
    pick = rng.choice(len(entries), 5000, replace=False)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({entries[i].id: {"acc": float(truth[i]), "arch": entries[i].code} for i in pick}))
    start = time.perf_counter()
    assert validate_file(sub, entries).ok
    mid = time.perf_counter()
    report, _ = score(sub, gt, split_seed=0)
    end = time.perf_counter()
    print(f"\n45,000-entry submission: validate {mid - start:.2f} s, score on 5,000 GT ids {end - mid:.2f} s")
    assert report["n"] == 5000
    sub_table = report["predictors"]["submission"]
    assert sub_table["bootstrap"]["kendall_tau_b"]["resample_size"] == metrics.BOOTSTRAP_MAX_SIZE
    assert sub_table["kendall_tau_b"] == pytest.approx(stats.kendalltau(acc[pick], truth[pick]).statistic, abs=1e-12)
    assert "m-out-of-n" in format_report(report)


def _gt_file(tmp_path, text):
    path = tmp_path / "gt_bad.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("make_text,message", [
    (lambda gt, ident: json.dumps(gt)[:-1] + f', "{ident}": {json.dumps(gt[ident])}}}', "duplicate id in the ground"),
    (lambda gt, ident: json.dumps({**gt, ident: 0.7}), "ground-truth entry is not an object"),
    (lambda gt, ident: json.dumps({**gt, ident: {"acc": 0.7}}), "ground-truth entry has no string 'arch'"),
    (lambda gt, ident: json.dumps({**gt, ident: {"acc": "0.7", "arch": gt[ident]["arch"]}}), "is not a number"),
])
def test_ground_truth_problems_name_the_id(tmp_path, files, make_text, message):
    gt = files["gt_data"]
    ident = list(gt)[4]
    with pytest.raises(SubmissionError) as e:
        score(files["sub"], _gt_file(tmp_path, make_text(gt, ident)), n_resamples=0)
    assert message in str(e.value) and ident in str(e.value)


def test_ground_truth_shape_errors(tmp_path, files):
    with pytest.raises(SubmissionError, match="expected a JSON object"):
        score(files["sub"], _gt_file(tmp_path, "[1, 2]"))
    one = dict(list(files["gt_data"].items())[:1])
    with pytest.raises(SubmissionError, match="1 ground-truth entries; need at least 2"):
        score(files["sub"], _gt_file(tmp_path, json.dumps(one)))


def test_constant_ground_truth_is_reported(tmp_path, files):
    gt = {k: {**v, "acc": 0.7} for k, v in files["gt_data"].items()}
    with pytest.raises(SubmissionError, match=f"ground-truth accuracies are all equal \\(0.7 on all {N_GT}"):
        score(files["sub"], _gt_file(tmp_path, json.dumps(gt)))


def test_invalid_code_in_both_files_names_the_id(tmp_path, files):
    bad = "1" + "9" * 51
    gt = json.loads(json.dumps(files["gt_data"]))
    ident = list(gt)[1]
    gt[ident]["arch"] = bad
    entries = read_arch_list(files["sub"])
    sub = tmp_path / "sub_bad.json"
    write_arch_list(sub, [ArchEntry(e.id, bad if e.id == ident else e.code, e.acc) for e in entries])
    with pytest.raises(SubmissionError, match=f"{ident}: invalid subnet code"):
        score(sub, _gt_file(tmp_path, json.dumps(gt)), n_resamples=0)


def test_config_errors(tmp_path):
    from submission.baselines import net_spec_from_config

    assert net_spec_from_config(None) == NetSpec()
    with pytest.raises(SubmissionError, match="absent.yaml does not exist"):
        net_spec_from_config(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("model: [\n")
    with pytest.raises(SubmissionError, match="broken.yaml is not valid YAML"):
        net_spec_from_config(tmp_path / "broken.yaml")
    (tmp_path / "typo.yaml").write_text("model:\n  widht_mult: 0.5\n")
    with pytest.raises(SubmissionError, match=r"bad 'model:' section: unknown model config keys \['widht_mult'\]"):
        net_spec_from_config(tmp_path / "typo.yaml")


def test_an_undefined_baseline_is_reported_and_the_rest_still_scores(tmp_path):
    code = next(a.code() for a in DOCUMENTED.sample_many(50, seed=3) if a.depths[2] >= 3)
    chars = list(code)
    chars[28], chars[30] = chars[30], chars[28]  # swap conv1 of stage-3 blocks 2 and 3: same MACs and params
    twin = "".join(chars)
    assert twin != code and costs([code])[1][0] == costs([twin])[1][0]
    gt = _gt_file(tmp_path, json.dumps({"a": {"acc": 0.7, "arch": code}, "b": {"acc": 0.6, "arch": twin},
                                        "c": {"acc": 0.5, "arch": files_code(4)}}))
    sub = tmp_path / "sub.json"
    write_arch_list(sub, [ArchEntry("a", code, 0.3), ArchEntry("b", twin, 0.2), ArchEntry("c", files_code(4), 0.1)])
    report, _ = score(sub, gt, n_resamples=0)
    assert report["predictors"]["submission"]["kendall_tau_b"] == 1.0
    gt2 = _gt_file(tmp_path, json.dumps({"a": {"acc": 0.7, "arch": code}, "b": {"acc": 0.6, "arch": twin}}))
    report, _ = score(sub, gt2, n_resamples=0)
    assert "predictions are all equal" in report["predictors"]["macs"]["error"]
    text = format_report(report)
    assert "note: macs: predictions are all equal" in text and "undefined" in text


def files_code(seed):
    return DOCUMENTED.sample_many(1, seed=seed)[0].code()


def test_config_base_inheritance_reaches_the_baselines(tmp_path):
    # A config that extends the demo config by `base:` keeps the demo's model unless it overrides it.
    from submission.baselines import net_spec_from_config

    child = tmp_path / "child.yaml"
    child.write_text(f"base: {ROOT / 'configs' / 'demo.yaml'}\nmodel: {{width_mult: 0.25}}\n")
    spec = net_spec_from_config(child)
    assert spec.width_mult == 0.25 and spec.stem == "imagenet" and spec.in_channels == 1 and spec.num_classes == 10


def test_macs_baseline_is_counted_at_the_configs_resolution(tmp_path):
    # The challenge stem (7x7/2 + pool) leaves stage maps 4/2/1/1 at 16 px but 56/28/14/7 at 224 px:
    # the stages weigh differently, the two MACs rankings differ, and the baseline must use the
    # config's side.
    from submission.baselines import resolution_from_config

    codes = [a.code() for a in RELEASED.sample_many(40, seed=5)]
    spec = NetSpec()
    at16, at224 = costs(codes, spec, resolution=16)[1], costs(codes, spec)[1]
    assert stats.kendalltau(at16, at224)[0] < 1.0
    gt = {f"a{i}": {"acc": float(m), "arch": c} for i, (c, m) in enumerate(zip(codes, at16, strict=True))}
    sub = tmp_path / "sub.json"
    write_arch_list(sub, [ArchEntry(f"a{i}", c, float(-i)) for i, c in enumerate(codes)])
    gt_path = _gt_file(tmp_path, json.dumps(gt))
    report, _ = score(sub, gt_path, spec=spec, resolution=16, n_resamples=0)
    assert report["predictors"]["macs"]["kendall_tau_b"] == 1.0 and report["resolution"] == 16
    assert "MACs counted at 16 px" in format_report(report)
    report, _ = score(sub, gt_path, spec=spec, n_resamples=0)
    assert report["predictors"]["macs"]["kendall_tau_b"] < 1.0
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base: {ROOT / 'configs' / 'demo.yaml'}\ndata: {{resolution: 12}}\n")
    assert resolution_from_config(cfg) == 12 and resolution_from_config(ROOT / "configs" / "demo.yaml") == 56
    assert resolution_from_config(None) is None
    cfg.write_text("model: {}\ndata: {resolution: big}\n")
    with pytest.raises(SubmissionError, match="data.resolution must be a positive integer, got 'big'"):
        resolution_from_config(cfg)
