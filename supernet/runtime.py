"""Where and how a training process runs: device, data-parallel rank, seeds and RNG state.

Every entry point goes through here so that the device is chosen at run time (never
hard-coded), `paddle.distributed.launch` works unchanged, and a resumed run can put every
random generator back exactly where the interrupted one left it.
"""

import random

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
    if name == "gpu" and not gpu_available():
        why = ("this PaddlePaddle build has no CUDA support (install paddlepaddle-gpu)"
               if not paddle.is_compiled_with_cuda() else "no CUDA device is visible")
        raise DeviceError(f"device 'gpu' was requested but {why}; use device=cpu or device=auto")
    paddle.set_device(name)
    return paddle.device.get_device()


def setup_device(cfg):
    """Select the config's device, then apply its CPU speed switches (`cpu:` section, see
    supernet/cpu_speed.py; they leave GPU runs alone). Call before the first matmul or conv."""
    from . import cpu_speed

    device = select_device(cfg.get("device", "auto"))
    cpu_speed.configure(cfg.get("cpu"), device=device)
    return device


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
    n = world_size()
    if n > 1 and not _initialised:
        dist.init_parallel_env()
        _initialised = True
    return rank(), n


def barrier():
    if world_size() > 1:
        dist.barrier()


def unwrap(model):
    """The plain Layer inside a `paddle.DataParallel` wrapper (or the model itself)."""
    return model._layers if isinstance(model, paddle.DataParallel) else model


def seed_everything(seed):
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    paddle.seed(seed)


def rng_state():
    """Every global generator's state as a picklable dict (store it in a checkpoint)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "paddle_cpu": paddle.get_rng_state("cpu"),
    }
    if gpu_available():
        state["paddle_cuda"] = paddle.get_cuda_rng_state()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle_cpu"], device="cpu")
    if "paddle_cuda" in state and gpu_available():
        paddle.set_cuda_rng_state(state["paddle_cuda"])
