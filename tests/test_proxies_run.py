"""`python -m evaluate proxies` end to end at a tiny setting: one record per code that `submission make`
takes, determinism, resume after a torn line, refused changed settings, bad input, two launched ranks."""

import json
import os
import subprocess
import sys

import pytest

from encoding import DOCUMENTED, ArchEntry, read_arch_list, write_arch_list
from evaluate.__main__ import main
from submission.make import make_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = """base: {base}
evaluate:
  progress: false
  proxies:
    batch_size: 4
    resolution: 16
"""
N_CODES = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxies")
    config = d / "tiny.yaml"
    config.write_text(TINY.format(base=os.path.join(ROOT, "configs", "demo.yaml")))
    archs = d / "archs.json"
    write_arch_list(archs, [ArchEntry(f"net{i}", a.code()) for i, a in enumerate(DOCUMENTED.sample_many(N_CODES, 3))])
    return {"dir": d, "config": str(config), "archs": str(archs)}


def run(setup, out, *extra):
    return main(["proxies", "--config", setup["config"], "--archs", setup["archs"], "--out", str(out), *extra])


def scores(path):
    """results.json without the timing fields: everything else must be reproducible exactly."""
    timing = ("seconds", "cpu_seconds", "proxy_seconds")
    return [{k: v for k, v in r.items() if k not in timing} for r in json.load(open(path))]


@pytest.fixture(scope="module")
def reference(setup):
    out = setup["dir"] / "reference"
    assert run(setup, out) == 0
    return out


def test_one_record_per_code_with_every_proxy_that_submission_make_takes(setup, reference, tmp_path):
    records = json.load(open(reference / "results.json"))
    codes = [e.code for e in read_arch_list(setup["archs"])]
    assert [r["id"] for r in records] == [f"net{i}" for i in range(N_CODES)]
    assert [r["code"] for r in records] == codes
    for r in records:
        assert set(r) == {"id", "code", "zen", "synflow", "naswot", "gradnorm", "seconds", "cpu_seconds",
                          "proxy_seconds"}
        assert set(r["proxy_seconds"]) == {"zen", "synflow", "naswot", "gradnorm"}
    manifest = json.load(open(reference / "manifest.json"))["settings"]
    assert manifest["proxies"]["resolution"] == 16 and manifest["proxies"]["batch_size"] == 4
    assert manifest["model"]["width_mult"] == 0.125 and manifest["device"] == {"kind": "cpu"}
    assert (reference / "ledger-evaluate.jsonl").exists()
    entries, _ = make_file(reference / "results.json", read_arch_list(setup["archs"]), tmp_path / "sub.json",
                           metric="zen")
    zen = [r["zen"] for r in records]
    accs = [e.acc for e in entries]
    # min-max scaled: an affine map, so Pearson and Kendall tau are those of the proxy itself
    assert min(accs) == 0.0 and max(accs) == 1.0
    assert accs == pytest.approx([(z - min(zen)) / (max(zen) - min(zen)) for z in zen], rel=1e-12)


def test_a_second_run_elsewhere_gives_the_same_scores(setup, reference):
    out = setup["dir"] / "again"
    assert run(setup, out) == 0
    assert scores(out / "results.json") == scores(reference / "results.json")


def test_a_torn_run_resumes_to_the_same_scores(setup, reference, capsys):
    out = setup["dir"] / "resumed"
    out.mkdir()
    lines = (reference / "shard-00000.jsonl").read_text().splitlines(keepends=True)
    (out / "shard-00000.jsonl").write_text("".join(lines[:2]) + lines[2][:30])  # killed mid-write
    (out / "manifest.json").write_text((reference / "manifest.json").read_text())
    capsys.readouterr()
    assert run(setup, out) == 0
    captured = capsys.readouterr()
    assert "dropped a torn last record (30 bytes)" in captured.err
    assert f"{N_CODES} codes, 2 already done" in captured.out
    assert scores(out / "results.json") == scores(reference / "results.json")
    assert run(setup, out) == 0 and f"{N_CODES} already done" in capsys.readouterr().out


def test_changed_settings_in_the_same_directory_are_refused(setup, reference, capsys):
    assert run(setup, reference, "--repeats", "2") == 1
    err = capsys.readouterr().err
    assert "holds results computed with other settings" in err and "repeats: was 1, now 2" in err


def test_a_subset_of_proxies_writes_only_those(setup, tmp_path):
    out = tmp_path / "two"
    assert run(setup, out, "--proxies", "naswot,zen") == 0
    records = json.load(open(out / "results.json"))
    assert set(records[0]) == {"id", "code", "naswot", "zen", "seconds", "cpu_seconds", "proxy_seconds"}
    assert scores(out / "results.json") == [{k: r[k] for k in ("id", "code", "naswot", "zen")}
                                            for r in scores(setup["dir"] / "reference" / "results.json")]


@pytest.mark.parametrize("extra,message", [
    (["--proxies", "zen,snip"], "unknown proxy 'snip': expected some of zen, synflow, naswot, gradnorm"),
    (["--repeats", "0"], "evaluate.proxies.repeats must be an integer >= 1, got 0"),
    (["evaluate.proxies.init=xavier"], "evaluate.proxies.init must be one of gaussian, kaiming"),
])
def test_bad_settings_are_refused_before_the_results_directory_exists(setup, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    assert run(setup, out, *extra) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_codes_of_another_space_are_all_named_before_any_work(setup, tmp_path, capsys):
    good = DOCUMENTED.sample_many(1, 1)[0].code()
    entries = [ArchEntry("ok", good), ArchEntry("short", "12345"), ArchEntry("stem9", good[:5] + "9" + good[6:]),
               ArchEntry("size2", "2" + good[1:])]
    archs = tmp_path / "bad.json"
    write_arch_list(archs, entries)
    out = tmp_path / "o"
    assert main(["proxies", "--config", setup["config"], "--archs", str(archs), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"3 of 4 codes in {archs} are invalid; nothing was computed" in err
    assert "short: invalid subnet code '12345' at position 5: wrong length 5" in err
    assert "stem9: " in err and "stem ratio digit 9 is out of range 1-7" in err
    assert "size2: " in err and "image-size code '2'" in err
    assert not out.exists()


@pytest.mark.slow
def test_two_launched_ranks_equal_one(setup):
    # both runs in fresh processes: a pytest process may have loaded MKL before the CPU switches that
    # pick its code path, and float32 grad-norm then differs in the 6th digit
    args = ["proxies", "--config", setup["config"], "--archs", setup["archs"], "--out"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one, two = setup["dir"] / "one-rank", setup["dir"] / "two-ranks"
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
              str(two) + "-logs", os.path.join("evaluate", "__main__.py")]
    for cmd in ([sys.executable, "-m", "evaluate", *args, str(one)], [*launch, *args, str(two)]):
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [f"net{i}" for i in range(N_CODES)]
    for rank in (0, 1):
        shard = (two / f"shard-0000{rank}.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in shard] == ids[rank::2]
    assert (two / "ledger-evaluate-rank1.jsonl").exists()
    assert scores(two / "results.json") == scores(one / "results.json")
