"""The nets' activation layout: NCHW (Paddle's default) or NHWC (channels-last), chosen by a training
section's `channels_last` key. No Paddle import, so settings are checked before Paddle loads.

NHWC only pays under mixed precision on a GPU: Paddle 3's cuDNN conv computes in NHWC only for fp16
(and bf16 with cuDNN >= 8.1) on Volta or later, and otherwise transposes NHWC input to NCHW and back
around every conv (paddle/phi/kernels/gpudnn/conv_kernel.cu, `compute_in_nhwc`); its training-mode
batch_norm computes in NHWC only for fp16 with FLAGS_cudnn_batchnorm_spatial_persistent=1
(phi/kernels/gpu/batch_norm_kernel.cu, `fast_nhwc_batch_norm`), else it transposes too. On the CPU
Paddle's NHWC conv is slower and bypasses the kit's oneDNN path (docs/cpu-performance.md). So the
layout is NHWC only while AMP is in effect (`amp_dtype` gave a dtype: a GPU run), and `channels_last`
without `amp` is refused. Weights keep Paddle's OIHW filter layout either way (conv2d takes OIHW
filters under data_format NHWC), so state_dicts, checkpoints and official weights are the same, and
the nets take NCHW input (what the loaders give) and transpose it once at the stem.
"""

from infra.config import ConfigError

DATA_FORMATS = ("NCHW", "NHWC")


def check_channels_last(value, amp_name, where):
    """`value` of `<where>.channels_last` as a bool, refused when not a bool or when `<where>.amp` is none."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.channels_last must be true or false, got {value!r}")
    if value and (amp_name in (None, False) or str(amp_name).lower() == "none"):
        raise ConfigError(f"{where}.channels_last=true needs {where}.amp=bf16 or fp16: NHWC only speeds up "
                          f"half-precision convs on GPU tensor cores (Paddle transposes float32 NHWC to NCHW)")
    return value


def data_format(channels_last, amp):
    """The nets' layout for a run: NHWC when `channels_last` and AMP is in effect (`amp` is amp_dtype's result,
    None on the CPU), NCHW otherwise."""
    return "NHWC" if channels_last and amp else "NCHW"


def check_format(data_format):
    if data_format not in DATA_FORMATS:
        raise ConfigError(f"data_format must be one of {', '.join(DATA_FORMATS)}, got {data_format!r}")
    return data_format


def channel_axis(data_format):
    """The channel axis of a 4-D activation in `data_format`."""
    return 1 if data_format == "NCHW" else 3


def from_nchw(x, data_format):
    """An NCHW batch (the loaders') in `data_format`: itself for NCHW, one transpose for NHWC."""
    return x if data_format == "NCHW" else x.transpose([0, 2, 3, 1])
