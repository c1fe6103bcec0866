"""`python -m search run` end to end on a tiny Fashion-MNIST setting: the outputs, the cache (a rerun scores
nothing twice), determinism, kill -9 and rerun, latency budgets, bad input, and two launched ranks."""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from fakedata import write_fashion_like
from faults import python_with

from encoding import RELEASED, costs, net_spec, read_arch_list
from evaluate.latency import TABLE_KIND
from infra.config import load_yaml
from runtime.checkpoint import save_checkpoint
from search.__main__ import main
from supernet import ResNet48Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = """base: {base}
data:
  fashion_mnist_dir: {data}
  holdout: null
  resolution: 16
evaluate:
  subset: 40
  batch_size: 40
  progress: false
  calibration:
    batches: 2
    batch_size: 16
search:
  population: 6
  generations: 3
  rescore_top: 2
  progress: false
  screen:
    evaluate.subset: 20
    evaluate.calibration.batches: 1
"""
BUDGET = 1.2e6

# SIGKILL the search once `n` scores are in the cache, or once the `n`-th generation checkpoint is written.
SEARCH_KILL = """
import os, signal
from search import cache, engine
count = [0]
def after(original):
    def wrapped(*a, **k):
        out = original(*a, **k)
        count[0] += 1
        if count[0] >= {n}:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped
if "{where}" == "score":
    cache.ScoreCache.put = after(cache.ScoreCache.put)
else:
    engine.Search.save = after(engine.Search.save)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("searchcli")
    config = d / "tiny.yaml"
    config.write_text(TINY.format(base=os.path.join(ROOT, "configs", "demo.yaml"),
                                  data=write_fashion_like(d / "fm", n_train=200, n_val=60)))
    cfg = load_yaml(str(config))
    paddle.seed(0)
    ckpt = d / "supernet.pdckpt"
    save_checkpoint(ckpt, {"model": ResNet48Supernet(net_spec(cfg)).state_dict(), "epoch": 1, "step": 10})
    background = d / "results.json"
    background.write_text(json.dumps([{"id": f"a{i}", "code": a.code(), "top1": 0.1 * i}
                                      for i, a in enumerate(RELEASED.sample_many(5, seed=3))]))
    return {"dir": d, "config": str(config), "ckpt": str(ckpt), "cfg": cfg, "background": str(background)}


def args(setup, out, *extra, budget=f"macs={BUDGET:g}"):
    return ["run", "--config", setup["config"], "--checkpoint", setup["ckpt"], "--out", str(out),
            *(["--budget", budget] if budget else []), *extra]


def subprocess_run(setup, out, *extra, fault=None):
    argv = args(setup, out, *extra)
    cmd = python_with(fault, "search.__main__", argv) if fault else [sys.executable, "-m", "search", *argv]
    return subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=180)


def scores(out):
    return [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(setup):
    """The uninterrupted run, in a fresh process as every run it is compared with: a pytest process may hold
    another thread count or CPU convolution (an earlier test's), and float sums then differ in the 7th digit."""
    out = setup["dir"] / "reference"
    proc = subprocess_run(setup, out, "--background", setup["background"])
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_run_writes_its_front_log_plot_cache_and_ledger(setup, reference):
    front = json.loads((reference / "front.json").read_text())
    assert front["objectives"] == ["top1", "macs"] and front["budgets"] == [f"macs={BUDGET:g}"]
    assert front["generations"] == 4 and front["space"] == "released"
    screen, full = front["setting"]["screen"], front["setting"]["full"]
    assert front["screened"] is True
    assert screen["pinned"]["eval"]["subset"] == 20 and full["pinned"]["eval"]["subset"] == 40
    assert screen["pinned"]["calibration"]["batches"] == 1 and full["pinned"]["calibration"]["batches"] == 2
    spec = net_spec(setup["cfg"])
    codes = [e["code"] for e in front["front"]]
    macs = costs(codes, spec, 16)[1]
    assert [e["costs"]["macs"] for e in front["front"]] == list(macs) == sorted(macs)
    for e in front["front"]:
        RELEASED.validate(e["code"])
        assert e["full"] is not None and 0 <= e["screen"]["top1"] <= 1
    # the front is non-dominated: more MACs must buy more screened accuracy
    acc = [e["screen"]["top1"] for e in front["front"]]
    assert all(a < b for a, b in zip(acc, acc[1:], strict=False))
    pick = front["best_per_budget"][f"macs={BUDGET:g}"]
    assert pick["screen"]["code"] == codes[-1] and pick["full"]["costs"]["macs"] <= BUDGET
    assert front["rescored"] >= len(codes) and front["kendall_tau_screen_vs_full"] is not None

    archs = read_arch_list(reference / "front_archs.json")
    assert [a.code for a in archs] == codes
    assert [a.acc for a in archs] == [e["full"]["top1"] for e in front["front"]]

    log = [json.loads(line) for line in (reference / "search_log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in log] == [0, 1, 2, 3]
    assert np.cumsum([r["evaluations"] for r in log]).tolist() == [r["cumulative_evaluations"] for r in log]
    assert log[-1]["cumulative_evaluations"] == front["evaluations"]
    assert front["hypervolume"] == log[-1]["hypervolume"] and 0 < front["hypervolume_full"] < 1
    hv = [r["hypervolume"] for r in log]
    assert hv == sorted(hv) and hv[0] > 0  # the archive only grows, so its front's hypervolume never drops

    records = scores(reference)
    screened = [r for r in records if r.get("setting") == screen["digest"] and r["id"]]
    assert len(screened) == front["evaluations"] == len({r["id"] for r in screened})  # each code scored once
    for r in screened:
        RELEASED.validate(r["id"])
    assert (costs([r["id"] for r in screened], spec, 16)[1] <= BUDGET).all()  # nothing over budget was scored
    assert (reference / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    phases = [json.loads(line) for line in (reference / "ledger-search.jsonl").read_text().splitlines()]
    assert sum(p.get("subnets", 0) for p in phases if p["type"] == "phase") == len(records) - 2  # minus 2 settings


def test_a_rerun_scores_nothing_again_and_a_new_folder_gives_the_same_front(setup, reference):
    before = (reference / "scores.jsonl").read_text()
    proc = subprocess_run(setup, reference)
    assert proc.returncode == 0, proc.stderr
    assert "0 images, 0 phases" in proc.stdout
    assert (reference / "scores.jsonl").read_text() == before
    again = setup["dir"] / "again"
    proc = subprocess_run(setup, again, "--background", setup["background"])
    assert proc.returncode == 0, proc.stderr
    for name in ("front.json", "search_log.jsonl", "front_archs.json"):
        assert (again / name).read_text() == (reference / name).read_text()
    other = setup["dir"] / "seed1"
    assert main(args(setup, other, "--seed", "1")) == 0
    assert (other / "search_log.jsonl").read_text() != (reference / "search_log.jsonl").read_text()


def test_a_rerun_under_another_setting_or_budget_is_refused(setup, reference, capsys):
    front = (reference / "front.json").read_text()
    assert main(args(setup, reference, "search.screen={evaluate.subset: 30}")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {reference} holds a search scored under another evaluation setting (")
    assert err.endswith(f"use another --out or remove {reference / 'checkpoint.pkl'}")
    assert main(args(setup, reference, budget="macs=1.1e6")) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {reference} holds a search with other settings (budgets: was ['macs=1.2e+06'], now ['macs=1.1e6']): "
        f"use another --out or remove {reference / 'checkpoint.pkl'}")
    assert (reference / "front.json").read_text() == front


@pytest.mark.parametrize("where, n", [("score", 9), ("save", 2)])
def test_kill_9_then_rerun_gives_the_same_front(setup, reference, where, n):
    out = setup["dir"] / f"killed-{where}"
    proc = subprocess_run(setup, out, "--background", setup["background"],
                          fault=SEARCH_KILL.format(where=where, n=n))
    assert proc.returncode == -9, proc.stderr
    assert not (out / "front.json").exists()
    proc = subprocess_run(setup, out, "--background", setup["background"])
    assert proc.returncode == 0, proc.stderr
    assert "resuming at generation" in proc.stdout
    for name in ("front.json", "search_log.jsonl", "front_archs.json"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    ids = [r["id"] for r in scores(out) if r["id"]]
    assert len(ids) == len(set((r["setting"], r["id"]) for r in scores(out) if r["id"]))  # nothing scored twice


def synthetic_energy(arch, macs):
    """mJ per image of the synthetic tables: another mix of blocks and MACs than their latency."""
    return 1.0 + 0.2 * sum(arch.depths) + macs * 4e-7


def write_latency_table(path, cfg, resolution=16, model=None, energy=False):
    spec = net_spec(cfg)
    archs = RELEASED.sample_many(40, seed=11, depth_uniform=True)
    macs = costs(archs, spec, resolution)[1]
    path.write_text(json.dumps({
        "kind": TABLE_KIND, "format": 1, "device": "synthetic", "resolution": resolution, "batch_sizes": [1],
        "model": model or spec.to_dict(),
        "energy": {"measured": True, "method": "rapl"} if energy else {"measured": False, "reason": "no RAPL here"},
        "codes": [{"id": f"a{i}", "code": a.code(), "macs": int(m), "params": 0,
                   "latency": {"1": {"median_ms": 0.2 + 0.03 * sum(a.depths) + m * 1e-6, "iqr_ms": 0.0}},
                   "energy": {"1": {"mj_per_image": synthetic_energy(a, m), "joules": 0.0, "images": 1}}
                   if energy else None}
                  for i, (a, m) in enumerate(zip(archs, macs, strict=True))]}))
    return str(path)


def test_a_latency_budget_with_a_transferred_predictor(setup, capsys):
    table = write_latency_table(setup["dir"] / "lat.json", setup["cfg"])
    second = write_latency_table(setup["dir"] / "lat2.json", setup["cfg"])
    out = setup["dir"] / "latency"
    assert main(args(setup, out, "--transfer", second, "search.generations=1", "search.latency.transfer_codes=20",
                     budget=f"latency_ms=1.0@{table}")) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["objectives"] == ["top1", "latency_ms"]
    report = front["latency_predictor"]
    assert report["source"]["fit"] == 30 and report["source"]["held_out"] == 10
    assert report["source"]["srcc"] > 0.9 and report["transfer"]["fit"] == 20 and report["transfer"]["srcc"] > 0.9
    for e in front["front"]:
        assert e["costs"]["latency_ms"] <= 1.0
    assert "latency predictor (transfer" in capsys.readouterr().out


def test_an_energy_budget_beside_a_latency_budget(setup, capsys):
    table = write_latency_table(setup["dir"] / "energy.json", setup["cfg"], energy=True)
    rows = json.loads(open(table).read())["codes"]
    limit = float(np.median([r["energy"]["1"]["mj_per_image"] for r in rows]))
    out = setup["dir"] / "energy"
    assert main(args(setup, out, "--budget", f"latency_ms=1.0@{table}", "search.generations=1",
                     budget=f"energy_mj={limit}@{table}")) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["objectives"] == ["top1", "energy_mj", "latency_ms"]
    report = front["energy_predictor"]["source"]
    assert report["target"] == "energy_mj" and report["fit"] == 30 and report["srcc"] > 0.9
    assert front["latency_predictor"]["source"]["target"] == "latency_ms"
    best = front["best_per_budget"][f"energy_mj={limit}@{table}"]["full"]
    assert best["costs"]["energy_mj"] <= limit
    for e in front["front"]:  # every code meets one budget or the other
        assert e["costs"]["energy_mj"] <= limit or e["costs"]["latency_ms"] <= 1.0
    assert "energy predictor (source" in capsys.readouterr().out


def test_without_a_screen_the_search_scores_with_the_full_setting_and_rescores_nothing(setup):
    out = setup["dir"] / "unscreened"
    assert main(args(setup, out, "search.screen=null", "search.generations=1")) == 0
    front = json.loads((out / "front.json").read_text())
    assert front["screened"] is False and front["rescored"] == 0 and front["kendall_tau_screen_vs_full"] is None
    assert front["setting"]["screen"] == front["setting"]["full"]
    assert front["setting"]["full"]["pinned"]["eval"]["subset"] == 40
    digests = {r["setting"] for r in scores(out) if r["id"]}
    assert digests == {front["setting"]["full"]["digest"]}
    assert [a.acc for a in read_arch_list(out / "front_archs.json")] == [e["screen"]["top1"] for e in front["front"]]


def test_bad_input_is_one_line_before_anything_runs(setup, capsys, tmp_path):
    spec = net_spec(setup["cfg"])
    cheapest = int(costs([RELEASED.min_arch()], spec, 16)[1][0])
    other_cfg = write_latency_table(tmp_path / "other.json", setup["cfg"], resolution=32)
    no_energy = write_latency_table(tmp_path / "no-energy.json", setup["cfg"])
    trained = tmp_path / "run"
    trained.mkdir()
    (trained / "config.yaml").write_text("supernet:\n  sampler:\n    space: released\n")
    ckpt = trained / "supernet.pdparams"
    ckpt.write_bytes(open(setup["ckpt"], "rb").read())
    cases = [
        (args(setup, tmp_path / "o1", budget="macs=1000"),
         f"error: budget 'macs=1000' cannot be met in space 'released': its cheapest code {RELEASED.min_arch().code()} "
         f"has {cheapest} MACs (limit 1000)"),
        (args(setup, tmp_path / "o2", budget="flops=1e9"),
         "error: budget 'flops=1e9': unknown cost 'flops'; known: macs, params, latency_ms, energy_mj"),
        (args(setup, tmp_path / "o3", budget=f"latency_ms=5@{other_cfg}"),
         f"error: {other_cfg} is a latency table of another config: measured at 32 px, this search's input is 16 px"),
        (args(setup, tmp_path / "o7", budget=f"energy_mj=5@{no_energy}"),
         f"error: {no_energy} has no energy measurements: no RAPL here; an energy_mj budget needs a table from "
         f"`python -m evaluate latency` where RAPL or NVML reads energy"),
        (["run", "--config", setup["config"], "--checkpoint", str(ckpt), "--out", str(tmp_path / "o4"),
          "--space", "documented"],
         f"error: checkpoint {ckpt} is of space 'released' (its run's {trained / 'config.yaml'}): searching space "
         f"'documented' would score codes it never trained; use --space released"),
        (args(setup, tmp_path / "o5", "search.population=1"),
         "error: search.population must be an integer >= 2, got 1"),
        (args(setup, tmp_path / "o6", "--background", setup["config"]),
         f"error: --background {setup['config']}: not JSON (Expecting value at line 1)"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err == message
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))


@pytest.mark.slow
def test_two_launched_ranks_give_the_same_front_as_one(setup, reference):
    out = setup["dir"] / "two-ranks"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(out) + "-logs", os.path.join("search", "__main__.py"), *args(setup, out, "--background",
                                                                              setup["background"])]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    logs = "".join(open(os.path.join(str(out) + "-logs", f)).read() for f in sorted(os.listdir(str(out) + "-logs")))
    assert proc.returncode == 0, (proc.stdout + proc.stderr + logs)[-4000:]
    for name in ("front.json", "search_log.jsonl", "front_archs.json"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    phases = [json.loads(line) for f in ("ledger-search-rank0.jsonl", "ledger-search-rank1.jsonl")
              for line in (out / f).read_text().splitlines()]
    by_rank = {r: sum(p.get("subnets", 0) for p in phases if p["type"] == "phase" and p["rank"] == r) for r in (0, 1)}
    assert by_rank[0] > 0 and by_rank[1] > 0  # both ranks scored a share
