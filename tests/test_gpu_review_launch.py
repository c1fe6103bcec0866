"""GPU review (issue 36) under `paddle.distributed.launch` with two CPU processes (gloo): a supernet run resumed
on 1 -> 2 -> 1 ranks with rank 1's view of the run folder lagging a checkpoint behind (rank 0 chooses, every rank
confirms), and a standalone run whose ground truth is the saved model's (rank 0's BN statistics) and that
resumes on one rank."""

import json
import os
import subprocess
import sys

import pytest
from test_data_images import write_image_tree
from test_train_supernet import make_image_folder, tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.yaml")

# Rank 1 sees the run folder as lagging shared (or node-local) storage would: only its oldest checkpoint.
LAGGING_RANK1 = """
import os, sys
sys.path.insert(0, {root!r})
from runtime import cpu_speed
cpu_speed.default_threads()
import runtime.checkpoint as ck
if os.environ.get("PADDLE_TRAINER_ID") == "1":
    seen = ck.list_checkpoints
    ck.latest_checkpoint = lambda d, pattern="epoch_*.pdckpt": (seen(d, pattern)[:1] or [None])[-1]
import {module} as entry
sys.exit(entry.main(sys.argv[1:]))
"""


def needs_cpu_ranks():
    import paddle

    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("CPU-process test; on a GPU machine the launcher binds ranks to GPUs")


def launch(tmp_path, name, module, args, nproc):
    """`module`.main(args) in `nproc` gloo ranks (rank 1 lagging), or in one plain process."""
    driver = tmp_path / f"{module}_driver.py"
    driver.write_text(LAGGING_RANK1.format(root=ROOT, module=module))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    log_dir = tmp_path / f"log-{name}"
    cmd = ([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
            str(log_dir), str(driver), *args] if nproc > 1 else [sys.executable, str(driver), *args])
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    logs = "".join((log_dir / f).read_text() for f in sorted(os.listdir(log_dir))) if log_dir.is_dir() else ""
    return proc, (proc.stdout + proc.stderr + logs)[-4000:]


def records(out, kind):
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


@pytest.mark.slow
def test_supernet_resumes_on_other_world_sizes_from_rank_0s_checkpoint(tmp_path):
    needs_cpu_ranks()
    images = make_image_folder(tmp_path / "images")  # 64 training images: 4 steps of 16, padded alike on 1 and 2
    out = str(tmp_path / "run")
    base = [DEMO, *tiny_overrides(images, out, "supernet.epochs=1", "supernet.checkpoint.every_steps=1",
                                  "supernet.checkpoint.keep=3")]
    proc, logs = launch(tmp_path, "one", "train_supernet", [*base, "supernet.max_steps=2"], nproc=1)
    assert proc.returncode == 0, logs
    # two ranks; rank 1's look at the folder finds step 1 only: before, it resumed step 1 while rank 0
    # resumed step 2 (and the ranks trained different steps until a collective hung)
    proc, logs = launch(tmp_path, "two", "train_supernet", [*base, "supernet.max_steps=3"], nproc=2)
    assert proc.returncode == 0, logs
    ckpts = records(out, "checkpoint")
    assert [(c["global_step"], c["ranks"]) for c in ckpts] == [(1, 1), (2, 1), (3, 2)]
    resume = records(out, "resume")
    assert [r["global_step"] for r in resume] == [2] and resume[0]["checkpoint"].endswith("step_000000002.pdckpt")
    # back on one rank, mid-epoch: the same global batches (64 samples padded alike), so it continues
    proc, logs = launch(tmp_path, "back", "train_supernet", base, nproc=1)
    assert proc.returncode == 0, logs
    assert [r["global_step"] for r in records(out, "step")] == [1, 2, 3, 4]
    assert [r["global_step"] for r in records(out, "resume")] == [2, 3]
    with open(os.path.join(out, "train_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["finished"] is True and summary["global_step"] == 4


TINY = ["data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3",
        "--num_workers", "0", "--device", "cpu", "--warmup", "1"]


@pytest.mark.slow
def test_standalone_ground_truth_is_the_saved_models_and_resumes_on_one_rank(tmp_path):
    needs_cpu_ranks()
    import paddle

    from encoding import RELEASED
    from imagedata import DataSettings, build_dataset, build_loader
    from runtime.checkpoint import load_checkpoint, load_model_state
    from supernet.standalone import evaluate_classifier
    from supernet.static import build_static

    images = write_image_tree(str(tmp_path / "imgs"), per_class=8, val_per_class=6, corrupt=False)
    code = RELEASED.sample_many(1, seed=3)[0].code()
    out = tmp_path / "run"
    args = ["run", "--arch", code, "--image_dir", images, "--output", str(out), "--max_epoch", "2",
            "train.global_batch_size=8", "train.zero_init_residual=true", *TINY]
    proc, logs = launch(tmp_path, "two", "pretrain", args, nproc=2)
    assert proc.returncode == 0, logs
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["val_images"] == 18

    # the saved model, scored by one process over the whole split, gives the run's numbers: before, each
    # rank scored its half with its own BN statistics, and model.pdparams held rank 0's
    cfg = result["config"]
    from encoding import net_spec

    model = build_static(code, net_spec(cfg))
    load_model_state(model, load_checkpoint(str(out / "model.pdparams")))
    data = DataSettings.from_config(cfg)
    loader = build_loader(build_dataset(data, "val", augment=False), 256, shuffle=False, drop_last=False,
                          exact_shards=True, num_replicas=1, rank=0)
    paddle.set_device("cpu")
    alone = evaluate_classifier(model, loader)
    assert alone["count"] == 18
    assert alone["top1"] == result["top1"] and alone["loss"] == pytest.approx(result["loss"], rel=1e-5)

    # killed after epoch 1 (its checkpoint kept), resumed on one rank: the same global batch, so it continues
    for name in ("result.json", "model.pdparams", "checkpoints/epoch_0002.pdckpt"):
        os.unlink(out / name)
    proc, logs = launch(tmp_path, "one", "pretrain", args, nproc=1)
    assert proc.returncode == 0, logs
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["world_size"] == 1 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == result["history"][0]  # epoch 1 came from the 2-rank sitting


@pytest.mark.slow
def test_two_ranks_rank_check_decodes_its_images_once_and_scores_like_one_process(tmp_path):
    # item 14: the rank check's evaluation images and calibration batch are decoded over the two ranks and
    # all-gathered; its accuracies equal one process scoring the saved supernet on images it decoded alone
    needs_cpu_ranks()
    from encoding import RELEASED, ArchEntry, net_spec, write_arch_list
    from evaluate.evaluator import SubnetEvaluator
    from evaluate.oracle import build_calibration_batches, build_eval_set
    from evaluate.settings import EvalSettings
    from train_supernet import load_config

    images = make_image_folder(tmp_path / "images")  # 16 validation images: 8 per rank
    codes = [a.code() for a in RELEASED.sample_many(4, seed=2)]
    gt = tmp_path / "gt.json"
    write_arch_list(gt, [ArchEntry(f"arch{i + 1}", c, acc) for i, (c, acc) in
                         enumerate(zip(codes, [0.7, 0.6, 0.75, 0.65], strict=True))])
    out = str(tmp_path / "run")
    evaluation = ["evaluate.subset=0", "evaluate.batch_size=8", "evaluate.calibration.batches=1",
                  "evaluate.calibration.batch_size=8"]
    base = [DEMO, *tiny_overrides(images, out, "supernet.epochs=1", f"supernet.rank_check.gt={gt}", *evaluation)]
    proc, logs = launch(tmp_path, "two", "train_supernet", base, nproc=2)
    assert proc.returncode == 0, logs
    check, = records(out, "rank_check")
    cfg, _ = load_config([DEMO, *tiny_overrides(images, out, *evaluation,
                                                f"evaluate.checkpoint={out}/supernet.pdparams")])
    settings = EvalSettings.from_config(cfg)
    evaluator = SubnetEvaluator(settings.source().load(net_spec(cfg)), build_eval_set(cfg, settings, on_gpu=False), 8,
                                "recalibrate", build_calibration_batches(cfg, settings))
    assert {f"arch{i + 1}": evaluator.evaluate(c)["top1"] for i, c in enumerate(codes)} == check["top1"]
