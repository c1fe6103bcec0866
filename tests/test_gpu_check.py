"""bench/gpu_check.py: the CPU smoke run passes every step (or skips what only a GPU can do), and the
projection to the 45,000 codes is the arithmetic it claims, checked by hand."""

import json
import os
import subprocess
import sys

import pytest

from infra.config import default_config, get, resolve, set_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.py")


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, os.path.dirname(SCRIPT))  # bench/ is a folder of scripts, not a package
    import gpu_check

    return gpu_check


def test_projection_by_hand(gpu_check):
    # 0.5 s for 1,000 images of 2 GMACs -> 12,560 images of 2.5 GMACs: 0.5 x 12,560 x 2.5 / (1,000 x 2) = 7.85 s;
    # 45,000 subnets: 353,250 s = 98.125 h on one GPU, 12.265625 h on eight
    p = gpu_check.project_hours(0.5, 1000 * 2e9, 12560 * 2.5e9, 45000)
    assert p["seconds_per_subnet"] == pytest.approx(7.85)
    assert p["hours"] == {"1": pytest.approx(98.125), "8": pytest.approx(12.265625)}
    with pytest.raises(ValueError):
        gpu_check.project_hours(0.0, 1.0, 1.0, 10)


def test_images_per_subnet_and_the_cheapest_setting_by_hand(gpu_check):
    from encoding import RELEASED, costs

    cfg = resolve(default_config("imagenet"))
    set_key(cfg, "evaluate.subset", 10000)
    set_key(cfg, "evaluate.calibration.mode", "recalibrate")
    set_key(cfg, "evaluate.calibration.batches", 20)
    set_key(cfg, "evaluate.calibration.batch_size", 128)
    set_key(cfg, "evaluate.amp", "none")
    set_key(cfg, "data.resolution", 224)
    set_key(cfg, "evaluate.fidelity.settings", [
        {"name": "eval-2000", "set": {"evaluate.subset": 2000}},           # 2,560 + 2,000 = 4,560 images
        {"name": "no-calib", "set": {"evaluate.calibration.mode": "none"}},  # 10,000
        {"name": "all-val", "set": {"evaluate.subset": 0}},               # 2,560 + 50,000
        {"name": "bf16", "set": {"evaluate.amp": "bf16"}},                # 12,560 at 0.3x the time
        {"name": "res-112px", "set": {"data.resolution": 112}},
    ])
    assert gpu_check.images_per_subnet(cfg) == 20 * 128 + 10000 == 12560
    codes = [RELEASED.max_arch().code(), RELEASED.min_arch().code()]
    m224 = float(costs(codes, resolution=224)[1].mean())
    m112 = float(costs(codes, resolution=112)[1].mean())
    # measured: 1 s per subnet at exactly the full setting's work, so each row's seconds = its work ratio
    rows = gpu_check.fidelity_rows(cfg, codes, 1.0, 12560 * m224, bf16_factor=0.3)
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["full", "eval-2000", "no-calib", "all-val", "bf16", "res-112px"]
    assert [r["images"] for r in rows] == [12560, 4560, 10000, 52560, 12560, 12560]
    expected = {"full": 1.0, "eval-2000": 4560 / 12560, "no-calib": 10000 / 12560, "all-val": 52560 / 12560,
                "bf16": 0.3, "res-112px": m112 / m224}
    for name, seconds in expected.items():
        assert by_name[name]["seconds_per_subnet"] == pytest.approx(seconds), name
        assert by_name[name]["hours"]["1"] == pytest.approx(seconds * 2 / 3600), name
        assert by_name[name]["hours"]["8"] == pytest.approx(seconds * 2 / 8 / 3600), name
    assert 0.25 < m112 / m224 < 0.3  # the stem and stages shrink 4x in area; the fc does not
    assert gpu_check.cheapest(rows[1:])["name"] == "res-112px"
    assert gpu_check.cheapest([by_name["eval-2000"], by_name["bf16"], by_name["no-calib"]])["name"] == "bf16"


@pytest.mark.slow
def test_cpu_smoke_runs_every_step_without_a_failure(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--cpu-smoke", "--out", str(out), "--dir", str(tmp_path / "work")],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    for s in steps:
        assert s["verdict"] in ("pass", "skipped", "figure") and "error" not in s, (s["step"], s.get("error"),
                                                                                     s["checks"])
        assert s["checks"] and all(c["verdict"] in ("pass", "skipped", "figure") for c in s["checks"]), s
    assert report["verdict"] == "pass" and report["mode"] == "cpu-smoke"
    env = report["environment"]
    assert env["paddle"] and env["device"] == "cpu" and "Paddle" in env["start_line"]
    checks = {c["name"]: c for s in steps for c in s["checks"]}
    # real checks on CPU too: the slice equals its export, resuming is bit-identical, the naive loop agrees
    assert checks["fp32, TF32 off: max relative error"]["verdict"] == "pass"
    bn = checks["training-mode BN update"]["values"]
    assert bn["moved"] == bn["expected"] > 0
    assert checks["stop and resume: bit-identical"]["verdict"] == "pass"
    assert checks["naive per-subnet loop"]["verdict"] == "pass"
    # what only a GPU can do says so
    assert checks["bf16 autocast: top-1 agreement"]["figure"].startswith("skipped on CPU")
    assert checks["kit evaluator, bf16 vs fp32"]["figure"].startswith("skipped on CPU")
    bn16 = checks["training-mode BN update, bf16 autocast"]
    assert bn16["figure"].startswith("skipped on CPU") and bn16["values"]["moved"] == bn16["values"]["expected"] > 0
    assert "all 45,000 codes" in " ".join(checks) and get(report, "sizes.slice_codes") == 4
    # figures are labelled as such; the projection stands beside the review's estimate and the cost split
    assert checks["data-bound?"]["verdict"] == checks["all 45,000 codes, ImageNet defaults"]["verdict"] == "figure"
    assert "review's estimate" in checks["all 45,000 codes, ImageNet defaults"]["figure"]
    assert checks["per-subnet cost split, fp32"]["figure"].startswith("recalibration ")
    assert "decoding alone predicts >= " in checks["naive per-subnet loop"]["figure"]
    # two ranks (gloo here): killed, resumed on one as if stopped cleanly, and a 2-rank evaluation equal to a 1-rank one
    for name in ("2-rank run killed (SIGKILL)", "resumed on one rank", "2-rank training, fingerprints",
                 "killed + resumed = stopped + resumed", "2-rank evaluation = 1-rank"):
        assert checks[name]["verdict"] == "pass", checks[name]
    # bf16 is judged on a net that learnt the learnable images (well above chance), not on step 4's noise net
    assert checks["supernet trained on learnable images"]["values"]["mean_top1"] >= 0.5
    assert checks["bf16 vs fp32 on a net with signal"]["figure"].startswith("skipped on CPU")
    assert "overall: PASS" in proc.stdout and "stop and resume: bit-identical" in proc.stdout


def test_a_failing_step_is_recorded_with_its_error_line_and_the_next_step_runs(gpu_check, monkeypatch, tmp_path):
    def broken(ctx, step):
        step.add("first check", "pass", "fine")
        raise RuntimeError("cuDNN said no\n  [Hint: details]")

    def skipped(ctx, step):
        step.add("GPU-only check", "skipped", "skipped on CPU: why")

    monkeypatch.setattr(gpu_check, "STEPS", ((1, broken), (2, skipped)))
    out = tmp_path / "report.json"
    assert gpu_check.main(["--cpu-smoke", "--out", str(out), "--dir", str(tmp_path / "work")]) == 1
    steps = json.loads(out.read_text())["steps"]
    assert [(s["step"], s["verdict"]) for s in steps] == [(1, "fail"), (2, "skipped")]
    assert steps[0]["error"] == "RuntimeError: cuDNN said no" and "Traceback" in steps[0]["traceback"]
    assert steps[0]["checks"] == [{"name": "first check", "verdict": "pass", "figure": "fine"}]


def test_figures_are_not_checks_and_the_naive_ratio_is_judged_against_the_decode_rate(gpu_check):
    step = gpu_check.Step(7)
    step.add("projection", "figure", "12 h")
    assert step.verdict() == "figure"  # a step of figures only neither passes nor fails
    step.add("a check", "pass", "fine")
    assert step.verdict() == "pass"
    step.add("another", "fail", "broken")
    assert step.verdict() == "fail"
    # 10,000 images decoded at 2,000 images/s (5 s) beside the kit's 1 s of forward passes: 6x expected
    assert gpu_check.naive_ratio_expected(10000, 2000.0, 1.0) == pytest.approx(6.0)
    assert gpu_check.naive_ratio_expected(10000, None, 1.0) is None


def test_the_two_gpu_step_skips_below_two_gpus_and_launches_on_the_cards(gpu_check, monkeypatch, tmp_path):
    import argparse

    import paddle

    args = argparse.Namespace(cpu_smoke=False, device="auto", overrides=[])
    ctx = gpu_check.Context(args, gpu_check.GPU_SIZES, str(tmp_path))
    ctx.device = "gpu:0"  # what step 1 selects on a one-GPU machine
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 1)
    step = gpu_check.Step(8)
    gpu_check.step_two_ranks(ctx, step)
    assert step.checks == [{"name": "two ranks", "verdict": "skipped",
                            "figure": "skipped: 1 GPU(s) visible, this step needs 2"}]
    assert step.verdict() == "skipped"
    # on GPUs the launcher binds the ranks to the first cards; gloo CPU processes otherwise
    assert gpu_check.launcher(ctx, 2, "logs")[-4:] == ["--gpus", "0,1", "--log_dir", "logs"]
    ctx.device = "cpu"
    assert gpu_check.launcher(ctx, 2, "logs")[-4:] == ["--nproc_per_node", "2", "--log_dir", "logs"]
    assert gpu_check.launcher(ctx, 1, "logs") == [sys.executable]


@pytest.mark.slow
def test_two_ranks_killed_resume_on_one_bit_identically_and_evaluate_as_one(gpu_check, monkeypatch, tmp_path):
    # step 8 on two gloo processes (its CPU route), after the steps it needs: the device and the image folder
    monkeypatch.setattr(gpu_check, "STEPS", tuple((n, fn) for n, fn in gpu_check.STEPS if n in (1, 2, 8)))
    out = tmp_path / "report.json"
    assert gpu_check.main(["--cpu-smoke", "--out", str(out), "--dir", str(tmp_path / "work")]) == 0
    step = json.loads(out.read_text())["steps"][-1]
    checks = {c["name"]: c for c in step["checks"]}
    assert step["step"] == 8 and [c["verdict"] for c in step["checks"]] == ["pass"] * 5, step["checks"]
    assert list(checks) == ["2-rank run killed (SIGKILL)", "resumed on one rank", "2-rank training, fingerprints",
                            "killed + resumed = stopped + resumed", "2-rank evaluation = 1-rank"]
    killed = step["details"]["killed"]
    # SIGKILLed mid-run, at or after the mid-run checkpoint (every 3 of the 6 steps) and before the end
    assert killed["killed"] and killed["workers"] == 2 and not killed["left"] and killed["checkpoint"] == 3
    same = checks["killed + resumed = stopped + resumed"]["values"]
    assert same["differ"] == 0 and same["tensors"] > 100
    log = [json.loads(line) for line in (tmp_path / "work" / "two_ranks_killed" / "train_log.jsonl").open()]
    assert [r["global_step"] for r in log if r["type"] == "resume"] == [3]
    assert [r["global_step"] for r in log if r["type"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [r["ranks"] for r in log if r["type"] == "checkpoint"] == [2, 1]  # step 3 on two ranks, 6 on one
