"""The start line every entry point prints, and the warning of a CPU build of Paddle on a GPU machine."""

import os
import subprocess
import sys

import paddle
import pytest

import runtime.device as runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVIDIA_SMI_L = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1e2d3c-aaaa-bbbb-cccc-000000000000)\n"
                "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1e2d3c-aaaa-bbbb-cccc-000000000001)\n")


def test_start_line_on_cpu_names_device_ranks_versions_amp_and_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    line = runtime.start_line("pretrain.py run", "cpu", world=1, amp="bf16")
    assert line.startswith("pretrain.py run: device cpu, 1 rank | ")
    assert f"Paddle {paddle.__version__} (CPU build)" in line
    assert "AMP none (fp32; bf16 asked for, GPU only)" in line
    assert "CPU threads 2 of " in line and "\n" not in line
    assert "AMP none (fp32)" in runtime.start_line("x", "cpu", world=4, amp="none")
    assert ", 4 ranks |" in runtime.start_line("x", "cpu", world=4)


def test_start_line_of_a_cuda_build_shows_card_cuda_cudnn_and_amp(monkeypatch):
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.version, "cuda", lambda: "12.6")
    monkeypatch.setattr(paddle.version, "cudnn", lambda: "9.5.1")
    monkeypatch.setattr(paddle.device.cuda, "get_device_name", lambda index=0: f"NVIDIA H100 #{index}")
    line = runtime.start_line("supernet.train", "gpu:1", world=8, amp="bf16")
    assert "device gpu:1 (NVIDIA H100 #1), 8 ranks" in line
    assert "(CUDA 12.6, cuDNN 9.5.1)" in line and "| AMP bf16 |" in line
    assert runtime.amp_label({"supernet": "fp16", "evaluate": None}, "gpu:0") == "supernet fp16, evaluate none (fp32)"


def _fake_nvidia_smi(monkeypatch, stdout, returncode=0):
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, returncode, stdout=stdout, stderr="")

    monkeypatch.setattr(runtime.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    monkeypatch.setattr(runtime.subprocess, "run", run)
    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: False)
    return calls


def test_auto_on_a_cpu_build_warns_loudly_when_nvidia_smi_lists_gpus(monkeypatch, capsys):
    calls = _fake_nvidia_smi(monkeypatch, NVIDIA_SMI_L)
    assert runtime.select_device("auto") == "cpu"
    err = capsys.readouterr().err
    assert calls == [["/usr/bin/nvidia-smi", "-L"]]
    assert "WARNING: this machine has 2 GPU(s), but the installed PaddlePaddle is the CPU build" in err
    assert "GPU 1: NVIDIA H100 80GB HBM3" in err and "pip install -r requirements-gpu.txt" in err
    # an explicit cpu is the user's choice: no probe, no warning
    calls.clear()
    assert runtime.select_device("cpu") == "cpu"
    assert calls == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("which, stdout, returncode", [
    (None, NVIDIA_SMI_L, 0),                                         # no nvidia-smi at all
    ("/usr/bin/nvidia-smi", "", 9),                                  # nvidia-smi without a driver
    ("/usr/bin/nvidia-smi", "No devices were found\n", 0),
])
def test_auto_stays_quiet_without_gpus(monkeypatch, capsys, which, stdout, returncode):
    _fake_nvidia_smi(monkeypatch, stdout, returncode)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: which)
    assert runtime.select_device("auto") == "cpu"
    assert capsys.readouterr().err == ""


def test_demo_prints_the_start_line_of_its_config():
    out = subprocess.run([sys.executable, "-c", "import sys, demo; "
                          "demo.print_start_line(sys.executable, demo.parse_args(['evaluate.amp=bf16']))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("demo.py: device cpu, 1 rank | Paddle ")
    assert "AMP supernet none (fp32), evaluate none (fp32; bf16 asked for, GPU only)" in out.stdout
