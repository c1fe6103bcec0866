"""`pretrain.py gt` under `paddle.distributed.launch` with two CPU processes (gloo).

Scheme under test: the archs are trained one after another, each data-parallel over both
ranks, rank 0 writing the run directories and the GT file. `--batch_size` is per rank, as in the
official script: 2 ranks x 4 = a global batch of 8, peak lr 0.1 x 8 / 256, warmup
int(images / 8) x --warmup iterations.
"""

import json
import os
import subprocess
import sys

import pytest
from test_data_images import write_image_tree

from encoding import RELEASED, ArchEntry, write_arch_list

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3"]


@pytest.mark.slow
def test_gt_data_parallel_over_two_cpu_ranks(tmp_path):
    images = write_image_tree(str(tmp_path / "imgs"), per_class=4, val_per_class=3)
    codes = [a.code() for a in RELEASED.sample_many(4, seed=2)]
    archs = tmp_path / "archs.json"
    write_arch_list(archs, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes)])
    out = tmp_path / "gt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), "pretrain.py", "gt", "--archs", str(archs), "--sample", "2", "--image_dir", images,
           "--output", str(out), "--batch_size", "4", "--max_epoch", "2", "--warmup", "1", "--device", "cpu",
           "--num_workers", "0", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    logs = "".join((tmp_path / "log" / f).read_text() for f in sorted(os.listdir(tmp_path / "log")))
    assert proc.returncode == 0, (proc.stdout + proc.stderr + logs)[-4000:]

    gt = json.loads((out / "GT.json").read_text())
    assert len(gt) == 2 and all(gt[k]["arch"] == codes[int(k[4:]) - 1] for k in gt)
    for key in gt:
        result = json.loads((out / f"{key}_seed0" / "result.json").read_text())
        assert result["world_size"] == result["ranks"] == 2
        assert (result["per_rank_batch"], result["global_batch"]) == (4, 8)
        assert result["peak_lr"] == pytest.approx(0.1 * 4 * 2 / 256)
        assert result["warmup_iterations"] == int(13 / (4 * 2)) * 1 and result["lr_schedule"] == "official"
        # 13 training images padded to 14 by the distributed sampler: 7 per rank, one batch of 4
        assert result["steps_per_epoch"] == 1 and [h["epoch"] for h in result["history"]] == [1, 2]
        first = (out / f"{key}_seed0" / "train.log").read_text().splitlines()[0]
        assert "2 rank(s) x 4 images per rank = global batch 8, peak lr 0.003125, 1 warmup iterations" in first
        assert result["val_images"] == 9  # exact shards: every validation image counted once
        assert 0.0 <= gt[key]["acc"] == result["top1"] <= 1.0
