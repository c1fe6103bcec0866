"""Loading the official resnet48.pdparams layout, checked with a synthetic checkpoint of the same keys."""

import numpy as np
import paddle
import pytest

from encoding import RELEASED, KitError, NetSpec
from supernet import ResNet48Supernet, load_official_resnet48, load_official_static, official_keys


def synthetic_official_state(seed=0):
    """Random tensors under the official key names and shapes, written out by hand."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, out, inp, k):
        state[key] = rng.normal(0, (2.0 / (inp * k * k)) ** 0.5, (out, inp, k, k)).astype("float32")

    def bn(prefix, c):
        state[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{prefix}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{prefix}._mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{prefix}._variance"] = rng.uniform(0.5, 1.5, c).astype("float32")

    conv("blocks.0.conv.weight", 64, 3, 7)
    bn("blocks.0.bn", 64)
    index, cin = 1, 64
    for depth, width in zip((5, 5, 8, 5), (64, 128, 256, 512), strict=True):
        for b in range(depth):
            conv(f"blocks.{index}.conv1.weight", width, cin, 3)
            bn(f"blocks.{index}.bn1", width)
            conv(f"blocks.{index}.conv2.weight", width, width, 3)
            bn(f"blocks.{index}.bn2", width)
            if b == 0 and index != 1:
                conv(f"blocks.{index}.downsample.0.weight", width, cin, 1)
                bn(f"blocks.{index}.downsample.1", width)
            cin, index = width, index + 1
    assert index == 24
    state["blocks.24.fc.weight"] = rng.normal(0, 0.05, (512, 1000)).astype("float32")
    state["blocks.24.fc.bias"] = rng.normal(0, 0.05, 1000).astype("float32")
    return state


@pytest.fixture(scope="module")
def official():
    return synthetic_official_state()


def test_expected_keys_are_the_official_ones(official):
    expected = official_keys()
    assert set(expected) == set(official) and len(expected) == 252
    assert all(expected[k] == v.shape for k, v in official.items())
    assert sorted({k.split(".")[1] for k in expected if "downsample" in k}) == ["11", "19", "6"]


def test_supernet_max_export_equals_static_loaded_from_same_dict(official, tmp_path):
    path = str(tmp_path / "resnet48.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in official.items()}, path)
    net = load_official_resnet48(ResNet48Supernet(NetSpec()), path)
    teacher = load_official_static(official)
    net.eval()
    teacher.eval()
    x = paddle.randn([2, 3, 64, 64])
    exported = net.export(RELEASED.max_arch())
    with paddle.no_grad():
        a, b, c = net(x).numpy(), exported(x).numpy(), teacher(x).numpy()
    np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(teacher.state_dict()["blocks.24.fc.weight"].numpy(), official["blocks.24.fc.weight"])
    np.testing.assert_array_equal(net.state_dict()["blocks.19.downsample.1._variance"].numpy(),
                                  official["blocks.19.downsample.1._variance"])


def test_mismatched_checkpoint_names_every_problem(official):
    bad = dict(official)
    del bad["blocks.7.bn1._mean"]
    bad["blocks.25.fc.weight"] = np.zeros((512, 1000), dtype="float32")
    bad["blocks.24.fc.weight"] = np.zeros((512, 100), dtype="float32")
    net = ResNet48Supernet(NetSpec())
    before = net.state_dict()["blocks.0.conv.weight"].numpy().copy()
    with pytest.raises(KitError) as info:
        load_official_resnet48(net, bad)
    msg = str(info.value)
    assert "missing keys (1): blocks.7.bn1._mean" in msg
    assert "unexpected keys (1): blocks.25.fc.weight" in msg
    assert "wrong shapes (1): blocks.24.fc.weight: checkpoint [512, 100], model [512, 1000]" in msg
    np.testing.assert_array_equal(net.state_dict()["blocks.0.conv.weight"].numpy(), before)  # nothing copied
    with pytest.raises(KitError, match="missing keys"):
        load_official_static(bad)


def test_reduced_supernet_rejects_full_size_checkpoint(official):
    net = ResNet48Supernet(NetSpec(width_mult=0.125, stem="small", in_channels=1, num_classes=10))
    with pytest.raises(KitError, match=r"blocks.0.conv.weight: checkpoint \[64, 3, 7, 7\], model \[8, 1, 3, 3\]"):
        load_official_resnet48(net, official)


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(KitError, match="does not exist"):
        load_official_static(str(tmp_path / "nope.pdparams"))
    junk = tmp_path / "junk.pdparams"
    junk.write_text("not a checkpoint")
    with pytest.raises(KitError, match="could not be read by paddle.load"):
        load_official_static(str(junk))
