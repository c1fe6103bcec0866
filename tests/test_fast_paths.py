"""The CPU speed switches give the plain path's results: oneDNN convolutions and the MKL AVX2 dispatch."""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from encoding import RELEASED, KitError, NetSpec
from runtime import conv, cpu_speed, onednn_conv
from supernet.model import ResNet48Supernet
from supernet.ops import DynamicConv2D
from supernet.static import build_static

SPEC = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)
AMD_AVX2 = ("AuthenticAMD", {"avx", "avx2", "fma", "sse4_2"})
INTEL_AVX512 = ("GenuineIntel", {"avx", "avx2", "fma", "avx512f"})

# Only a wheel without the library skips; a library that loads but fails the self-check fails the tests.
pytestmark = pytest.mark.skipif(not os.path.isfile(onednn_conv.library_path()),
                                reason=f"no oneDNN library in this Paddle wheel ({onednn_conv.library_path()})")


@pytest.fixture(autouse=True)
def restore_backend():
    paddle.set_device("cpu")
    before = onednn_conv.backend()
    yield
    onednn_conv.set_backend(before)


def rel(ref, got):
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    return float(np.abs(ref - got).max() / (np.abs(ref).max() + 1e-12))


def conv_both_ways(x, w, g, stride, padding, conv):
    xi, wi = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
    y = conv(xi, wi, stride=stride, padding=padding)
    (y * paddle.to_tensor(g)).sum().backward()
    return y.numpy(), xi.grad.numpy(), wi.grad.numpy()


@pytest.mark.parametrize("n,c,h,w,o,k,stride,padding", [
    (4, 3, 9, 7, 5, 3, 1, 1),      # odd, non-square input
    (3, 1, 12, 12, 8, 3, 1, 1),    # one input channel (the demo stem)
    (4, 8, 10, 10, 16, 3, 2, 1),   # strided 3x3 (first block of a stage)
    (4, 8, 10, 10, 16, 1, 2, 0),   # strided 1x1 (downsample)
    (2, 16, 5, 5, 24, 3, 1, 1),
    (2, 4, 9, 8, 4, 3, (2, 1), (1, 0)),  # per-axis stride and padding
])
def test_onednn_conv_matches_paddle_values_and_gradients(n, c, h, w, o, k, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    wt = rng.standard_normal((o, c, k, k)).astype("float32")
    ref_y = F.conv2d(paddle.to_tensor(x), paddle.to_tensor(wt), stride=stride, padding=padding).numpy()
    g = rng.standard_normal(ref_y.shape).astype("float32")
    onednn_conv.set_backend("onednn")
    ref = conv_both_ways(x, wt, g, stride, padding, F.conv2d)
    got = conv_both_ways(x, wt, g, stride, padding, onednn_conv.conv2d)
    for name, a, b in zip(("output", "input grad", "weight grad"), ref, got, strict=True):
        assert a.shape == b.shape
        assert rel(a, b) < 1e-5, name
    with paddle.no_grad():  # forward-inference primitives
        y = onednn_conv.conv2d(paddle.to_tensor(x), paddle.to_tensor(wt), stride=stride, padding=padding)
    assert rel(ref[0], y.numpy()) < 1e-5


def test_sliced_weight_gets_gradient_only_in_its_slice():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((16, 12, 3, 3)).astype("float32")
    x = rng.standard_normal((3, 8, 6, 6)).astype("float32")
    grads = []
    for backend in ("paddle", "onednn"):
        onednn_conv.set_backend(backend)
        weight = paddle.to_tensor(big, stop_gradient=False)
        piece = weight[:10, :8]  # a non-contiguous view, as the supernet's slices are
        onednn_conv.conv2d(paddle.to_tensor(x), piece, stride=1, padding=1).square().sum().backward()
        grads.append(weight.grad.numpy())
    assert rel(grads[0], grads[1]) < 1e-5
    assert np.all(grads[1][10:] == 0) and np.all(grads[1][:, 8:] == 0)
    assert np.abs(grads[1][:10, :8]).min() > 0


def test_paddle_backend_and_unsupported_calls_are_exactly_paddles_kernel():
    rng = np.random.default_rng(2)
    x = paddle.to_tensor(rng.standard_normal((2, 4, 7, 7)).astype("float32"))
    w = paddle.to_tensor(rng.standard_normal((6, 4, 3, 3)).astype("float32"))
    ref = F.conv2d(x, w, stride=1, padding=1).numpy()
    onednn_conv.set_backend("paddle")
    assert np.array_equal(onednn_conv.conv2d(x, w, stride=1, padding=1).numpy(), ref)
    onednn_conv.set_backend("onednn")
    x64, w64 = x.astype("float64"), w.astype("float64")  # not float32: falls back to Paddle's kernel
    assert np.array_equal(onednn_conv.conv2d(x64, w64, stride=1, padding=1).numpy(),
                          F.conv2d(x64, w64, stride=1, padding=1).numpy())


def test_backend_names_and_missing_library_are_clear_errors(monkeypatch):
    with pytest.raises(onednn_conv.OneDNNError,
                       match=r"unknown CPU convolution backend 'mkldnn'.*auto, onednn, paddle"):
        onednn_conv.set_backend("mkldnn")
    assert issubclass(onednn_conv.OneDNNError, KitError)
    monkeypatch.setattr(onednn_conv, "_state", {"backend": "paddle", "lib": None, "error": None, "checked": False})
    monkeypatch.setattr(onednn_conv, "library_path", lambda: "/nonexistent/libdnnl.so.3")
    with pytest.raises(onednn_conv.OneDNNError, match=r"'onednn' is not available: .*no oneDNN library.*/nonexistent"):
        onednn_conv.set_backend("onednn")
    assert onednn_conv.set_backend("auto") == "paddle"
    assert onednn_conv.available() == (False, "this Paddle wheel has no oneDNN library "
                                              "(looked for /nonexistent/libdnnl.so.3)")


def test_plan_cache_evicts_and_stays_correct(monkeypatch):
    monkeypatch.setattr(onednn_conv, "MAX_PLANS", 2)
    onednn_conv.clear_cache()
    onednn_conv.set_backend("onednn")
    rng = np.random.default_rng(3)
    w = paddle.to_tensor(rng.standard_normal((4, 3, 3, 3)).astype("float32"))
    for _ in range(2):
        for side in (5, 6, 7, 8):
            x = paddle.to_tensor(rng.standard_normal((2, 3, side, side)).astype("float32"))
            with paddle.no_grad():
                got = onednn_conv.conv2d(x, w, stride=1, padding=1).numpy()
            assert rel(F.conv2d(x, w, stride=1, padding=1).numpy(), got) < 1e-5
            assert len(onednn_conv._plans) <= 2


def test_conv_seam_is_paddles_own_kernel_until_a_backend_is_installed():
    paddle.seed(6)
    plain = nn.Conv2D(3, 6, 3, stride=2, padding=1)  # with a bias: the layer adds it after the seam
    seam = conv.Conv2D(3, 6, 3, stride=2, padding=1)
    seam.set_state_dict(plain.state_dict())
    x = paddle.randn([2, 3, 9, 9])
    assert onednn_conv.set_backend("paddle") == "paddle" and conv.installed() == "paddle"
    assert np.array_equal(plain(x).numpy(), seam(x).numpy())
    assert onednn_conv.set_backend("onednn") == "onednn" and conv.installed() == "onednn"
    assert rel(plain(x).numpy(), seam(x).numpy()) < 1e-5
    assert onednn_conv.set_backend("paddle") == "paddle" and conv.installed() == "paddle"


def test_a_gpu_run_never_loads_the_onednn_path():
    """The entry point installs the CPU backend: on any other device the models are plain Paddle layers
    and `runtime.onednn_conv` is never imported."""
    code = ("import sys\nfrom runtime import conv, cpu_speed\nfrom supernet import model, static\n"
            "got = cpu_speed.configure({'conv': 'onednn'}, device='gpu:0')\n"
            "print(got['conv'], conv.installed(), 'runtime.onednn_conv' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["paddle", "paddle", "False"]
    code = code.replace("device='gpu:0'", "device='cpu'")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onednn", "onednn", "True"]


def test_conv2d_layer_keeps_paddles_parameters_and_results():
    paddle.seed(5)
    plain = nn.Conv2D(3, 6, 3, stride=2, padding=1)
    fast = conv.Conv2D(3, 6, 3, stride=2, padding=1)
    assert [(k, v.shape) for k, v in fast.state_dict().items()] == [(k, v.shape) for k, v in plain.state_dict().items()]
    fast.set_state_dict(plain.state_dict())
    x = paddle.randn([2, 3, 9, 9])
    onednn_conv.set_backend("onednn")
    assert rel(plain(x).numpy(), fast(x).numpy()) < 1e-5


def step(model, x, y):
    """Logits, parameter gradients and BN running statistics after one forward/backward."""
    model.clear_gradients()
    out = model(x)
    F.cross_entropy(out, y).backward()
    grads = [p.grad.numpy() for p in model.parameters() if p.grad is not None]
    stats = [b.numpy() for name, b in model.state_dict().items() if name.endswith(("_mean", "_variance"))]
    return out.numpy(), grads, stats


def assert_same_function(plain, fast, x, y):
    """`plain` runs Paddle's conv kernel, `fast` oneDNN (same weights). Train mode: logits and the
    BN statistics it updates agree to 1e-5. Gradients are compared in eval mode: at random init,
    train-mode BN over 8 images makes the gradients of these deep nets jump by 1-10% when the
    input moves by 1e-7 (Paddle's own kernel does that to itself), so only the eval-mode (fixed
    statistics) gradients are a fair equality."""
    def both():
        onednn_conv.set_backend("paddle")
        ref = step(plain, x, y)
        onednn_conv.set_backend("onednn")
        return ref, step(fast, x, y)

    for mode, compared in (("train", 2), ("eval", 1)):  # step()[2]: BN statistics, step()[1]: gradients
        for model in (plain, fast):
            getattr(model, mode)()
        ref, got = both()
        assert rel(ref[0], got[0]) < 1e-5
        assert len(ref[compared]) == len(got[compared]) > 0
        assert max(rel(a, b) for a, b in zip(ref[compared], got[compared], strict=True)) < 1e-5


@pytest.mark.parametrize("which", ["min", "sampled"])
def test_supernet_sliced_path_matches_plain_path(which):
    arch = RELEASED.min_arch() if which == "min" else RELEASED.sample(np.random.default_rng(3))
    paddle.seed(0)
    plain = ResNet48Supernet(SPEC)
    fast = ResNet48Supernet(SPEC)
    fast.set_state_dict(plain.state_dict())
    # every conv of the supernet goes through the switch: stem, 23 x 2 block convs, 3 downsamples
    assert sum(isinstance(m, DynamicConv2D) for m in fast.sublayers()) == 50
    for model in (plain, fast):
        model.set_active(arch)
    x, y = paddle.randn([8, 1, 28, 28]), paddle.randint(0, 10, [8])
    assert_same_function(plain, fast, x, y)
    onednn_conv.set_backend("paddle")  # patched, but switched off: bit-for-bit the plain path
    fast.set_state_dict(plain.state_dict())
    with paddle.no_grad():
        assert np.array_equal(plain(x).numpy(), fast(x).numpy())


def test_static_net_matches_plain_path():
    paddle.seed(0)
    plain = build_static(RELEASED.max_arch(), SPEC)
    fast = build_static(RELEASED.max_arch(), SPEC)
    fast.set_state_dict(plain.state_dict())
    # build_static's convs are the switchable ones (same keys as nn.Conv2D: the official checkpoint loads)
    assert sum(isinstance(m, conv.Conv2D) for m in fast.sublayers()) == 50
    x, y = paddle.randn([8, 1, 28, 28]), paddle.randint(0, 10, [8])
    assert_same_function(plain, fast, x, y)


# --- MKL dispatch ------------------------------------------------------------------------
def test_parse_cpuinfo_reads_first_cpu():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n" \
           "vendor_id\t: Other\nflags\t\t: fpu\n"
    assert cpu_speed.parse_cpuinfo(text) == ("AuthenticAMD", {"fpu", "avx2", "fma"})
    assert cpu_speed.read_cpuinfo("/nonexistent/cpuinfo") == ("", set())


@pytest.mark.parametrize("mode,cpu,before,expect_set,expect_value", [
    ("auto", AMD_AVX2, None, True, "5"),
    ("auto", INTEL_AVX512, None, False, None),                      # would cap Intel at AVX2
    ("auto", ("AuthenticAMD", {"avx", "sse4_2"}), None, False, None),  # no AVX2: the AVX2 path would crash
    ("auto", AMD_AVX2, "4", False, "4"),                            # the user's own choice stands
    ("off", AMD_AVX2, None, False, None),
    ("on", INTEL_AVX512, None, True, "5"),
    (True, AMD_AVX2, None, True, "5"),                              # YAML `on` reads as True
    (False, AMD_AVX2, None, False, None),
])
def test_mkl_avx2_switch(mode, cpu, before, expect_set, expect_value):
    env = {} if before is None else {cpu_speed.MKL_VARIABLE: before}
    assert cpu_speed.mkl_avx2_on_amd(mode, cpuinfo=cpu, environ=env) is expect_set
    assert env.get(cpu_speed.MKL_VARIABLE) == expect_value


def test_cpu_config_errors_name_the_key():
    with pytest.raises(cpu_speed.CpuSpeedError, match=r"cpu.mkl_avx2_on_amd must be one of auto, on, off, got 'yes'"):
        cpu_speed.mkl_avx2_on_amd("yes", cpuinfo=AMD_AVX2, environ={})
    with pytest.raises(cpu_speed.CpuSpeedError, match=r"unknown cpu config keys \['threads'\]"):
        cpu_speed.configure({"threads": 2})
    with pytest.raises(cpu_speed.CpuSpeedError, match=r"cpu.conv must be one of auto, onednn, paddle, got 'fast'"):
        cpu_speed.configure({"conv": "fast"})
    with pytest.raises(cpu_speed.CpuSpeedError, match=r"cpu.keep_freed_memory must be one of auto, on, off"):
        cpu_speed.configure({"keep_freed_memory": "always"})
    assert cpu_speed.configure({"conv": "onednn"}, device="gpu:0") == {
        "conv": "paddle", "mkl_avx2": False, "keep_freed_memory": False}


class FakeLibc:
    def __init__(self, accept=True):
        self.calls, self.accept = [], accept

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1 if self.accept else 0


def test_keep_freed_memory_sets_both_glibc_thresholds_threshold_first():
    libc = FakeLibc()
    assert cpu_speed.keep_freed_memory("auto", libc=libc) is True
    # mmap threshold first (M_MMAP_THRESHOLD = -3) at glibc's 32 MB ceiling, then never trim (M_TRIM_THRESHOLD = -1)
    assert libc.calls == [(-3, 32 * 2**20), (-1, 2**31 - 1)]
    off = FakeLibc()
    assert cpu_speed.keep_freed_memory("off", libc=off) is False and off.calls == []
    assert cpu_speed.keep_freed_memory("on", libc=FakeLibc(accept=False)) is False
    assert cpu_speed.keep_freed_memory("on", libc=object()) is False  # a C library without mallopt


_MKL_PROBE = """
import json, sys
import numpy as np
import paddle
paddle.seed(0)
from encoding import NetSpec
from supernet.static import build_static
from supernet.model import ResNet48Supernet
from supernet.ops import DynamicConv2D
net = build_static(ResNet48Supernet.max_arch(), NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10))
net.train()
with paddle.no_grad():
    out = net(paddle.randn([8, 1, 28, 28]))
a, b = paddle.randn([64, 200]), paddle.randn([200, 48])
json.dump({"out": out.numpy().tolist(), "mm": paddle.matmul(a, b).numpy().tolist()}, sys.stdout)
"""


def test_mkl_avx2_dispatch_keeps_results(repo_root):
    """Same net and GEMM in two fresh processes, with and without MKL_DEBUG_CPU_TYPE=5."""
    results = []
    for value in (None, "5"):
        env = {k: v for k, v in os.environ.items() if k != cpu_speed.MKL_VARIABLE}
        if value:
            env[cpu_speed.MKL_VARIABLE] = value
        proc = subprocess.run([sys.executable, "-c", _MKL_PROBE], cwd=repo_root, env=env, capture_output=True,
                              text=True, timeout=120, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for key in ("out", "mm"):
        assert rel(results[0][key], results[1][key]) < 1e-5, key


def test_setup_device_applies_the_cpu_section():
    # Every entry point selects its device through runtime.setup_device(cfg): the config's cpu:
    # section must reach the conv switch, and a typo in it must stop the run.
    from runtime.device import setup_device

    cfg = {"device": "cpu", "cpu": {"conv": "onednn", "mkl_avx2_on_amd": "off", "keep_freed_memory": "off"}}
    assert setup_device(cfg) == "cpu" and onednn_conv.backend() == "onednn"
    cfg["cpu"]["conv"] = "paddle"
    setup_device(cfg)
    assert onednn_conv.backend() == "paddle"
    with pytest.raises(KitError, match=r"unknown cpu config keys \['cnv'\]"):
        setup_device({"device": "cpu", "cpu": {"cnv": "onednn"}})


@pytest.mark.parametrize("environ, cores, expect", [
    ({}, 2, "2"),                                    # one process: all the cores
    ({"PADDLE_LOCAL_SIZE": "2"}, 2, "1"),            # two launched processes share them
    ({"PADDLE_LOCAL_SIZE": "3"}, 16, "5"),
    ({"PADDLE_LOCAL_SIZE": "4"}, 2, "1"),            # never below one
    ({"PADDLE_LOCAL_SIZE": "x"}, 2, "2"),            # unreadable: one process
    ({"OMP_NUM_THREADS": "7"}, 2, "7"),              # an explicit setting wins
])
def test_default_threads_share_the_cores(environ, cores, expect):
    env = dict(environ)
    assert cpu_speed.default_threads(env, cpu_count=cores) == expect
    assert env["OMP_NUM_THREADS"] == expect


def test_entry_points_leave_paddle_unimported_until_threads_are_set():
    """Paddle pins OMP_NUM_THREADS to 1 when it is imported first, so no entry point may import it
    at module level: their main() sets the thread count first."""
    code = ("import sys\nimport pretrain, train_supernet, supernet.train, evaluate.__main__, evaluate.latency\n"
            "print('paddle' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
