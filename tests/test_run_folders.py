"""Run folders under failure: one writer per folder, system errors as one line, clean state after a
crash (temporary files swept, the training log trimmed to the resumed step), and train_supernet.sh
stopping its workers and ending on the worker's error."""

import builtins
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from test_data_images import write_image_tree
from test_train_supernet import DEMO, make_image_folder, tiny_overrides

from encoding import DOCUMENTED, ArchEntry, write_arch_list
from infra.atomic import sweep_temp_files
from infra.runlock import FolderInUse, acquire, check_free, release
from supernet import standalone as pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_supernet.sh")
HOLD = ("import sys, time\nfrom infra.runlock import acquire\nacquire(*sys.argv[1:])\n"
        "print('locked', flush=True)\ntime.sleep(300)\n")
PRETRAIN_TINY = ["--batch_size", "4", "--max_epoch", "1", "--warmup", "1", "--device", "cpu", "--num_workers", "0",
                 "data.resolution=32", "data.val_resize=36", "model.width_mult=0.125", "model.num_classes=3"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    return write_image_tree(str(tmp_path_factory.mktemp("tree")), per_class=4, val_per_class=2, corrupt=False)


def env():
    return dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable)


class Holder:
    """Another process holding a folder's lock (the first writer)."""

    def __init__(self, folder, *name):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), *name], cwd=ROOT, env=env(),
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"
        self.refusal = f"is in use by another run (pid {self.proc.pid} on host {socket.gethostname()}, since "

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def last_error(err):
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


# --- one writer per folder -----------------------------------------------------------------------

def test_a_second_writer_is_refused_and_a_killed_holder_frees_the_folder(tmp_path):
    folder = tmp_path / "run"
    with Holder(folder) as first:
        for attempt in (lambda: acquire(folder), lambda: check_free(folder)):
            with pytest.raises(FolderInUse) as info:
                attempt()
            message = str(info.value)
            assert message.startswith(f"{folder} {first.refusal}") and "\n" not in message
        assert first.proc.poll() is None  # the first writer is unharmed, its lock file untouched
        assert json.loads((folder / ".lock").read_text())["pid"] == first.proc.pid
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        acquire(folder)  # the kernel dropped the killed holder's lock: no waiting, nothing to remove
    assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    acquire(folder)  # re-entrant within one process
    release(folder)
    assert (folder / ".lock").exists()
    release(folder)
    assert not (folder / ".lock").exists()


def only_error(err):
    """The one `error:` line of a command's stderr (asserting there is exactly one, and last)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and last_error(err) == errors[0], err[-2000:]
    return errors[0]


def evaluate_args(tmp_path, out):
    """`evaluate run` arguments whose inputs exist (the weights are never read: the run stops first)."""
    from fakedata import write_fashion_like
    from test_evaluate_cli import TINY

    config = tmp_path / "tiny.yaml"
    if not config.exists():
        config.write_text(TINY.format(base=DEMO, data=write_fashion_like(tmp_path / "fm", n_train=40, n_val=20)))
        write_arch_list(tmp_path / "archs.json", [ArchEntry("net0", DOCUMENTED.sample_many(1, 7)[0].code())])
        (tmp_path / "weights.pdparams").write_text("never read")
    return ["run", "--config", str(config), "--checkpoint", str(tmp_path / "weights.pdparams"), "--archs",
            str(tmp_path / "archs.json"), "--out", str(out), "--calibration", "none", "--amp", "none"]


def test_every_writing_command_refuses_a_folder_in_use(tmp_path, images, image_tree, capsys):
    from evaluate.__main__ import main as evaluate_main
    from train_supernet import main as train_main

    out = tmp_path / "supernet"
    with Holder(out) as first:
        assert train_main([DEMO, *tiny_overrides(images, str(out))]) == 2
        assert only_error(capsys.readouterr().err).startswith(f"error: {out} {first.refusal}")
        # train_supernet.sh stops at its --plan step, before the launcher starts
        proc = subprocess.run(["bash", SCRIPT, DEMO, *tiny_overrides(images, str(out))], cwd=str(tmp_path),
                              env=env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and only_error(proc.stderr).startswith(f"error: {out} {first.refusal}")
        assert sorted(os.listdir(out)) == [".lock"]  # nothing written
    results = tmp_path / "results"
    with Holder(results) as first:
        assert evaluate_main(evaluate_args(tmp_path, results)) == 1
        assert only_error(capsys.readouterr().err).startswith(f"error: {results} {first.refusal}")
        assert sorted(os.listdir(results)) == [".lock"]
    run = tmp_path / "standalone"
    code = DOCUMENTED.sample_many(1, seed=3)[0].code()
    with Holder(run) as first:
        assert pretrain.main(["run", "--arch", code, "--image_dir", image_tree, "--output", str(run),
                              *PRETRAIN_TINY]) == 1
        assert only_error(capsys.readouterr().err).startswith(f"error: {run} {first.refusal}")
        assert sorted(os.listdir(run)) == [".lock"]
    archs = tmp_path / "gt-archs.json"
    write_arch_list(archs, [ArchEntry("arch1", code)])
    gt = tmp_path / "gt" / "GT.json"
    with Holder(gt.parent, ".GT.json.lock") as first:  # one writer per GT file; its runs are claimed one by one
        assert pretrain.main(["gt", "--archs", str(archs), "--image_dir", image_tree, "--output",
                              str(tmp_path / "gt-runs"), "--out", str(gt), *PRETRAIN_TINY]) == 1
        assert only_error(capsys.readouterr().err).startswith(f"error: {gt} {first.refusal}")
    assert not (tmp_path / "gt-runs").exists()


def test_claiming_a_folder_sweeps_what_killed_atomic_writes_left(tmp_path):
    from infra.runlock import release
    from runtime.device import claim_run_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for path in (run / ".tmp-ab12-config.yaml", run / "checkpoints" / ".tmp-cd34-step_000000004.pdckpt",
                 run / "keep.json", run / "checkpoints" / "step_000000002.pdckpt"):
        path.write_text("x")
    claim_run_folder(str(run), sweep=("checkpoints",))
    release(str(run))
    assert sorted(os.listdir(run)) == ["checkpoints", "keep.json"]
    assert os.listdir(run / "checkpoints") == ["step_000000002.pdckpt"]
    # a GT file in a shared folder: only its own temporaries go
    for name in (".tmp-1-GT.json", ".tmp-2-other.json", "GT.json"):
        (tmp_path / name).write_text("x")
    assert sweep_temp_files(str(tmp_path), target="GT.json") == [str(tmp_path / ".tmp-1-GT.json")]
    assert not (tmp_path / ".tmp-1-GT.json").exists() and (tmp_path / ".tmp-2-other.json").exists()


# --- system errors are one line ------------------------------------------------------------------

def refuse_writes(monkeypatch, folder, code):
    """Writes under `folder` fail with OSError(code), as on a read-only or full filesystem (tests run
    as root, whom chmod does not stop)."""
    root = os.path.abspath(folder)

    def inside(path):
        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return p == root or p.startswith(root + os.sep)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    for module, name, fake in ((builtins, "open", fake_open), (io, "open", fake_open), (os, "open", fake_os_open),
                               (os, "mkdir", fake_mkdir)):
        monkeypatch.setattr(module, name, fake)


READ_ONLY = "read-only file system"
FULL = "no space left on device"


def no_space(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a full disk shows when the data must reach it


def test_encoding_and_submission_commands_report_system_errors_in_one_line(tmp_path, monkeypatch, capsys):
    from encoding.__main__ import main as encoding_main
    from submission.__main__ import main as submission_main

    codes = [a.code() for a in DOCUMENTED.sample_many(5, seed=0)]
    archs, results, gt, sub = (tmp_path / n for n in ("archs.json", "results.json", "gt.json", "sub.json"))
    write_arch_list(archs, [ArchEntry(f"arch{i + 1}", c) for i, c in enumerate(codes)])
    results.write_text(json.dumps([{"id": f"arch{i + 1}", "code": c, "top1": 0.5 + 0.01 * i}
                                   for i, c in enumerate(codes)]))
    gt.write_text(json.dumps({f"arch{i + 1}": {"acc": 0.7 - 0.01 * i * i, "arch": c} for i, c in enumerate(codes)}))
    make = ["make", "--results", str(results), "--archs", str(archs), "--out"]
    assert submission_main([*make, str(sub)]) == 0
    folder = tmp_path / "out"
    folder.mkdir()
    good = folder / "good.json"
    good.write_text("a good file\n")
    commands = [(encoding_main, ["sample", "--n", "3", "--out", str(good)]), (submission_main, [*make, str(good)]),
                (submission_main, ["score", str(sub), "--gt", str(gt), "--resamples", "0", "--out", str(good)])]
    for broken, reason in (("read-only", READ_ONLY), ("full", FULL)):
        with monkeypatch.context() as m:
            if broken == "read-only":
                refuse_writes(m, folder, errno.EROFS)
            else:
                m.setattr(os, "fsync", no_space)
            for main, args in commands:
                assert main(args) == 1, args
                assert only_error(capsys.readouterr().err) == f"error: cannot write {good}: {reason}", args
    assert good.read_text() == "a good file\n"  # nothing good overwritten, no temporaries left
    assert os.listdir(folder) == ["good.json"]


def test_training_and_evaluation_commands_report_a_read_only_folder_in_one_line(tmp_path, images, image_tree,
                                                                               monkeypatch, capsys):
    from evaluate.__main__ import main as evaluate_main
    from train_supernet import main as train_main

    code = DOCUMENTED.sample_many(1, seed=3)[0].code()
    archs = tmp_path / "gt-archs.json"
    write_arch_list(archs, [ArchEntry("arch1", code)])
    eval_args = evaluate_args(tmp_path, tmp_path / "ro" / "results")
    out = tmp_path / "ro"
    out.mkdir()
    refuse_writes(monkeypatch, out, errno.EROFS)
    assert train_main([DEMO, *tiny_overrides(images, str(out / "supernet"))]) == 2
    assert only_error(capsys.readouterr().err) == f"error: cannot write to {out / 'supernet'}: {READ_ONLY}"
    assert evaluate_main(eval_args) == 1
    assert only_error(capsys.readouterr().err) == f"error: cannot write to {out / 'results'}: {READ_ONLY}"
    assert pretrain.main(["run", "--arch", code, "--image_dir", image_tree, "--output", str(out / "run"),
                          *PRETRAIN_TINY]) == 1
    assert only_error(capsys.readouterr().err) == f"error: cannot write to {out / 'run'}: {READ_ONLY}"
    assert pretrain.main(["gt", "--archs", str(archs), "--image_dir", image_tree, "--output", str(tmp_path / "runs"),
                          "--out", str(out / "GT.json"), *PRETRAIN_TINY]) == 1
    assert only_error(capsys.readouterr().err) == f"error: cannot write to {out}: {READ_ONLY}"
    assert os.listdir(out) == []


# --- clean state after a resume ------------------------------------------------------------------

def test_the_training_log_is_trimmed_to_the_step_a_run_resumes_from(tmp_path):
    from supernet.train import trim_log

    path = tmp_path / "train_log.jsonl"
    lines = [{"type": "step", "global_step": g} for g in (1, 2, 3)] + [{"type": "checkpoint", "global_step": 3},
                                                                        {"type": "step", "global_step": 4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"type": "step", "glo')  # torn by a kill
    assert trim_log(str(path), 3) == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:4]
    assert trim_log(str(path), 3) == 0 and trim_log(str(tmp_path / "none.jsonl"), 0) == 0


# --- train_supernet.sh -------------------------------------------------------------------------

def script(args, tmp_path, **kwargs):
    return subprocess.Popen(["bash", SCRIPT, DEMO, *args], cwd=str(tmp_path), env=dict(env(), NPROC="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_bad_values_are_refused_before_the_launcher_starts(tmp_path, images):
    out = tmp_path / "run"
    on_images = ["data.name=imagenet", f"supernet.output_dir={out}"]
    for args, message in (([*tiny_overrides(images, str(out)), "supernet.max_steps=abc"],
                           "supernet.max_steps must be an integer >= 1 or null, got 'abc'"),
                          ([*on_images, "--image_dir", ""], "data.image_dir is empty"),
                          ([*on_images, "data.image_dir=/no/such/dir"], "image directory /no/such/dir does not exist")):
        proc = script(args, tmp_path)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and only_error(err).startswith(f"error: {message}"), err
        assert not out.exists()  # the launcher never started


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_the_launchers_workers_stop_with_the_script(tmp_path, images):
    out = tmp_path / "run"
    # 4 steps per epoch of a 16 px net: a run that cannot end before the signal. SIGHUP as a terminal
    # delivers it: under `nohup pytest` it would be ignored from the start, and bash cannot trap it then.
    proc = script(tiny_overrides(images, str(out), "supernet.epochs=100000"), tmp_path, start_new_session=True,
                  preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    worker = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "train_log.jsonl").exists():  # training has begun
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        worker = json.loads((out / ".lock").read_text())["pid"]  # rank 0 holds the run folder
        assert alive(worker)
        proc.send_signal(signal.SIGHUP)  # the terminal went away: the launcher would die, its workers not
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 20
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), err[-3000:]
        assert proc.returncode == 129
        assert "stop the run with Ctrl-C or kill" in err and "SIGHUP: stopping the launcher and its workers" in err
        assert last_error(err).startswith("train_supernet.sh: stopped; rerun the same command to resume")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


@pytest.mark.slow
def test_a_workers_fatal_error_is_the_last_line(tmp_path, images):
    proc = script(tiny_overrides(images, str(tmp_path / "run"), "supernet.batch_size=1000"), tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert last_error(err) == ("error: the training split (64 images) is smaller than one global batch (1000): "
                               "nothing to train on"), err[-3000:]
