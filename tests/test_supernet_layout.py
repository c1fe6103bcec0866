"""Channels-last (runtime.layout): NHWC nets compute what NCHW nets compute, from the same state_dict, and
the `channels_last` keys are refused without AMP."""

import os

import numpy as np
import paddle
import pytest

from encoding import DOCUMENTED, RELEASED, NetSpec
from infra.config import ConfigError, default_config, resolve
from runtime import layout, onednn_conv
from supernet import ResNet48Supernet, StaticResNet
from tests.fakedata import train_settings

SMALL = NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10)
DEMO = default_config("demo")
POOLED = NetSpec(width_mult=0.125, stem="imagenet", in_channels=3, num_classes=10)  # 7x7/2 conv + max-pool


@pytest.fixture(autouse=True)
def cpu_paddle_conv():
    paddle.set_device("cpu")
    before = onednn_conv.backend()
    onednn_conv.set_backend("paddle")
    yield
    onednn_conv.set_backend(before)


def twins(cls, *args, dtype="float32"):
    """An NCHW and an NHWC net holding the same parameters and statistics (the NHWC one loads the other's
    state_dict, so the test also shows that a state_dict moves between layouts unchanged)."""
    paddle.seed(0)
    nchw = cls(*args)
    paddle.seed(1)  # different initial weights, so equality below comes from set_state_dict
    nhwc = cls(*args, data_format="NHWC")
    missing, unexpected = nhwc.set_state_dict(nchw.state_dict())
    assert not missing and not unexpected
    return nchw.to(dtype=dtype), nhwc.to(dtype=dtype)


def step(net, x, probe):
    """One training-mode forward and backward; logits and every parameter's gradient by name."""
    net.train()
    net.clear_gradients()
    logits = net(x)
    (logits * probe).sum().backward()
    grads = {name: p.grad.numpy().copy() for name, p in net.named_parameters() if p.grad is not None}
    return logits.numpy(), grads


def stats(net):
    return {name: v.numpy().copy() for name, v in net.state_dict().items() if name.endswith(("_mean", "_variance"))}


# Tolerances relative to each tensor's largest entry. In float64 the layouts agree to 1e-13-1e-10 (forward,
# gradients, BN statistics): that is the exactness check. In float32 only logits and statistics are compared:
# on some codes these random nets' gradients jump by 2-3e-2 of their scale when the input moves by 1e-6
# relative, in float64 too (a ReLU or max-pool switching), so float32 rounding, which Paddle's CPU NHWC
# batch_norm makes ~5x larger than its NCHW kernel, can land the two layouts on either side of a jump.
TOLERANCE = {"float64": {"train": 1e-8, "grad": 1e-8, "eval": 1e-8},
             "float32": {"train": 1e-4, "grad": None, "eval": 1e-4}}


def close(got, want, what, tol):
    scale = float(np.abs(want).max()) + 1e-12
    np.testing.assert_allclose(got / scale, want / scale, rtol=tol, atol=tol, err_msg=what)


def assert_same_step(nchw, nhwc, x, probe, what, dtype="float32"):
    tol = TOLERANCE[dtype]
    a_logits, a_grads = step(nchw, x, probe)
    b_logits, b_grads = step(nhwc, x, probe)
    close(b_logits, a_logits, f"{what}: logits", tol["train"])
    assert sorted(a_grads) == sorted(b_grads) and a_grads, what
    for name, g in a_grads.items():
        if tol["grad"] is not None:
            close(b_grads[name], g, f"{what}: {name}", tol["grad"])
    a_stats, b_stats = stats(nchw), stats(nhwc)
    for name, v in a_stats.items():
        close(b_stats[name], v, f"{what}: {name}", tol["train"])
    return a_stats


def codes():
    """Extremes of both spaces (full and narrowest widths, all and fewest blocks) and sliced samples."""
    return [RELEASED.max_arch(), RELEASED.min_arch(), DOCUMENTED.min_arch()] + RELEASED.sample_many(2, seed=3) \
        + DOCUMENTED.sample_many(1, seed=4)


@pytest.mark.parametrize("spec,batch,size,dtype", [(SMALL, 4, 12, "float64"), (POOLED, 4, 24, "float64"),
                                                   (SMALL, 8, 16, "float32"), (POOLED, 8, 64, "float32")])
def test_nhwc_supernet_trains_and_evaluates_as_nchw(spec, batch, size, dtype):
    nchw, nhwc = twins(ResNet48Supernet, spec, dtype=dtype)
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.normal(size=(batch, spec.in_channels, size, size)).astype(dtype))
    probe = paddle.to_tensor(rng.normal(size=(batch, spec.num_classes)).astype(dtype))
    before = stats(nchw)
    for arch in codes():
        nchw.set_active(arch)
        nhwc.set_active(arch)
        after = assert_same_step(nchw, nhwc, x, probe, arch.code(), dtype)
        assert any(not np.array_equal(after[k], before[k]) for k in after), "the step moved no BN statistic"
        before = after
        nchw.eval(), nhwc.eval()
        close(nhwc(x).numpy(), nchw(x).numpy(), arch.code(), TOLERANCE[dtype]["eval"])
    # the sliced BN layers' untouched tails stay equal too (the whole buffers were compared in `stats`)
    assert nhwc.dynamic_bn_layers()[0].data_format == "NHWC"


def test_nhwc_static_net_trains_as_nchw_and_exports_stay_nchw():
    arch = RELEASED.sample_many(1, seed=7)[0]
    nchw, nhwc = twins(StaticResNet, arch, POOLED, dtype="float64")
    rng = np.random.default_rng(1)
    x = paddle.to_tensor(rng.normal(size=(3, 3, 24, 24)))
    probe = paddle.to_tensor(rng.normal(size=(3, 10)))
    assert_same_step(nchw, nhwc, x, probe, "static", "float64")
    nchw.eval(), nhwc.eval()
    close(nhwc(x).numpy(), nchw(x).numpy(), "static, eval", TOLERANCE["float64"]["eval"])
    supernet = ResNet48Supernet(POOLED, data_format="NHWC")
    assert supernet.export(arch).data_format == "NCHW"  # what deployment and the evaluators take


def test_state_dicts_are_the_same_in_both_layouts():
    for build in (lambda f: ResNet48Supernet(SMALL, data_format=f),
                  lambda f: StaticResNet(RELEASED.max_arch(), POOLED, data_format=f)):
        a, b = build("NCHW").state_dict(), build("NHWC").state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    # conv weights stay OIHW: [out, in, k, k]
    assert ResNet48Supernet(SMALL, data_format="NHWC").blocks[0].conv.weight.shape[1] == SMALL.in_channels


@pytest.mark.skipif(not os.path.isfile(onednn_conv.library_path()), reason="no oneDNN library in this Paddle wheel")
def test_nhwc_convs_bypass_the_installed_onednn_path_and_agree_with_it():
    """With oneDNN installed the NCHW net runs through it and the NHWC net through Paddle's kernel."""
    onednn_conv.set_backend("onednn")
    nchw, nhwc = twins(ResNet48Supernet, SMALL)
    rng = np.random.default_rng(2)
    x = paddle.to_tensor(rng.normal(size=(2, 1, 12, 12)).astype("float32"))
    probe = paddle.to_tensor(rng.normal(size=(2, 10)).astype("float32"))
    calls = []
    inner = onednn_conv.conv2d

    def counting(*args):
        calls.append(args[0].shape)
        return inner(*args)

    from runtime import conv

    conv.install(counting, "onednn")
    nchw.set_active(RELEASED.sample_many(1, seed=9)[0])
    nhwc.set_active(nchw.active_arch)
    assert_same_step(nchw, nhwc, x, probe, "onednn vs paddle NHWC")
    seen = len(calls)
    assert seen > 0  # the NCHW net's convs went through the installed path
    with paddle.no_grad():
        nhwc(x)
    assert len(calls) == seen  # and none of the NHWC net's


def test_layout_follows_amp_in_effect():
    assert layout.data_format(False, "bfloat16") == "NCHW"
    assert layout.data_format(True, "bfloat16") == "NHWC" and layout.data_format(True, "float16") == "NHWC"
    assert layout.data_format(True, None) == "NCHW"  # amp_dtype gives None on the CPU: no NHWC there
    with pytest.raises(ConfigError, match="data_format must be one of NCHW, NHWC, got 'NWHC'"):
        ResNet48Supernet(SMALL, data_format="NWHC")


def test_channels_last_without_amp_is_refused_in_one_line():
    from supernet.settings import SupernetSettings

    with pytest.raises(ConfigError) as e:
        train_settings({"channels_last": True, "amp": "none"})
    assert str(e.value).startswith("train.channels_last=true needs train.amp=bf16 or fp16") and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="train.channels_last must be true or false, got 'yes'"):
        train_settings({"channels_last": "yes", "amp": "bf16"})
    assert train_settings({"channels_last": True, "amp": "bf16"}).channels_last is True
    assert train_settings().channels_last is False

    with pytest.raises(ConfigError, match=r"^supernet.channels_last=true needs supernet.amp=bf16 or fp16"):
        SupernetSettings.from_config(resolve(DEMO, overrides=["supernet.channels_last=true", "supernet.amp=none"]))
    on = SupernetSettings.from_config(resolve(DEMO, overrides=["supernet.channels_last=true", "supernet.amp=fp16"]))
    assert on.channels_last is True and SupernetSettings.from_config(resolve(DEMO)).channels_last is False


def test_the_supernet_trainer_runs_nhwc_only_while_amp_is_in_effect(tmp_path, monkeypatch):
    """On the CPU `amp` is ignored and so is channels_last; with AMP in effect (a GPU's amp_dtype, faked
    here: Paddle's autocast does nothing on a CPU place) the trainer's supernet is NHWC and its training
    step gives the NCHW trainer's losses (the same seed, so the same initial weights)."""
    from test_train_supernet import DEMO, make_image_folder, tiny_overrides

    import supernet.train as T
    from train_supernet import load_config

    images = make_image_folder(tmp_path / "images")

    def build(name, *extra):
        cfg, _ = load_config([DEMO, *tiny_overrides(images, str(tmp_path / name), "supernet.amp=bf16",
                                                    "supernet.zero_init_residual=false", *extra)])
        t = T.Trainer(cfg)
        t.epoch, t.step, t.last_checkpoint = 0, 0, None
        return t

    assert build("cpu", "supernet.channels_last=true").model.data_format == "NCHW"
    monkeypatch.setattr(T, "amp_dtype", lambda name, device, key="amp", warn=False: "bfloat16")
    nhwc, nchw = build("nhwc", "supernet.channels_last=true"), build("nchw")
    assert (nhwc.model.data_format, nchw.model.data_format) == ("NHWC", "NCHW")
    nchw.loader.set_epoch(0)
    x, y = next(iter(nchw.loader))
    paths = nchw.schedule.paths(0, 0)
    with pytest.warns(UserWarning, match="amp_guard can only be enabled on CUDAPlace"):
        losses = [t.train_step(x, y, paths, global_step=0) for t in (nchw, nhwc)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    # after the step: BN biases start at 0, so they are the float32 gradients themselves (see TOLERANCE)
    for (name, a), b in zip(nchw.model.state_dict().items(), nhwc.model.state_dict().values(), strict=True):
        close(b.numpy(), a.numpy(), f"after one step: {name}", 5e-2)
