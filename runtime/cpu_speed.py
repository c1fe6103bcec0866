"""CPU-only speed switches, applied once at the start of an entry point (no effect on GPU runs).

`mkl_avx2_on_amd`: the MKL bundled in Paddle's wheel dispatches on the CPU vendor, and on AMD
CPUs it takes a generic path for SGEMM that is 3-4x slower than its AVX2 one; Paddle's CPU
conv kernel is im2col + that SGEMM, so a training step runs ~1.8x slower than it should.
MKL_DEBUG_CPU_TYPE=5 selects the AVX2 kernels. MKL reads the variable at its first call, so
`configure` must run before the first matmul or convolution (importing paddle is fine).
Never set on Intel CPUs (it would cap them at AVX2) or on CPUs without AVX2/FMA.

`keep_freed_memory`: Paddle's CPU allocator frees every op's buffers back to glibc, and glibc
hands large blocks back to the kernel (munmap, heap trim), so the next op faults the same pages
in again: ~4,000-19,000 page faults and 10-40 ms of kernel time per 128-image batch of the demo
net. Fixing glibc's mmap threshold at its 32 MB ceiling and never trimming keeps those blocks
in the process (RSS stays at its peak, which every step reaches anyway).

`conv`: which CPU convolution the models' layers call (`runtime.conv`): 'onednn' installs the path of
`runtime.onednn_conv`, 'paddle' Paddle's own kernel, 'auto' oneDNN when it loads and checks out.
Only a CPU run imports `runtime.onednn_conv`.

Both keep results equal to the plain path up to float32 rounding (tests/test_fast_paths.py);
bench/cpu_throughput.py measures what each one gains.
"""

import ctypes
import os
import platform

from infra.errors import KitError

MODES = ("auto", "on", "off")
MKL_MODES = MODES
MKL_VARIABLE = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2 = "5"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD_MAX = 32 * 2**20              # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
TRIM_NEVER = 2**31 - 1
DEFAULTS = {"conv": "auto", "mkl_avx2_on_amd": "auto", "keep_freed_memory": "auto"}


class CpuSpeedError(KitError):
    """A CPU speed switch has a value it does not know."""


def default_threads(environ=None, cpu_count=None):
    """Give each process on this machine an equal share of the cores as its OpenMP threads.

    Paddle sets OMP_NUM_THREADS=1 when importing finds it unset, and then runs every CPU op on
    one core (on 2 cores that halves training and evaluation speed). So every entry point calls
    this before Paddle is imported. An explicit setting wins; PADDLE_LOCAL_SIZE (set by
    paddle.distributed.launch) is the number of processes sharing this machine's cores.
    Returns the value in effect.
    """
    environ = os.environ if environ is None else environ
    if "OMP_NUM_THREADS" not in environ:
        environ["OMP_NUM_THREADS"] = str(cores_per_process(environ, cpu_count))
    return environ["OMP_NUM_THREADS"]


def cores_per_process(environ=None, cpu_count=None):
    """This process's share of the cores (at least 1): the cores it may run on (os.sched_getaffinity, as
    `nproc` counts them; `cpu_count` instead when given) over the processes on this node
    (PADDLE_LOCAL_SIZE, which paddle.distributed.launch sets; 1 without it)."""
    environ = os.environ if environ is None else environ
    try:
        local = max(1, int(environ.get("PADDLE_LOCAL_SIZE") or 1))
    except ValueError:
        local = 1
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpu_count or 1) // local)


def read_cpuinfo(path="/proc/cpuinfo"):
    """(vendor id, set of flags) of the first CPU listed; ('', set()) when there is no such file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return "", set()
    return parse_cpuinfo(text)


def parse_cpuinfo(text):
    vendor, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def _mode(key, mode):
    mode = "auto" if mode is None else str(mode).strip().lower()
    if mode in ("true", "false"):  # YAML booleans written as words
        mode = "on" if mode == "true" else "off"
    if mode not in MODES:
        raise CpuSpeedError(f"cpu.{key} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def keep_freed_memory(mode="auto", libc=None):
    """Make glibc keep freed blocks up to 32 MB (mallopt); returns whether that is now in force.

    auto and on: wherever the C library is glibc. off: leave malloc alone. `libc` is for tests.
    """
    mode = _mode("keep_freed_memory", mode)
    if mode == "off":
        return False
    if libc is None:
        if platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    # The threshold first: setting either parameter ends glibc's dynamic adjustment, and a trim
    # threshold alone would leave the 128 KB default mmap threshold (every buffer a fresh mmap).
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_NEVER))


def mkl_avx2_on_amd(mode="auto", cpuinfo=None, environ=None):
    """Set MKL_DEBUG_CPU_TYPE=5 when `mode` says so; returns whether it is now in force.

    auto: only on an AMD CPU with AVX2 and FMA, and never over a value the user already set.
    on: on any CPU with AVX2 and FMA (still not over a user's value). off: leave MKL alone.
    `cpuinfo` is a (vendor, flags) pair (default: read /proc/cpuinfo); `environ` defaults to os.environ.
    """
    mode = _mode("mkl_avx2_on_amd", mode)
    environ = os.environ if environ is None else environ
    if mode == "off":
        return environ.get(MKL_VARIABLE) == MKL_AVX2
    if MKL_VARIABLE in environ:
        return environ[MKL_VARIABLE] == MKL_AVX2
    vendor, flags = read_cpuinfo() if cpuinfo is None else cpuinfo
    if not {"avx2", "fma"} <= set(flags):
        return False
    if mode == "auto" and vendor != "AuthenticAMD":
        return False
    environ[MKL_VARIABLE] = MKL_AVX2
    return True


def configure(section=None, device="cpu"):
    """Apply the `cpu:` config section; returns what is in force,
    e.g. {'conv': 'onednn', 'mkl_avx2': True, 'keep_freed_memory': True}.

    `device` is the one the run uses ('cpu', 'gpu', 'gpu:0', ...): on a GPU both switches are left
    off, since neither touches GPU kernels.
    """
    section = dict(DEFAULTS, **(section or {}))
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise CpuSpeedError(f"unknown cpu config keys {unknown}; known: {sorted(DEFAULTS)}")
    from .conv import BACKENDS  # the seam names its backends (importing it imports Paddle)

    if str(section["conv"]).strip().lower() not in BACKENDS:
        raise CpuSpeedError(f"cpu.conv must be one of {', '.join(BACKENDS)}, got {section['conv']!r}")
    mkl_mode = _mode("mkl_avx2_on_amd", section["mkl_avx2_on_amd"])
    memory_mode = _mode("keep_freed_memory", section["keep_freed_memory"])
    if not str(device).startswith("cpu"):
        from . import conv

        return {"conv": conv.install(None, "paddle"), "mkl_avx2": False, "keep_freed_memory": False}
    from . import onednn_conv

    mkl = mkl_avx2_on_amd(mkl_mode)  # before the conv self-check calls MKL
    memory = keep_freed_memory(memory_mode)
    return {"conv": onednn_conv.set_backend(section["conv"]), "mkl_avx2": mkl, "keep_freed_memory": memory}
