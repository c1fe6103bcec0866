"""Mixed precision: the one parser of every `amp` key (supernet.amp, train.amp, evaluate.amp) into
Paddle's autocast dtype. No Paddle import, so settings are checked before Paddle loads."""

import contextlib

from infra.config import ConfigError

# Mixed-precision names of every `amp` key (supernet.amp, train.amp, evaluate.amp) and Paddle's dtypes.
AMP_DTYPES = {"none": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def amp_dtype(name, device, key="amp", warn=False):
    """Paddle's autocast dtype for the config value `name` of `key` on `device`, or None. None on CPU
    too, where Paddle's autocast does nothing (3.3: 'amp_guard can only be enabled on CUDAPlace ...'),
    with a warning when `warn` (evaluation, where a user may expect the speed-up)."""
    label = "none" if name in (None, False) else str(name).lower()
    if label not in AMP_DTYPES:
        raise ConfigError(f"{key} must be one of none, bf16, fp16, got {name!r}")
    dtype = AMP_DTYPES[label]
    if dtype is not None and not str(device).startswith("gpu"):
        if warn:
            import warnings

            warnings.warn(f"{key}={name} ignored on {device}: mixed precision is used on GPU only", stacklevel=2)
        return None
    return dtype


def autocast(amp):
    """paddle.amp.auto_cast for `amp` in ('bfloat16', 'float16') (amp_dtype's result), a no-op context for None."""
    if not amp:
        return contextlib.nullcontext()
    import paddle

    return paddle.amp.auto_cast(enable=True, dtype=amp, level="O1")


def full_precision():
    """A float32 region inside an autocast one (paddle.amp.auto_cast(enable=False); does nothing outside
    one). The nets' pooling and classifier run in it: AMP's white list holds `linear`, and half-precision
    logits are quantised (bf16 spacing 0.06 at 8-16), so top-1 ties break by class index and the loss
    coarsens."""
    import paddle

    return paddle.amp.auto_cast(enable=False)


def head_input(x):
    """`x` as float32 when it is half precision (the input of a float32 head); float32 and float64 (a
    float64 model: supernet.proxies' synflow) unchanged."""
    import paddle

    return x if x.dtype in (paddle.float32, paddle.float64) else x.astype("float32")
