"""`python -m evaluate run` end to end on a tiny Fashion-MNIST setting: kill and resume, torn
lines, two launched ranks, invalid codes, and the manifest that refuses mixed settings."""

import json
import os
import re
import subprocess
import sys

import paddle
import pytest
from fakedata import write_fashion_like
from faults import EVALUATE_KILL, python_with

from encoding import DOCUMENTED, ArchEntry, net_spec, write_arch_list
from encoding.archlist import check_codes
from evaluate.__main__ import main
from infra.config import load_yaml
from runtime.checkpoint import save_checkpoint
from supernet import ResNet48Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """base: {base}
data:
  fashion_mnist_dir: {data}
  holdout: null
  resolution: 16
evaluate:
  subset: 40
  batch_size: 16
  progress: false
  calibration:
    batches: 2
    batch_size: 16
"""
N_CODES = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcli")
    config = d / "tiny.yaml"
    config.write_text(TINY.format(base=os.path.join(ROOT, "configs", "demo.yaml"),
                                  data=write_fashion_like(d / "fm", n_train=200, n_val=60)))
    paddle.seed(0)
    net = ResNet48Supernet(net_spec(load_yaml(str(config))))
    ckpt = d / "supernet.pdckpt"
    save_checkpoint(ckpt, {"model": net.state_dict(), "epoch": 1, "step": 10})  # training-checkpoint layout
    archs = d / "archs.json"
    write_arch_list(archs, [ArchEntry(f"net{i}", a.code()) for i, a in enumerate(DOCUMENTED.sample_many(N_CODES, 7))])
    return {"dir": d, "config": str(config), "ckpt": str(ckpt), "archs": str(archs)}


def cli(setup, out, *extra, env=None, launch=False, fault=None):
    """`python -m evaluate run` on the tiny setting; with `fault` (tests/faults.py), that fault injected."""
    args = ["run", "--config", setup["config"], "--checkpoint", setup["ckpt"], "--archs", setup["archs"],
            "--out", str(out), *extra]
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    if launch:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(out) + "-logs", os.path.join("evaluate", "__main__.py"), *args]
    elif fault:
        cmd = python_with(fault, "evaluate.__main__", args)
    else:
        cmd = [sys.executable, "-m", "evaluate", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def without_seconds(text):
    """results.json with the wall-time field blanked: everything else must match byte for byte."""
    return re.sub(r'"seconds": [0-9.eE+-]+', '"seconds": 0', text)


def shard_ids(path):
    return [json.loads(line)["id"] for line in open(path).read().splitlines()]


@pytest.fixture(scope="module")
def reference(setup):
    out = setup["dir"] / "reference"
    proc = cli(setup, out)
    assert proc.returncode == 0, proc.stderr
    text = (out / "results.json").read_text()
    records = json.loads(text)
    ids = [f"net{i}" for i in range(N_CODES)]
    assert [r["id"] for r in records] == ids
    for r in records:
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["loss"] > 0 and r["calibration"] == "recalibrate"
    return text


def test_killed_run_resumes_to_the_same_results_with_a_torn_line_dropped(setup, reference):
    out = setup["dir"] / "resumed"
    killed = cli(setup, out, fault=EVALUATE_KILL.format(records=2))
    assert killed.returncode == -9, killed.stderr
    shard = out / "shard-00000.jsonl"
    assert shard_ids(shard) == ["net0", "net1"]
    assert not (out / "results.json").exists()
    with open(shard, "ab") as f:  # a record cut off mid-write
        f.write(b'{"id": "net2", "code": "15')
    resumed = cli(setup, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped a torn last record (26 bytes)" in resumed.stderr
    assert "6 codes, 2 already done" in resumed.stdout
    assert "evaluate run: device cpu, 1 rank | Paddle " in resumed.stderr
    assert shard_ids(shard) == [f"net{i}" for i in range(N_CODES)]
    assert without_seconds((out / "results.json").read_text()) == without_seconds(reference)
    # a third run finds everything done: nothing appended, the same file merged again
    before = shard.read_bytes(), (out / "results.json").read_bytes()
    again = cli(setup, out)
    assert again.returncode == 0 and "6 already done" in again.stdout
    assert (shard.read_bytes(), (out / "results.json").read_bytes()) == before


def test_two_launched_ranks_cover_every_id_exactly_once(setup, reference):
    out = setup["dir"] / "two-ranks"
    proc = cli(setup, out, launch=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [f"net{i}" for i in range(N_CODES)]
    assert shard_ids(out / "shard-00000.jsonl") == ids[0::2]
    assert shard_ids(out / "shard-00001.jsonl") == ids[1::2]
    assert without_seconds((out / "results.json").read_text()) == without_seconds(reference)


@pytest.mark.slow
def test_ranks_with_nothing_left_still_join_the_shared_decode(setup, reference):
    # the images are decoded once over the ranks: a rank whose codes are all done must still send its share
    # (a rank that stayed out would leave the others waiting in the all-gather for ever)
    out = setup["dir"] / "one-rank-left"
    killed = cli(setup, out, fault=EVALUATE_KILL.format(records=5))  # net0..net4 done on one rank
    assert killed.returncode == -9, killed.stderr
    proc = cli(setup, out, launch=True)  # rank 0's share (net0, net2, net4) is done; rank 1 has net5 left
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "6 codes, 5 already done; rank 0 of 2: 0 of its 3 to evaluate" in proc.stdout
    assert shard_ids(out / "shard-00001.jsonl") == ["net5"]
    assert without_seconds((out / "results.json").read_text()) == without_seconds(reference)
    # one code for two ranks: rank 1 has no share at all, and a one-image share is padded for the gather
    one = setup["dir"] / "one-code"
    archs = setup["dir"] / "one-code.json"
    first = json.loads(reference)[0]
    write_arch_list(archs, [ArchEntry(first["id"], first["code"])])
    proc = cli({**setup, "archs": str(archs)}, one, "evaluate.subset=1", launch=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    alone = setup["dir"] / "one-code-alone"
    assert cli({**setup, "archs": str(archs)}, alone, "evaluate.subset=1").returncode == 0
    assert without_seconds((one / "results.json").read_text()) == without_seconds((alone / "results.json").read_text())


def test_changed_settings_in_the_same_directory_are_refused(setup, reference, capsys):
    out = setup["dir"] / "reference"
    rc = main(["run", "--config", setup["config"], "--checkpoint", setup["ckpt"], "--archs", setup["archs"],
               "--out", str(out), "--calibration", "none"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "holds results computed with other settings (" in err and "{" not in err  # leaves, not sections
    assert "calibration.mode: was 'recalibrate', now 'none'" in err
    # the manifest pins the device kind (and on a GPU its TF32 switches): CPU and GPU results never mix
    assert json.loads((out / "manifest.json").read_text())["settings"]["device"] == {"kind": "cpu"}


def test_invalid_codes_are_all_reported_before_any_work(setup, tmp_path, capsys):
    good = DOCUMENTED.sample_many(2, seed=1)
    broken_tie = list(good[0].code())
    broken_tie[7] = "1" if broken_tie[7] != "1" else "2"  # stage 1 block 1 conv2 != stem digit
    entries = [ArchEntry("ok1", good[0].code()), ArchEntry("tie", "".join(broken_tie)),
               ArchEntry("short", "12345"), ArchEntry("ok2", good[1].code())]
    archs = tmp_path / "bad.json"
    write_arch_list(archs, entries)
    out = tmp_path / "out"
    rc = main(["run", "--config", setup["config"], "--checkpoint", setup["ckpt"], "--archs", str(archs),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"2 of 4 codes in {archs} are invalid; nothing was evaluated" in err
    assert "tie: invalid subnet code" in err and "broken width tie" in err
    assert "short: invalid subnet code '12345' at position 5: wrong length 5" in err
    assert not out.exists()


def test_long_invalid_lists_show_twenty_and_a_count():
    entries = [ArchEntry(f"bad{i}", "9" * 52) for i in range(25)]
    with pytest.raises(ValueError) as info:
        check_codes(entries, "list.json")
    text = str(info.value)
    assert text.startswith("25 of 25 codes in list.json are invalid")
    assert "bad19:" in text and "bad20:" not in text and text.endswith("... and 5 more")


def test_weights_must_be_given_exactly_once(setup, tmp_path, capsys):
    base = ["run", "--config", setup["config"], "--archs", setup["archs"], "--out", str(tmp_path / "o")]
    assert main(base) == 1
    assert "give exactly one of --checkpoint" in capsys.readouterr().err
    assert main(base + ["--checkpoint", setup["ckpt"], "--official", setup["ckpt"]]) == 1
    assert "not several" in capsys.readouterr().err
    assert main(base + ["--fewshot", setup["ckpt"], "--official", setup["ckpt"]]) == 1
    assert "and --fewshot (a few-shot split's manifest.json), not several" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(tmp_path / "nope.pdparams")]) == 1
    assert f"--checkpoint {tmp_path / 'nope.pdparams'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--calibration", "sometimes"], "evaluate.calibration.mode must be one of none, recalibrate, got 'sometimes'"),
    (["--amp", "fp8"], "evaluate.amp must be one of none, bf16, fp16, got 'fp8'"),
    (["--batch_size", "0"], "evaluate.batch_size must be an integer >= 1, got 0"),
    (["evaluate.calibration.batches=0"], "evaluate.calibration.batches must be an integer >= 1, got 0"),
    (["evaluate.cache=disk"], "evaluate.cache must be one of auto, device, host, got 'disk'"),
])
def test_bad_settings_are_refused_before_the_results_directory_exists(setup, tmp_path, capsys, extra, message):
    out = tmp_path / "o"
    rc = main(["run", "--config", setup["config"], "--checkpoint", setup["ckpt"], "--archs", setup["archs"],
               "--out", str(out), *extra])
    assert rc == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
