"""Issue 36 item 8: the losses stay on the device and are read every `sync_every` steps (and before
every checkpoint, at each epoch's end and at max_steps); the NaN rule's guarantee (the run stops
within N steps of the first non-finite loss, before the update of the step whose read found it and
before any checkpoint after it; N = 1: before its own update); the figures the bar, after_step and
the epoch's mean get are those of N = 1. And Momentum's merged (multi-tensor) update: equal updates
and checkpoints that load either way."""

import os
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from fakedata import optim_settings
from faults import STANDALONE_NAN, python_with
from test_data_images import write_image_tree

from infra.config import ConfigError
from runtime.checkpoint import restore_training_state, save_checkpoint, training_state
from supernet import loop as loop_module
from supernet.loop import AUTO_SYNC_GPU, Loop, Pending, Position, TrainingDiverged, sync_interval
from supernet.optim import OptimConfigError, build_optimizer, use_multi_tensor
from supernet.settings import sync_every_setting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAN = float("nan")


class Batches:
    """`steps` batches of 2 per epoch, the batch's global index in x (start_batch honoured)."""

    def __init__(self, steps):
        self.steps = steps

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start = epoch, start_batch

    def __iter__(self):
        return ((np.full((2, 1), self.epoch * self.steps + b), None) for b in range(self.start, self.steps))


def run_fake(steps, epochs, sync_every, every_steps=0, nan_at=None, max_steps=None):
    """A Loop over fake steps whose figures are [global step, 1] (NaN at global step `nan_at`, 1-based):
    the order of updates, saves and after_step calls, the reads' sizes and the epochs' figures."""
    events, reads, epochs_done = [], [], []
    saved = {"last": None}

    def step(epoch, index, x, y, global_step):
        g = global_step + 1
        figures = [NAN if g == nan_at else float(g), 1.0]
        return Pending(figures, lambda: events.append(("update", g, time.perf_counter())),
                       lambda f: ({"a": f[0], "b": f[1]}, {"g": g}), lambda i: f"step {g}",
                       discard=lambda: events.append(("discard", g)))

    def save(epoch, index, global_step, epoch_end):
        events.append(("save", global_step))
        saved["last"] = f"ckpt-{global_step}"

    loop = Loop(Batches(steps), epochs, steps, lr=lambda: 0.1, progress=False, every_steps=every_steps,
                max_steps=max_steps, sync_every=sync_every)
    original = loop_module.read_figures

    def counting(pendings, world=1):
        reads.append(len(pendings))
        return original(pendings, world)

    loop_module.read_figures = counting
    try:
        reached = loop.run(step, Position(), save=save, last_checkpoint=lambda: saved["last"],
                           after_step=lambda d: events.append(("after", d.global_step, d.values, d.extra, d.clock)),
                           end_epoch=lambda d: epochs_done.append((d.epoch, d.steps, d.loss)))
        error = None
    except TrainingDiverged as e:
        reached, error = None, str(e)
    finally:
        loop_module.read_figures = original
    return reached, events, reads, epochs_done, error


def test_reads_every_n_steps_and_before_checkpoints_with_the_figures_of_n_1():
    one = run_fake(7, 2, 1, every_steps=5)
    four = run_fake(7, 2, 4, every_steps=5)
    # reads at global steps 4 (N), 5 (checkpoint), 7 (epoch end) | 8 (N), 10 (checkpoint), 12 (N), 14 (end)
    assert four[2] == [4, 1, 2, 1, 2, 2, 2] and one[2] == [1] * 14
    assert four[0] == one[0] == Position(2, 0, 14)
    after = [e[:4] for e in four[1] if e[0] == "after"]
    assert after == [e[:4] for e in one[1] if e[0] == "after"]  # same figures, step by step
    assert [e[1] for e in after] == list(range(1, 15)) and after[3] == ("after", 4, {"a": 4.0, "b": 1.0}, {"g": 4})
    # each step's clock is its own (taken after its update), not that of the read reporting it
    updated = {e[1]: e[2] for e in four[1] if e[0] == "update"}
    clocks = {e[1]: e[4] for e in four[1] if e[0] == "after"}
    assert all(updated[g] <= clocks[g] < updated.get(g + 1, float("inf")) for g in clocks)
    # the epochs' mean loss: mean over steps of the mean of each step's figures, as with N = 1
    assert four[3] == one[3] == [(1, 7, pytest.approx(np.mean([(g + 1) / 2 for g in range(1, 8)]))),
                                 (2, 7, pytest.approx(np.mean([(g + 1) / 2 for g in range(8, 15)])))]
    # every update before the checkpoint that follows it; a step's after_step once its update is applied
    order = [e[:2] for e in four[1]]
    assert order.index(("update", 5)) < order.index(("save", 5)) and order.index(("after", 5)) > order.index(
        ("update", 5))
    assert order.index(("after", 1)) > order.index(("update", 4))  # read with step 4, after its update


def test_max_steps_reads_before_its_checkpoint():
    reached, events, reads, _, _ = run_fake(10, 1, 4, max_steps=6)
    assert reached == Position(0, 6, 6) and reads == [4, 2]
    assert [e for e in events if e[0] == "save"] == [("save", 6)]


def test_sync_every_1_stops_before_the_nan_steps_update():
    _, events, _, _, error = run_fake(10, 1, 1, every_steps=3, nan_at=5)
    assert [e[1] for e in events if e[0] == "update"] == [1, 2, 3, 4] and ("discard", 5) in events
    assert [e for e in events if e[0] == "save"] == [("save", 3)]
    assert error == ("training diverged: non-finite loss nan at step 5; stopped before the update. "
                     "Last good checkpoint: ckpt-3")


def test_sync_every_4_stops_within_4_steps_and_before_the_next_checkpoint():
    # a checkpoint due at step 6: the read before it finds step 5's NaN; nothing is saved after step 3
    _, events, _, _, error = run_fake(10, 1, 4, every_steps=3, nan_at=5)
    assert [e[1] for e in events if e[0] == "update"] == [1, 2, 3, 4, 5] and ("discard", 6) in events
    assert [e for e in events if e[0] == "save"] == [("save", 3)]
    assert error == ("training diverged: non-finite loss nan at step 5; read 1 step later (losses are read every 4 "
                     "steps): stopped before global step 6's update, no checkpoint written since. "
                     "Last good checkpoint: ckpt-3")
    # no checkpoint due: the next read (step 8) stops it, 3 steps later; the steps read with it are not reported
    _, events, _, _, error = run_fake(10, 1, 4, nan_at=5)
    assert [e[1] for e in events if e[0] == "update"] == [1, 2, 3, 4, 5, 6, 7]
    assert [e[1] for e in events if e[0] == "after"] == [1, 2, 3, 4]
    assert "nan at step 5; read 3 steps later" in error and "stopped before global step 8's update" in error
    assert error.endswith("Last good checkpoint: none")


def test_sync_every_settings():
    assert sync_interval("auto", "cpu") == 1 and sync_interval("auto", "gpu:0") == AUTO_SYNC_GPU
    assert sync_interval(7, "gpu:0") == 7
    assert sync_every_setting("auto", "train.sync_every") == "auto" and sync_every_setting(3, "k") == 3
    for bad in (0, -2, 1.5, True, "often", None):
        with pytest.raises(ConfigError, match=r"^supernet.sync_every must be an integer >= 1 or auto, got "):
            sync_every_setting(bad, "supernet.sync_every")


# --- the real standalone step on a tiny net ------------------------------------------------------

class TensorBatches(Batches):
    def __init__(self, batches):
        super().__init__(len(batches))
        self.batches = batches

    def __iter__(self):
        return iter(self.batches[self.start:])


def tiny_run(batches, sync_every, seed=0):
    """Train a Linear(4, 3) over `batches` with standalone_step; (parameters after, error or None, saves)."""
    from supernet.standalone import standalone_step

    paddle.seed(seed)
    net = paddle.nn.Linear(4, 3)
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=net.parameters())
    sched = paddle.optimizer.lr.StepDecay(0.1, step_size=100)  # .step() only: the lr stays 0.1
    loop = Loop(TensorBatches(batches), 1, len(batches), lr=opt.get_lr, progress=False, every_steps=2,
                sync_every=sync_every)
    saves = []
    try:
        loop.run(standalone_step(net, opt, sched), Position(), save=lambda *a: saves.append(a[2]))
        error = None
    except TrainingDiverged as e:
        error = str(e)
    return [p.numpy().copy() for p in net.parameters()], error, saves


def _batches(n, nan_at=None):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x = rng.standard_normal((6, 4)).astype("float32")
        if i + 1 == nan_at:
            x[0, 0] = np.nan
        out.append((paddle.to_tensor(x), paddle.to_tensor(rng.integers(0, 3, 6).astype("int64"))))
    return out


def test_standalone_step_with_sync_every_1_leaves_the_parameters_of_the_step_before():
    before, _, _ = tiny_run(_batches(4), 1)                       # steps 1-4, all finite
    stopped, error, saves = tiny_run(_batches(6, nan_at=5), 1)    # NaN in step 5
    assert error.startswith("training diverged: non-finite loss nan at epoch 1, step 5 (lower the learning rate")
    assert "stopped before the update" in error and saves == [2, 4]
    for a, b in zip(before, stopped, strict=True):
        np.testing.assert_array_equal(a, b)


def test_standalone_step_with_sync_every_4_stops_before_the_next_checkpoint():
    # NaN in step 3, checkpoints due every 2 steps: the read before step 4's checkpoint stops the run
    params, error, saves = tiny_run(_batches(8, nan_at=3), 4)
    assert saves == [2] and "nan at epoch 1, step 3" in error and "stopped before global step 4's update" in error
    assert not all(np.isfinite(p).all() for p in params)  # step 3's NaN update was applied: never checkpointed
    # finite data: the same weights whatever N
    for a, b in zip(tiny_run(_batches(8), 4)[0], tiny_run(_batches(8), 1)[0], strict=True):
        np.testing.assert_array_equal(a, b)


# --- pretrain.py end to end ----------------------------------------------------------------------

CODE = "1252233313000000223212122253130000000000006515000000"
TINY = ["data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_tree(str(tmp_path_factory.mktemp("imgs")), per_class=8, val_per_class=2)


def test_pretrain_with_sync_every_4_keeps_the_epoch_before_the_nan(images, tmp_path):
    # 3 steps per epoch; the 5th loss (epoch 2, step 2) is NaN, read with the epoch's end (global step 6)
    out = tmp_path / "nan"
    args = ["run", "--arch", CODE, "--image_dir", images, "--batch_size", "8", "--max_epoch", "3", "--warmup", "1",
            "--output", str(out), "--num_workers", "0", "--device", "cpu", *TINY, "train.sync_every=4"]
    proc = subprocess.run(python_with(STANDALONE_NAN.format(call=5), "pretrain", args), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: non-finite loss nan at epoch 2, step 2 (lower the learning rate")
    assert "read 1 step later (losses are read every 4 steps): stopped before global step 6's update" in last
    assert last.endswith(f"Last good checkpoint: {out}/checkpoints/epoch_0001.pdckpt")
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch_0001.pdckpt"]
    state = paddle.load(str(out / "checkpoints" / "epoch_0001.pdckpt"))
    assert state["epoch"] == 1 and all(np.isfinite(v.numpy()).all() for v in state["model"].values())


# --- Momentum's merged update --------------------------------------------------------------------

def _net(seed=0):
    paddle.seed(seed)
    return paddle.nn.Sequential(paddle.nn.Conv2D(1, 4, 3, bias_attr=False), paddle.nn.BatchNorm2D(4),
                                paddle.nn.Flatten(), paddle.nn.Linear(4 * 4 * 4, 3))


def _optimizer(net, multi, no_bn_decay=True):
    settings = optim_settings({"max_epoch": 2, "warmup": 1, "weight_decay": 0.01, "no_bn_decay": no_bn_decay,
                               "multi_tensor": multi, "lr": 0.2})
    return build_optimizer(net, settings, global_batch=8, steps_per_epoch=3, train_images=24)


def _train(net, opt, sched, steps, start=0):
    rng = np.random.default_rng(start)
    for _ in range(steps):
        x = paddle.to_tensor(rng.standard_normal((8, 1, 6, 6)).astype("float32"))
        y = paddle.to_tensor(rng.integers(0, 3, 8).astype("int64"))
        paddle.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        opt.clear_grad()
        sched.step()


def test_multi_tensor_momentum_updates_equal_the_plain_ones_with_and_without_decay_groups():
    weights = {}
    for groups in (True, False):
        for multi in (False, True):
            net = _net()
            opt, sched = _optimizer(net, multi, no_bn_decay=groups)
            assert opt._use_multi_tensor is multi and isinstance(opt._param_groups[0], dict) is groups
            _train(net, opt, sched, 4)
            weights[groups, multi] = [p.numpy() for p in net.parameters()]
        for a, b in zip(weights[groups, False], weights[groups, True], strict=True):
            np.testing.assert_array_equal(a, b)  # CPU: the same arithmetic per element
    # the groups' decay took effect: decaying BN and biases too gives other weights
    assert any(not np.array_equal(a, b) for a, b in zip(weights[True, True], weights[False, True], strict=True))


@pytest.mark.parametrize("first,second", [(True, False), (False, True)])
def test_a_checkpoint_of_either_momentum_resumes_with_the_other(tmp_path, first, second):
    straight = _net()
    opt, sched = _optimizer(straight, second)
    _train(straight, opt, sched, 2)
    _train(straight, opt, sched, 2, start=1)
    net = _net()
    opt, sched = _optimizer(net, first)
    _train(net, opt, sched, 2)
    path = str(tmp_path / "ckpt.pdckpt")
    save_checkpoint(path, training_state(net, opt, sched, epoch=0, step=2))
    resumed = _net(seed=5)  # other initial weights: the checkpoint must bring them
    opt2, sched2 = _optimizer(resumed, second)
    restore_training_state(path, resumed, opt2, sched2)
    _train(resumed, opt2, sched2, 2, start=1)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    keys = {k for k in paddle.load(path)["optimizer"] if k != "LR_Scheduler"}
    assert keys and all(k.endswith("/velocity") for k in keys)  # the same structured names either way


def test_multi_tensor_auto_and_its_condition():
    assert use_multi_tensor("auto", "gpu:0", True, "train.multi_tensor") is True
    assert use_multi_tensor("auto", "cpu", True, "train.multi_tensor") is False
    assert use_multi_tensor("auto", "gpu:0", False, "supernet.optim.multi_tensor") is False
    assert use_multi_tensor(False, "gpu:0", False, "supernet.optim.multi_tensor") is False
    with pytest.raises(OptimConfigError, match=r"^supernet.optim.multi_tensor=true needs every parameter to get a "
                                               r"gradient at every step: set supernet.sampler.sandwich=true"):
        use_multi_tensor(True, "cpu", False, "supernet.optim.multi_tensor")
    with pytest.raises(ConfigError, match=r"^train.multi_tensor must be true, false or auto, got 'yes'"):
        optim_settings({"multi_tensor": "yes"})


def test_paddles_merged_update_needs_the_same_parameters_with_gradients_every_step():
    """Why supernet.optim.multi_tensor needs sandwich paths: a later step with fewer gradients is refused."""
    net = _net()
    opt, _ = _optimizer(net, True, no_bn_decay=False)
    x = paddle.randn([2, 1, 6, 6])
    net(x).sum().backward()
    opt.step()
    opt.clear_grad(set_to_zero=False)
    net[0](x).sum().backward()  # the conv only
    with pytest.raises(ValueError, match="must be equal to Input"):
        opt.step()


def test_the_supernets_max_path_gives_every_parameter_a_gradient():
    """What supernet.optim.multi_tensor's condition rests on (sandwich: the max path every step)."""
    from encoding import RELEASED, net_spec
    from infra.config import default_config, resolve
    from supernet import ResNet48Supernet

    cfg = resolve(default_config("demo"), overrides=["model.width_mult=0.0625"])
    model = ResNet48Supernet(net_spec(cfg))
    model.set_active(RELEASED.max_arch())
    model(paddle.randn([2, 1, 32, 32])).sum().backward()
    missing = [n for n, p in model.named_parameters() if not p.stop_gradient and p.grad is None]
    assert missing == [] and len(list(model.parameters())) > 50


@pytest.mark.slow
def test_two_gloo_ranks_stop_together_when_one_ranks_loss_is_nan(images, tmp_path):
    """Rank 1's losses go NaN from its 5th cross-entropy (epoch 2, step 2); with sync_every 4 the read at
    the epoch's end (all-reduced: NaN on one rank is NaN on both) stops both ranks before that epoch's
    checkpoint."""
    script = tmp_path / "nan_on_rank1.py"
    fault = STANDALONE_NAN.format(call=5).replace("if calls[0] >=", "if os.environ.get('PADDLE_TRAINER_ID') == '1' "
                                                  "and calls[0] >=")
    code = python_with("import os\n" + fault, "pretrain", [])[2]
    script.write_text(code.replace("sys.exit(entry.main([]))", "sys.exit(entry.main(sys.argv[1:]))"))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), str(script), "run", "--arch", CODE, "--image_dir", images, "--batch_size", "4",
           "--max_epoch", "3", "--warmup", "1", "--output", str(out), "--num_workers", "0", "--device", "cpu", *TINY,
           "train.sync_every=4"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    logs = {f: (tmp_path / "log" / f).read_text() for f in sorted(os.listdir(tmp_path / "log"))}
    assert proc.returncode != 0
    stop = "error: training diverged: non-finite loss nan at epoch 2, step 2"
    stops = [f for f, text in logs.items() if stop in text]
    assert len(stops) == 2, "\n".join(t[-1500:] for t in logs.values())  # both ranks' logs, the same step
    assert sorted(os.listdir(out / "checkpoints")) == ["epoch_0001.pdckpt"]
    state = paddle.load(str(out / "checkpoints" / "epoch_0001.pdckpt"))
    assert state["epoch"] == 1 and all(np.isfinite(v.numpy()).all() for v in state["model"].values())


# --- the supernet trainer ------------------------------------------------------------------------

def _supernet_run(tmp_path, name, *extra, fault=None):
    from test_train_supernet import make_image_folder, run_train, tiny_overrides

    images = tmp_path / "images"
    if not images.exists():
        make_image_folder(images)
    out = tmp_path / name
    proc = run_train(tiny_overrides(str(images), str(out), "supernet.epochs=2", "supernet.checkpoint.every_steps=3",
                                    "supernet.loss.rank.weight=0.5", *extra), fault=fault)
    return out, proc


def test_supernet_with_sync_every_3_trains_and_logs_as_with_1(tmp_path):
    import json

    runs = {}
    for n in (1, 3):
        out, proc = _supernet_run(tmp_path, f"n{n}", f"supernet.sync_every={n}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        runs[n] = ([{k: v for k, v in r.items() if k not in ("time", "images_per_s", "path")} for r in steps],
                   paddle.load(str(out / "supernet.pdparams")), sorted(os.listdir(out / "checkpoints")))
    assert runs[1][0] == runs[3][0] and runs[1][2] == runs[3][2]
    step_records = [r for r in runs[3][0] if r["type"] == "step"]
    assert [r["global_step"] for r in step_records] == list(range(1, 9))
    assert all(isinstance(r["rank_loss"], float) and r["rank_weight"] == 0.5 for r in step_records)
    assert len({json.dumps(r["codes"]) for r in step_records}) > 1  # each record its own step's codes
    for k, v in runs[1][1].items():
        np.testing.assert_array_equal(v.numpy(), runs[3][1][k].numpy(), err_msg=k)


def test_supernet_with_sync_every_4_stops_before_the_checkpoint_after_the_nan(tmp_path):
    from faults import SUPERNET_FAULT

    from encoding import RELEASED

    # 4 steps per epoch, checkpoints at 3, 4 (epoch end), 6; step 5's losses are NaN, read with step 6
    out, proc = _supernet_run(tmp_path, "nan", "supernet.sync_every=4",
                              fault=SUPERNET_FAULT.format(kind="nan", step=5))
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: training diverged: non-finite loss nan at global step 5 (epoch 2, batch 1/4) "
                              f"on the max path {RELEASED.max_arch().code()}; read 1 step later (losses are read "
                              "every 4 steps): stopped before global step 6's update, no checkpoint written since.")
    assert message.endswith(f"Last good checkpoint: {out}/checkpoints/step_000000004.pdckpt")
    assert sorted(os.listdir(out / "checkpoints")) == ["step_000000003.pdckpt", "step_000000004.pdckpt"]
