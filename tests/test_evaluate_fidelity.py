"""Proxy fidelity: rank agreement arithmetic, cheap-setting configs, and a tiny end-to-end run."""

import json
import os

import paddle
import pytest
from fakedata import write_fashion_like

from encoding import DOCUMENTED, ArchEntry, KitError, net_spec, write_arch_list
from evaluate.__main__ import main
from evaluate.fidelity import compare, format_table, sample_entries, setting_configs
from infra.config import ConfigError, load_yaml
from supernet import ResNet48Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def results(values, key="top1"):
    return [{key: v, "top1": v, "top5": v, "loss": v} for v in values]


def test_identical_ranking_scores_one_and_reversed_scores_minus_one():
    full = results([0.1, 0.4, 0.2, 0.3, 0.5])
    same = compare(full, results([0.0, 0.3, 0.1, 0.2, 0.9]), top_fraction=0.4)
    assert same == {"kendall_tau": 1.0, "spearman": 1.0, "precision_at_top": 1.0}
    rev = compare(full, results([0.5, 0.2, 0.4, 0.3, 0.1]), top_fraction=0.4)
    assert rev["kendall_tau"] == -1.0 and rev["spearman"] == pytest.approx(-1.0) and rev["precision_at_top"] == 0.0


def test_one_swap_by_hand():
    # 4 subnets, one adjacent pair swapped: 5 concordant, 1 discordant pair -> tau = 4/6
    out = compare(results([1, 2, 3, 4]), results([1, 3, 2, 4]), top_fraction=0.25)
    assert out["kendall_tau"] == pytest.approx(4 / 6)
    assert out["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert out["precision_at_top"] == 1.0  # the best one is still first


def test_loss_ranks_low_loss_first():
    full = results([0.5, 0.7, 0.9])
    assert compare(full, results([1.0, 2.0, 3.0]), metric="loss")["kendall_tau"] == 1.0


def test_constant_cheap_results_are_reported_undefined():
    out = compare(results([0.1, 0.2, 0.3]), results([0.1, 0.1, 0.1]))
    assert out["kendall_tau"] is None and out["spearman"] is None
    assert "predictions are all equal" in out["undefined"]


def test_sample_is_seeded_sized_and_in_list_order():
    entries = [ArchEntry(f"a{i}", "x") for i in range(50)]
    s = sample_entries(entries, 10, seed=3)
    assert len(s) == 10 and s == sample_entries(entries, 10, seed=3)
    positions = [entries.index(e) for e in s]
    assert positions == sorted(positions)
    assert s != sample_entries(entries, 10, seed=4)
    assert sample_entries(entries, 80, seed=0) == entries
    with pytest.raises(KitError, match="at least 2 subnets"):
        sample_entries(entries, 1, seed=0)


def base_cfg():
    return load_yaml(os.path.join(ROOT, "configs", "demo.yaml"))


def with_settings(settings):
    cfg = base_cfg()
    cfg["evaluate"]["fidelity"]["settings"] = settings
    return cfg


def test_cheap_settings_apply_their_keys_to_a_copy():
    cfg = with_settings([{"name": "small", "set": {"evaluate.subset": 10, "data.resolution": 12}}])
    (n0, full), (n1, cheap) = setting_configs(cfg)
    assert (n0, n1) == ("full", "small")
    assert cheap["evaluate"]["subset"] == 10 and cheap["data"]["resolution"] == 12
    assert full["evaluate"]["subset"] == base_cfg()["evaluate"]["subset"]
    # every cheap setting shipped in the demo config really changes something
    (_, shipped_full), *shipped = setting_configs(base_cfg())
    assert shipped and all(c != shipped_full for _, c in shipped), [n for n, c in shipped if c == shipped_full]


@pytest.mark.parametrize("settings,error,message", [
    ([{"name": "x", "set": {"model.width_mult": 0.25}}], KitError, "changes 'model.width_mult'"),
    ([{"name": "x", "set": {"evaluate.checkpoint": "other.pdparams"}}], KitError, "changes 'evaluate.checkpoint'"),
    ([{"name": "x"}], KitError, r"settings\[0\] must be a mapping with 'name' and 'set'"),
    ([{"name": "full", "set": {}}], KitError, "names must be distinct"),
    ([{"name": "x", "set": {"evaluate.subsett": 3}}], ConfigError, "unknown config key 'evaluate.subsett'"),
])
def test_bad_cheap_settings(settings, error, message):
    with pytest.raises(error, match=message):
        setting_configs(with_settings(settings))


def test_fidelity_command_end_to_end(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""base: {os.path.join(ROOT, 'configs', 'demo.yaml')}
data: {{resolution: 16, holdout: null, fashion_mnist_dir: {write_fashion_like(tmp_path / 'fm', n_train=200, n_val=60)}}}
evaluate:
  subset: 40
  batch_size: 20
  calibration: {{batches: 2, batch_size: 16}}
  fidelity:
    sample: 5
    metric: loss
    top_fraction: 0.2
    settings:
      - {{name: eval-20, set: {{evaluate.subset: 20}}}}
      - {{name: no-calib, set: {{evaluate.calibration.mode: none}}}}
""")
    paddle.seed(0)
    ckpt = tmp_path / "super.pdparams"
    paddle.save(ResNet48Supernet(net_spec(load_yaml(str(config)))).state_dict(), str(ckpt))
    archs = tmp_path / "archs.json"
    write_arch_list(archs, [ArchEntry(f"n{i}", a.code()) for i, a in enumerate(DOCUMENTED.sample_many(8, seed=2))])
    report_path = tmp_path / "fidelity.json"
    rc = main(["fidelity", "--config", str(config), "--checkpoint", str(ckpt), "--archs", str(archs),
               "--report", str(report_path)])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(report_path.read_text())
    rows = {r["name"]: r for r in report["settings"]}
    assert list(rows) == ["full", "eval-20", "no-calib"]
    assert report["sample"] == 5 and report["metric"] == "loss"
    assert [r["id"] for r in rows["full"]["results"]] == [e.id for e in sample_entries(
        [ArchEntry(f"n{i}", "") for i in range(8)], 5, 0)]
    full = rows["full"]
    assert (full["kendall_tau"], full["spearman"], full["precision_at_top"], full["speedup"]) == (1.0, 1.0, 1.0, 1.0)
    assert (full["images"], full["resolution"], full["calibration_batches"]) == (40, 16, 2)
    assert rows["eval-20"]["images"] == 20 and rows["no-calib"]["calibration_batches"] == 0
    for name in ("eval-20", "no-calib"):
        assert -1.0 <= rows[name]["kendall_tau"] <= 1.0 and rows[name]["speedup"] > 0
    assert rows["no-calib"]["results"] != full["results"]
    table = format_table(report)
    assert table in out and "no-calib" in table and "speed-up" in table
