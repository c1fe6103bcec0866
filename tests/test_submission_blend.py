"""`python -m submission make --blend`: rank blends of several results (and MACs), checked by hand, every
component's problems named, and `submission score` showing each component beside the blend."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from encoding import DOCUMENTED, ArchEntry, costs, read_arch_list, write_arch_list
from submission.errors import SubmissionError
from submission.make import Component, blend_file, blend_path, blend_submission, parse_component, scaled_ranks

ROOT = Path(__file__).resolve().parent.parent
N = 12


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "submission", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    """An official list of N codes, supernet results (top1, loss), proxy results (zen) and a ground truth."""
    codes = [a.code() for a in DOCUMENTED.sample_many(N, seed=2)]
    archs = tmp_path / "archs.json"
    write_arch_list(archs, [ArchEntry(f"a{i}", c) for i, c in enumerate(codes)])
    rng = np.random.default_rng(0)
    top1, zen = rng.uniform(0.5, 0.8, N), rng.normal(100, 10, N)
    evals = tmp_path / "eval.json"
    evals.write_text(json.dumps([{"id": f"a{i}", "code": c, "top1": float(top1[i]), "loss": float(2 - top1[i])}
                                 for i, c in enumerate(codes)]))
    proxies = tmp_path / "proxies.json"
    proxies.write_text(json.dumps([{"id": f"a{i}", "code": c, "zen": float(zen[i]), "seconds": 1.0}
                                   for i, c in enumerate(codes)]))
    truth = top1 + rng.normal(0, 0.05, N)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({f"a{i}": {"acc": float(truth[i]), "arch": c} for i, c in enumerate(codes)}))
    return {"archs": archs, "list": read_arch_list(archs), "codes": codes, "eval": evals, "proxies": proxies,
            "gt": gt, "top1": top1, "zen": zen, "truth": truth}


def test_scaled_ranks_share_ties_and_span_zero_to_one():
    np.testing.assert_allclose(scaled_ranks([3.0, 1.0, 2.0, 2.0]), [1.0, 0.0, 0.5, 0.5])


def test_parse_component():
    assert parse_component("zen@p/results.json=0.5") == Component("zen", "p/results.json", 0.5)
    assert parse_component("top1@r.json") == Component("top1", "r.json", 1.0)
    assert parse_component("macs=2") == Component("macs", None, 2.0)
    for text, message in [("snip@r.json", "unknown metric 'snip'"), ("zen", "say which results file: zen@"),
                          ("macs@r.json", "macs is counted from the codes"), ("zen@r.json=-1", "positive number"),
                          ("zen@r.json=x", "weight 'x' is not a number"), ("top1@r.json=nan", "positive number")]:
        with pytest.raises(SubmissionError, match=message):
            parse_component(text)


def test_blend_is_the_weighted_mean_of_scaled_ranks(files):
    comps = [Component("top1", str(files["eval"]), 2.0), Component("zen", str(files["proxies"]), 1.0),
             Component("macs", None, 1.0)]
    entries, notes, sidecar = blend_submission(comps, files["list"])
    _, macs = costs(files["codes"])

    def ranks01(v):  # an independent route: scipy's average ranks
        return (stats.rankdata(v) - 1) / (N - 1)

    expected = (2 * ranks01(files["top1"]) + ranks01(files["zen"]) + ranks01(macs)) / 4
    assert [e.id for e in entries] == [f"a{i}" for i in range(N)]
    assert [e.acc for e in entries] == pytest.approx(expected, abs=1e-12)
    assert "top1@" in notes[0] and "x 0.5" in notes[0] and "macs x 0.25" in notes[0]
    assert [c["label"] for c in sidecar["components"]] == [c.label for c in comps]
    assert sidecar["components"][2]["values"] == {f"a{i}": float(m) for i, m in enumerate(macs)}
    # a loss enters negated: the blend of neg_loss alone is the ranking of top1 here (loss = 2 - top1)
    alone, _, _ = blend_submission([Component("neg_loss", str(files["eval"]))], files["list"])
    assert [e.acc for e in alone] == pytest.approx(ranks01(files["top1"]), abs=1e-12)
    with pytest.raises(SubmissionError, match="a blend is written as a fraction"):  # percents would mix units
        blend_submission(comps, files["list"], unit="percent")


def test_every_components_problems_are_named_and_nothing_is_written(files, tmp_path):
    broken = tmp_path / "broken.json"
    recs = json.loads(files["proxies"].read_text())
    recs[3].pop("zen")
    broken.write_text(json.dumps(recs[1:]))
    out = tmp_path / "sub.json"
    comps = [Component("zen", str(broken)), Component("top1", str(tmp_path / "absent.json")),
             Component("top5", str(files["eval"]))]
    with pytest.raises(SubmissionError, match="problem\\(s\\) in the blend's components; nothing written") as e:
        blend_file(comps, files["list"], out)
    text = str(e.value)
    assert f"zen@{broken}: a0: no result for this id" in text
    assert f"zen@{broken}: a3: result record has no 'zen'" in text
    assert f"top1@{tmp_path / 'absent.json'}: " in text and "no such file" in text
    assert f"top5@{files['eval']}: a0: result record has no 'top5'" in text
    assert not out.exists() and not Path(blend_path(out)).exists()
    with pytest.raises(SubmissionError, match="blend components repeat"):
        blend_submission([Component("macs", None), Component("macs", None, 2.0)], files["list"])


def test_cli_blend_then_score_shows_each_component_beside_the_blend(files, tmp_path):
    out = tmp_path / "blend.json"
    r = run_cli("make", "--archs", files["archs"], "--out", out, "--blend", f"top1@{files['eval']}=2",
                "--blend", f"zen@{files['proxies']}=1", "--blend", "macs=1")
    assert r.returncode == 0, r.stderr
    assert f"components: {tmp_path / 'blend.blend.json'}" in r.stdout
    report_path = tmp_path / "report.json"
    r = run_cli("score", out, "--gt", files["gt"], "--resamples", 0, "--out", report_path)
    assert r.returncode == 0, r.stderr
    assert "blends the ranks of 3 components" in r.stdout
    header = next(line for line in r.stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "submission", "c1", "top1", "c2", "zen", "c3", "macs", "MACs", "params"]
    tables = json.loads(report_path.read_text())["predictors"]
    assert list(tables) == ["submission", "c1 top1", "c2 zen", "c3 macs", "macs", "params"]
    for name, values in (("c1 top1", files["top1"]), ("c2 zen", files["zen"])):
        assert tables[name]["kendall_tau_b"] == pytest.approx(stats.kendalltau(values, files["truth"]).statistic)
        assert tables[name]["pearson_abs"] == pytest.approx(abs(stats.pearsonr(values, files["truth"]).statistic))
    assert tables["c3 macs"]["kendall_tau_b"] == pytest.approx(tables["macs"]["kendall_tau_b"])
    blend = [json.loads(out.read_text())[f"a{i}"]["acc"] for i in range(N)]
    assert tables["submission"]["kendall_tau_b"] == pytest.approx(stats.kendalltau(blend, files["truth"]).statistic)

    # the same path rewritten from one results file: the components file no longer matches, and says so
    r = run_cli("make", "--archs", files["archs"], "--out", out, "--results", files["proxies"], "--metric", "zen")
    assert r.returncode == 0, r.stderr
    assert "min-max scaled into [0, 1]" in r.stdout
    r = run_cli("score", out, "--gt", files["gt"], "--resamples", 0)
    assert r.returncode == 0, r.stderr
    assert "does not match this submission's acc" in r.stdout and " c1 " not in r.stdout


def test_cli_refuses_results_and_blend_together_and_metric_with_blend(files, tmp_path):
    out = tmp_path / "s.json"
    base = ["make", "--archs", files["archs"], "--out", out]
    r = run_cli(*base, "--results", files["eval"], "--blend", "macs")
    assert r.returncode == 1 and "not both" in r.stderr
    r = run_cli(*base, "--blend", "macs", "--metric", "top1")
    assert r.returncode == 1 and "--metric is part of each --blend component" in r.stderr
    r = run_cli(*base)
    assert r.returncode == 1 and "give --results RESULTS.json (or --blend components)" in r.stderr
    assert not out.exists()


def test_a_proxy_is_submitted_min_max_scaled_and_only_as_a_fraction(files):
    from submission.make import load_results, make_submission

    records, _ = load_results(files["proxies"])
    entries, notes = make_submission(records, files["list"], metric="zen")
    z = files["zen"]
    assert [e.acc for e in entries] == pytest.approx((z - z.min()) / (z.max() - z.min()), abs=1e-12)
    assert "zen min-max scaled into [0, 1]" in notes[0]
    with pytest.raises(SubmissionError, match="--unit percent makes no sense for 'zen'"):
        make_submission(records, files["list"], metric="zen", unit="percent")
    flat = [{**r, "zen": 5.0} for r in records]
    with pytest.raises(SubmissionError, match="all 12 zen values are equal"):
        make_submission(flat, files["list"], metric="zen")
