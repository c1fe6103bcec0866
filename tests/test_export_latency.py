"""`python -m evaluate latency --runtime`: the same subnets timed as exported Paddle inference and ONNX models;
the table records the runtime and two runtimes' tables compare by rank (SRCC)."""

import copy
import json
import sys

import numpy as np
import pytest

from encoding import RELEASED, ArchEntry, NetSpec, write_arch_list
from evaluate import latency as LAT

SPEC = NetSpec(stem="small", width_mult=0.125, in_channels=1, num_classes=10)
CONFIG = """
device: cpu
model: {stem: small, width_mult: 0.125, in_channels: 1, num_classes: 10}
latency: {archs: null, sample: null, seed: 0, batch_sizes: [1, 3], resolution: 16, warmup: 0, repeats: 1,
          rounds: 1, out: latency.json, runtime: dygraph}
export: {opset: 13}
"""


def _damped(model):
    """`model` with residual branches damped (bn2 scale 0.2) as training leaves them: a random undamped 48-layer
    net amplifies float32 rounding to ~1e-4 of its logits (tests/test_export.py)."""
    import paddle

    for block in model.blocks[1:-1]:
        block.bn2.weight.set_value(paddle.full_like(block.bn2.weight, 0.2))
    model.eval()
    return model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("latency-runtimes")
    (d / "cfg.yaml").write_text(CONFIG)
    archs = [RELEASED.min_arch(), RELEASED.max_arch()] + RELEASED.sample_many(1, seed=4)
    write_arch_list(d / "archs.json", [ArchEntry(f"arch{i + 1}", a.code()) for i, a in enumerate(archs)])
    return d


@pytest.mark.parametrize("runtime", ["paddle-inference", "onnxruntime"])
def test_the_timed_predictor_computes_the_dygraph_models_logits(runtime):
    import paddle

    from supernet.static import build_static

    paddle.seed(0)
    model = _damped(build_static(RELEASED.sample(np.random.default_rng(5)), SPEC))
    x = paddle.randn([3, 1, 16, 16])
    with paddle.no_grad():
        want = model(x).numpy()
    exported = LAT.Exported(runtime, SPEC, 16, threads=1)
    try:
        got = exported.predictor(0, model)(x.numpy())
        again = exported.predictor(0, model)(x.numpy()[:1])  # a later round reuses the export
    finally:
        exported.close()
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
    np.testing.assert_allclose(again, got[:1], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tables(workdir):
    out = {}
    for runtime in ("dygraph", "onnxruntime"):
        path = workdir / f"{runtime}.json"
        rc = LAT.main(["--config", str(workdir / "cfg.yaml"), "--archs", str(workdir / "archs.json"),
                       "--runtime", runtime, "--out", str(path)])
        assert rc == 0
        out[runtime] = path
    return out


def test_tables_record_the_runtime_and_compare_across_runtimes(tables, capsys):
    ort = json.loads(tables["onnxruntime"].read_text())
    dy = json.loads(tables["dygraph"].read_text())
    assert ort["runtime"] == "onnxruntime" and dy["runtime"] == "dygraph"
    assert ort["runtime_versions"]["onnxruntime"] and dy["runtime_versions"] == {}
    assert [r["code"] for r in ort["codes"]] == [r["code"] for r in dy["codes"]]
    for row in ort["codes"]:
        assert set(row["latency"]) == {"1", "3"} and row["latency"]["3"]["median_ms"] > 0
    capsys.readouterr()
    assert LAT.main(["--compare", str(tables["dygraph"]), str(tables["onnxruntime"])]) == 0
    out = capsys.readouterr().out
    assert f"{tables['onnxruntime']}: onnxruntime on cpu" in out and f"{tables['dygraph']}: dygraph on cpu" in out
    assert f"{tables['dygraph']} batch 1 vs {tables['onnxruntime']} batch 1: Spearman" in out


def test_a_table_from_before_runtimes_reads_as_dygraph(tables, tmp_path):
    table = json.loads(tables["dygraph"].read_text())
    old = copy.deepcopy(table)
    del old["runtime"], old["runtime_versions"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = LAT.load_table(tmp_path / "old.json")
    assert LAT.table_runtime(loaded) == "dygraph"
    assert LAT.compare(loaded, table)[0]["spearman"] == pytest.approx(1.0)


def test_bad_runtime_and_missing_package_are_one_line(workdir, tmp_path, capsys, monkeypatch):
    base = ["--config", str(workdir / "cfg.yaml"), "--archs", str(workdir / "archs.json"),
            "--out", str(tmp_path / "t.json")]
    assert LAT.main(base + ["--runtime", "tensorrt"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: latency.runtime must be one of dygraph, paddle-inference, onnxruntime, got 'tensorrt'"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert LAT.main(base + ["--runtime", "onnxruntime"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: this needs the onnxruntime package: pip install -r requirements-export.txt "
                   "(or pip install onnxruntime)"]
    assert not (tmp_path / "t.json").exists()


def test_an_installed_convolution_is_not_traced_into_the_export(tmp_path, monkeypatch):
    """`runtime.conv` may route convolutions elsewhere (oneDNN on CPU); the saved program holds Paddle's conv."""
    import paddle

    from runtime import conv
    from supernet.export import load_predictor, save_inference
    from supernet.static import build_static

    paddle.seed(0)
    model = _damped(build_static(RELEASED.max_arch(), SPEC))
    x = paddle.randn([2, 1, 16, 16])
    with conv.plain(), paddle.no_grad():
        want = model(x).numpy()
    broken = lambda x, w, stride, padding: paddle.zeros([x.shape[0], w.shape[0], 1, 1])  # noqa: E731
    monkeypatch.setitem(conv._installed, "conv2d", broken)  # restored after the test, whatever was installed
    monkeypatch.setitem(conv._installed, "name", "broken")
    save_inference(model, str(tmp_path), SPEC, 16)
    assert conv.installed() == "broken"  # put back after tracing
    got = load_predictor(str(tmp_path), "paddle-inference", threads=1)(x.numpy())
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
