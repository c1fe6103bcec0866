"""Training-free (zero-cost) proxies of a subnet's accuracy, computed at seeded random initialisation
(`python -m evaluate proxies` scores an architecture list with them; the supernet's rank loss can take one
as its prior, supernet.proxy_prior).

Each proxy is the paper's definition applied to a plain Paddle network (`supernet.static.StaticResNet`,
or any `nn.Layer` for the functions below); every choice a paper leaves open is listed in docs/proxies.md.

  zen       Zen-score (Lin et al. 2021): log E_b sum_chw |f(x) - f(x + a eps)| on the pre-pooling
            features (x, eps ~ N(0, 1), a = 0.01), plus sum over BN layers of log sqrt(mean_c sigma_c^2),
            sigma_c^2 the channel's batch variance; weights N(0, 1), BN in training mode.
  synflow   Synaptic flow (Tanaka et al. 2020): R = 1^T f_|theta|(1), score sum_w theta * dR/dtheta over the
            conv and linear weights with every parameter replaced by its absolute value, BN in eval mode
            (fresh statistics: the identity), one all-ones image, float64. Reported as its natural log
            (the sum reaches 1e75 at 224 px; the log is monotone, so rankings do not change).
  naswot    Mellor et al. 2021: log|det K|, K_ij = sum over ReLU units of [c_i == c_j] (N_A minus the
            Hamming distance of the binary ReLU codes of inputs i and j over a batch), BN in training mode.
  gradnorm  Abdelfattah et al. 2021: sum over conv and linear weights of ||dL/dW||_2, L the mean
            cross-entropy of a Gaussian batch against seeded random labels, BN in training mode.

Weights and inputs are drawn with numpy from a generator seeded by (seed, repeat, proxy) only, never
by the code, so every code sees the same inputs (common random numbers) and a result does not depend
on which rank or in which order it was computed.
"""

import contextlib
import time
import warnings

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from .proxy_settings import INITS, PROXIES, ProxyError

# --- initialisation and inputs --------------------------------------------------------------

def generator(seed, repeat, proxy):
    """The numpy generator of one proxy's `repeat`-th initialisation and inputs (code-independent)."""
    return np.random.default_rng([int(seed), int(repeat), PROXIES.index(proxy)])


def _weighted_layers(model):
    return [m for m in model.sublayers(include_self=True) if isinstance(m, nn.Conv2D | nn.Linear)]


def _bn_layers(model):
    return [m for m in model.sublayers(include_self=True) if isinstance(m, nn.layer.norm._BatchNormBase)]


def init_weights(model, scheme, rng):
    """Draw every conv and linear weight from `rng`: 'gaussian' N(0, 1) (Zen-NAS), 'kaiming' N(0, 2 / fan_in)
    (He et al., the fan-in of Paddle's own conv default); biases 0; BN scale 1, shift 0, mean 0, variance 1."""
    if scheme not in INITS:
        raise ProxyError(f"unknown initialisation {scheme!r}: expected one of {', '.join(INITS)}")
    for layer in _weighted_layers(model):
        w = layer.weight
        shape = list(w.shape)
        # Conv2D weights are [out, in, k, k] (fan-in: in*k*k); Linear weights are [in, out] (fan-in: in).
        fan_in = int(np.prod(shape[1:])) if isinstance(layer, nn.Conv2D) else shape[0]
        std = 1.0 if scheme == "gaussian" else float(np.sqrt(2.0 / fan_in))
        w.set_value(paddle.to_tensor((rng.standard_normal(shape) * std).astype(_np_dtype(w))))
        if getattr(layer, "bias", None) is not None:
            layer.bias.set_value(paddle.zeros_like(layer.bias))
    for bn in _bn_layers(model):
        bn.weight.set_value(paddle.ones_like(bn.weight))
        bn.bias.set_value(paddle.zeros_like(bn.bias))
        bn._mean.set_value(paddle.zeros_like(bn._mean))
        bn._variance.set_value(paddle.ones_like(bn._variance))
    return model


def _np_dtype(tensor):
    return "float64" if tensor.dtype == paddle.float64 else "float32"


def gaussian(rng, shape, dtype="float32"):
    return paddle.to_tensor(rng.standard_normal(shape).astype(dtype))


# --- the proxies ----------------------------------------------------------------------------

@contextlib.contextmanager
def _training_bn_quiet():
    """Paddle warns on every training-mode BN forward that it tracks statistics; the proxies know."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="When training, we now always track")
        yield


def zen_score(model, features, x, eps, alpha=0.01):
    """(expressivity, bn_term): log mean_b sum_chw |f(x) - f(x + alpha eps)| and sum over the BN layers of
    log sqrt(mean_c var_c), var_c the biased batch variance of the layer's input on the clean pass (read
    from the running variance with momentum 0; a BN layer `features` does not run keeps variance 1: 0).

    `features` maps a batch to the pre-pooling feature map; the model is put in training mode.
    The Zen-score is their sum.
    """
    model.train()
    bns = _bn_layers(model)
    momenta = [bn._momentum for bn in bns]
    try:
        for bn in bns:
            bn._momentum = 0.0  # running statistics := this batch's (Paddle's running variance is the biased one)
        with paddle.no_grad(), _training_bn_quiet():
            clean = features(x)
            variances = [bn._variance.mean().item() for bn in bns]
            mixed = features(x + alpha * eps)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn._momentum = m
    diff = paddle.abs(clean.astype("float64") - mixed.astype("float64")).flatten(1).sum(axis=1).mean().item()
    if not diff > 0:
        raise ProxyError("Zen-score: f(x) and f(x + a eps) are equal (a dead network); the log is undefined")
    if any(not v > 0 for v in variances):
        raise ProxyError("Zen-score: a BN layer's input has zero variance; the log is undefined")
    return float(np.log(diff)), float(sum(0.5 * np.log(v) for v in variances))


def synflow(model, input_shape, dtype="float64"):
    """log sum over conv/linear weights of theta * dR/dtheta, R = sum f_|theta|(ones(input_shape)),
    with every parameter replaced by its absolute value and BN in eval mode. Changes `model` in place
    (absolute weights, `dtype`): give it a model of its own."""
    model.to(dtype=dtype)
    model.eval()
    with paddle.no_grad():
        for p in model.parameters():
            p.set_value(paddle.abs(p))
    for p in model.parameters():
        p.clear_gradient()
    out = model(paddle.ones(input_shape, dtype=dtype))
    out.sum().backward()
    total = 0.0
    for layer in _weighted_layers(model):
        w = layer.weight
        if w.grad is not None:
            total += (w * w.grad).sum().item()
    if not np.isfinite(total):
        raise ProxyError(f"synflow overflowed {dtype} (use evaluate.proxies.synflow_dtype=float64)")
    if not total > 0:
        raise ProxyError("synflow is 0 (no path from the input to the output); the log is undefined")
    return float(np.log(total))


def relu_kernel(codes):
    """NASWOT's K for binary codes [B, N_A] (numpy 0/1): K_ij = N_A - Hamming(c_i, c_j)."""
    c = np.asarray(codes, dtype=np.float64)
    return c @ c.T + (1.0 - c) @ (1.0 - c).T


def naswot(model, x):
    """log|det K|, K summed over every call of every nn.ReLU of `model` on batch `x` (training mode)."""
    model.train()
    batch = x.shape[0]
    kernel = np.zeros((batch, batch), dtype=np.float64)

    def record(layer, inputs, output):
        units = int(np.prod(output.shape[1:]))
        # [c_i == c_j] summed = N_A - s_i - s_j + 2 c_i.c_j (s: active counts): one matmul, in integers that
        # float32 holds exactly below 2^24 units per call (the 224 px stem has 802,816); float64 above
        c = (output > 0).astype("float32" if units < 2**24 else "float64").reshape([batch, -1])
        both = paddle.matmul(c, c, transpose_y=True).numpy().astype(np.float64)
        active = c.sum(axis=1).numpy().astype(np.float64)
        kernel[...] += c.shape[1] - active[:, None] - active[None, :] + 2.0 * both

    handles = [m.register_forward_post_hook(record) for m in model.sublayers(include_self=True)
               if isinstance(m, nn.ReLU)]
    if not handles:
        raise ProxyError("naswot: the network has no nn.ReLU layer")
    try:
        with paddle.no_grad(), _training_bn_quiet():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return log_abs_det(kernel)


def log_abs_det(kernel):
    sign, logdet = np.linalg.slogdet(kernel)
    if sign == 0 or not np.isfinite(logdet):
        raise ProxyError(f"naswot: the {len(kernel)} x {len(kernel)} ReLU-code kernel is singular (two inputs share "
                         f"every ReLU's sign); log|det K| is undefined")
    return float(logdet)


def gradnorm(model, x, labels):
    """sum over conv/linear weights of ||dL/dW||_2, L = mean cross-entropy(model(x), labels), training mode."""
    model.train()
    for p in model.parameters():
        p.clear_gradient()
    with _training_bn_quiet():
        loss = F.cross_entropy(model(x), labels)
    loss.backward()
    total = 0.0
    for layer in _weighted_layers(model):
        if layer.weight.grad is not None:
            total += paddle.linalg.norm(layer.weight.grad.flatten()).item()
    for p in model.parameters():
        p.clear_gradient()
    return float(total)


# --- one code -------------------------------------------------------------------------------

def pre_pooling(model):
    """The pre-pooling feature map of a StaticResNet: every block but the head."""
    def features(x):
        for block in model.blocks[:-1]:
            x = block(x)
        return x
    return features


def one_repeat(name, model, spec, settings, repeat):
    """The value of proxy `name` for one seeded initialisation of `model` (every weight and BN statistic
    is drawn afresh, so one model serves every repeat; synflow leaves it with absolute weights)."""
    s = settings
    rng = generator(s.seed, repeat, name)
    shape = [s.batch_size, spec.in_channels, s.resolution, s.resolution]
    if name == "synflow":
        model = init_weights(model, s.init, rng)
        return synflow(model, [1, spec.in_channels, s.resolution, s.resolution], s.synflow_dtype)
    model = init_weights(model, s.zen_init if name == "zen" else s.init, rng)
    if name == "zen":
        x, eps = gaussian(rng, shape), gaussian(rng, shape)
        return sum(zen_score(model, pre_pooling(model), x, eps, s.zen_alpha))
    x = gaussian(rng, shape)
    if name == "naswot":
        return naswot(model, x)
    labels = paddle.to_tensor(rng.integers(0, spec.num_classes, size=[s.batch_size]).astype("int64"))
    return gradnorm(model, x, labels)


def score_arch(arch, spec, settings):
    """{proxy: value averaged over the repeats} and {proxy: seconds} for one code (Arch) under `spec`."""
    from .static import build_static

    values, seconds, models = {}, {}, {}
    for name in settings.names:
        t0 = time.perf_counter()
        kind = "synflow" if name == "synflow" else "float32"  # synflow changes its model's dtype and signs
        if kind not in models:
            models[kind] = build_static(arch, spec)
        vals = [one_repeat(name, models[kind], spec, settings, r) for r in range(settings.repeats)]
        values[name] = float(np.mean(vals))
        seconds[name] = time.perf_counter() - t0
    return values, seconds
