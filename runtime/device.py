"""Where and how a training process runs: device, data-parallel rank, seeds and RNG state.

Every entry point goes through here so that the device is chosen at run time (never
hard-coded), `paddle.distributed.launch` works unchanged, and a resumed run can put every
random generator back exactly where the interrupted one left it.
"""

import os
import random
import shutil
import subprocess
import sys

import numpy as np
import paddle
import paddle.distributed as dist

from encoding import KitError

DEVICES = ("auto", "cpu", "gpu")


class DeviceError(KitError):
    """The requested device does not exist on this machine or build."""


def gpu_available():
    return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def select_device(name="auto"):
    """Set Paddle's device and return its name ('cpu', 'gpu:0', ...).

    Under `paddle.distributed.launch`, 'gpu' resolves to the card the launcher gave this rank.
    """
    name = "auto" if name is None else str(name).strip().lower()
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "gpu" if gpu_available() else "cpu"
        if name == "cpu" and not paddle.is_compiled_with_cuda():
            warn_cpu_build_beside_gpus(nvidia_smi_gpus())
    if name == "gpu" and not gpu_available():
        why = ("this PaddlePaddle build has no CUDA support (install paddlepaddle-gpu)"
               if not paddle.is_compiled_with_cuda() else "no CUDA device is visible")
        raise DeviceError(f"device 'gpu' was requested but {why}; use device=cpu or device=auto")
    paddle.set_device(name)
    return paddle.device.get_device()


def nvidia_smi_gpus(timeout=10):
    """The lines `nvidia-smi -L` prints for each GPU ('GPU 0: NVIDIA H100 ... (UUID: ...)'); [] when
    there is no nvidia-smi or it fails (no driver, no GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("GPU ")]


def warn_cpu_build_beside_gpus(gpus, file=None):
    """`device: auto` fell back to the CPU although the machine has GPUs: say so loudly (stderr)."""
    if not gpus:
        return
    bar = "!" * 100
    listed = "\n".join(f"!!   {g}" for g in gpus)
    print(f"{bar}\n!! WARNING: this machine has {len(gpus)} GPU(s), but the installed PaddlePaddle is the CPU "
          f"build,\n!! so device 'auto' runs on the CPU (far slower):\n{listed}\n"
          f"!! Install the CUDA build: pip install -r requirements-gpu.txt (README, GPU); or set device=cpu "
          f"to silence this.\n{bar}", file=file or sys.stderr, flush=True)


def _build_version(fn):
    """A version string Paddle reports for its CUDA/cuDNN build, or None on a CPU build."""
    try:
        value = str(fn())
    except Exception:  # noqa: BLE001 - a missing or failing probe means "not there"
        return None
    return None if value in ("", "False", "None", "0") else value


def amp_label(amp, device):
    """What AMP a run uses on `device` for the config's setting `amp` (AMP is GPU only in this kit);
    `amp` may be a dict {part: setting} for a program that runs several parts (the demo)."""
    if isinstance(amp, dict):
        return ", ".join(f"{part} {amp_label(v, device)}" for part, v in amp.items())
    name = "none" if amp in (None, False) else str(amp).lower()
    if name == "none":
        return "none (fp32)"
    return name if str(device).startswith("gpu") else f"none (fp32; {name} asked for, GPU only)"


def runtime_facts(device, world=None, amp=None):
    """Device, ranks, versions, AMP and threads of this process (for the start line and reports)."""
    facts = {"device": str(device), "ranks": int(world if world is not None else world_size()),
             "paddle": paddle.__version__, "paddle_commit": str(getattr(paddle.version, "commit", ""))[:10],
             "cuda_build": paddle.is_compiled_with_cuda(), "cuda": _build_version(paddle.version.cuda),
             "cudnn": _build_version(paddle.version.cudnn), "gpu_name": None, "amp": amp_label(amp, device),
             "omp_threads": os.environ.get("OMP_NUM_THREADS"),
             "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    if str(device).startswith("gpu"):
        try:
            index = int(str(device).partition(":")[2] or 0)
            facts["gpu_name"] = paddle.device.cuda.get_device_name(index)
        except Exception:  # noqa: BLE001 - the name is decoration; never fail a run over it
            pass
    return facts


def start_line(program, device, world=None, amp=None):
    """One line: program, device and ranks, Paddle/CUDA/cuDNN versions, AMP mode, CPU threads."""
    f = runtime_facts(device, world, amp)
    where = f["device"] + (f" ({f['gpu_name']})" if f["gpu_name"] else "")
    ranks = f"{f['ranks']} rank" + ("s" if f["ranks"] != 1 else "")
    build = (f"CUDA {f['cuda'] or '?'}, cuDNN {f['cudnn'] or '?'}" if f["cuda_build"] else "CPU build")
    return (f"{program}: device {where}, {ranks} | Paddle {f['paddle']} ({build}) | AMP {f['amp']} | "
            f"CPU threads {f['omp_threads'] or '?'} of {f['cores']} cores")


def print_start_line(program, device, world=None, amp=None, file=None):
    """Print `start_line` once (rank 0) on stderr, so stdout stays what scripts parse."""
    if is_main():
        print(start_line(program, device, world, amp), file=file or sys.stderr, flush=True)


def setup_device(cfg):
    """Select the config's device, then apply its CPU speed switches (`cpu:` section, see
    runtime/cpu_speed.py; they leave GPU runs alone). Call before the first matmul or conv."""
    from . import cpu_speed

    device = select_device(cfg.get("device", "auto"))
    cpu_speed.configure(cfg.get("cpu"), device=device)
    set_fp32_math((cfg.get("gpu") or {}).get("fp32_math", "fp32"), device)
    return device


# --- float32 math on a GPU ------------------------------------------------------------------

FP32_MATH = ("fp32", "tf32")


def _tf32_switches():
    """Paddle's (set, get) pairs of its cuDNN and cuBLAS TF32 switches (CUDA builds only; both default on)."""
    core = paddle.base.core
    return {"cudnn_tf32": (core.set_cudnn_switch, core.get_cudnn_switch),
            "cublas_tf32": (core.set_cublas_switch, core.get_cublas_switch)}


def set_fp32_math(mode, device):
    """Set Paddle's cuDNN and cuBLAS TF32 switches from `gpu.fp32_math` on a GPU: 'fp32' turns both off
    (true float32: Paddle's default is TF32, a 10-bit mantissa, in every float32 conv and matmul on
    Ampere and newer), 'tf32' turns both on. Nothing to set on a CPU. Returns what `precision_facts` pins."""
    mode = "fp32" if mode is None else str(mode).strip().lower()
    if mode not in FP32_MATH:
        raise DeviceError(f"gpu.fp32_math must be one of {', '.join(FP32_MATH)}, got {mode!r}")
    if str(device).startswith("gpu"):
        for set_switch, _ in _tf32_switches().values():
            set_switch(mode == "tf32")
    return precision_facts(device)


def precision_facts(device):
    """What decides float32 numerics besides the code (a results manifest pins it): the device kind and,
    on a GPU, the TF32 switches as Paddle reports them."""
    kind = str(device).partition(":")[0]
    if kind != "gpu":
        return {"kind": kind}
    facts = {"kind": kind}
    for name, (_, get_switch) in _tf32_switches().items():
        facts[name] = bool(get_switch())
    facts["fp32_math"] = "tf32" if facts["cudnn_tf32"] or facts["cublas_tf32"] else "fp32"
    return facts


def world_size():
    return dist.get_world_size()


def rank():
    return dist.get_rank()


def is_main():
    """True on the process that writes files and prints progress (rank 0)."""
    return rank() == 0


_initialised = False


def init_distributed():
    """Join the process group when launched with more than one rank; return (rank, world_size)."""
    global _initialised
    from infra.runlock import exit_with_launcher

    exit_with_launcher()  # a launcher killed by SIGKILL takes its workers with it
    n = world_size()
    if n > 1 and not _initialised:
        dist.init_parallel_env()
        _initialised = True
    return rank(), n


def barrier():
    if world_size() > 1:
        dist.barrier()


def claim_run_folder(folder, sweep=(), lock_name=None, what=None, temp_of=None):
    """Make this run the folder's only writer: rank 0 locks it for the life of the process
    (infra.runlock) and removes the temporary files a killed writer left in `folder` and its
    `sweep` subfolders (only those of the file `temp_of`, when given). Every rank then learns
    whether rank 0 could, so a refused run stops on all ranks at once instead of waiting in a
    collective. Call after `init_distributed`."""
    from infra.atomic import sweep_temp_files
    from infra.runlock import LOCK_NAME, acquire

    error = None
    if is_main():
        try:
            acquire(folder, lock_name or LOCK_NAME, what)
            sweep_temp_files(folder, *(os.path.join(folder, sub) for sub in sweep), target=temp_of)
        except (KitError, OSError) as e:
            error = e
    if world_size() > 1:
        failed = paddle.to_tensor([0 if error is None else 1], dtype="int64")
        dist.all_reduce(failed)
        if error is None and int(failed.item()):
            raise KitError(f"rank 0 could not take {what or folder} (its log says why)")
    if error is not None:
        raise error


def unwrap(model):
    """The plain Layer inside a `paddle.DataParallel` wrapper (or the model itself)."""
    return model._layers if isinstance(model, paddle.DataParallel) else model


def seed_everything(seed):
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    paddle.seed(seed)


def _this_gpu_generator():
    """The CUDA generator of the card this process computes on, or None off a GPU."""
    device = paddle.device.get_device()
    if not device.startswith("gpu"):
        return None
    return paddle.base.core.default_cuda_generator(int(device.partition(":")[2] or 0))


def rng_state():
    """Every global generator's state as a picklable dict (store it in a checkpoint).

    On a GPU only this rank's card's generator ('paddle_gpu'): Paddle's get_cuda_rng_state lists
    every visible card's, and the launcher leaves all cards visible to each rank, so such a list
    would tie the checkpoint to the machine's card count (set_cuda_rng_state refuses any other).
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "paddle_cpu": paddle.get_rng_state("cpu"),
    }
    generator = _this_gpu_generator()
    if generator is not None:
        state["paddle_gpu"] = generator.get_state()
    return state


def set_rng_state(state):
    """Restore `rng_state()`'s dict. Its GPU generator goes to this rank's card when both ran on a GPU;
    the all-cards list of older checkpoints ('paddle_cuda') is ignored: nothing in the kit draws from
    a CUDA generator (augmentation runs on the CPU, paths are seeded by seed, epoch and step), and on
    another card count it cannot be mapped."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle_cpu"], device="cpu")
    generator = _this_gpu_generator() if "paddle_gpu" in state else None
    if generator is not None:
        generator.set_state(state["paddle_gpu"])


# --- the same state on every rank -----------------------------------------------------------

def broadcast_from_main(obj):
    """Rank 0's `obj` on every rank (a picklable value; itself with one rank)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_from_all(obj):
    """[rank 0's obj, rank 1's, ...] on every rank (a picklable value; [obj] with one rank)."""
    if world_size() == 1:
        return [obj]
    out = []
    dist.all_gather_object(out, obj)
    return out


def sync_from_main(layer, parameters=True, buffers=True):
    """Copy rank 0's trainable parameters and/or its statistics (buffers, and the non-trainable
    parameters nn.BatchNorm2D keeps its running mean and variance in) into every rank's `layer`
    (unwrapped from DataParallel); nothing with one rank. DataParallel syncs them once, when it is
    built; weights loaded later, and BN statistics (never all-reduced), differ per rank otherwise."""
    if world_size() == 1:
        return
    layer = unwrap(layer)
    params = list(layer.parameters())
    tensors = [p for p in params if p.trainable] if parameters else []
    if buffers:
        tensors += [p for p in params if not p.trainable] + list(layer.buffers())
    with paddle.no_grad():
        for t in tensors:
            dist.broadcast(t, src=0)
