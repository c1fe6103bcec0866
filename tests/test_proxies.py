"""The zero-cost proxies (supernet/proxies.py) against independent numpy routes on tiny nets: synflow's
closed form on a linear chain, NASWOT's kernel on hand-made codes, Zen-score's two terms separately,
grad-norm's gradient by hand; and their seeding."""

import numpy as np
import paddle
import pytest
from fakedata import kit_config
from paddle import nn

import supernet.proxies as P
from encoding import DOCUMENTED, NetSpec
from supernet.proxy_settings import ProxyError, ProxySettings

TINY = NetSpec(width_mult=0.125, divisor=2, in_channels=1, num_classes=10)


def linear_chain(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def product_flow(model):
    """R = 1^T |W_1| ... |W_L| 1 in float64 numpy (Paddle's Linear weight is [in, out]: y = x W)."""
    v = None
    for layer in model:
        if isinstance(layer, nn.Linear):
            w = np.abs(layer.weight.numpy().astype(np.float64))
            v = w.sum(axis=0) if v is None else v @ w
    return v.sum()


# --- synflow -------------------------------------------------------------------------------

def test_synflow_of_a_linear_relu_chain_is_depth_times_the_path_product():
    # every weight matrix enters R linearly, so sum theta * dR/dtheta = R once per layer (Euler): L * R
    model = P.init_weights(linear_chain([4, 5, 3, 2]), "kaiming", np.random.default_rng(0))
    R = product_flow(model)
    assert P.synflow(model, [1, 4]) == pytest.approx(np.log(3 * R), rel=1e-12)


def test_synflow_needs_float64_where_float32_overflows():
    # 30 layers of N(0, 1) weights on 64 units: each multiplies the flow by about 64 * E|w| = 51, 1e51 in all
    def chain():
        return P.init_weights(linear_chain([64] * 31), "gaussian", np.random.default_rng(1))

    expected = np.log(30 * product_flow(chain()))
    assert expected > np.log(np.finfo(np.float32).max)
    assert P.synflow(chain(), [1, 64], "float64") == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ProxyError, match="synflow overflowed float32"):
        P.synflow(chain(), [1, 64], "float32")


def test_synflow_uses_absolute_values_and_eval_mode_bn():
    # a sign flip changes nothing; BN at fresh statistics in eval mode only divides by sqrt(1 + eps) per use
    a = P.init_weights(linear_chain([3, 4, 2]), "kaiming", np.random.default_rng(2))
    b = P.init_weights(linear_chain([3, 4, 2]), "kaiming", np.random.default_rng(2))
    b[0].weight.set_value(-b[0].weight)
    assert P.synflow(a, [1, 3]) == pytest.approx(P.synflow(b, [1, 3]), rel=1e-12)
    conv = nn.Sequential(nn.Conv2D(1, 2, 1, bias_attr=False), nn.BatchNorm2D(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, 1))
    P.init_weights(conv, "kaiming", np.random.default_rng(3))
    w1 = np.abs(conv[0].weight.numpy().astype(np.float64)).reshape(2)
    w2 = np.abs(conv[4].weight.numpy().astype(np.float64)).reshape(2, 9)
    R = float((w1[:, None] * w2).sum()) / np.sqrt(1 + 1e-5)  # all-ones 3x3 image: each pixel carries w1
    assert P.synflow(conv, [1, 1, 3, 3]) == pytest.approx(np.log(2 * R), rel=1e-9)


# --- NASWOT --------------------------------------------------------------------------------

def test_relu_kernel_of_hand_made_codes():
    codes = [[1, 0, 1], [1, 1, 1], [0, 0, 0]]  # Hamming distances 1, 2, 3: K = 3 - d
    np.testing.assert_array_equal(P.relu_kernel(codes), [[3, 2, 1], [2, 3, 0], [1, 0, 3]])
    assert P.log_abs_det(P.relu_kernel(codes)) == pytest.approx(np.log(12.0))  # det = 27 - 12 - 3
    with pytest.raises(ProxyError, match="kernel is singular"):
        P.log_abs_det(P.relu_kernel([[1, 0], [1, 0]]))


class TwiceRelu(nn.Layer):
    """One nn.ReLU called twice: both calls' codes belong in the kernel."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(3, 6), nn.Linear(6, 5), nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc2(self.relu(self.fc1(x))))


def test_naswot_sums_the_kernel_over_every_relu_call():
    model = P.init_weights(TwiceRelu(), "gaussian", np.random.default_rng(4))
    x = np.random.default_rng(5).standard_normal([6, 3]).astype("float32")
    w1, w2 = model.fc1.weight.numpy(), model.fc2.weight.numpy()
    h = np.maximum(x @ w1, 0)
    codes = np.concatenate([h > 0, (h @ w2) > 0], axis=1)  # the ReLU codes of both calls, 11 units
    assert P.naswot(model, paddle.to_tensor(x)) == pytest.approx(P.log_abs_det(P.relu_kernel(codes)), rel=1e-12)
    with pytest.raises(ProxyError, match="singular"):
        P.naswot(model, paddle.to_tensor(np.repeat(x[:1], 3, axis=0)))


# --- Zen-score -----------------------------------------------------------------------------

def test_zen_score_terms_against_numpy():
    # f = ReLU(BN(1x1 conv)) in training mode: BN normalises by the batch's own biased statistics
    net = nn.Sequential(nn.Conv2D(2, 3, 1, bias_attr=False), nn.BatchNorm2D(3), nn.ReLU())
    P.init_weights(net, "gaussian", np.random.default_rng(6))
    rng = np.random.default_rng(7)
    x, eps = (rng.standard_normal([4, 2, 5, 5]).astype("float32") for _ in range(2))
    w = net[0].weight.numpy().reshape(3, 2).astype(np.float64)

    def f(inp):
        y = np.einsum("oi,nihw->nohw", w, inp.astype(np.float64))
        mean, var = y.mean(axis=(0, 2, 3), keepdims=True), y.var(axis=(0, 2, 3), keepdims=True)
        return np.maximum((y - mean) / np.sqrt(var + 1e-5), 0), y.var(axis=(0, 2, 3))

    clean, var = f(x)
    mixed, _ = f(x + 0.01 * eps)
    expressivity = np.log(np.abs(clean - mixed).reshape(4, -1).sum(axis=1).mean())
    got = P.zen_score(net, net, paddle.to_tensor(x), paddle.to_tensor(eps), 0.01)
    assert got[0] == pytest.approx(expressivity, abs=2e-4)
    assert got[1] == pytest.approx(0.5 * np.log(var.mean()), rel=1e-5)
    assert net[1]._momentum == 0.9  # the momentum-0 readout is undone


def test_zen_bn_term_of_a_resnet_matches_hooked_batch_variances():
    from supernet.static import build_static

    model = P.init_weights(build_static(DOCUMENTED.sample_many(1, 3)[0], TINY), "gaussian", np.random.default_rng(8))
    rng = np.random.default_rng(9)
    x, eps = (paddle.to_tensor(rng.standard_normal([4, 1, 16, 16]).astype("float32")) for _ in range(2))
    seen = []
    bns = [m for m in model.sublayers() if isinstance(m, nn.BatchNorm2D)]
    hooks = [bn.register_forward_pre_hook(lambda layer, inp: seen.append(
        float(inp[0].numpy().astype(np.float64).var(axis=(0, 2, 3)).mean()))) for bn in bns]
    _, bn_term = P.zen_score(model, P.pre_pooling(model), x, eps)
    for h in hooks:
        h.remove()
    assert len(seen) == 2 * len(bns)  # every BN layer runs on both passes; the clean pass counts
    assert bn_term == pytest.approx(sum(0.5 * np.log(v) for v in seen[:len(bns)]), rel=1e-5)


# --- grad-norm -----------------------------------------------------------------------------

def test_gradnorm_of_a_linear_classifier_by_hand():
    model = P.init_weights(nn.Linear(3, 4), "kaiming", np.random.default_rng(10))
    rng = np.random.default_rng(11)
    x = rng.standard_normal([5, 3]).astype("float32")
    y = np.array([0, 3, 1, 1, 2])
    logits = x.astype(np.float64) @ model.weight.numpy().astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = x.T.astype(np.float64) @ (p - np.eye(4)[y]) / 5  # d mean CE / dW
    got = P.gradnorm(model, paddle.to_tensor(x), paddle.to_tensor(y.astype("int64")))
    assert got == pytest.approx(np.linalg.norm(grad), rel=1e-5)
    assert model.weight.grad is None or float(paddle.abs(model.weight.grad).sum()) == 0.0


# --- initialisation, seeding, settings -----------------------------------------------------

def test_init_weights_draws_the_documented_scales():
    conv = nn.Conv2D(50, 64, 3)
    P.init_weights(conv, "kaiming", np.random.default_rng(12))
    assert np.std(conv.weight.numpy()) == pytest.approx(np.sqrt(2 / 450), rel=0.02)
    assert not conv.bias.numpy().any()
    P.init_weights(conv, "gaussian", np.random.default_rng(12))
    assert np.std(conv.weight.numpy()) == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ProxyError, match="unknown initialisation 'xavier'"):
        P.init_weights(conv, "xavier", np.random.default_rng(0))


def proxy_settings(**keys):
    """ProxySettings of configs/imagenet.yaml's `evaluate.proxies` with `keys` changed."""
    shipped = {k: v for k, v in kit_config()["evaluate"]["proxies"].items() if k != "out"}
    return ProxySettings(**{**shipped, "names": tuple(shipped["names"]), "resolution": 224, **keys})


def test_scores_are_seeded_code_independent_and_averaged_over_repeats():
    arch, other = DOCUMENTED.sample_many(2, 5)
    s = proxy_settings(batch_size=4, resolution=16, repeats=2)
    first, _ = P.score_arch(arch, TINY, s)
    assert P.score_arch(other, TINY, s)[0] != first  # warm-up by another code changes nothing below
    again, _ = P.score_arch(arch, TINY, s)
    assert again == first and set(first) == {"zen", "synflow", "naswot", "gradnorm"}
    assert all(np.isfinite(v) for v in first.values())
    one = proxy_settings(batch_size=4, resolution=16, repeats=1)
    from supernet.static import build_static

    for name in ("zen", "naswot"):
        per = [P.one_repeat(name, build_static(arch, TINY), TINY, one, r) for r in range(2)]
        assert first[name] == pytest.approx(np.mean(per), rel=1e-12)
    reseeded, _ = P.score_arch(arch, TINY, proxy_settings(batch_size=4, resolution=16, repeats=2, seed=1))
    assert all(reseeded[k] != first[k] for k in first)


@pytest.mark.parametrize("kwargs,message", [
    ({"names": ("zen", "snip")}, "unknown proxy 'snip': expected some of zen, synflow, naswot, gradnorm"),
    ({"names": ()}, "unknown proxy (none given)"),
    ({"names": ("zen", "zen")}, "proxies repeat"),
    ({"batch_size": 0}, "evaluate.proxies.batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 1}, "naswot needs evaluate.proxies.batch_size >= 2"),
    ({"init": "xavier"}, "evaluate.proxies.init must be one of gaussian, kaiming, got 'xavier'"),
    ({"synflow_dtype": "float16"}, "synflow_dtype must be float32 or float64"),
    ({"zen_alpha": 0}, "zen_alpha must be positive"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ProxyError) as info:
        proxy_settings(**kwargs)
    assert message in str(info.value)
