"""Latency tables of tiny static subnets on CPU, and rank comparison between tables."""

import copy
import json

import numpy as np
import pytest

from encoding import RELEASED, ArchEntry, NetSpec, costs, write_arch_list
from evaluate import latency as LAT

SPEC = NetSpec(stem="small", width_mult=0.125, in_channels=1, num_classes=10)

CONFIG = """
device: cpu
model:
  stem_width: 64
  stage_widths: [64, 128, 256, 512]
  width_mult: 0.125
  stem: small
  in_channels: 1
  num_classes: 10
latency:
  archs: null
  sample: null
  seed: 0
  batch_sizes: [1, 32]
  resolution: 28
  warmup: 1
  repeats: 3
  rounds: 1
  out: latency.json
"""

TABLE_KEYS = {"kind", "format", "device", "runtime", "runtime_versions", "paddle_version", "threads", "resolution",
              "batch_sizes", "warmup", "repeats", "rounds", "seed", "sample", "archs", "config", "model", "created",
              "energy", "codes"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("latency")
    (d / "cfg.yaml").write_text(CONFIG)
    archs = [RELEASED.min_arch()] + RELEASED.sample_many(7, seed=3, depth_uniform=True)
    write_arch_list(d / "archs.json", [ArchEntry(f"arch{i + 1}", a.code()) for i, a in enumerate(archs)])
    return d


@pytest.fixture(scope="module")
def table_path(workdir):
    out = workdir / "lat.json"
    with pytest.MonkeyPatch.context() as mp:  # no RAPL, whatever this machine has (tests/test_latency_energy.py)
        mp.setattr(LAT.L, "RAPL_ROOT", str(workdir / "no-powercap"))
        rc = LAT.main(["--config", str(workdir / "cfg.yaml"), "--archs", str(workdir / "archs.json"),
                       "--sample", "4", "--seed", "5", "--batch-sizes", "1,2", "latency.repeats=2", "--rounds", "2"] +
                      ["--out", str(out)])
    assert rc == 0
    return out


def test_table_has_declared_keys_and_costs(table_path, workdir):
    table = json.loads(table_path.read_text())
    assert set(table) == TABLE_KEYS
    assert table["kind"] == LAT.TABLE_KIND and table["device"].startswith("cpu (")
    assert table["batch_sizes"] == [1, 2] and table["resolution"] == 28
    assert table["repeats"] == 2 and table["rounds"] == 2 and table["warmup"] == 1
    assert table["sample"] == 4 and table["seed"] == 5
    assert table["threads"]["cpu_count"] >= 1 and "OMP_NUM_THREADS" in table["threads"]
    assert table["model"] == SPEC.to_dict()
    assert table["energy"] == {"measured": False, "reason": f"no readable RAPL counters under "
                               f"{workdir / 'no-powercap'} (absent, as in most VMs and containers, or energy_uj "
                               f"readable by root only)"}
    # the seeded sample: 4 of the 8 entries, in file order, the same as select_entries picks
    entries = LAT.read_arch_list(workdir / "archs.json")
    picked = LAT.select_entries(entries, 4, 5)
    assert [r["id"] for r in table["codes"]] == [e.id for e in picked]
    assert [r["code"] for r in table["codes"]] == [e.code for e in picked]
    params, macs = costs([e.code for e in picked], SPEC, resolution=28)
    for row, p, m in zip(table["codes"], params, macs, strict=True):
        assert set(row) == {"id", "code", "macs", "params", "latency", "energy"} and row["energy"] is None
        assert (row["macs"], row["params"]) == (int(m), int(p))
        assert set(row["latency"]) == {"1", "2"}
        for cell in row["latency"].values():
            assert set(cell) == {"median_ms", "iqr_ms"}
            assert cell["median_ms"] > 0 and cell["iqr_ms"] >= 0


def test_params_in_table_match_the_built_model(table_path):
    from supernet.static import build_static

    row = json.loads(table_path.read_text())["codes"][0]
    model = build_static(row["code"], SPEC)
    trainable = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    assert row["params"] == trainable


def test_median_and_iqr_of_timed_runs(monkeypatch, workdir):
    monkeypatch.setattr(LAT, "time_forward", lambda *a: (np.array([4.0, 1.0, 100.0, 3.0, 2.0]), None))
    rows = LAT.measure([ArchEntry("a", RELEASED.min_arch().code())], SPEC, [1, 3], 28, 0, 5, progress=False)
    # sorted 1,2,3,4,100: median 3, quartiles 2 and 4
    assert rows[0]["latency"] == {"1": {"median_ms": 3.0, "iqr_ms": 2.0}, "3": {"median_ms": 3.0, "iqr_ms": 2.0}}


def test_rounds_pool_runs_per_code(monkeypatch):
    calls = []

    def fake_time_forward(model, x, warmup, repeats, sync, meter):
        calls.append((model.arch.code(), x.shape[0]))
        return (np.array([1.0, 2.0, 3.0]) if len(calls) <= 4 else np.array([10.0, 20.0, 30.0])), None

    monkeypatch.setattr(LAT, "time_forward", fake_time_forward)
    codes = [a.code() for a in RELEASED.sample_many(2, seed=0)]
    rows = LAT.measure([ArchEntry("a", codes[0]), ArchEntry("b", codes[1])], SPEC, [1, 3], 28, 0, 3,
                       rounds=2, progress=False)
    assert len(calls) == 8  # 2 rounds x 2 codes x 2 batch sizes
    assert sorted(calls[:4]) == sorted(calls[4:]) and calls[:4] == [(codes[0], 1), (codes[0], 3), (codes[1], 1),
                                                                     (codes[1], 3)]
    # pooled runs 1,2,3,10,20,30: median 6.5, quartiles 2.25 and 17.5 (linear interpolation)
    for row in rows:
        assert row["latency"]["1"] == {"median_ms": 6.5, "iqr_ms": 15.25}


def test_input_resolution_falls_back_to_data_then_code():
    entries = [ArchEntry("a", RELEASED.min_arch().code())]
    assert LAT.input_resolution({"latency": {"resolution": 40}, "data": {"resolution": 28}}, entries) == 40
    assert LAT.input_resolution({"latency": {"resolution": None}, "data": {"resolution": 28}}, entries) == 28
    assert LAT.input_resolution({"latency": {"resolution": None}}, entries) == 224  # size code '1'
    with pytest.raises(LAT.LatencyError, match="data.resolution must be a positive integer"):
        LAT.input_resolution({"latency": {}, "data": {"resolution": "28px"}}, entries)


def test_time_forward_counts_every_repeat():
    calls = []
    times, joules = LAT.time_forward(lambda x: calls.append(x), "x", warmup=2, repeats=5, sync=lambda: None)
    assert len(calls) == 7 and times.shape == (5,) and (times >= 0).all() and joules is None


def test_select_entries_is_seeded_and_ordered():
    entries = [ArchEntry(f"a{i}", "x") for i in range(10)]
    first = LAT.select_entries(entries, 3, 7)
    assert first == LAT.select_entries(entries, 3, 7)
    idx = [entries.index(e) for e in first]
    assert idx == sorted(idx) and len(set(idx)) == 3
    assert LAT.select_entries(entries, None, 7) == entries
    with pytest.raises(LAT.LatencyError, match="sample 11 codes but the list has only 10"):
        LAT.select_entries(entries, 11, 0)


def test_compare_with_itself_is_one(table_path, capsys):
    assert LAT.main(["--compare", str(table_path), str(table_path)]) == 0
    out = capsys.readouterr().out
    assert f"{table_path} [A] batch 1 vs {table_path} [B] batch 1: Spearman 1.0000 over 4 codes" in out
    assert f"{table_path} [A] batch 2 vs {table_path} [B] batch 2: Spearman 1.0000 over 4 codes" in out


def _reversed_copy(table):
    """Same codes, latencies reassigned so the fastest gets the slowest time and so on."""
    rev = copy.deepcopy(table)
    for bs in table["batch_sizes"]:
        key = str(bs)
        order = sorted(range(len(table["codes"])), key=lambda i: table["codes"][i]["latency"][key]["median_ms"])
        values = [table["codes"][i]["latency"][key]["median_ms"] for i in order]
        for i, v in zip(order, reversed(values), strict=True):
            rev["codes"][i]["latency"][key]["median_ms"] = v
    return rev


def test_compare_with_reversed_copy_is_minus_one(table_path, tmp_path, capsys):
    table = LAT.load_table(table_path)
    rev = _reversed_copy(table)
    (tmp_path / "rev.json").write_text(json.dumps(rev))
    results = LAT.compare(table, rev, names=("A", "B"))
    by_what = {r["what"]: r["spearman"] for r in results}
    assert by_what["A batch 1 vs B batch 1"] == pytest.approx(-1.0)
    assert by_what["A batch 2 vs B batch 2"] == pytest.approx(-1.0)
    # reversing ranks negates the rank correlation with MACs (when it is defined)
    for bs in (1, 2):
        a, b = by_what[f"A batch {bs} vs MACs"], by_what[f"B batch {bs} vs MACs"]
        assert (a is None and b is None) or b == pytest.approx(-a)
    assert LAT.main(["--compare", str(table_path), str(tmp_path / "rev.json")]) == 0
    out = capsys.readouterr().out
    assert "Spearman -1.0000 over 4 codes  << below 0.9" in out


def test_compare_pairs_choose_batch_sizes(table_path):
    table = LAT.load_table(table_path)
    results = LAT.compare(table, table, pairs=[(1, 2)], names=("A", "B"))
    assert [r["what"] for r in results] == ["A batch 1 vs B batch 2", "A batch 1 vs MACs", "B batch 2 vs MACs"]
    lat1 = [r["latency"]["1"]["median_ms"] for r in table["codes"]]
    lat2 = [r["latency"]["2"]["median_ms"] for r in table["codes"]]
    from scipy.stats import spearmanr

    assert results[0]["spearman"] == pytest.approx(spearmanr(lat1, lat2).statistic)
    with pytest.raises(LAT.LatencyError, match=r"B has no batch size 32 \(it has \[1, 2\]\)"):
        LAT.compare(table, table, pairs=[(1, 32)], names=("A", "B"))


def test_compare_needs_three_common_codes(table_path, tmp_path, capsys):
    table = LAT.load_table(table_path)
    few = copy.deepcopy(table)
    few["codes"] = few["codes"][:2]
    (tmp_path / "few.json").write_text(json.dumps(few))
    assert LAT.main(["--compare", str(table_path), str(tmp_path / "few.json")]) == 1
    err = capsys.readouterr().err
    assert "share 2 codes; a rank correlation needs at least 3" in err


def test_compare_without_common_batch_size(table_path, tmp_path):
    table = LAT.load_table(table_path)
    other = copy.deepcopy(table)
    other["batch_sizes"] = [64]
    with pytest.raises(LAT.LatencyError, match="none in common, so say which to compare with --pair A:B"):
        LAT.compare(table, other, names=("A", "B"))


def test_spearman_of_constant_column_is_undefined():
    assert LAT.spearman([1.0, 1.0, 1.0], [1, 2, 3]) is None
    assert LAT.spearman([3.0, 1.0, 2.0], [30, 10, 20]) == pytest.approx(1.0)


@pytest.mark.parametrize("text, message", [
    ("[1, 2", "not JSON"),
    ('{"kind": "other"}', "not a latency table"),
    ('{"kind": "nas-latency-table"}', "'codes' is missing or not a list"),
    ('{"kind": "nas-latency-table", "codes": [{"code": "1"}]}', "codes[0] lacks 'code', 'macs' or 'latency'"),
])
def test_bad_tables(tmp_path, text, message):
    (tmp_path / "t.json").write_text(text)
    with pytest.raises(LAT.LatencyError) as err:
        LAT.load_table(tmp_path / "t.json")
    assert message in str(err.value)


@pytest.mark.parametrize("argv, message", [
    ([], "latency.archs is not set: give --archs ARCHS.json"),
    (["--archs", "A.json", "--batch-sizes", "1,x"], "'1,x' is not a comma-separated list of integers"),
    (["--archs", "A.json", "--batch-sizes", "1,1"], "batch sizes repeat"),
    (["--archs", "A.json", "latency.batch_sizes=[0]"], "batch sizes must be positive integers"),
    (["--archs", "A.json", "--repeats", "0"], "latency.repeats must be an integer >= 1"),
    (["--archs", "A.json", "--rounds", "0"], "latency.rounds must be an integer >= 1"),
    (["--archs", "A.json", "latency.colour=red"], "unknown config key 'latency.colour'"),
    (["--archs", "missing.json"], "missing.json: no such file"),
    (["--compare", "a.json", "b.json", "--repeats", "3"], "--compare reads two finished tables; --repeats"),
    (["--pair", "1:2"], "--pair only applies with --compare"),
])
def test_cli_errors(workdir, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(workdir)
    assert LAT.main(["--config", str(workdir / "cfg.yaml")] + argv) == 1
    assert message in capsys.readouterr().err


def test_invalid_code_in_list_names_the_entry(workdir, tmp_path, capsys):
    bad = "1" + "5" * 4 + "1" + "0" * 46  # structurally broken: depth 5 with zero digits
    write_arch_list(tmp_path / "bad.json", [ArchEntry("archX", RELEASED.min_arch().code())])
    text = (tmp_path / "bad.json").read_text().replace(RELEASED.min_arch().code(), bad)
    (tmp_path / "bad.json").write_text(text)
    assert LAT.main(["--config", str(workdir / "cfg.yaml"), "--archs", str(tmp_path / "bad.json"),
                     "--out", str(tmp_path / "o.json")]) == 1
    assert "entry 'archX': invalid subnet code" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
