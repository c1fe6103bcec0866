"""`python -m supernet.export`: a chosen subnet written in Paddle's inference format and ONNX, loaded back in a
fresh process, equal to the supernet's slice under the protocol's BN statistics; atomic; bad input named.

Tiny: generated Fashion-MNIST-like data at 16 px, the demo's 1/8 widths, a random supernet whose stored BN
statistics are perturbed (so stored and recalibrated statistics give different logits)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from fakedata import write_fashion_like

from encoding import DOCUMENTED, RELEASED, ArchEntry, write_arch_list
from infra.atomic import file_digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = """base: {base}
device: cpu
data:
  fashion_mnist_dir: {data}
  holdout: null
  resolution: 16
evaluate:
  calibration: {{batches: 2, batch_size: 16}}
export:
  check_images: 8
"""
RNG = np.random.default_rng(7)
CODES = {  # the ends and a random code of both spaces
    "released-min": RELEASED.min_arch().code(), "released-max": RELEASED.max_arch().code(),
    "released-random": RELEASED.sample(RNG).code(), "documented-min": DOCUMENTED.min_arch().code(),
    "documented-max": DOCUMENTED.max_arch().code(), "documented-random": DOCUMENTED.sample(RNG).code(),
}


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)


def _export_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "supernet.export", *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _spec_and_supernet(config):
    """A random supernet of the config whose residual branches are damped (bn2 scale 0.2), as training leaves them:
    an undamped random 48-layer net amplifies float32 rounding to ~1e-4 of its logits, the refusal threshold
    (trained weights: < 1e-6, README)."""
    import paddle

    from encoding import net_spec
    from infra.config import load_yaml
    from supernet.model import ResNet48Supernet

    spec = net_spec(load_yaml(config))
    model = ResNet48Supernet(spec)
    for block in model.blocks[1:-1]:
        block.bn2.weight.set_value(paddle.full_like(block.bn2.weight, 0.2))
    return spec, model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config, checkpoint, archs list) of the tiny setting."""
    import paddle

    d = tmp_path_factory.mktemp("export")
    data = write_fashion_like(d / "fm", n_train=64, n_val=16, learnable=True, seed=0)
    config = d / "tiny.yaml"
    config.write_text(TINY.format(base=os.path.join(ROOT, "configs", "demo.yaml"), data=data))
    paddle.seed(0)
    _, model = _spec_and_supernet(config)
    rng = np.random.default_rng(0)
    for bn in model.dynamic_bn_layers():  # stored statistics unlike any batch's
        n = bn._mean.shape[0]
        bn._mean.set_value(rng.normal(0, 0.5, n).astype("float32"))
        bn._variance.set_value(rng.uniform(0.3, 3.0, n).astype("float32"))
    checkpoint = d / "supernet.pdparams"
    paddle.save(model.state_dict(), str(checkpoint))
    archs = d / "archs.json"
    write_arch_list(str(archs), [ArchEntry(k, c) for k, c in CODES.items()])
    return config, checkpoint, archs


@pytest.fixture(scope="module")
def exported(tiny):
    """The six codes exported (recalibrated BN, the demo's 'kit' protocol) with ONNX, by the CLI."""
    config, checkpoint, archs = tiny
    out = config.parent / "six"
    proc = _export_cli("--config", config, "--checkpoint", checkpoint, "--archs", archs, "--out", out, "--onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"exported {len(CODES)} subnets to {out}" in proc.stdout
    return out, proc.stdout


def _reference_logits(config, checkpoint, codes, x, mode):
    """The supernet's logits for each code by evaluate's route: its settings, calibration batches and
    recalibration (mode 'recalibrate'), or the stored statistics (mode 'none')."""
    import paddle

    from encoding import net_spec
    from evaluate.oracle import build_calibration_batches
    from evaluate.settings import EvalSettings
    from infra.config import resolve
    from supernet.calibration import BNSnapshot, apply_protocol, recalibrate

    cfg = apply_protocol(resolve(str(config), overrides=[f"evaluate.checkpoint={checkpoint}",
                                                          f"evaluate.calibration.mode={mode}"]))
    settings = EvalSettings.from_config(cfg)
    model = settings.source().load(net_spec(cfg))
    batches = build_calibration_batches(cfg, settings)
    out = {}
    for code in codes:
        model.set_active(code)
        layers = model.dynamic_bn_layers(active_only=True)
        snapshot = BNSnapshot(layers)
        if mode == "recalibrate":
            recalibrate(model, batches, layers)
        model.eval()
        with paddle.no_grad():
            out[code] = model(paddle.to_tensor(x)).numpy()
        snapshot.restore()
    return out


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


PREDICT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from supernet.export import load_predictor
    folders, x_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    x = np.load(x_path)
    got = {}
    for name, folder in folders.items():
        for runtime in ("paddle-inference", "onnxruntime"):
            p = load_predictor(folder, runtime, threads=1)
            got[f"{name}|{runtime}"] = p(x)
            got[f"{name}|{runtime}|3"] = p(x[:3])  # the batch dimension is dynamic
    np.savez(out_path, **got)
""")


@pytest.mark.slow
def test_round_trip_in_a_fresh_process_equals_the_supernet_slice(exported, tiny, tmp_path):
    out, stdout = exported
    config, checkpoint, _ = tiny
    index = json.loads((out / "index.json").read_text())
    assert [(e["id"], e["code"]) for e in index] == list(CODES.items())
    x = np.random.default_rng(1).standard_normal((5, 1, 16, 16)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    folders = {name: str(out / name) for name in CODES}
    proc = subprocess.run([sys.executable, "-c", PREDICT, json.dumps(folders), str(tmp_path / "x.npy"),
                           str(tmp_path / "got.npz")], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "got.npz")
    want = _reference_logits(config, checkpoint, CODES.values(), x, "recalibrate")
    for name, code in CODES.items():
        for runtime in ("paddle-inference", "onnxruntime"):
            logits = got[f"{name}|{runtime}"]
            assert logits.shape == (5, 10)
            assert _relative(logits, want[code]) < 1e-4, (name, runtime)
            np.testing.assert_allclose(got[f"{name}|{runtime}|3"], logits[:3], rtol=1e-5, atol=1e-5)
        assert f"{code} -> {out / name}" in stdout and "max abs diff" in stdout


def test_manifest_describes_the_export(exported, tiny):
    out, _ = exported
    _, checkpoint, _ = tiny
    code = CODES["released-random"]
    m = json.loads((out / "released-random" / "manifest.json").read_text())
    assert m["code"] == code
    assert m["weights"] == {"kind": "checkpoint", "path": str(checkpoint), "sha256": file_digest(checkpoint)}
    assert m["input"] == {"name": "image", "shape": [None, 1, 16, 16], "dtype": "float32"}
    assert m["output"]["shape"] == [None, 10]
    assert m["versions"]["paddle"] == "3.3.1" and m["versions"]["paddle2onnx"] and m["versions"]["onnxruntime"]
    assert m["onnx_opset"] == 13
    assert m["files"] == {"program": "model.json", "params": "model.pdiparams", "onnx": "model.onnx"}
    for name in m["files"].values():
        assert (out / "released-random" / name).is_file()
    pre = m["preprocessing"]
    assert pre["mean"] == [0.2860406] and pre["std"] == [0.3530242] and pre["resize"] == [16, 16]
    assert m["check"]["images"] == 8
    for runtime in ("paddle-inference", "onnxruntime"):
        assert 0 <= m["check"][runtime]["relative"] <= 1e-4
    assert not [n for n in os.listdir(out.parent) if n.startswith(".tmp-export-")]


def test_bn_protocol_is_pinned_and_force_replaces(exported, tiny):
    """The kit protocol's export holds recalibrated statistics; --calibration none exports the stored ones
    (other logits); --force replaces a non-empty folder whole."""
    from supernet.export import load_predictor

    out, _ = exported
    config, checkpoint, _ = tiny
    code = CODES["documented-random"]
    m = json.loads((out / "documented-random" / "manifest.json").read_text())
    assert m["protocol"]["name"] == "kit" and m["protocol"]["bn_statistics"] == "recalibrated"
    assert {k: m["protocol"]["calibration"][k] for k in ("mode", "batches", "batch_size", "seed")} == {
        "mode": "recalibrate", "batches": 2, "batch_size": 16, "seed": 0}

    stored = config.parent / "stored"
    stored.mkdir()
    (stored / "old.txt").write_text("an earlier export")
    proc = _export_cli("--config", config, "--checkpoint", checkpoint, "--arch", code, "--out", stored,
                       "--calibration", "none", "--force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(stored)) == ["manifest.json", "model.json", "model.pdiparams"]
    m = json.loads((stored / "manifest.json").read_text())
    assert m["protocol"]["bn_statistics"] == "stored" and m["protocol"]["calibration"] == {"mode": "none"}
    assert m["onnx_opset"] is None and "paddle2onnx" not in m["versions"]

    x = np.random.default_rng(2).standard_normal((4, 1, 16, 16)).astype("float32")
    want = {mode: _reference_logits(config, checkpoint, [code], x, mode)[code] for mode in ("none", "recalibrate")}
    got_stored = load_predictor(str(stored), "paddle-inference", threads=1)(x)
    got_recal = load_predictor(str(out / "documented-random"), "paddle-inference", threads=1)(x)
    assert _relative(got_stored, want["none"]) < 1e-4 and _relative(got_recal, want["recalibrate"]) < 1e-4
    assert _relative(want["none"], want["recalibrate"]) > 1e-2  # the protocol matters


@pytest.mark.slow
def test_a_killed_export_leaves_no_folder(tiny):
    from supernet.export import TMP_PREFIX, sweep_dead_temporaries

    config, checkpoint, archs = tiny
    out = config.parent / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "supernet.export", "--config", str(config), "--checkpoint",
                             str(checkpoint), "--archs", str(archs), "--out", str(out)], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        tmp = []
        while time.time() < deadline and proc.poll() is None:  # kill once the first code is written
            tmp = [n for n in os.listdir(config.parent) if n.startswith(TMP_PREFIX) and n.endswith("-killed")]
            if tmp and os.path.isfile(config.parent / tmp[0] / "released-min" / "model.pdiparams"):
                break
            time.sleep(0.05)
        assert proc.poll() is None and tmp, "the export ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not out.exists()
    assert sweep_dead_temporaries(str(out)) == tmp  # what the next export to DIR removes first
    assert not [n for n in os.listdir(config.parent) if n.endswith("-killed")]


def _run_main(args, capsys):
    from supernet import export as X

    rc = X.main([str(a) for a in args])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.fixture()
def other_checkpoint(tmp_path):
    """A supernet of another config: 3 input channels."""
    import paddle

    from encoding import NetSpec
    from supernet.model import ResNet48Supernet

    path = tmp_path / "rgb.pdparams"
    paddle.save(ResNet48Supernet(NetSpec(width_mult=0.125, divisor=2, in_channels=3, num_classes=10)).state_dict(),
                str(path))
    return path


def test_bad_input_is_one_line_and_leaves_nothing(tiny, tmp_path, capsys, monkeypatch, other_checkpoint):
    config, checkpoint, _ = tiny
    code = CODES["released-min"]
    base = ["--config", config, "--checkpoint", checkpoint]
    out = tmp_path / "out"

    def refused(args, expected):
        rc, err = _run_main(args, capsys)
        assert rc == 1 and len(err) == 1 and err[0].startswith("error: "), err
        assert expected in err[0], err[0]
        assert not out.exists() or out.is_file() or os.listdir(out) == ["keep.txt"]
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-export-")]

    refused(base + ["--arch", code[:-1] + "9", "--out", out], "--arch: ")
    refused(base + ["--out", out], "give exactly one of --arch CODE and --archs LIST.json")
    refused(["--config", config, "--checkpoint", other_checkpoint, "--arch", code, "--out", out],
            f"checkpoint {other_checkpoint}: blocks.0.conv.weight has shape")
    refused(["--config", config, "--arch", code, "--out", out], "give exactly one of --checkpoint")
    with monkeypatch.context() as m:  # a runtime that computes something else is refused
        from supernet import export as X

        m.setattr(X.PaddlePredictor, "__call__", lambda self, x: np.zeros((len(x), 10), dtype=np.float32))
        refused(base + ["--arch", code, "--out", out], f"{code}: the paddle.inference model differs from the "
                                                       f"supernet by")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    refused(base + ["--arch", code, "--out", blocker / "sub"], f"cannot write to {blocker}")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(base + ["--arch", code, "--out", out], f"{out} exists and is not empty: give --force")
    assert (out / "keep.txt").read_text() == "mine"
    out = tmp_path / "fresh"
    for package in ("paddle2onnx", "onnxruntime"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, package, None)  # import fails as if it were not installed
            refused(base + ["--arch", code, "--out", out, "--onnx"],
                    f"this needs the {package} package: pip install -r requirements-export.txt")


def test_a_fewshot_split_exports_each_code_from_its_groups_copy(tiny, tmp_path, capsys):
    """--fewshot: the code's group copy is exported (two copies with different weights; stored statistics)."""
    import paddle

    from supernet.export import load_predictor
    from supernet.fewshot import parse_groups, split

    config, checkpoint, _ = tiny
    groups = parse_groups([{"name": "shallow", "depths": {4: [2, 3]}}, {"name": "deep"}])
    split(str(checkpoint), groups, str(tmp_path / "split"))
    paddle.seed(1)
    spec, other = _spec_and_supernet(config)
    copies = {"shallow": paddle.load(str(checkpoint)), "deep": other.state_dict()}
    for name, state in copies.items():
        paddle.save(state, str(tmp_path / "split" / name / "supernet.pdparams"))
    codes = {"shallow": RELEASED.min_arch().code(), "deep": RELEASED.max_arch().code()}
    archs = tmp_path / "two.json"
    write_arch_list(str(archs), [ArchEntry(k, c) for k, c in codes.items()])
    out = tmp_path / "fewshot"
    rc, err = _run_main(["--config", config, "--fewshot", tmp_path / "split" / "manifest.json", "--archs", archs,
                         "--out", out, "--calibration", "none"], capsys)
    assert rc == 0, err
    x = np.random.default_rng(3).standard_normal((2, 1, 16, 16)).astype("float32")
    for name, code in codes.items():
        m = json.loads((out / name / "manifest.json").read_text())
        assert m["weights"]["group"] == name and m["weights"]["kind"] == "fewshot"
        _, model = _spec_and_supernet(config)
        model.set_state_dict(copies[name])
        model.eval()
        model.set_active(code)
        with paddle.no_grad():
            want = model(paddle.to_tensor(x)).numpy()
        assert _relative(load_predictor(str(out / name), "paddle-inference", threads=1)(x), want) < 1e-4


def test_the_export_scores_the_top1_evaluate_reports(exported, tiny):
    """The oracle's top-1 for a code (evaluate run's number) is the exported model's on the same images."""
    from evaluate.oracle import Oracle
    from infra.config import resolve
    from supernet.export import load_predictor

    out, _ = exported
    config, checkpoint, _ = tiny
    oracle = Oracle.from_config(resolve(str(config), overrides=[f"evaluate.checkpoint={checkpoint}"]))
    for name in ("released-random", "documented-max"):
        predictor = load_predictor(str(out / name), "onnxruntime", threads=1)
        hits = sum(int((predictor(x.numpy()).argmax(1) == y.numpy()).sum()) for x, y in oracle.eval_set.batches(7))
        assert oracle.score_one(CODES[name])["top1"] == hits / len(oracle.eval_set)


def test_the_export_extras_are_pinned_and_installed_by_install_sh():
    from importlib.metadata import version

    lines = [line.strip() for line in open(os.path.join(ROOT, "requirements-export.txt"), encoding="utf-8")
             if line.strip() and not line.startswith("#")]
    pins = dict(line.split("==") for line in lines)
    assert set(pins) == {"paddle2onnx", "onnxruntime"}
    assert {name: version(name) for name in pins} == pins  # the tests ran with the pinned versions
    install = open(os.path.join(ROOT, "install.sh"), encoding="utf-8").read()
    assert "-r requirements-export.txt" in install
