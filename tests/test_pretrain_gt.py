"""`pretrain.py gt`: selection by MACs, the GT file, skipping finished archs, resuming unfinished ones."""

import json
import os
import shutil

import numpy as np
import pytest
from test_data_images import write_image_tree

from encoding import RELEASED, ArchEntry, NetSpec, costs, write_arch_list
from supernet import standalone as pretrain

TINY = ["data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3"]


def test_spread_by_macs_takes_evenly_spaced_ranks():
    codes = [a.code() for a in RELEASED.sample_many(9, seed=4)]
    _, macs = costs(codes)
    by_macs = np.argsort(macs, kind="stable")
    assert len(set(macs.tolist())) == 9  # no ties in this sample
    # 9 codes, 3 picks: ranks 0, 4, 8 (cheapest, median, dearest); 5 picks: ranks 0, 2, 4, 6, 8
    assert pretrain.spread_by_macs(codes, 3, NetSpec(), 224, seed=0) == by_macs[[0, 4, 8]].tolist()
    assert pretrain.spread_by_macs(codes, 5, NetSpec(), 224, seed=0) == by_macs[[0, 2, 4, 6, 8]].tolist()
    assert pretrain.spread_by_macs(codes, 1, NetSpec(), 224, seed=0) == [int(by_macs[0])]
    with pytest.raises(pretrain.TrainingError, match="--sample 10: the list has 9 codes"):
        pretrain.spread_by_macs(codes, 10, NetSpec(), 224, seed=0)


def test_spread_by_macs_breaks_ties_with_the_seed():
    code = RELEASED.min_arch().code()
    picks = {tuple(pretrain.spread_by_macs([code] * 6, 2, NetSpec(), 224, seed=s)) for s in range(8)}
    assert len(picks) > 1
    assert pretrain.spread_by_macs([code] * 6, 2, NetSpec(), 224, seed=3) == \
        pretrain.spread_by_macs([code] * 6, 2, NetSpec(), 224, seed=3)


@pytest.fixture
def setup(tmp_path):
    images = write_image_tree(str(tmp_path / "imgs"), per_class=4, val_per_class=2, corrupt=False)
    codes = [a.code() for a in RELEASED.sample_many(3, seed=1)]
    archs = tmp_path / "archs.json"
    write_arch_list(archs, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes)])
    out = tmp_path / "gt"
    args = ["gt", "--archs", str(archs), "--image_dir", images, "--output", str(out), "--batch_size", "4",
            "--max_epoch", "2", "--warmup", "1", "--device", "cpu", "--num_workers", "0", *TINY]
    return codes, out, args


def _mtime(path):
    return os.stat(path).st_mtime_ns


def test_gt_writes_challenge_format_skips_finished_and_resumes_unfinished(setup, capsys):
    codes, out, args = setup
    assert pretrain.main(args + ["--ids", "arch3,arch1", "--out", str(out / "GT.json")]) == 0
    gt = json.loads((out / "GT.json").read_text())
    assert list(gt) == ["arch3", "arch1"]
    for key, code in (("arch1", codes[0]), ("arch3", codes[2])):
        assert gt[key]["arch"] == code and gt[key]["seeds"] == [0] and len(gt[key]["accs"]) == 1
        assert 0.0 <= gt[key]["acc"] == gt[key]["accs"][0] <= 1.0
        assert gt[key]["runs"] == [f"{key}_seed0"] and gt[key]["epochs"] == 2
    stamps = {k: _mtime(out / f"{k}_seed0" / "model.pdparams") for k in ("arch1", "arch3")}

    # second run: nothing to train
    assert pretrain.main(args + ["--ids", "arch1,arch3"]) == 0
    log = (out / "gt.log").read_text()
    assert "arch1: finished, skipped" in log and "arch3: finished, skipped" in log
    assert {k: _mtime(out / f"{k}_seed0" / "model.pdparams") for k in stamps} == stamps

    # an interrupted arch3 (GT entry gone, last epoch's checkpoint and result lost) resumes at epoch 1
    run = out / "arch3_seed0"
    for name in ("result.json", "model.pdparams", "checkpoints/epoch_0002.pdckpt"):
        os.unlink(run / name)
    first_acc = gt.pop("arch3")["acc"]
    (out / "GT.json").write_text(json.dumps(gt))
    assert pretrain.main(args + ["--ids", "arch1,arch3"]) == 0
    log = (run / "train.log").read_text()
    assert log.count("from scratch") == 1 and log.count("(epoch 1 of 2)") == 1
    again = json.loads((out / "GT.json").read_text())
    assert again["arch3"]["acc"] == first_acc  # resumed training is deterministic
    assert _mtime(out / "arch1_seed0" / "model.pdparams") == stamps["arch1"]

    # a finished entry trained with another recipe is refused, naming the setting
    assert gt["arch1"]["recipe"]["train.max_epoch"] == 2 and "train.seed" not in gt["arch1"]["recipe"]
    assert pretrain.main(args + ["--ids", "arch1", "--max_epoch", "3"]) == 1
    err = capsys.readouterr().err
    assert "arch1 was trained with other settings" in err and "train.max_epoch: 2 -> 3" in err

    # the same id with another code is refused
    write_arch_list(out / "other.json", [ArchEntry("arch1", codes[1])])
    assert pretrain.main(args + ["--archs", str(out / "other.json"), "--ids", "arch1"]) == 1
    assert "arch1 is" in capsys.readouterr().err

    # with 2+ seeds the log points at the ceiling report (seed 0 of arch1 is reused, seed 1 trained)
    assert "submission ceiling" not in (out / "gt.log").read_text()
    assert pretrain.main(args + ["--ids", "arch1", "--repeat", "2", "--out", str(out / "GT2.json")]) == 0
    assert f"python -m submission ceiling --gt {out / 'GT2.json'}" in (out / "gt.log").read_text()
    assert json.loads((out / "GT2.json").read_text())["arch1"]["seeds"] == [0, 1]


def test_gt_argument_errors(setup, capsys):
    _, _, args = setup
    assert pretrain.main(args + ["--ids", "arch9"]) == 1
    assert "no entries with ids ['arch9']" in capsys.readouterr().err
    assert pretrain.main(args + ["--ids", "arch1", "--sample", "2"]) == 1
    assert "give either --ids or --sample, not both" in capsys.readouterr().err
    no_list = [a for a in args if a not in ("--archs",)]
    no_list.remove(args[args.index("--archs") + 1])
    assert pretrain.main(no_list) == 1
    assert "gt needs --archs ARCHS.json" in capsys.readouterr().err


def test_gt_extends_a_file_without_its_run_directories(setup, capsys):
    # A clean checkout has the committed GT file but not the runs: more seeds train only the new ones.
    _, out, args = setup
    gt_path = str(out / "GT.json")
    assert pretrain.main(args + ["--ids", "arch2", "--out", gt_path]) == 0
    first = json.loads((out / "GT.json").read_text())["arch2"]
    shutil.rmtree(out / "arch2_seed0")
    assert pretrain.main(args + ["--ids", "arch2", "--repeat", "2", "--out", gt_path]) == 0
    second = json.loads((out / "GT.json").read_text())["arch2"]
    assert second["seeds"] == [0, 1] and not (out / "arch2_seed0").exists() and (out / "arch2_seed1").is_dir()
    assert (second["accs"][0], second["top5"][0], second["loss"][0]) == (first["accs"][0], first["top5"][0],
                                                                        first["loss"][0])
    assert second["acc"] == pytest.approx(sum(second["accs"]) / 2)
    assert f"arch2 seed 0: taken from {gt_path}" in (out / "gt.log").read_text()

    # more seeds with another recipe would mix two recipes in one entry: refused, nothing trained
    assert pretrain.main(args + ["--ids", "arch2", "--repeat", "3", "--max_epoch", "1", "--out", gt_path]) == 1
    assert "arch2 was trained with other settings (train.max_epoch: 2 -> 1)" in capsys.readouterr().err
    assert json.loads((out / "GT.json").read_text())["arch2"] == second and not (out / "arch2_seed2").exists()

    # an entry whose per-seed lists disagree with its seeds is an error naming it
    broken = json.loads((out / "GT.json").read_text())
    broken["arch2"]["accs"] = broken["arch2"]["accs"][:1]
    (out / "GT.json").write_text(json.dumps(broken))
    assert pretrain.main(args + ["--ids", "arch2", "--repeat", "3", "--out", gt_path]) == 1
    assert "arch2: seeds [0, 1] but accs/top5/loss of other lengths" in capsys.readouterr().err
    assert not (out / "arch2_seed2").exists()
